"""Escalation against a real local HTTP server speaking the OpenAI chat-completions
protocol (scripted replies), and the memory that keeps repeated instructions away from it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from reflexarc.planner.instruct.errors import LLMError
from reflexarc.planner.instruct.instructor import InstructConfig, Instructor
from reflexarc.planner.instruct.llm import LLMClient, LLMConfig, Secret
from reflexarc.planner.instruct.memory import InstructionMemory
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.testing import ChatServer, completion, reply

KEY = "sk-test-0123456789abcdef"
SCENE = SceneInfo()
# not understood by the fast parser ("wiggle" is not a known verb): escalated
TEXT = "wiggle the blue block over to the left edge"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ChatServer] = []

    def start(*script: Any) -> ChatServer:
        servers.append(ChatServer(list(script)))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def instructor(server: ChatServer, cache: Path, timeout_s: float = 2.0, retries: int = 1) -> Instructor:
    llm = LLMConfig(base_url=server.url, model="test-model", api_key=KEY, timeout_s=timeout_s, retries=retries)
    return Instructor(InstructConfig(cache_dir=str(cache), llm=llm), env={})


def test_the_instruction_is_not_understood_by_the_fast_path() -> None:
    inst = Instructor(InstructConfig(memory=False), llm=None, memory=None)
    assert inst.quick(TEXT, SCENE) is None


def test_a_good_reply_becomes_a_goal(serve: Any, tmp_path: Path) -> None:
    server = serve(reply(task="push", object="blue", target_type="place", place="left"))
    inst = instructor(server, tmp_path)
    spec = inst.understand(TEXT, SCENE, stamp_ns=123)
    assert not spec.refusal, spec.refusal
    assert (spec.task, spec.object, spec.target, spec.source) == ("push", "blue", "place:left", "llm")
    assert np.allclose(spec.target_pos, [0.5, 0.2, 0.025]) and spec.stamp_ns == 123
    # what was sent: the protocol, the key, the schema naming only the scene's objects
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "test-model" and body["messages"][-1] == {"role": "user", "content": TEXT}
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["object"]["enum"] == ["red", "green", "blue", ""]
    assert set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False
    assert "red" in body["messages"][0]["content"] and "0.580" in body["messages"][0]["content"]
    inst.close()


def test_a_direction_and_a_relation_from_the_llm(serve: Any, tmp_path: Path) -> None:
    server = serve(
        reply(task="push", object="red", target_type="direction", direction="backward", distance_m=0.05),
        reply(task="pick_place", object="red", target_type="relation", relation="on", reference="green"),
    )
    inst = instructor(server, tmp_path)
    a = inst.understand("scooch the red block toward the operator", SCENE)
    assert a.target == "direction:backward:0.050" and np.allclose(a.target_pos, [0.45, 0.0, 0.025])
    b = inst.understand("red goes atop green, thanks a bunch", SCENE)
    assert b.target == "on:green" and np.allclose(b.target_pos, [0.45, 0.12, 0.075])
    inst.close()


@pytest.mark.parametrize(
    "script, message",
    [
        ([("sleep", 1.0, reply())], r"could not ask the LLM: LLM timeout: no reply from .* within 0.2 s \(2 attempts\)"),
        ([("raw", 200, b"this is not json")], r"LLM malformed: not a chat completion"),
        ([("raw", 200, json.dumps(completion("Sure! Push the blue block left.")).encode())],
         r"LLM malformed: content is not JSON"),
        ([("raw", 200, json.dumps({"choices": []}).encode())], r"LLM malformed: not a chat completion"),
        ([reply(task="push", object="yellow", target_type="place", place="left")],
         r"rejected: object: no object 'yellow' in the scene; objects: red, green, blue"),
        ([reply(task="push", object="blue", target_type="relation", relation="next_to", reference="purple")],
         r"rejected: reference: no object 'purple'"),
        ([reply(task="pick_place", object="blue", target_type="position", position=[0.9, 0.0, 0.025])],
         r"rejected: target: position:0.900,0.000,0.025 resolves to \(0.900, 0.000, 0.025\), outside the target area"),
        ([reply(task="push", object="blue", target_type="direction", direction="right", distance_m=0.3)],
         r"rejected: target: direction:right:0.300 resolves to .*outside the target area"),
        ([reply(task="push", object="blue", target_type="place", place="ceiling")], r"rejected: place: unknown place 'ceiling'"),
        ([reply(task="dance", object="blue")], r"rejected: task: unknown task 'dance'"),
        ([reply(task="none", refusal="There is no ball on the table.")], r"the LLM declined: There is no ball on the table\."),
        ([("raw", 401, f'{{"error": "bad key {KEY}"}}'.encode())], r"LLM http: HTTP 401 from .*bad key \*\*\*"),
    ],
    ids=["timeout", "not-json", "content-not-json", "no-choices", "unknown-object", "unknown-reference",
         "position-outside", "direction-outside", "unknown-place", "unknown-task", "declined", "http-401"],
)
def test_bad_replies_are_refused_with_a_clear_message(
    serve: Any, tmp_path: Path, script: list[Any], message: str
) -> None:
    server = serve(*script)
    inst = instructor(server, tmp_path, timeout_s=0.2)
    spec = inst.understand(TEXT, SCENE)
    assert spec.refusal and spec.source == "llm"
    assert len(spec.target_pos) == 0 and spec.task == ""  # never a goal
    assert re.search(message, spec.refusal), spec.refusal
    assert KEY not in spec.refusal
    # refusals are not remembered: asking again asks the server again
    n = len(server.requests)
    inst.understand(TEXT, SCENE)
    assert len(server.requests) > n
    inst.close()


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "body, message",
    [
        (json.dumps(completion(DEEP)).encode(), r"LLM malformed: content nests 100000 levels deep; at most 32"),
        (('{"choices": ' + DEEP + "}").encode(), r"LLM malformed: reply nests 100001 levels deep; at most 32"),
        (json.dumps(completion("x" * 5_000_000)).encode(), r"LLM malformed: reply of \d+ bytes > 262144 bytes allowed"),
    ],
    ids=["deep-content", "deep-envelope", "5-MB"],
)
def test_a_reply_too_deep_or_too_large_is_a_counted_refusal(
    serve: Any, tmp_path: Path, body: bytes, message: str
) -> None:
    server = serve(("raw", 200, body))
    inst = instructor(server, tmp_path)
    spec = inst.understand(TEXT, SCENE)  # no RecursionError, no MemoryError
    assert spec.refusal and spec.source == "llm" and spec.task == ""
    assert re.search(message, spec.refusal), spec.refusal
    assert inst.counts["refused"] == 1 and inst.counts["llm"] == 0
    inst.close()


def test_a_reply_without_a_declared_length_is_not_read_past_the_bound() -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:  # a server that never stops sending
        for _ in range(10_000):
            sent.append(1)
            yield b" " * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    with (
        LLMClient("http://llm.test/v1", "m", transport=transport) as client,
        pytest.raises(LLMError, match=r"longer than the 262144 bytes allowed"),
    ):
        client.chat_json([{"role": "user", "content": "hi"}], {"type": "object"})
    assert len(sent) <= 6  # stopped after about 256 KiB, not 640 MB


def test_retries_are_bounded_and_recover_from_server_errors(serve: Any, tmp_path: Path) -> None:
    server = serve(("raw", 503, b"busy"), reply(task="push", object="blue", target_type="place", place="left"))
    spec = instructor(server, tmp_path, retries=1).understand(TEXT, SCENE)
    assert spec.source == "llm" and not spec.refusal and len(server.requests) == 2
    server = serve(("raw", 500, b"down"))
    spec = instructor(server, tmp_path / "b", retries=2).understand(TEXT, SCENE)
    assert "HTTP 500" in spec.refusal and "3 attempts" in spec.refusal and len(server.requests) == 3


def test_memory_makes_a_repeated_instruction_skip_the_server(serve: Any, tmp_path: Path) -> None:
    server = serve(reply(task="push", object="blue", target_type="place", place="left"))
    inst = instructor(server, tmp_path)
    first = inst.understand(TEXT, SCENE)
    assert first.source == "llm" and len(server.requests) == 1
    again = inst.understand("Wiggle the blue block over to the LEFT edge!", SCENE)  # same words
    assert again.source == "memory" and again.target == first.target
    assert np.allclose(again.target_pos, first.target_pos)
    assert len(server.requests) == 1  # the server got no second request
    inst.close()
    # persistent: a new process-like instructor with the same cache dir, the server gone
    server.close()
    later = instructor(server, tmp_path)
    moved = SCENE.with_positions({"blue": (0.6, -0.2, 0.025)})
    spec = later.understand(TEXT, moved)
    assert spec.source == "memory" and not spec.refusal
    assert len(server.requests) == 1
    later.close()


def test_memory_resolves_against_where_things_are_now(serve: Any, tmp_path: Path) -> None:
    server = serve(reply(task="push", object="blue", target_type="direction", direction="left", distance_m=0))
    inst = instructor(server, tmp_path)
    assert np.allclose(inst.understand(TEXT, SCENE).target_pos, [0.58, -0.02, 0.025])
    moved = SCENE.with_positions({"blue": (0.52, -0.15, 0.025)})
    spec = inst.understand(TEXT, moved)
    assert spec.source == "memory" and np.allclose(spec.target_pos, [0.52, -0.05, 0.025])
    # a different scene (other objects) does not recall it
    other = SceneInfo(objects=SCENE.objects[:2] + (SCENE.objects[2].__class__("blue", (0.5, 0, 0.025), "blue", 0.04),))
    assert other.signature == SCENE.signature  # sizes are not part of the meaning
    two = SceneInfo(objects=SCENE.objects[:1] + SCENE.objects[2:])
    assert inst.quick(TEXT, two) is None
    inst.close()


def test_no_llm_configured_says_so_and_the_fast_path_still_works(tmp_path: Path) -> None:
    inst = Instructor(InstructConfig(cache_dir=str(tmp_path)), env={})
    assert inst.llm is None
    spec = inst.understand(TEXT, SCENE)
    assert spec.refusal and "no LLM configured" in spec.refusal
    assert "REFLEXARC_LLM_BASE_URL" in spec.refusal and "unknown word 'wiggle'" in spec.refusal
    ok = inst.understand("push the blue block to the left", SCENE)
    assert ok.source == "fast" and not ok.refusal
    inst.close()


def test_llm_settings_from_the_environment_and_the_key_never_shows() -> None:
    env = {"REFLEXARC_LLM_BASE_URL": "http://127.0.0.1:9/v1", "REFLEXARC_LLM_MODEL": "m", "OPENAI_API_KEY": KEY}
    client = LLMClient.from_config(LLMConfig(), env)
    assert client.base_url == "http://127.0.0.1:9/v1" and client.model == "m"
    assert KEY not in repr(client) and "***" in repr(client)
    assert KEY not in repr(LLMConfig(api_key=KEY))
    assert KEY not in repr(Secret(KEY)) and KEY not in str(Secret(KEY)) and Secret(KEY).reveal() == KEY
    with pytest.raises(LLMError) as e:  # port 9 (discard): nothing listens there
        client.chat_json([{"role": "user", "content": "hi"}], {"type": "object"})
    assert e.value.kind == "connection" and KEY not in str(e.value)
    client.close()
    with pytest.raises(LLMError, match="missing model"):
        LLMClient.from_config(LLMConfig(base_url="http://x"), {})
    assert LLMClient.from_config(LLMConfig(base_url="http://x", model="cfg"), {"REFLEXARC_LLM_MODEL": "env"}).model == "cfg"


def test_memory_file_survives_damage(tmp_path: Path) -> None:
    (tmp_path / "instructions.sqlite").write_bytes(b"this is not a database" * 100)
    mem = InstructionMemory(tmp_path)
    assert len(mem) == 0
    assert list(tmp_path.glob("instructions.corrupt-*"))  # the damaged file is kept aside
    mem.close()


def _say(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflexarc.runtime.cli", "say", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )


def test_say_cli_escalates_then_remembers(serve: Any, tmp_path: Path) -> None:
    server = serve(reply(task="push", object="blue", target_type="place", place="left"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXARC_LLM", "OPENAI"))}
    env.update({"REFLEXARC_LLM_BASE_URL": server.url, "REFLEXARC_LLM_MODEL": "m",
                "REFLEXARC_LLM_API_KEY": KEY})
    first = _say(TEXT, "dry_run=true", f"cache_dir={tmp_path}", f"out={tmp_path / '1.json'}", env=env)
    assert first.returncode == 0, first.stderr
    out = json.loads((tmp_path / "1.json").read_text())
    assert (out["task"], out["object"], out["target"], out["source"]) == ("push", "blue", "place:left", "llm")
    assert out["target_pos"] == [0.5, 0.2, 0.025] and out["confidence"] == 0.9
    second = _say(TEXT, "dry_run=true", f"cache_dir={tmp_path}", f"out={tmp_path / '2.json'}", env=env)
    assert json.loads((tmp_path / "2.json").read_text())["source"] == "memory"
    assert len(server.requests) == 1
    assert KEY not in first.stdout + first.stderr + second.stdout + second.stderr
