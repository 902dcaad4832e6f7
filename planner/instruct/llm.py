"""A small client for OpenAI-compatible chat-completions servers, asking for JSON.

``POST {base_url}/chat/completions`` with a JSON-schema ``response_format``: works against
llama.cpp's server, Ollama (``http://127.0.0.1:11434/v1``), vLLM and hosted APIs. Every
call has a timeout and a bounded number of retries (on timeouts, connection errors, 429
and 5xx). The API key is held in a :class:`Secret`: it never appears in a repr, a log
line or an error message.

Configuration: :class:`LLMConfig` fields, else the environment variables
``REFLEXARC_LLM_BASE_URL``, ``REFLEXARC_LLM_MODEL`` and ``REFLEXARC_LLM_API_KEY``
(or ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from reflexarc.planner.instruct.errors import LLMError
from reflexarc.runtime.config import bounded, choice

ENV_BASE_URL = "REFLEXARC_LLM_BASE_URL"
ENV_MODEL = "REFLEXARC_LLM_MODEL"
ENV_API_KEYS = ("REFLEXARC_LLM_API_KEY", "OPENAI_API_KEY")
MAX_REPLY_BYTES = 256 * 1024
"""A reply body longer than this is refused without being read further."""
MAX_REPLY_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a reply (a task spec needs 5 in its
chat-completion envelope, 2 in its content). Deeper replies are refused before parsing:
``json`` recurses once per level and would raise RecursionError on a deeply nested reply."""
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")


class Secret:
    """A string that does not show itself: repr/str print ``***``; :meth:`reveal` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value or ""

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the secret replaced by ``***``."""
        return text.replace(self._value, "***") if self._value else text


@dataclass
class LLMConfig:
    """Where and how to ask the LLM. Empty strings fall back to the environment.

    Prefer the environment for ``api_key``: a key given here is part of the config.
    """

    base_url: str = ""  # e.g. http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1 (Ollama)
    model: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = bounded(2.0, 0.01, 60.0)
    retries: int = bounded(1, 0, 5)
    max_tokens: int = bounded(256, 16, 8192)
    response_format: str = choice("json_schema", "json_object", "none")


