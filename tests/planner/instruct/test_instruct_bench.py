"""``reflexarc bench instruct``'s graph part: while an LLM call hangs, control goes on.

Real node processes (sim, 1 kHz controller, expert plans, instruct node), a real local
chat-completions server that takes the request and holds it while measured, and the
instruction sent as `reflexarc say` sends it. Behaviour only: the figures (rate, misses,
jitter) are the bench's and are not asserted here.
"""

from __future__ import annotations

from pathlib import Path

from reflexarc.tools.bench.instruct import measure_hang


def test_the_controller_keeps_commanding_while_the_llm_call_hangs(tmp_path: Path) -> None:
    rows = measure_hang("mujoco", seconds=1.0, run_dir=tmp_path / "run")
    assert [r["variant"] for r in rows] == ["instruct_idle", "llm_hangs", "after_answer"]
    assert all(r["ok"] and not r["error"] for r in rows), rows  # nobody silent, dead or late
    idle, hang, after = rows
    assert idle["llm_requests"] == 0
    # the instruction escalated, and the call was held all through the window ...
    assert hang["llm_requests"] == 1 and hang["specs_in_window"] == 0
    # ... while the controller kept publishing joint commands and the instruct node kept
    # stepping and heartbeating
    assert hang["commands"] > 0 and hang["rate_hz"] > 0
    assert hang["instruct_heartbeats"] >= 2 and hang["instruct_ticks"] > 0
    # released: the answer (a refusal, here) became the spec `say` got back; control went on
    assert "released" in after["spec"] and after["commands"] > 0
