"""The xArm6's description: its facts agree with its URDF, MuJoCo compiles it, its home
pose and IK hold the fingers down over the workspace, both scenes build it (the forward
kinematics match each simulator's end effector, the linkage gripper opens and closes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.xarm6 import XARM6

DOWN = np.diag([1.0, -1.0, -1.0])  # the flange's z (the fingers) along world -z


def test_xarm6_is_found_by_name_and_its_limits_are_the_urdf_s() -> None:
    assert robot_description("xarm6") is XARM6 and XARM6.dof == 6
    root = ET.fromstring(XARM6.urdf_path().read_text())
    joints = {j.get("name"): j for j in root.iter("joint") if j.get("type")}  # not transmissions
    for i, name in enumerate(XARM6.arm_joints):
        limit = joints[name].find("limit")
        assert XARM6.q_min[i] == pytest.approx(float(limit.get("lower")), abs=1e-4)
        assert XARM6.q_max[i] == pytest.approx(float(limit.get("upper")), abs=1e-4)
        assert XARM6.tau_max[i] == pytest.approx(float(limit.get("effort")))
        assert XARM6.dq_max[i] == pytest.approx(float(limit.get("velocity")))


def test_home_holds_the_fingers_down_and_ik_reaches_the_workspace_corners() -> None:
    kin = ArmKinematics(XARM6)
    names = [kin.model.joint(i).name for i in range(XARM6.dof)]
    assert names == list(XARM6.arm_joints)  # the arm's joints come first in the model
    pos, rot = kin.fk(XARM6.home_q)
    np.testing.assert_allclose(pos, [0.4, 0.0, 0.3], atol=1e-3)
    np.testing.assert_allclose(rot, DOWN, atol=1e-3)
    box = XARM6.workspace_box
    for corner in np.array(np.meshgrid(*box)).T.reshape(-1, 3):
        r = kin.solve(corner, DOWN, XARM6.home_q, iters=200)
        assert r.pos_err < 2e-3 and r.rot_err < 2e-2, (corner, r)
        assert np.all(r.q >= XARM6.q_lo - 1e-9) and np.all(r.q <= XARM6.q_hi + 1e-9)


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_forward_kinematics_match_each_simulator_s_end_effector(backend: str) -> None:
    """FK (the description's model, tool-centre offset included) against the pose each
    scene reports for the same joint positions, over random configurations."""
    from reflexarc.robot.rotations import quat_to_mat
    from reflexarc.sim.scenes import make_scene

    kin = ArmKinematics(XARM6)
    rng = np.random.default_rng(0)
    with make_scene(backend=backend, robot="xarm6", objects=[], cameras=[]) as scene:
        assert scene.joint_names == XARM6.arm_joints
        for _ in range(10):
            q = rng.uniform(np.maximum(XARM6.q_lo, -2.5), np.minimum(XARM6.q_hi, 2.5))
            scene.set_joint_positions(q)
            pos, quat = scene.ee_pose()
            want_pos, want_rot = kin.fk(q)
            np.testing.assert_allclose(pos, want_pos, atol=1e-4)
            np.testing.assert_allclose(quat_to_mat(quat), want_rot, atol=1e-4)


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_the_scene_holds_home_and_the_linkage_gripper_opens_and_closes(backend: str) -> None:
    from reflexarc.sim.scenes import make_scene

    grip = XARM6.gripper
    with make_scene(backend=backend, robot="xarm6", objects=[], cameras=[]) as scene:
        state = scene.joint_state()
        assert state.q.shape == (6,) and state.gripper == pytest.approx(grip.max_opening)
        scene.step(250)
        np.testing.assert_allclose(scene.joint_state().q, XARM6.home_q, atol=1e-3)
        np.testing.assert_allclose(scene.ee_pose()[0], [0.4, 0.0, 0.3], atol=1e-3)
        scene.command_gripper(-1.0)
        scene.step(500)
        assert scene.joint_state().gripper < 0.15 * grip.max_opening  # closed
        np.testing.assert_allclose(scene.ee_pose()[0], [0.4, 0.0, 0.3], atol=2e-3)
        scene.command_gripper(1.0)
        scene.step(500)
        assert scene.joint_state().gripper > 0.95 * grip.max_opening


def test_the_gripper_s_joints_are_linear_in_the_opening() -> None:
    grip = XARM6.gripper
    np.testing.assert_allclose(grip.joint_positions(0.0), [0.85] * 6)
    np.testing.assert_allclose(grip.joint_positions(grip.max_opening), [0.0] * 6)
    for opening in (0.0, 0.03, grip.max_opening):
        assert grip.opening(grip.joint_positions(opening)) == pytest.approx(opening)
    assert grip.opening_for(-1.0) == 0.0 and grip.opening_for(1.0) == grip.max_opening


def test_a_description_is_found_by_module_and_name() -> None:
    from reflexarc.runtime.errors import ConfigError

    assert robot_description("reflexarc.robot.xarm6:DESCRIPTION") is XARM6
    with pytest.raises(ConfigError, match="not a RobotDescription"):
        robot_description("reflexarc.robot.xarm6:Gripper")
    with pytest.raises(ConfigError, match="cannot import"):
        robot_description("reflexarc.robot.nope:DESCRIPTION")
