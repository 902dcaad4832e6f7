"""The plant-side joint limits: what CommandGuard lets through, and what LimitCounter counts."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.guard import CommandGuard, GuardConfig, LimitCounter, panda_limits
from reflexarc.runtime.errors import ConfigError

MS = 1_000_000


def test_torques_stay_within_the_effort_and_rate_limits_for_any_wish() -> None:
    lim = panda_limits()
    g = CommandGuard(lim)
    rng = np.random.default_rng(0)
    q, dq = np.zeros(7) + 0.5 * (lim.q_min + lim.q_max), np.zeros(7)
    prev = None
    for k in range(200):
        tau = g.torque(rng.normal(0.0, 1e4, 7), q, dq, k * MS)
        assert np.all(np.abs(tau) <= lim.tau_max)
        if prev is not None:
            assert np.all(np.abs(tau - prev) <= lim.dtau_max * 1e-3 + 1e-9)
        prev = tau
    assert g.counts["torque_clipped"] == 200 and g.counts["torque_rate_clipped"] > 100


def test_torques_toward_a_near_position_limit_are_damped_and_away_are_not() -> None:
    lim = panda_limits()
    g = CommandGuard(lim, GuardConfig(torque_rate=False))
    q = 0.5 * (lim.q_min + lim.q_max)
    q[5] = lim.q_max[5] - 0.05  # joint 6, 0.05 rad from its upper limit
    toward = np.zeros(7)
    toward[5] = 1.0
    tau = g.torque(np.zeros(7), q, toward, 0)
    assert tau[5] < 0.0 and np.count_nonzero(tau) == 1  # brakes the joint moving to it
    assert np.all(g.torque(np.zeros(7), q, -toward, MS) == 0.0)  # leaving: no force
    q[5] = 0.5 * (lim.q_min[5] + lim.q_max[5])
    assert np.all(g.torque(np.zeros(7), q, toward, 2 * MS) == 0.0)  # far from it: none


def test_position_targets_stay_inside_and_move_slower_than_the_velocity_limits() -> None:
    lim = panda_limits()
    g = CommandGuard(lim)
    q = 0.5 * (lim.q_min + lim.q_max)
    out = q
    for k in range(1, 3000):
        out = g.position(np.full(7, 1e9), q, k * MS)
        assert np.all(out <= lim.q_max) and np.all(out >= lim.q_min)
    assert np.allclose(out, lim.q_max - g.cfg.position_margin)  # got there, no further
    g.reset()
    step = g.position(lim.q_min, out, 3000 * MS) - out
    assert np.all(np.abs(step) <= lim.dq_max * g.cfg.speed_share * 1e-3 + 1e-12)
    assert np.all(np.abs(g.velocity(np.full(7, -50.0))) <= lim.dq_max)


def test_overspeed_and_counter() -> None:
    lim = panda_limits()
    g = CommandGuard(lim)
    assert not g.overspeed(0.9 * lim.dq_max) and g.overspeed(0.96 * lim.dq_max)
    c = LimitCounter(lim)
    mid = 0.5 * (lim.q_min + lim.q_max)
    c.add(mid, 0.5 * lim.dq_max, np.zeros(7))
    c.add(mid, 1.2 * lim.dq_max, np.zeros(7))
    past = mid.copy()
    past[5] = lim.q_max[5] + 0.1
    c.add(past, np.zeros(7), 2.0 * lim.tau_max)
    s = c.summary()
    assert s["limit_samples"] == 3
    assert s["beyond_limits"] == {"position": 1, "velocity": 1, "acceleration": 0, "torque": 1}
    assert s["max_speed_share"] == pytest.approx(1.2) and s["max_position_excess_rad"] == pytest.approx(0.1)
    assert s["accel_samples"] == 0  # no sample times given: no acceleration measured


def test_counter_measures_acceleration_between_close_samples_only() -> None:
    lim = panda_limits()
    c = LimitCounter(lim, accel_window_s=0.02)
    mid = 0.5 * (lim.q_min + lim.q_max)
    dq = np.zeros(7)
    c.add(mid, dq, None, 0.0)  # the first sample: nothing to difference
    dq2 = dq.copy()
    dq2[1] = 0.5 * lim.ddq_max[1] * 1e-3  # joint 2 at half its limit over 1 ms
    c.add(mid, dq2, None, 1e-3)
    dq3 = dq2.copy()
    dq3[1] += 2.0 * lim.ddq_max[1] * 1e-3  # then twice its limit
    c.add(mid, dq3, None, 2e-3)
    s = c.summary()
    assert s["accel_samples"] == 2 and s["beyond_limits"]["acceleration"] == 1
    assert s["max_accel_share"] == pytest.approx(2.0)
    c.add(mid, np.zeros(7), None, 1.0)  # a long gap: a difference, not an acceleration
    c.add(mid, np.zeros(7), None, 1.001)
    c.restart()  # a teleport (episode reset): the next sample starts over
    c.add(mid, np.full(7, 2.0), None, 1.002)
    s = c.summary()
    assert s["accel_samples"] == 3 and s["beyond_limits"]["acceleration"] == 1


def test_guard_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="stop_share"):
        CommandGuard(panda_limits(), GuardConfig(stop_share=1.5))
    with pytest.raises(ConfigError, match="speed_share"):
        CommandGuard(panda_limits(), GuardConfig(speed_share=0.99, stop_share=0.95))
