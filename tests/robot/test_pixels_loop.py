"""The whole loop from pixels as real processes: sim -> perception -> planner -> controller.

The goal test needs no trained model (a tiny random world model stands in); the reach
test runs the shipped checkpoint and is skipped when it is not in the tree.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tests.conftest import reflexarc
from tests.perception.conftest import tiny_checkpoint

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "checkpoints" / "push-mujoco"


def run_pixels(run_dir: Path, *args: str, timeout: float = 240) -> dict:
    out = run_dir / "summary.json"
    # generous start-up and silence limits: a loaded CI machine takes long to import torch
    # and MuJoCo in five processes at once (lockstep results do not depend on speed)
    proc = reflexarc("run", "graph=pixels", "clock=lockstep", "heartbeat_hz=2",
                     "startup_timeout_s=180", "silent_timeout_s=10",
                     f"run_dir={run_dir}", f"out={out}", *args, timeout=timeout)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_a_graph_without_goal_plans_nothing_and_says_no_goal(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny")
    s = run_pixels(
        tmp_path / "run", "task=reach", "duration_s=1.0",
        f"graph.nodes.perception.args.checkpoint={ckpt.path}",
        "graph.nodes.evaluator.args.publish_goal=false",
    )
    assert s["ok"], s["events"]
    planner = s["node_figures"]["planner"]
    assert planner["final_mode"] == "no_goal" and planner["plans_published"] == 0
    assert planner["mode_ticks"]["no_goal"] > 100  # every step, for the whole run
    perception = s["node_figures"]["perception"]
    assert perception["encoded"] == perception["frames"] > 20  # frames kept flowing
    assert s["node_figures"]["controller"]["plans"] == 0  # the arm was held, not driven


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped world-model checkpoint yet")
def test_reach_from_pixels_succeeds_in_lockstep(tmp_path: Path) -> None:
    """One seeded reach episode, small planner budget: succeeds, and the run writes its
    video, plot and headline figures."""
    run_dir = tmp_path / "run"
    s = run_pixels(
        run_dir, "task=reach", "episodes=1", "seed=2",
        f"graph.nodes.perception.args.checkpoint={SHIPPED}",
        "graph.nodes.planner.args.mppi.samples=64",
        "graph.nodes.planner.args.mppi.iterations=2",
    )
    assert s["ok"], s["events"]
    assert s["task"] == "reach" and s["episodes"] == 1
    assert s["success_rate"] == 1.0, s["episode_results"]
    for key in ("plan_ms_p50", "frame_to_command_ms_p50", "frame_to_command_ms_p99"):
        assert s[key] > 0
    planner = s["node_figures"]["planner"]
    assert planner["solves"] > 5 and planner["solve_errors"] == 0
    video = cv2.VideoCapture(s["video"])
    assert video.isOpened() and video.get(cv2.CAP_PROP_FRAME_COUNT) > 3
    assert Path(s["plot"]).stat().st_size > 10_000
