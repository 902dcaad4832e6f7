"""ArmKinematics: Jacobian against finite differences, IK over the workspace."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.sim.assets import HOME_Q, JOINT_LIMITS, WORKSPACE, SceneError
from reflexarc.sim.kinematics import R_DOWN, ArmKinematics, rotation_error


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
        assert np.all(res.q >= JOINT_LIMITS[:, 0]) and np.all(res.q <= JOINT_LIMITS[:, 1])


def test_ik_out_of_reach_reports_its_error(kin: ArmKinematics) -> None:
    res = kin.solve(np.array([2.0, 0.0, 0.3]), R_DOWN, iters=50)
    assert res.pos_err > 0.5
    with pytest.raises(SceneError):
        kin.solve(np.array([np.nan, 0.0, 0.0]))


def test_gravity_torque_is_zero_without_gravity_direction_lever(kin: ArmKinematics) -> None:
    """Joint 1 turns about the vertical: gravity never loads it; the shoulder is loaded."""
    g = kin.gravity(HOME_Q)
    assert abs(g[0]) < 1e-9
    assert abs(g[1]) > 1.0