class LLMClient:
    """A JSON-replying chat-completions client. Thread-compatible: one call at a time per
    client (the instruct node calls it from its single worker thread)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | Secret = "",
        *,
        timeout_s: float = 2.0,
        retries: int = 1,
        max_tokens: int = 256,
        response_format: str = "json_schema",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError("not_configured", f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise LLMError("not_configured", "no model given")
        if timeout_s <= 0 or retries < 0:
            raise LLMError("not_configured", "timeout_s must be > 0 and retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.max_tokens = int(max_tokens)
        self.response_format = response_format
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s), headers=headers, transport=transport,
            follow_redirects=False,
        )
        self.calls = 0  # HTTP requests sent, retries included

    @classmethod
    def from_config(cls, cfg: LLMConfig, env: Mapping[str, str] | None = None) -> LLMClient:
        """A client from ``cfg``, with empty fields taken from the environment.

        Raises LLMError("not_configured") naming what is missing.
        """
        env = os.environ if env is None else env
        base_url = cfg.base_url or env.get(ENV_BASE_URL, "")
        model = cfg.model or env.get(ENV_MODEL, "")
        key = cfg.api_key or next((env[k] for k in ENV_API_KEYS if env.get(k)), "")
        missing = [n for n, v in (("base URL", base_url), ("model", model)) if not v]
        if missing:
            raise LLMError(
                "not_configured",
                f"no LLM configured (missing {' and '.join(missing)}): set {ENV_BASE_URL} and "
                f"{ENV_MODEL} (and {ENV_API_KEYS[0]} if the server needs a key), "
                "or llm.base_url=... llm.model=...",
            )
        return cls(
            base_url, model, Secret(key), timeout_s=cfg.timeout_s, retries=cfg.retries,
            max_tokens=cfg.max_tokens, response_format=cfg.response_format,
        )

    def __repr__(self) -> str:
        return (
            f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, api_key={self._key!r}, "
            f"timeout_s={self.timeout_s}, retries={self.retries})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the call

    def chat_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], name: str = "reply"
    ) -> dict[str, Any]:
        """Ask for a JSON object matching ``schema``; return it parsed (not yet validated
        against anything but being a JSON object: the caller validates the content).

        Raises LLMError: ``timeout``, ``connection``, ``http`` (after the retries) or
        ``malformed`` (a reply that is not a chat completion holding one JSON object).
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        if self.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "strict": True, "schema": schema},
            }
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        url = f"{self.base_url}/chat/completions"
        last = LLMError("connection", "no attempt was made")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.05 * 2 ** (attempt - 1), 0.5))
            self.calls += 1
            try:
                status, data = self._post(url, body)
            except httpx.TimeoutException:
                last = LLMError("timeout", f"no reply from {self.base_url} within {self.timeout_s:g} s")
                continue
            except httpx.HTTPError as e:
                last = LLMError("connection", self._key.redact(f"{type(e).__name__}: {e}"))
                continue
            if status == 429 or status >= 500:
                last = LLMError("http", f"HTTP {status} from {self.base_url}")
                continue
            text = data.decode("utf-8", "replace")
            if status != 200:
                raise LLMError("http", f"HTTP {status} from {self.base_url}: {self._snippet(text)}")
            return self._content(data, text)
        if self.retries:
            raise LLMError(last.kind, f"{last.detail} ({self.retries + 1} attempts)")
        raise last

    def _snippet(self, text: str) -> str:
        text = self._key.redact(text[:200]).replace("\n", " ")
        return re.sub(r"[^\x20-\x7e]", "?", text)

    def _post(self, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST ``body``; the status and at most :data:`MAX_REPLY_BYTES` of the reply.

        Raises LLMError("malformed") as soon as the reply is longer: a server that sends
        megabytes is not read to the end.
        """
        with self._http.stream("POST", url, json=body) as resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
                raise LLMError("malformed", f"reply of {int(declared)} bytes > {MAX_REPLY_BYTES} bytes allowed")
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise LLMError("malformed", f"reply longer than the {MAX_REPLY_BYTES} bytes allowed")
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks)

    def _content(self, data: bytes, text: str) -> dict[str, Any]:
        _check_depth(data, "reply")
        try:
            message = json.loads(data)["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(
                "malformed", f"not a chat completion: {self._snippet(text)!r}"
            ) from None
        if not isinstance(message, dict):
            raise LLMError("malformed", "choices[0].message is not an object")
        content = message.get("content")
        if not content and isinstance(message.get("refusal"), str):
            return {"refusal": message["refusal"]}  # structured-outputs refusal
        if not isinstance(content, str):
            raise LLMError("malformed", "the reply has no text content")
        text = content.strip()
        if text.startswith("```"):  # some servers wrap JSON in a code fence
            text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
        _check_depth(text.encode("utf-8", "replace"), "content")
        try:
            obj = json.loads(text)
        except ValueError:
            raise LLMError("malformed", f"content is not JSON: {self._snippet(text)!r}") from None
        if not isinstance(obj, dict):
            raise LLMError("malformed", f"content is JSON but not an object: {self._snippet(text)!r}")
        return obj


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``data`` (0 for a scalar), found
    without parsing: strings are blanked, then brackets are counted. Linear in ``len(data)``,
    and it never recurses, so any input is safe to measure. Unbalanced input gives a depth
    that may be off; the parser that runs next rejects it."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", data))
    depth = deepest = 0
    for c in brackets:
        if c in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _check_depth(data: bytes, what: str) -> None:
    depth = json_depth(data)
    if depth > MAX_REPLY_DEPTH:
        raise LLMError("malformed", f"{what} nests {depth} levels deep; at most {MAX_REPLY_DEPTH} are allowed")
