"""The safety layer with plain objects: watchdogs, e-stop latch, limits, event counting."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.authority import Operator
from reflexarc.robot.panda import PANDA
from reflexarc.robot.safety import (
    EventLog,
    Limits,
    Mode,
    SafetyConfig,
    Supervisor,
)
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EStop

PANDA_DDQ_MAX = PANDA.ddq_limits
PANDA_DQ_MAX = PANDA.dq_limits
PANDA_Q_MAX = PANDA.q_hi
PANDA_TAU_MAX = PANDA.tau_limits
WORKSPACE = PANDA.workspace_box

MS = 1_000_000


OPERATOR = Operator.generate()


def _supervisor(**kw: float | str) -> tuple[Supervisor, EventLog]:
    cfg = SafetyConfig(**{"operator_key": OPERATOR.public_hex(), **kw})  # type: ignore[arg-type]
    log = EventLog("controller", cfg.rearm_s)
    return Supervisor(cfg, log), log


def _kinds(log: EventLog) -> list[str]:
    return [e.kind for e in log.take()]


def test_waiting_until_the_first_state_then_holding_without_a_plan() -> None:
    sup, log = _supervisor()
    assert sup.update(0) == Mode.WAITING
    assert sup.update(500 * MS) == Mode.WAITING  # no state ever: not a state timeout
    sup.state_arrived(500 * MS)
    assert sup.update(500 * MS) == Mode.HOLDING
    assert _kinds(log) == []


def test_plan_watchdog_holds_on_the_first_tick_after_the_timeout() -> None:
    sup, log = _supervisor(plan_timeout_s=0.1, state_timeout_s=1.0)
    sup.state_arrived(0)
    assert sup.plan_arrived(0)
    modes = {}
    for k in range(0, 200):  # 1 kHz ticks, the state stays fresh
        now = k * MS
        sup.state_arrived(now)
        modes[k] = sup.update(now)
    assert all(modes[k] == Mode.RUNNING for k in range(0, 101))  # age <= 100 ms
    assert all(modes[k] == Mode.HOLDING for k in range(101, 200))  # first tick past it
    assert _kinds(log) == ["plan_timeout"]  # one event, not one per tick
    assert sup.plan_arrived(200 * MS)
    assert sup.update(200 * MS) == Mode.RUNNING


def test_silent_state_stream_faults_and_the_fault_latches() -> None:
    sup, log = _supervisor(state_timeout_s=0.05)
    sup.state_arrived(0)
    sup.plan_arrived(0)
    assert sup.update(50 * MS) == Mode.RUNNING
    assert sup.update(51 * MS) == Mode.FAULT
    assert _kinds(log) == ["state_timeout"]
    sup.state_arrived(60 * MS)  # the stream comes back
    sup.plan_arrived(60 * MS)  # plans are ignored while faulted
    assert sup.update(60 * MS) == Mode.FAULT
    assert not sup.plan_arrived(61 * MS)


def test_reset_releases_a_fault_only_while_the_state_is_fresh() -> None:
    sup, log = _supervisor(state_timeout_s=0.05)
    sup.state_arrived(0)
    assert sup.update(100 * MS) == Mode.FAULT
    sup.estops([OPERATOR.release(110 * MS)], 110 * MS)  # state still silent: fault kept
    assert sup.update(110 * MS) == Mode.FAULT
    log.take()
    sup.state_arrived(120 * MS)
    sup.estops([OPERATOR.release(120 * MS)], 120 * MS)
    assert sup.update(120 * MS) == Mode.HOLDING  # released, holds until a new plan
    (ev,) = log.take()
    assert ev.kind == "reset" and "fault" in ev.detail


def test_estop_latches_until_an_explicit_reset() -> None:
    sup, log = _supervisor(plan_timeout_s=10.0)
    sup.state_arrived(0)
    sup.plan_arrived(0)
    assert sup.update(0) == Mode.RUNNING
    sup.estops([EStop(engage=True, reason="test")], 1 * MS)
    for k in range(1, 300):
        sup.state_arrived(k * MS)
        assert not sup.plan_arrived(k * MS)  # plans keep coming, all ignored
        sup.estops([EStop(engage=True)], k * MS)  # re-engaging is no new event
        assert sup.update(k * MS) == Mode.ESTOP
    assert _kinds(log) == ["estop"]
    sup.estops([OPERATOR.release(300 * MS)], 300 * MS)
    sup.state_arrived(300 * MS)
    # released, but the plan from before the reset does not resume: hold until a new one
    assert sup.update(300 * MS) == Mode.HOLDING
    assert sup.plan_arrived(301 * MS)
    assert sup.update(301 * MS) == Mode.RUNNING
    assert _kinds(log) == ["reset"]


def test_a_reset_without_a_latch_does_nothing() -> None:
    sup, log = _supervisor()
    sup.state_arrived(0)
    sup.plan_arrived(0)
    sup.estops([OPERATOR.release(0)], 0)
    assert sup.update(0) == Mode.RUNNING and _kinds(log) == []


def _limits(**kw: float) -> tuple[Limits, EventLog]:
    cfg = SafetyConfig(**kw)  # type: ignore[arg-type]
    log = EventLog("controller", cfg.rearm_s)
    return Limits(cfg, log), log


def test_torque_is_clipped_to_the_effort_and_rate_limits() -> None:
    lim, log = _limits(torque_rate=1000.0)
    tau = np.array([200.0, -200.0, 5.0, 0.0, 50.0, -50.0, 1.0])
    out = lim.torque(tau, None, 1e-3, 0)  # first command: effort limits only
    np.testing.assert_array_equal(out, np.clip(tau, -PANDA_TAU_MAX, PANDA_TAU_MAX))
    out2 = lim.torque(-tau, out, 1e-3, 1 * MS)  # a reversal is rate limited: 1 N m per ms
    np.testing.assert_allclose(np.abs(out2 - out), np.minimum(np.abs(-np.clip(tau, -PANDA_TAU_MAX, PANDA_TAU_MAX) - out), 1.0))
    assert np.all(np.abs(out2) <= PANDA_TAU_MAX)
    same = lim.torque(out2, out2, 1e-3, 2 * MS)  # within limits: untouched, no new tick
    np.testing.assert_array_equal(same, out2)
    assert log.ticks["torque_limit"] == 2
    assert log.events["torque_limit"] == 1  # consecutive clipping is one event
    lim.torque(tau * 10, out2, 1e-3, 500 * MS)  # after the re-arm time: a new event
    assert log.events["torque_limit"] == 2
    assert [e.kind for e in log.take()] == ["torque_limit", "torque_limit"]


def test_workspace_clips_the_setpoint_into_the_box() -> None:
    lim, log = _limits()
    inside = np.array([0.5, 0.0, 0.2])
    assert lim.workspace(inside, 0) is inside or np.array_equal(lim.workspace(inside, 0), inside)
    out = lim.workspace(np.array([1.2, -0.9, -0.3]), 1)
    np.testing.assert_array_equal(out, [WORKSPACE[0, 1], WORKSPACE[1, 0], WORKSPACE[2, 0]])
    assert log.events["workspace"] == 1 and "clipped" in log.take()[0].detail


def test_reference_respects_acceleration_speed_and_position_limits() -> None:
    lim, log = _limits(velocity_scale=0.5)
    dt = 1e-3
    q0 = np.zeros(7)
    q0[3], q0[5] = -1.5, 1.0  # inside joint 4's [-3.07, -0.07] and joint 6's [-0.02, 3.75]
    wanted = q0 + np.array([1.0, -0.5, 0.2, 0.0, 0.0, 0.0, 0.3])  # a huge step
    q1 = lim.reference(q0, np.zeros(7), wanted, dt, 0)
    dq = (q1 - q0) / dt
    assert np.all(np.abs(dq) / dt <= PANDA_DDQ_MAX + 1e-9)  # from rest: acceleration-limited
    d = (wanted - q0) / np.linalg.norm(wanted - q0)
    np.testing.assert_allclose(dq / np.linalg.norm(dq), d, atol=1e-9)  # direction kept
    # at speed: the speed limit binds
    fast = np.full(7, 10.0)
    q2 = lim.reference(q0, fast, q0 + fast * dt, dt, 1)
    assert np.all(np.abs((q2 - q0) / dt) <= 0.5 * PANDA_DQ_MAX + 1e-9)
    # near a position limit: clipped with the margin
    m = lim.cfg.joint_margin
    top = PANDA_Q_MAX - m - 0.001
    q3 = lim.reference(top, np.full(7, 1.0), top + 0.002, dt, 2)
    assert np.all(q3 <= PANDA_Q_MAX - m + 1e-12)
    beyond = PANDA_Q_MAX - m / 2  # already past the margin (holding began there): no further
    q4 = lim.reference(beyond, np.zeros(7), beyond + 0.001, dt, 3)
    np.testing.assert_array_equal(q4, beyond)
    assert log.events["velocity_limit"] >= 1 and log.events["joint_limit"] == 1


def test_measured_overspeed_and_limit_are_reported() -> None:
    lim, log = _limits()
    q = np.zeros(7)
    q[3] = -1.0
    assert not lim.measured(q, np.zeros(7), 0)
    fast = np.zeros(7)
    fast[1] = 1.1 * PANDA_DQ_MAX[1]
    assert lim.measured(q, fast, 1)
    q[0] = 3.0  # past joint 1's limit
    lim.measured(q, np.zeros(7), 2)
    assert log.events["velocity_limit"] == 1 and log.events["joint_limit"] == 1


def test_config_validates_the_workspace() -> None:
    with pytest.raises(ConfigError, match="workspace"):
        from_mapping(SafetyConfig, {"workspace_lo": [0.0, 0.0, 0.0], "workspace_hi": [1.0, -1.0, 1.0]})
    with pytest.raises(ConfigError, match="plan_timeout_s"):
        from_mapping(SafetyConfig, {"plan_timeout_s": 0.0})


def test_only_a_release_signed_by_the_operator_releases_an_estop() -> None:
    sup, log = _supervisor()
    sup.state_arrived(0)
    sup.estops([EStop(engage=True)], 0)
    forger = Operator.generate()
    t = 8 * 10**9
    tries = [
        EStop(engage=False),  # any node on the bus
        EStop(engage=False, reason=f"operator-release {t} " + "00" * 64),
        forger.release(t),  # signed, by the wrong key
        OPERATOR.release(t - 7 * 10**9),  # signed, but 7 s old
    ]
    for e in tries:
        sup.state_arrived(t)
        sup.estops([e], t)
        assert sup.update(t) == Mode.ESTOP
    kinds = [(ev.kind, ev.detail) for ev in log.take()]
    assert kinds == [("estop", "engaged"), ("release_refused", "unsigned release (not from the operator)"),
                     ("release_refused", "bad signature"), ("release_refused", "bad signature"),
                     ("release_refused", "stale release")]
    ok = OPERATOR.release(t + MS)
    sup.state_arrived(t + MS)
    sup.estops([ok], t + MS)
    assert sup.update(t + MS) == Mode.HOLDING
    sup.estops([EStop(engage=True)], t + 2 * MS)
    sup.estops([ok], t + 3 * MS)  # the same release again: a replay
    assert sup.update(t + 3 * MS) == Mode.ESTOP
    assert log.take()[-1].detail == "replayed release"
    assert sup.releases.refused == 5


def test_without_an_operator_key_no_release_is_honoured() -> None:
    sup, log = _supervisor(operator_key="")
    sup.state_arrived(0)
    sup.estops([EStop(engage=True)], 0)
    sup.estops([OPERATOR.release(1 * MS)], 1 * MS)
    assert sup.update(1 * MS) == Mode.ESTOP
    assert "no operator key" in log.take()[-1].detail


def test_operator_keys_are_made_private_and_checked(tmp_path) -> None:
    from reflexarc.robot.authority import AuthorityError, make_operator_key
    from reflexarc.runtime.errors import ConfigError

    public = make_operator_key(tmp_path / "op")
    secret = tmp_path / "op" / "operator.key_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    op = Operator.load(tmp_path / "op")
    sup, _ = _supervisor(operator_key=str(public))
    sup.state_arrived(0)
    sup.estops([EStop(engage=True)], 0)
    sup.estops([op.release(1 * MS)], 1 * MS)
    assert sup.update(1 * MS) == Mode.HOLDING
    with pytest.raises(AuthorityError, match="exists"):
        make_operator_key(tmp_path / "op")
    secret.chmod(0o644)
    with pytest.raises(AuthorityError, match="other users"):
        Operator.load(secret)
    with pytest.raises(ConfigError, match="operator_key"):
        SafetyConfig(operator_key=str(tmp_path / "missing.key")).validate()
