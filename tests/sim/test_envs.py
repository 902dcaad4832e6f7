"""The gymnasium envs: registered on import, check_env-clean on both backends."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from reflexarc import sim
from reflexarc.robot.panda import PANDA
from reflexarc.sim.assets import SceneError, has_display
from reflexarc.sim.envs import PROPRIO_DIM, PandaEnv

WORKSPACE = PANDA.workspace_box

IDS = list(sim.ENV_IDS.values())


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str, backend: str) -> None:
    env = gym.make(env_id, backend=backend, image_size=32, render_mode="rgb_array")
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_ids_are_registered_with_time_limits() -> None:
    for task, env_id in sim.ENV_IDS.items():
        spec = gym.spec(env_id)
        assert spec.kwargs["task"] == task
        assert spec.max_episode_steps == sim.MAX_EPISODE_STEPS[task]


def test_observation_action_and_info_follow_the_contract(backend: str) -> None:
    env = gym.make("reflexarc/PandaPush-v0", backend=backend, objects=["red", "green", "blue"])
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == obs["goal_image"].shape == (64, 64, 3)
    assert obs["image"].dtype == np.uint8
    assert obs["proprio"].shape == (PROPRIO_DIM,) and obs["proprio"].dtype == np.float32
    np.testing.assert_allclose(obs["proprio"][:3], info["ee_pos"], atol=1e-6)
    assert info["object_names"] == ("red", "green", "blue")
    assert info["object_pos"].shape == (3, 3) and info["target"].shape == (3,)
    assert info["is_success"] is False
    np.testing.assert_allclose(env.action_space.high, [0.05, 0.05, 0.05, 1.0])
    # a step moves the hand by the (clipped) displacement, hand pointing down
    ee0 = info["ee_pos"]
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(
            np.array([0.5, 0.0, 0.0, 1.0], np.float32)
        )
    assert info["ee_pos"][0] - ee0[0] == pytest.approx(0.15, abs=0.01)
    assert abs(info["ee_pos"][1] - ee0[1]) < 0.01 and abs(info["ee_pos"][2] - ee0[2]) < 0.01
    assert reward == 0.0 and not terminated and not truncated
    np.testing.assert_array_equal(obs["goal_image"], env.reset(seed=0)[0]["goal_image"])
    env.close()


def test_the_hand_stays_in_the_workspace(backend: str) -> None:
    env = gym.make("reflexarc/PandaReach-v0", backend=backend, image_size=16)
    env.reset(seed=1)
    for action in ([0.05, 0.05, -0.05, 1.0], [-0.05, -0.05, 0.05, -1.0]):
        for _ in range(15):
            _, _, _, _, info = env.step(np.array(action, np.float32))
        assert np.all(info["ee_pos"] >= WORKSPACE[:, 0] - 0.01)
        assert np.all(info["ee_pos"] <= WORKSPACE[:, 1] + 0.01)
    env.close()


def test_terminate_on_success_and_wrist_camera() -> None:
    env = PandaEnv(task="reach", backend="mujoco", camera="wrist", terminate_on_success=True)
    obs, info = env.reset(seed=2)
    assert obs["image"].shape == (64, 64, 3)
    for _ in range(20):
        delta = np.clip(info["target"] - info["ee_pos"], -0.05, 0.05)
        obs, reward, terminated, _, info = env.step(np.array([*delta, 1.0], np.float32))
        if terminated:
            break
    assert terminated and reward == 1.0 and info["is_success"]
    env.close()


def test_bad_arguments_raise_scene_errors() -> None:
    with pytest.raises(SceneError, match="unknown task"):
        PandaEnv(task="stack")
    with pytest.raises(SceneError, match="multiple"):
        PandaEnv(control_hz=7)
    env = PandaEnv(task="reach", image_size=16)
    env.reset(seed=0)
    with pytest.raises(SceneError, match="4 finite"):
        env.step(np.zeros(3, np.float32))
    env.close()


@pytest.mark.skipif(has_display(), reason="tests the headless error")
def test_human_rendering_without_a_display_is_a_clear_error(backend: str) -> None:
    with pytest.raises(SceneError, match="display"):
        gym.make("reflexarc/PandaReach-v0", backend=backend, render_mode="human")
    assert "human" not in PandaEnv.metadata.fget(None)["render_modes"]  # type: ignore[attr-defined]
