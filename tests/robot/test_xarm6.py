"""The xArm6's description: its facts agree with its URDF, MuJoCo compiles it, its home
pose and IK hold the flange down over the workspace, and PyBullet's forward kinematics of
the same URDF agree with MuJoCo's."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.xarm6 import XARM6

DOWN = np.diag([1.0, -1.0, -1.0])  # the flange's z along world -z


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


def test_home_holds_the_flange_down_and_ik_reaches_the_workspace_corners() -> None:
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


def test_pybullet_and_mujoco_agree_on_the_flange_pose() -> None:
    import pybullet as pb

    kin = ArmKinematics(XARM6)
    client = pb.connect(pb.DIRECT)
    try:
        body = pb.loadURDF(str(XARM6.urdf_path()), useFixedBase=True, physicsClientId=client)
        index = {pb.getJointInfo(body, i, physicsClientId=client)[1].decode(): i
                 for i in range(pb.getNumJoints(body, physicsClientId=client))}
        link = next(i for i in range(pb.getNumJoints(body, physicsClientId=client))
                    if pb.getJointInfo(body, i, physicsClientId=client)[12].decode()
                    == XARM6.ee_link)
        rng = np.random.default_rng(0)
        for _ in range(10):
            q = rng.uniform(np.maximum(XARM6.q_lo, -2.5), np.minimum(XARM6.q_hi, 2.5))
            for name, v in zip(XARM6.arm_joints, q, strict=True):
                pb.resetJointState(body, index[name], v, physicsClientId=client)
            state = pb.getLinkState(body, link, computeForwardKinematics=True,
                                    physicsClientId=client)
            pos, _ = kin.fk(q)
            np.testing.assert_allclose(state[4], pos, atol=1e-4)  # the link frame's origin
    finally:
        pb.disconnect(client)
