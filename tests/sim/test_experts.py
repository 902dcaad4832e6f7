"""Scripted experts solve every task on both backends (a few seeded episodes in CI; the
full figures come from `reflexarc eval policy=expert episodes=50`)."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc import sim
from reflexarc.sim.experts import make_expert, move
from reflexarc.tools.evaluate import evaluate_policy


@pytest.mark.parametrize("task", list(sim.ENV_IDS))
def test_expert_solves_the_task(task: str, backend: str) -> None:
    row = evaluate_policy(task, backend, "expert", episodes=5, seed=100, image_size=16)
    assert row["success_rate"] >= 0.8
    assert row["mean_steps_to_success"] < sim.MAX_EPISODE_STEPS[task]


def test_random_policy_is_a_weak_reference() -> None:
    row = evaluate_policy("reach", "mujoco", "random", episodes=3, seed=0, image_size=16)
    assert row["success_rate"] <= 1 / 3
    assert row["mean_final_distance"] > 0.025


def test_move_keeps_direction_and_clips_length() -> None:
    d = move(np.zeros(3), np.array([0.3, -0.1, 0.0]), 0.05)
    assert np.abs(d).max() == pytest.approx(0.05)
    np.testing.assert_allclose(d / np.linalg.norm(d), np.array([3, -1, 0]) / np.sqrt(10))
    np.testing.assert_allclose(move(np.zeros(3), np.array([0.01, 0, 0]), 0.05), [0.01, 0, 0])
    with pytest.raises(Exception, match="no expert"):
        make_expert("stack")
