"""``reflexarc bench instruct``'s graph part: while an LLM call hangs, control goes on.

Real node processes (sim, 1 kHz controller, expert plans, instruct node), a real local
chat-completions server that takes the request and holds it while measured, and the
instruction sent as `reflexarc say` sends it. Behaviour only: the figures (rate, misses,
jitter) are the bench's and are not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc


@pytest.mark.slow
def test_the_controller_keeps_commanding_while_the_llm_call_hangs(tmp_path: Path) -> None:
    out = tmp_path / "instruct.json"
    r = reflexarc("bench", "instruct", "quick=true", "seconds=1", f"out={out}", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {row["variant"]: row for row in json.loads(out.read_text())}
    assert {"fast_path", "instruct_idle", "llm_hangs", "after_answer"} <= set(rows)
    assert rows["fast_path"]["step50_us"] > 0
    graph = [rows[v] for v in ("instruct_idle", "llm_hangs", "after_answer")]
    assert all(g["ok"] and "error" not in g for g in graph), graph  # nobody silent, dead or late
    idle, hang, after = graph
    assert idle["llm_req"] == 0
    # the instruction escalated, and the call was held all through the window ...
    assert hang["llm_req"] == 1 and hang["specs"] == 0
    # ... while the controller kept publishing joint commands and the instruct node kept
    # stepping and heartbeating
    assert hang["cmd_hz"] > 0 and hang["ins_hb"] >= 2
    # released: its window opens when the answer's spec is seen; no second request, and
    # control went on
    assert after["llm_req"] == 1 and after["cmd_hz"] > 0
