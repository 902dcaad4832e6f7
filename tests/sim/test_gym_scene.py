"""GymScene: a stock gymnasium MuJoCo env driven through the Scene interface."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from reflexarc.sim.assets import SceneError
from reflexarc.sim.gym_scene import GymScene


def test_wraps_a_stock_mujoco_env_and_steps_it_with_frames() -> None:
    with GymScene.make("InvertedPendulum-v5", seed=3) as scene:
        reference = gym.make("InvertedPendulum-v5")
        obs0, _ = reference.reset(seed=3)
        np.testing.assert_array_equal(scene.joint_state().q, obs0)
        assert scene.n_joints == 1 and scene.cameras == ("front",)
        assert scene.dt == pytest.approx(0.04)

        frames = [scene.render("front", 64)]
        for _ in range(5):
            scene.apply("torque", np.zeros(0), np.array([0.5]), 0.0)
            scene.step(1)
            frames.append(scene.render("front", 64))
            obs, *_ = reference.step(np.array([0.5], np.float32))
            np.testing.assert_allclose(scene.joint_state().q, obs, atol=1e-6)
        assert frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
        assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.1  # the pole moved
        assert scene.time == pytest.approx(5 * 0.04)
        np.testing.assert_allclose(scene.joint_state().tau, [0.5])
        reference.close()


def test_actions_are_clipped_and_episodes_restart() -> None:
    with GymScene.make("InvertedPendulum-v5", seed=0) as scene:
        scene.command_torque(np.array([100.0]))
        assert scene.joint_state().tau[0] == pytest.approx(3.0)  # the action space bound
        scene.step(60)  # a full push topples the pole: the episode ends and restarts
        assert scene.episodes >= 1
        assert np.all(np.isfinite(scene.joint_state().q))


def test_snapshot_restore_of_a_mujoco_env() -> None:
    with GymScene.make("Reacher-v5", seed=1) as scene:
        scene.command_torque(np.array([0.3, -0.2]))
        snap = scene.snapshot()
        scene.step(10)
        first = scene.joint_state().q
        scene.restore(snap)
        scene.step(10)
        np.testing.assert_array_equal(scene.joint_state().q, first)


def test_refuses_what_it_cannot_run() -> None:
    with pytest.raises(SceneError, match="Box action"):
        GymScene(gym.make("CartPole-v1", render_mode="rgb_array"))
    with pytest.raises(SceneError, match="rgb_array"):
        GymScene(gym.make("InvertedPendulum-v5"))
    with GymScene.make("InvertedPendulum-v5") as scene:
        with pytest.raises(SceneError, match="joint positions"):
            scene.command_position(np.zeros(7))
        with pytest.raises(SceneError, match="finite"):
            scene.command_torque(np.zeros(3))
        with pytest.raises(SceneError, match="depth"):
            scene.render("front", 64, depth=True)
        with pytest.raises(SceneError, match="privileged"):
            scene.ee_pose()
