"""The end-effector tracker's joint ramps stay within the joint speed limits (docs/safety.md)."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.sim.ee_control import FF_BLEND, SPEED_SHARE, EETracker

STEPS = 50  # setpoints per 0.1 s period, as the sim node's 500 Hz physics


@pytest.mark.parametrize("robot", ["panda", "xarm6"])
def test_full_actions_from_home_keep_every_joint_within_its_share(robot: str) -> None:
    desc = robot_description(robot)
    tr = EETracker(ArmKinematics(desc), 0.05, 0.1)
    tr.reset(desc.home_q)
    ee = tr.x_cmd.copy()
    q_prev, v_prev = tr.setpoint(1.0)
    peak = 0.0
    for _ in range(6):  # the push expert's first moves: 5 cm down and sideways per action
        tr.act(np.array([0.05, 0.05, -0.05, -1.0]), ee)
        for k in range(1, STEPS + 1):
            q, v = tr.setpoint(k / STEPS)
            # no step in the velocity reference, and the positions follow it
            assert np.max(np.abs(v - v_prev)) <= np.max(np.abs(tr.velocity - tr.v_from)) \
                / (FF_BLEND * STEPS) + 1e-9
            if not (k - 1) / STEPS < FF_BLEND < k / STEPS:  # (the velocity is linear here)
                assert np.allclose((q - q_prev) / (0.1 / STEPS), (v + v_prev) / 2, atol=1e-6)
            peak = max(peak, float(np.max(np.abs(v) / desc.dq_limits)))
            q_prev, v_prev = q, v
        assert np.allclose(q_prev, tr.q_cmd)  # each ramp ends on its IK solution
        ee = tr.x_cmd.copy()  # the hand tracked perfectly
    assert SPEED_SHARE * 0.9 < peak <= SPEED_SHARE + 1e-9  # the cap binds, and holds
