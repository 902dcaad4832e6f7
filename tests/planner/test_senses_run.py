"""``reflexarc run graph=senses``: the loop from the robot's own senses, end to end (real node
processes, sockets and simulator, lockstep): perception places the blocks through the
camera's calibration, the task planner pursues the goal from those places, the evaluator
scores perception against the truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc


@pytest.mark.slow
def test_a_push_of_the_named_block_among_three_from_perceived_positions(tmp_path: Path) -> None:
    out = tmp_path / "senses.json"
    proc = reflexarc(
        "run", "graph=senses", "task=push", "backend=mujoco", "episodes=1", "seed=0",
        "clock=lockstep", f"run_dir={tmp_path / 'run'}", f"out={out}", "heartbeat_hz=2",
        "silent_timeout_s=10",  # a process starved for CPU on a shared machine is not hung
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["ok"] and s["ended_by"] == "evaluator finished"
    ((r,),) = [s["episode_results"]]
    assert r["success"]
    planner = s["node_figures"]["planner"]
    assert planner["goals"] == 1 and planner["stages"]["push"] > 0
    # the evaluator scored perception on every frame: confident detections within a cm
    front = s["node_figures"]["evaluator"]["perception"]["front"]
    assert front["frames"] > 0 and front["confident"]["error_cm_p50"] < 1.0
