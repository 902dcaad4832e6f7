"""Both backends simulate the same robot: same joint trajectory -> same end-effector
path; gravity compensation from the shared MjModel holds the arm still in both; the
cameras see the same geometry."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene

AMP = np.array([0.6, 0.4, 0.5, 0.5, 0.8, 0.5, 1.0])  # rad
FREQ = np.array([0.5, 0.7, 0.4, 0.6, 0.9, 0.8, 1.1])  # Hz; the wrist motors saturate at times


def _play(scene: Scene, seconds: float = 3.0) -> np.ndarray:
    """Play a joint-space sweep with position commands; EE positions every 20 ms. (T, 3)"""
    scene.reset()
    path = []
    for k in range(int(seconds / scene.dt)):
        scene.command_position(PANDA.home_q + AMP * np.sin(2 * np.pi * FREQ * k * scene.dt))
        scene.step(1)
        if k % 10 == 0:
            path.append(scene.ee_pose()[0])
    return np.array(path)


def test_same_joint_trajectory_gives_the_same_ee_path() -> None:
    paths = {}
    for backend in ("mujoco", "pybullet"):
        with make_scene(backend=backend, objects=[]) as scene:
            paths[backend] = _play(scene)
    length = np.linalg.norm(np.diff(paths["mujoco"], axis=0), axis=1).sum()
    assert length > 2.0  # a long, fast path through the workspace
    err = np.linalg.norm(paths["mujoco"] - paths["pybullet"], axis=1)
    assert err.max() < 0.01  # the contract: within 1 cm (measured: ~1e-5 m)


@pytest.mark.parametrize("offset", [np.zeros(7), np.array([0.5, 0.3, -0.4, 0.5, 0.6, -0.3, 0.2])])
def test_gravity_compensation_holds_the_arm_still(backend: str, offset: np.ndarray) -> None:
    """Torque mode with tau = gravity of the robot-alone MjModel (what a controller uses)."""
    kin = ArmKinematics()
    q0 = PANDA.home_q + offset
    with make_scene(backend=backend, objects=[]) as scene:
        scene.reset(q0)
        ee0 = scene.ee_pose()[0]
        for _ in range(int(2.0 / scene.dt)):
            js = scene.joint_state()
            scene.command_torque(kin.gravity(js.q, js.gripper))
            scene.step(1)
        assert np.abs(scene.joint_state().q - q0).max() < 2e-3
        assert np.linalg.norm(scene.ee_pose()[0] - ee0) < 2e-3
        # without compensation the same arm falls: the hold above is not vacuous
        scene.reset(q0)
        scene.command_torque(np.zeros(7))
        scene.step(int(0.5 / scene.dt))
        assert np.abs(scene.joint_state().q - q0).max() > 0.1


def test_cameras_see_the_same_geometry_in_both_backends() -> None:
    depth = {}
    for backend in ("mujoco", "pybullet"):
        with make_scene(backend=backend, objects=["red", "green", "blue"]) as scene:
            depth[backend] = scene.render("front", 64, depth=True)[1]
    rel = np.abs(depth["mujoco"] - depth["pybullet"]) / depth["mujoco"]
    near = (depth["mujoco"] < 3.0) & (depth["pybullet"] < 3.0)  # table, robot, blocks
    assert near.mean() > 0.5
    # the renderers' pixel centres differ by about half a pixel: ~1.5% of depth on the table
    assert np.mean(rel[near] < 0.03) > 0.9
    assert np.median(rel[near]) < 0.015
