"""The control graph's nodes stepped in one process (sim/inprocess.py): the scripted
expert drives each arm through the controller on each backend, and a run equals the
launcher's lockstep run of the same graph, seed for seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflexarc.runtime.errors import ConfigError
from reflexarc.sim.inprocess import control_episodes
from tests.conftest import reflexarc


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_the_expert_reaches_with_the_xarm6_through_the_controller(backend: str) -> None:
    results, summaries = control_episodes("reach", backend, "xarm6", episodes=1, seed=0)
    assert len(results) == 1 and results[0].success, results
    beyond = summaries["sim"]["beyond_limits"]
    assert beyond["position"] == beyond["velocity"] == beyond["torque"] == 0, beyond
    assert summaries["controller"]["final_mode"] in ("running", "holding")
    assert results[0].final_distance_m < 0.025
    assert 0.1 < results[0].time_to_success_s < 3.0


@pytest.mark.slow
def test_the_xarm6_pushes_in_the_expert_graph_without_its_wrist_spinning() -> None:
    """The 500 Hz joint PD under contact: joint 6's damping once made the wrist spin at 14
    times its speed limit while pushing (docs/robots.md, "The xArm6")."""
    results, summaries = control_episodes("push", "mujoco", "xarm6", episodes=1, seed=1,
                                          graph="expert")
    assert results[0].success, results
    assert summaries["sim"]["max_speed_share"] < 1.2, summaries["sim"]


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="robot"):
        control_episodes("reach", "mujoco", "ur5")
    with pytest.raises(ConfigError, match="task"):
        control_episodes("wave", "mujoco", "xarm6")
    with pytest.raises(ConfigError, match="graph"):
        control_episodes("reach", "mujoco", "xarm6", graph="pixels")


@pytest.mark.slow
def test_reflexarc_run_drives_the_xarm6_in_lockstep_as_in_process(tmp_path: Path) -> None:
    """``reflexarc run graph=control robot=xarm6`` (real processes, lockstep): the arm
    reaches, with the same result as the nodes stepped in one process."""
    out = tmp_path / "summary.json"
    proc = reflexarc("run", "graph=control", "robot=xarm6", "task=reach", "backend=pybullet",
                     "episodes=1", "clock=lockstep", "heartbeat_hz=2", "startup_timeout_s=180",
                     "silent_timeout_s=10", "graph.nodes.sim.args.camera_hz=0",
                     f"run_dir={tmp_path / 'run'}", f"out={out}", timeout=400)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["ok"] and s["success_rate"] == 1.0, s.get("events")
    beyond = s["node_figures"]["sim"]["beyond_limits"]
    assert beyond["position"] == beyond["velocity"] == beyond["torque"] == 0, beyond
    judge = json.loads((tmp_path / "run" / "evaluator.summary.json").read_text())
    [launched] = judge["run"]["episode_results"]
    [alone] = control_episodes("reach", "pybullet", "xarm6", episodes=1, seed=0).results
    assert launched["success"] and alone.success
    assert launched["time_to_success_s"] == pytest.approx(alone.time_to_success_s, abs=0.02)
