"""Tasks: seeded resets, success tests, goal images that leave the episode untouched."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.sim.assets import SPAWN, TARGETS, SceneError
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene
from reflexarc.sim.tasks import TASKS, Task, make_task


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
    return np.concatenate(
        [js.q, js.dq, [js.gripper], scene.ee_pose()[0], scene.object_poses().ravel()]
    )


@pytest.mark.parametrize("name", list(TASKS))
def test_seeded_reset_is_reproducible_and_varied(
    scene: Scene, kin: ArmKinematics, name: str
) -> None:
    task = make_task(name, kin)
    task.reset(scene, np.random.default_rng(7))
    first, target = _state(scene), task.target.copy()
    scene.step(100)  # whatever happened in between
    task.reset(scene, np.random.default_rng(7))
    np.testing.assert_array_equal(_state(scene), first)
    np.testing.assert_array_equal(task.target, target)
    task.reset(scene, np.random.default_rng(8))
    assert not np.allclose(_state(scene), first)
    assert not np.allclose(task.target, target)


@pytest.mark.parametrize("name", list(TASKS))
def test_resets_respect_the_scene_conventions(scene: Scene, kin: ArmKinematics, name: str) -> None:
    task = make_task(name, kin)
    for seed in range(10):
        task.reset(scene, np.random.default_rng(seed))
        blocks = scene.object_poses()[:, :3]
        assert np.all((blocks[:, :2] >= SPAWN[:, 0]) & (blocks[:, :2] <= SPAWN[:, 1]))
        assert np.linalg.norm(blocks[0, :2] - blocks[1, :2]) >= 0.08
        assert np.all((task.target[:2] >= TARGETS[:, 0]) & (task.target[:2] <= TARGETS[:, 1]))
        assert not task.scene_success(scene)  # never solved at the start


def _place_success(task: Task, scene: Scene, kin: ArmKinematics) -> None:
    if task.name == "reach":
        scene.set_joint_positions(kin.solve(task.target, q0=task.init_q, iters=100).q)
    else:
        poses = scene.object_poses()
        poses[0, :3] = task.target
        scene.set_object_poses(poses)


@pytest.mark.parametrize("name", list(TASKS))
def test_success_fires_on_a_solved_state_only(scene: Scene, kin: ArmKinematics, name: str) -> None:
    task = make_task(name, kin)
    task.reset(scene, np.random.default_rng(3))
    assert not task.scene_success(scene)
    _place_success(task, scene, kin)
    assert task.scene_success(scene)
    ee, objects = scene.ee_pose()[0], scene.object_poses()[:, :3]
    # just outside the tolerance: not solved
    miss = np.array([task.tolerance + 0.01, 0.0, 0.0])
    if name == "reach":
        assert not task.success(ee + miss, objects)
    else:
        moved = objects.copy()
        moved[0] += miss
        assert not task.success(ee, moved)
        if name != "reach":  # a block held in the air above the target is not there yet
            lifted = objects.copy()
            lifted[0, 2] += 0.05
            assert not task.success(ee, lifted)


@pytest.mark.parametrize("name", list(TASKS))
def test_goal_image_leaves_the_episode_untouched(
    scene: Scene, kin: ArmKinematics, name: str
) -> None:
    task = make_task(name, kin)
    task.reset(scene, np.random.default_rng(5))
    scene.command_position(task.init_q + 0.1, gripper=-1.0)
    scene.step(50)  # mid-motion: velocities and commands in flight
    snap = scene.snapshot()
    before = _state(scene)
    now = scene.render("front", 64)
    goal = task.goal_image(scene, "front", 64)
    np.testing.assert_array_equal(_state(scene), before)
    assert np.abs(goal.astype(int) - now).sum() > 0  # the goal looks different
    scene.step(100)
    after_goal = _state(scene)
    scene.restore(snap)  # the same 100 steps without rendering a goal
    scene.step(100)
    np.testing.assert_array_equal(after_goal, _state(scene))


@pytest.mark.parametrize("name", list(TASKS))
def test_goal_image_shows_the_solved_state(scene: Scene, kin: ArmKinematics, name: str) -> None:
    task = make_task(name, kin)
    task.reset(scene, np.random.default_rng(11))
    goal = task.goal_image(scene, "front", 64)
    _place_success(task, scene, kin)
    assert task.scene_success(scene)
    solved = scene.render("front", 64)
    assert np.abs(goal.astype(int) - solved).mean() < 1.0


def test_tasks_refuse_scenes_they_cannot_run(backend: str) -> None:
    with make_scene(backend=backend, objects=[]) as empty:
        with pytest.raises(SceneError, match="block"):
            make_task("push").reset(empty, np.random.default_rng(0))
        make_task("reach").reset(empty, np.random.default_rng(0))  # reach needs none
    with pytest.raises(SceneError, match="unknown task"):
        make_task("stack")
