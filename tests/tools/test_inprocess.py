"""A shipped graph stepped in one process: composed as ``reflexarc run`` composes it."""

from __future__ import annotations

import pytest

from reflexarc.policies.checkpoint import weights_path
from reflexarc.runtime.errors import ConfigError
from reflexarc.tools.inprocess import graph_episodes, table, table_markdown


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


@pytest.mark.slow
@pytest.mark.skipif(not weights_path("push-pybullet").is_file(), reason="no shipped checkpoint")
def test_a_table_row_puts_the_graph_beside_the_expert_and_random_on_the_same_seeds() -> None:
    rows = table(["task=reach", "episodes=1", "seed=3"], backends=("pybullet",))
    assert len(rows) == 1
    row = rows[0]
    assert (row["task"], row["backend"], row["graph"], row["seeds"]) == \
        ("reach", "pybullet", "pixels", "3-3")
    assert row["successes"] == 1 and row["failed_seeds"] == [], row
    assert row["planner"]["goal_kind"] == "task" and row["planner"]["stages"]
    assert row["expert"] == 1.0 and row["random"] == 0.0  # the scripted reach; random misses
    text = table_markdown(rows)
    assert "| reach | pybullet | 1/1 (100 %) | 3-3 |" in text and "| 100 % | 0 % |" in text


def test_a_bad_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        graph_episodes(["graph=pixels", "task=fly"])


def test_a_table_runs_every_backend_itself() -> None:
    with pytest.raises(ConfigError, match="backend"):
        table(["task=reach", "backend=mujoco"])


def test_the_table_command_names_an_unknown_backend() -> None:
    from reflexarc.tools.inprocess import main

    with pytest.raises(ConfigError, match="backends.*gazebo"):
        main(["table", "task=reach", "backends=mujoco,gazebo"])
