"""The planner node's staged goals (Goal.subgoals): one stage image at a time, the next
once the latent shows the current one reached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reflexarc.planner.node import PlannerNode
from reflexarc.policies.checkpoint import CheckpointInfo
from reflexarc.runtime.msgs import Goal, Latent, empty
from tests.perception.conftest import tiny_checkpoint
from tests.planner.test_planner_node import MS, Feed, make_node, state


@pytest.fixture
def ckpt(tmp_path: Path) -> CheckpointInfo:
    return tiny_checkpoint(tmp_path / "v1", version=1, seed=1)


def images(k: int, size: int = 32) -> np.ndarray:
    """(k, size, size, 3) distinct random images."""
    return np.random.default_rng(3).integers(0, 256, (k, size, size, 3), np.uint8)


def staged_goal(stamp: int, stages: np.ndarray) -> Goal:
    return Goal(stamp_ns=stamp, task="push", target=np.zeros(3), image=stages[-1],
                z=empty("f4", 0), source="imagined", subgoals=stages[:-1])


def latent_of(node: PlannerNode, image: np.ndarray, seq: int, stamp: int) -> Latent:
    """The latent the perception node would send for ``image``."""
    z = node._newest().encoder.encode([image])[0].astype(np.float32)
    return Latent(seq=seq, stamp_ns=stamp, camera="front", model_version=1, z=z)


def test_stages_advance_when_the_latent_reaches_them(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, stage_latent=0.05)
    feed = Feed(node)
    stages = images(3)
    far = images(4)[3]  # an image unlike every stage
    feed(1 * MS, ("goal", staged_goal(1 * MS, stages)), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent_of(node, far, 0, 5 * MS)))) == 1
    brain = node._newest()
    np.testing.assert_allclose(brain.goal_z, brain.encoder.encode([stages[0]])[0], atol=1e-6)
    assert node.stage == 0  # far from stage 0: it stays
    # a frame that shows stage 0: the planner aims at stage 1 from this latent on
    assert len(feed(20 * MS, ("latent/front", latent_of(node, stages[0], 1, 15 * MS)))) == 1
    assert node.stage == 1 and node.summary()["stage_advances"] == 1
    np.testing.assert_allclose(brain.goal_z, brain.encoder.encode([stages[1]])[0], atol=1e-6)
    feed(30 * MS, ("latent/front", latent_of(node, stages[1], 2, 25 * MS)))
    assert node.stage == 2
    # the goal itself is the last stage: reaching it moves nothing on
    feed(40 * MS, ("latent/front", latent_of(node, stages[2], 3, 35 * MS)))
    assert node.stage == 2 and node.summary()["stage_advances"] == 2
    # a new goal (a new episode) starts again at its first stage
    feed(50 * MS, ("goal", staged_goal(45 * MS, stages)))
    feed(60 * MS, ("latent/front", latent_of(node, far, 4, 55 * MS)))
    assert node.stage == 0


def test_a_goal_without_subgoals_is_one_stage(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, stage_latent=10.0)  # any latent would count as "reached"
    feed = Feed(node)
    img = images(1)[0]
    g = Goal(stamp_ns=1 * MS, task="reach", target=np.zeros(3), image=img, z=empty("f4", 0))
    feed(1 * MS, ("goal", g), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent_of(node, img, 0, 5 * MS)))) == 1
    assert node.stages and len(node.stages) == 1 and node.stage == 0
    assert node.summary()["stage_advances"] == 0


def test_subgoals_of_another_size_are_refused_not_fatal(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    stages = images(3)
    bad = Goal(stamp_ns=1 * MS, task="push", target=np.zeros(3), image=stages[-1],
               z=empty("f4", 0), subgoals=images(2, size=16))
    feed(1 * MS, ("goal", bad), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent_of(node, stages[0], 0, 5 * MS)))) == 1
    assert "subgoals must be" in node.summary()["goal_error"]
    assert len(node.stages) == 1  # planned toward the goal image alone


def test_staged_goals_move_the_hand_slower(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, stage_max_step=0.02)
    feed = Feed(node)
    stages = images(3)
    far = images(4)[3]
    feed(1 * MS, ("goal", staged_goal(1 * MS, stages)), ("joint_state", state(0, 1 * MS)))
    plan = feed(10 * MS, ("latent/front", latent_of(node, far, 0, 5 * MS)))[0]
    planner = node._newest().planner
    np.testing.assert_allclose(planner.action_high.numpy(), [0.02, 0.02, 0.02, 1.0])
    assert np.all(np.abs(np.diff(plan.ee_pos, axis=0)) <= 0.02 + 1e-6)
    # a goal without stages plans with the configured bounds again
    g = Goal(stamp_ns=15 * MS, task="reach", target=np.zeros(3), image=stages[0],
             z=empty("f4", 0))
    feed(20 * MS, ("goal", g), ("latent/front", latent_of(node, far, 1, 18 * MS)))
    np.testing.assert_allclose(planner.action_high.numpy(), [0.05, 0.05, 0.05, 1.0])


def test_the_last_stage_pushes_slower_and_keeps_the_hand_low(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, stage_latent=0.05, stage_max_step=0.03, final_stage_max_step=0.015,
                     final_stage_max_dz=0.004)
    feed = Feed(node)
    stages = images(3)
    feed(1 * MS, ("goal", staged_goal(1 * MS, stages)), ("joint_state", state(0, 1 * MS)))
    feed(10 * MS, ("latent/front", latent_of(node, stages[0], 0, 5 * MS)))
    planner = node._newest().planner
    assert node.stage == 1  # not the last stage yet: the stages' bounds
    np.testing.assert_allclose(planner.action_high.numpy(), [0.03, 0.03, 0.03, 1.0])
    plan = feed(20 * MS, ("latent/front", latent_of(node, stages[1], 1, 15 * MS)))[0]
    assert node.stage == 2
    np.testing.assert_allclose(planner.action_low.numpy(), [-0.015, -0.015, -0.004, -1.0])
    np.testing.assert_allclose(planner.action_high.numpy(), [0.015, 0.015, 0.004, 1.0])
    step = np.abs(np.diff(plan.ee_pos, axis=0))
    assert np.all(step[:, :2] <= 0.015 + 1e-6) and np.all(step[:, 2] <= 0.004 + 1e-6)
