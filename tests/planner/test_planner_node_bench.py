"""bench plan's success-vs-budget hook on real episodes from pixels (gym env + world model)."""

from __future__ import annotations

from pathlib import Path

from reflexarc.planner.mppi import MPPIConfig
from reflexarc.tools.bench.plan import pixel_episode_fn, plot_success, success_vs_budget
from tests.perception.conftest import tiny_checkpoint


def test_pixel_episodes_per_planner_setting(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny")  # a 32 px model: the env renders at its size
    episode = pixel_episode_fn("reach", "mujoco", str(ckpt.path))
    one = episode("mppi", MPPIConfig(samples=8, elites=4, horizon=2, iterations=1), 3)
    assert set(one) == {"success", "steps"} and 1 <= one["steps"] <= 50
    assert one["success"] or one["steps"] == 50  # ran to success or to the step limit
    settings = [("mppi", MPPIConfig(samples=n, elites=4, horizon=2, iterations=1))
                for n in (8, 16)]
    rows = success_vs_budget(episode, settings, episodes=1)
    assert [r["samples"] for r in rows] == [8, 16]
    assert all(0.0 <= r["success"] <= 1.0 and r["episodes"] == 1 for r in rows)
    png = plot_success([{"task": "reach", **r} for r in rows], tmp_path / "s.png")
    assert png.stat().st_size > 5000
