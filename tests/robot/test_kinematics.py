"""ArmKinematics: Jacobian against finite differences, IK over the workspace, the
dynamics against mj_forward."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.description import RobotError
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.robot.rotations import rotation_error

HOME_Q = PANDA.home_q
WORKSPACE = PANDA.workspace_box
R_DOWN = PANDA.ee_down_rot


@pytest.fixture(scope="module")
def kin() -> ArmKinematics:
    return ArmKinematics()


def test_jacobian_matches_finite_differences(kin: ArmKinematics) -> None:
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):
        q = HOME_Q + rng.uniform(-0.4, 0.4, 7)
        jac = kin.jacobian(q)  # (6, 7)
        pos, rot = kin.fk(q)
        for i in range(7):
            dq = np.zeros(7)
            dq[i] = eps
            pos2, rot2 = kin.fk(q + dq)
            np.testing.assert_allclose((pos2 - pos) / eps, jac[:3, i], atol=1e-5)
            np.testing.assert_allclose(rotation_error(rot, rot2) / eps, jac[3:, i], atol=1e-5)


def test_ik_reaches_the_workspace_pointing_down(kin: ArmKinematics) -> None:
    rng = np.random.default_rng(1)
    lo = WORKSPACE[:, 0] + [0.05, 0.05, 0.02]
    hi = WORKSPACE[:, 1] - [0.05, 0.05, 0.05]
    for _ in range(20):
        target = rng.uniform(lo, hi)
        res = kin.solve(target, R_DOWN, iters=100)
        assert res.pos_err < 1e-3 and res.rot_err < 1e-2
        pos, rot = kin.fk(res.q)
        np.testing.assert_allclose(pos, target, atol=1e-3)
        assert np.all(res.q >= PANDA.q_lo) and np.all(res.q <= PANDA.q_hi)


def test_ik_out_of_reach_reports_its_error(kin: ArmKinematics) -> None:
    res = kin.solve(np.array([2.0, 0.0, 0.3]), R_DOWN, iters=50)
    assert res.pos_err > 0.5
    with pytest.raises(RobotError):
        kin.solve(np.array([np.nan, 0.0, 0.0]))


def test_gravity_torque_is_zero_without_gravity_direction_lever(kin: ArmKinematics) -> None:
    """Joint 1 turns about the vertical: gravity never loads it; the shoulder is loaded."""
    g = kin.gravity(HOME_Q)
    assert abs(g[0]) < 1e-9
    assert abs(g[1]) > 1.0


def test_down_is_the_default_orientation_and_none_leaves_it_free(kin: ArmKinematics) -> None:
    target = np.array([0.5, 0.1, 0.2])
    down = kin.solve(target, iters=100)
    np.testing.assert_allclose(kin.fk(down.q)[1], R_DOWN, atol=1e-2)
    free = kin.solve(target, None, q0=HOME_Q + 0.3, iters=100)
    assert free.pos_err < 1e-3 and free.rot_err == 0.0


def test_bias_and_mass_match_mj_forward(kin: ArmKinematics) -> None:
    """The controller's buffers: bias = qfrc_bias, mass = M, at a moving state."""
    import mujoco

    rng = np.random.default_rng(2)
    data = mujoco.MjData(kin.model)
    for _ in range(3):
        q = HOME_Q + rng.uniform(-0.4, 0.4, 7)
        dq = rng.normal(0.0, 0.5, 7)
        bias = kin.bias(q, dq, 0.05).copy()
        mass = kin.mass().copy()
        data.qpos[:7], data.qpos[7:9], data.qvel[:] = q, 0.025, 0.0
        data.qvel[:7] = dq
        mujoco.mj_forward(kin.model, data)
        np.testing.assert_allclose(bias, data.qfrc_bias[:7], atol=1e-9)
        full = np.zeros((kin.model.nv, kin.model.nv))
        mujoco.mj_fullM(kin.model, data, full)
        np.testing.assert_allclose(mass, full[:7, :7], atol=1e-9)
        np.testing.assert_allclose(kin.measured_ee(), data.site_xpos[kin.site], atol=1e-12)


def test_a_model_without_the_site_is_refused() -> None:
    import mujoco

    spec = mujoco.MjSpec.from_string(PANDA.urdf_text(mujoco_compiler=True))
    with pytest.raises(RobotError, match="site"):
        ArmKinematics(PANDA, spec.compile())
