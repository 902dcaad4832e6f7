"""``reflexarc bench instruct``'s graph part: while an LLM call hangs, control goes on.

Real node processes (sim, 1 kHz controller, expert plans, instruct node), a real local
chat-completions server that takes the request and does not answer while measured.
Behaviour only: the figures (rate, misses, jitter) are the bench's, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

from planner.instruct.bench import measure


def test_the_controller_keeps_commanding_while_the_llm_call_hangs(tmp_path: Path) -> None:
    row = measure("llm_hangs", "mujoco", seconds=2.0, run_dir=tmp_path / "run")
    assert row["ok"] and not row["error"] and not row["events"], row  # nobody silent or dead
    # the instruction escalated and the call was held all through the window
    assert row["llm_requests"] == 1 and row["specs_in_window"] == 0
    # ... while the controller kept publishing joint commands and the instruct node kept
    # stepping and heartbeating
    assert row["commands"] > 0 and row["rate_hz"] > 0
    assert row["instruct_heartbeats"] >= 2 and row["instruct_ticks"] > 0
