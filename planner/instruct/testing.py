"""A scripted OpenAI-compatible chat-completions server, for tests and offline demos.

    server = ChatServer([reply(task="push", object="red", target_type="place", place="left")])
    # REFLEXARC_LLM_BASE_URL=server.url ...
    server.close()

It listens on 127.0.0.1 (a free port), answers ``POST /v1/chat/completions`` from its
script and records every request (path, headers, parsed body).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def reply(**fields: Any) -> dict[str, Any]:
    """A task-spec reply following :func:`reflexarc.planner.instruct.prompt.reply_schema`;
    unspecified fields empty."""
    base: dict[str, Any] = {
        "task": "none", "object": "", "target_type": "none", "place": "", "direction": "",
        "distance_m": 0, "relation": "", "reference": "", "position": [], "refusal": "",
    }
    base.update(fields)
    return base


def by_instruction(replies: dict[str, Any], otherwise: Any = None) -> Any:
    """A script item answering each request by its instruction (the last user message):
    ``replies[text]`` (a callable: called with the request body, as a model reading the
    scene in the prompt), else ``otherwise`` (default: a refusal naming the text)."""

    def answer(body: Any) -> Any:
        try:
            text = [m["content"] for m in body["messages"] if m.get("role") == "user"][-1]
        except (TypeError, KeyError, IndexError):
            return ("raw", 400, b'{"error": "no user message"}')
        if text in replies:
            item = replies[text]
            return item(body) if callable(item) else item
        return otherwise if otherwise is not None else reply(refusal=f"no scripted reply for {text!r}")

    return answer


def completion(content: str) -> dict[str, Any]:
    """A chat.completion response body whose message content is ``content``."""
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ChatServer:
    """A chat-completions server on 127.0.0.1 answering from a script.

    Script items, used in order (the last one repeats):

    - a dict: sent as the JSON content of a completion;
    - ``("raw", status, body_bytes)``: sent as is;
    - ``("sleep", seconds, item)``: answer ``item`` after a delay;
    - ``("hold", threading.Event, item)``: answer ``item`` once the event is set;
    - a callable: called with the parsed request body, returns the item to answer (a
      server that answers by the instruction: :func:`by_instruction`).
    """

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.received = threading.Event()  # set on every request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": parsed})
                server.received.set()
                item = server.script[min(len(server.requests), len(server.script)) - 1]
                self._answer(item)

            def _answer(self, item: Any) -> None:
                if callable(item):
                    item = item(server.requests[-1]["body"])
                while isinstance(item, tuple) and item[0] in ("sleep", "hold"):
                    if item[0] == "sleep":
                        time.sleep(item[1])
                    else:
                        item[1].wait(30.0)
                    item = item[2]
                if isinstance(item, tuple) and item[0] == "raw":
                    status, data = item[1], item[2]
                else:
                    status, data = 200, json.dumps(completion(json.dumps(item))).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeouts)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
