"""Imagined subgoals of a push: stages that lead the hand behind the block and through it,
rendered without disturbing the episode."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene
from reflexarc.sim.subgoals import (
    ABOVE_Z,
    PUSH_CONTACT,
    PUSH_STANDOFF,
    PUSH_Z,
    goal_sequence,
    push_stages,
)
from reflexarc.sim.tasks import make_task


@pytest.fixture
def scene(backend: str) -> Iterator[Scene]:
    s = make_scene(backend=backend, objects=["red", "green"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def kin() -> ArmKinematics:
    return ArmKinematics()


def _state(scene: Scene) -> np.ndarray:
    js = scene.joint_state()
    return np.concatenate([js.q, js.dq, [js.gripper], scene.object_poses().ravel()])


@pytest.mark.parametrize("seed", [0, 7])
def test_push_stages_go_behind_the_block_and_through_it(
    scene: Scene, kin: ArmKinematics, seed: int
) -> None:
    task = make_task("push", kin)
    task.reset(scene, np.random.default_rng(seed))
    block = scene.object_poses()[0, :3]
    u = (task.target[:2] - block[:2]) / np.linalg.norm(task.target[:2] - block[:2])
    stages = push_stages(task, scene)
    assert len(stages) == 3
    (above, p0), (down, p1), (end, p2) = stages
    # the hand on the far side of the block from the target, above and then at push height
    for hand in (above, down):
        np.testing.assert_allclose((hand[:2] - block[:2]) @ u, -PUSH_STANDOFF, atol=1e-9)
    assert above[2] > 0.05 > down[2] == PUSH_Z
    np.testing.assert_allclose(p0, scene.object_poses())  # the block still where it is
    np.testing.assert_allclose(p1, scene.object_poses())
    # the end: block 0 at the target, the hand behind it on the push line, the others kept
    np.testing.assert_allclose(p2[0, :3], task.target)
    np.testing.assert_allclose(p2[1:], scene.object_poses()[1:])
    np.testing.assert_allclose(end[:2], task.target[:2] - PUSH_CONTACT * u, atol=1e-9)


def test_a_hand_down_by_the_block_lifts_before_going_around_it(
    scene: Scene, kin: ArmKinematics
) -> None:
    task = make_task("push", kin)
    task.reset(scene, np.random.default_rng(7))
    block = scene.object_poses()[0, :3]
    low = np.array([block[0] - 0.06, block[1], 0.02])  # beside the block, at push height
    scene.set_joint_positions(kin.solve(low, q0=task.init_q, iters=100).q, 0.0)
    hand = scene.ee_pose()[0]
    stages = push_stages(task, scene)
    assert len(stages) == 4
    (lift, poses), (above, _) = stages[0], stages[1]
    np.testing.assert_allclose(lift, [hand[0], hand[1], ABOVE_Z])  # straight up first
    np.testing.assert_allclose(poses, scene.object_poses())
    assert above[2] == ABOVE_Z and np.linalg.norm(above[:2] - lift[:2]) > 0.01
    # the same hand high above the table goes straight to the pre-push point
    high = np.array([block[0] - 0.06, block[1], 0.2])
    scene.set_joint_positions(kin.solve(high, q0=task.init_q, iters=100).q, 0.0)
    assert len(push_stages(task, scene)) == 3


def test_goal_sequence_renders_the_stages_and_leaves_the_episode(
    scene: Scene, kin: ArmKinematics
) -> None:
    task = make_task("push", kin)
    task.reset(scene, np.random.default_rng(3))
    before = _state(scene)
    now = scene.render("front", 64)
    seq = goal_sequence(task, scene, "front", 64)
    np.testing.assert_array_equal(_state(scene), before)
    assert seq.shape == (3, 64, 64, 3) and seq.dtype == np.uint8
    for a, b in ((now, seq[0]), (seq[0], seq[1]), (seq[1], seq[2])):
        assert np.abs(a.astype(int) - b).mean() > 0.5  # each stage looks different
    # the hand in each image is where the stage puts it: pose it there and compare
    hand, poses = push_stages(task, scene)[1]
    scene.set_joint_positions(kin.solve(hand, q0=task.init_q, iters=100).q, 0.0)
    scene.set_object_poses(poses)
    assert np.abs(scene.render("front", 64).astype(int) - seq[1]).mean() < 1.0


def test_tasks_without_stages_have_their_goal_image(scene: Scene, kin: ArmKinematics) -> None:
    task = make_task("reach", kin)
    task.reset(scene, np.random.default_rng(2))
    seq = goal_sequence(task, scene, "front", 64)
    assert seq.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(seq[0], task.goal_image(scene, "front", 64))
