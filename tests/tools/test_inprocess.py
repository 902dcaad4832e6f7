"""A shipped graph stepped in one process: composed as ``reflexarc run`` composes it."""

from __future__ import annotations

import pytest

from reflexarc.policies.checkpoint import weights_path
from reflexarc.runtime.errors import ConfigError
from reflexarc.tools.inprocess import graph_episodes


@pytest.mark.slow
@pytest.mark.skipif(not weights_path("push-mujoco").is_file(), reason="no shipped checkpoint")
def test_the_pixels_graph_reaches_in_process_from_its_own_senses() -> None:
    run = graph_episodes(["graph=pixels", "task=reach", "backend=mujoco", "episodes=1",
                          "seed=2"])
    assert run["in_process"] and run["episodes"] == 1
    assert run["success_rate"] == 1.0, run["episode_results"]
    planner = run["node_figures"]["planner"]
    assert planner["goal_kind"] == "task" and planner["solves"] > 3
    assert set(planner["stages"]) == {"reach"} and planner["solve_errors"] == 0
    assert "recorder" not in run["node_figures"]  # skipped: it writes files
    assert run["node_figures"]["perception"]["encoded"] > 3


def test_a_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        graph_episodes(["graph=pixels", "task=fly"])
