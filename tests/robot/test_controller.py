"""The controller's logic with plain objects and a real scene in process (no sockets).

Properties: the arm model against MuJoCo (finite differences, mj_forward), plan sampling
and blending, setpoint shaping, and in closed loop with the MuJoCo scene: holding still,
the plan watchdog, a silent state stream, the e-stop latch, torque and workspace limits,
malformed plans, and the frame-to-command stamps.
"""

from __future__ import annotations

import collections

import mujoco
import numpy as np
import pytest

from reflexarc.robot.authority import Operator
from reflexarc.robot.controller import ControllerNode, SetpointShaper
from reflexarc.robot.guard import LimitCounter, panda_limits
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.robot.plan import PlanSampler, Setpoint, check_plan
from reflexarc.robot.rotations import mat_to_quat
from reflexarc.robot.safety import Mode
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.msgs import EStop, JointState, Plan
from reflexarc.runtime.node import Inbox, NodeContext

MS = 1_000_000
DOWN = mat_to_quat(np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]]))


def _plan(pos: np.ndarray, t0_ns: int = 0, dt_ns: int = 0, stamp_ns: int = 0, **kw) -> Plan:
    pos = np.atleast_2d(np.asarray(pos, float))
    fields = {"ee_quat": np.zeros((0, 4)), "gripper": np.zeros(0, np.float32)} | kw
    return Plan(stamp_ns=stamp_ns, t0_ns=t0_ns, dt_ns=dt_ns, ee_pos=pos, **fields)


# --------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------


def test_arm_model_jacobian_matches_finite_differences_of_its_kinematics() -> None:
    arm = ArmKinematics()
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = np.array([0.0, -0.4, 0.0, -2.4, 0.0, 2.0, 0.8]) + rng.normal(0, 0.2, 7)
        _, _, jac = arm.pose_jacobian(q)
        jac = jac.copy()
        eps = 1e-6
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = eps
            p1, r1 = arm.pose(q + dq)
            p0, r0 = arm.pose(q - dq)
            np.testing.assert_allclose((p1 - p0) / (2 * eps), jac[:3, j], atol=1e-6)
            w = r1 @ r0.T  # small rotation, world frame
            omega = np.array([w[2, 1] - w[1, 2], w[0, 2] - w[2, 0], w[1, 0] - w[0, 1]]) / 2
            np.testing.assert_allclose(omega / (2 * eps), jac[3:, j], atol=1e-5)


def test_arm_model_bias_and_mass_match_mj_forward() -> None:
    arm = ArmKinematics()
    q = np.array([0.3, -0.2, 0.1, -2.0, 0.2, 1.8, 0.4])
    dq = np.array([0.5, -0.3, 0.2, 0.4, -0.6, 0.3, 0.1])
    bias = arm.bias(q, dq, 0.06).copy()
    mass = arm.mass().copy()
    d = mujoco.MjData(arm.model)
    d.qpos[:7], d.qpos[7:9], d.qvel[:7] = q, 0.03, dq
    mujoco.mj_forward(arm.model, d)
    np.testing.assert_allclose(bias, d.qfrc_bias[:7], atol=1e-10)
    full = np.zeros((arm.model.nv, arm.model.nv))
    mujoco.mj_fullM(arm.model, d, full)
    np.testing.assert_allclose(mass, full[:7, :7], atol=1e-10)
    assert np.all(np.linalg.eigvalsh(mass) > 0)


def test_check_plan_names_what_is_wrong() -> None:
    ok = _plan([[0.5, 0, 0.2], [0.5, 0.1, 0.2]], dt_ns=10 * MS)
    assert check_plan(ok) == ""
    assert "ee_pos" in check_plan(_plan(np.zeros((2, 2)), dt_ns=1))
    assert "dt_ns" in check_plan(_plan(np.zeros((2, 3))))
    assert "finite" in check_plan(_plan([[np.nan, 0, 0]]))
    assert "ee_quat" in check_plan(_plan(np.zeros((1, 3)), ee_quat=np.ones((2, 4))))
    assert "non-zero" in check_plan(_plan(np.zeros((1, 3)), ee_quat=np.zeros((1, 4))))
    assert "gripper" in check_plan(_plan(np.zeros((1, 3)), gripper=np.ones(3, np.float32)))


def test_sampler_interpolates_holds_the_end_and_blends_continuously() -> None:
    s = PlanSampler(blend_s=0.05)
    here = Setpoint(np.array([0.4, 0.0, 0.3]), DOWN, 1.0)
    s.hold(here)
    np.testing.assert_array_equal(s.sample(123).pos, here.pos)
    pts = np.array([[0.5, 0.0, 0.2], [0.5, 0.1, 0.2], [0.5, 0.2, 0.2]])
    plan = _plan(pts, t0_ns=100 * MS, dt_ns=100 * MS, gripper=np.array([1, -1, -1], np.float32))
    s.set_plan(plan, 0, here, np.zeros(3))
    np.testing.assert_allclose(s.sample(0).pos, here.pos)  # continuous at the switch
    np.testing.assert_allclose(s.sample(150 * MS).pos, [0.5, 0.05, 0.2])  # blend over
    assert s.sample(150 * MS).gripper == -1.0  # nearest setpoint's gripper
    np.testing.assert_allclose(s.sample(10_000 * MS).pos, pts[-1])  # the end is held
    mid = s.sample(25 * MS).pos  # during the blend: between the two
    assert here.pos[0] < mid[0] < pts[0, 0]
    np.testing.assert_allclose(s.sample(60 * MS).quat, DOWN)  # plans without orientation keep it


def test_shaper_passes_a_slow_motion_and_limits_a_step() -> None:
    sh = SetpointShaper(max_speed=0.5, max_accel=2.0, max_rot_speed=2.5)
    start = Setpoint(np.zeros(3), DOWN, 1.0)
    sh.reset(start)
    dt = 1e-3
    for k in range(1, 200):  # 0.1 m/s: within the limits, passed through exactly
        p = np.array([0.1 * k * dt, 0.0, 0.0])
        out = sh(Setpoint(p, DOWN, 1.0), dt)
    np.testing.assert_allclose(out.pos, p, atol=1e-9)
    sh.reset(start)
    goal = np.array([0.15, 0.0, 0.0])
    traj = np.array([sh(Setpoint(goal, DOWN, 1.0), dt).pos[0] for _ in range(1000)])
    v = np.diff(traj) / dt
    assert v.max() <= 0.5 + 1e-9
    assert np.abs(np.diff(v) / dt).max() <= 2.0 + 1e-6
    assert traj.max() < 0.15 + 5e-5 and abs(traj[-1] - 0.15) < 1e-6


# --------------------------------------------------------------------------------------
# Closed loop with a scene
# --------------------------------------------------------------------------------------


OPERATOR = Operator.generate()


class Rig:
    """The controller and a MuJoCo scene at 1 kHz, commands applied one tick late."""

    def __init__(self, backend: str = "mujoco", clock: str = "realtime", **args) -> None:
        from reflexarc.sim.scenes import make_scene

        self.scene = make_scene(backend=backend, objects=[], cameras=[], physics_hz=1000)
        self.ctrl = ControllerNode(NodeContext(name="controller", rate_hz=1000.0, clock=clock),
                                   from_mapping(ControllerNode.Config, args))
        self.inbox = Inbox()
        self.k = 0
        self.queue: collections.deque = collections.deque()
        self.commands: list = []
        self.events: list = []
        self.modes: list[Mode] = []

    @property
    def now(self) -> int:
        return self.k * MS

    def ee(self) -> np.ndarray:
        return self.scene.ee_pose()[0]

    def tick(self, *, state: bool = True, plans=(), estops=()) -> None:
        now = self.now
        if state:
            s = self.scene.joint_state()
            self.inbox.put("joint_state", JointState(
                seq=self.k, stamp_ns=now, position=s.q, velocity=s.dq, effort=s.tau,
                gripper=s.gripper), now)
        for p in plans:
            self.inbox.put("plan", p, now)
        for e in estops:
            self.inbox.put("estop", e, now)
        for topic, msg in self.ctrl.step(now, self.inbox):
            if topic == "joint_command":
                self.queue.append(msg)
                self.commands.append(msg)
            else:
                self.events.append(msg)
        self.inbox.clear_new()
        self.modes.append(self.ctrl.mode)
        if len(self.queue) > 1:
            c = self.queue.popleft()
            self.scene.apply(c.mode, c.position, c.effort, c.gripper, c.velocity)
        self.scene.step(1)
        self.k += 1

    def run(self, ticks: int, **kw) -> None:
        for _ in range(ticks):
            self.tick(**kw)

    def close(self) -> None:
        self.scene.close()


@pytest.fixture
def rig():
    made = []

    def make(**kw) -> Rig:
        made.append(Rig(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_holds_still_without_a_plan(rig, backend: str) -> None:
    r = rig(backend=backend)
    start = r.ee()
    r.run(1000)
    assert r.ctrl.mode == Mode.HOLDING
    assert np.linalg.norm(r.ee() - start) < 2e-4  # gravity compensated: no sag
    assert all(c.mode == "torque" for c in r.commands)


def test_plan_watchdog_holds_within_one_tick_and_the_arm_stops(rig) -> None:
    r = rig(safety={"plan_timeout_s": 0.1})
    p0 = r.ee()
    r.run(50)
    # a plan moving at 0.1 m/s along y, sent every 10 ms, then the planner goes silent
    last_plan_tick = None
    for i in range(30):
        t = i * 0.01
        traj = p0 + np.outer(t + np.arange(11) * 0.01, [0.0, 0.1, 0.0])
        r.tick(plans=[_plan(traj, t0_ns=r.now, dt_ns=10 * MS, stamp_ns=r.now)])
        last_plan_tick = r.k - 1
        r.run(9)
    assert r.modes[-1] == Mode.RUNNING
    r.run(300)
    first_hold = next(k for k, m in enumerate(r.modes) if k > last_plan_tick and m == Mode.HOLDING)
    assert first_hold == last_plan_tick + 101  # age 101 ms > 100 ms: the first tick past it
    assert [e.kind for e in r.events].count("plan_timeout") == 1
    # then it stops and stays: no drift over the next half second
    held = r.ee()
    r.run(500)
    assert np.linalg.norm(r.ee() - held) < 2e-4
    assert np.abs(r.scene.joint_state().dq).max() < 1e-3


def test_a_resent_plan_does_not_refresh_the_watchdog(rig) -> None:
    """A planner whose input stopped resends its last plan (a keepalive, the same stamp):
    the arm must not go on along it past the plan timeout."""
    r = rig(safety={"plan_timeout_s": 0.1})
    p0 = r.ee()
    r.run(50)
    traj = p0 + np.outer(np.arange(101) * 0.01, [0.0, 0.1, 0.0])  # 1 s at 0.1 m/s
    plan = _plan(traj, t0_ns=r.now, dt_ns=10 * MS, stamp_ns=r.now)
    first = r.k
    for _ in range(20):  # resent every 20 ms for 0.4 s
        r.tick(plans=[plan])
        r.run(19)
    first_hold = next(k for k, m in enumerate(r.modes) if k > first and m == Mode.HOLDING)
    assert first_hold == first + 101
    assert r.ctrl.plans == 1 and r.ctrl.plans_repeated == 19
    assert r.ctrl.summary()["plans_repeated"] == 19


def _plans_then_silence(r: Rig, speed: float, n: int = 30,
                        points: int = 51) -> tuple[np.ndarray, np.ndarray]:
    """Plans along y at ``speed`` every 10 ms for ``n`` plans, each of ``points`` points
    10 ms apart (0.5 s by default: the arm runs on along the last one), then none: run
    until the watchdog fires; the EE (3,) the tick before and at the firing."""
    p0 = r.ee()
    r.run(50)
    for i in range(n):
        t = i * 0.01
        traj = p0 + np.outer(t + np.arange(points) * 0.01, [0.0, speed, 0.0])
        r.tick(plans=[_plan(traj, t0_ns=r.now, dt_ns=10 * MS, stamp_ns=r.now)])
        r.run(9)
    fired = prev = None
    while fired is None:
        prev = r.ee()
        r.tick()
        if r.ctrl.mode == Mode.HOLDING:
            fired = r.ee()
    return prev, fired


def test_the_watchdog_brakes_from_where_the_arm_is(rig) -> None:
    """At 0.25 m/s (the plan-age governor off) the arm stops within its braking distance
    of where it was when the watchdog fired -- at what the joints can follow, its lag
    behind the setpoint not caught up after."""
    r = rig(safety={"plan_timeout_s": 0.1}, watchdog_speed=0.5)  # = max_speed: no governor
    prev, fired = _plans_then_silence(r, 0.25, n=40, points=11)  # a new plan every 10 ms
    assert r.ctrl.governed_ticks == 0
    speed = np.linalg.norm(fired - prev) / 1e-3
    far, count = _to_rest(r, fired)
    drift = np.linalg.norm(r.ee() - fired)
    print(f"watchdog at {speed:.3f} m/s: {1e3 * drift:.2f} mm to rest, {1e3 * far:.2f} on "
          f"the way; {count.summary()}")
    # braking within the joints' acceleration limits, as the whole stop
    assert count.beyond["acceleration"] == 0 and count.beyond["velocity"] == 0
    assert speed > 0.2  # still moving when it fired: the plan ran on
    assert np.abs(r.scene.joint_state().dq).max() < 1e-3  # at rest
    # the Panda's joints need ~5 mm from this speed here (docs/safety.md, "Holds")
    assert drift < 6e-3, f"{1e3 * drift:.2f} mm from the watchdog to rest at {speed:.3f} m/s"
    assert far < 7.5e-3  # on the way: the lag of the arm behind its reference, not caught up


def _to_rest(r: Rig, fired: np.ndarray, ticks: int = 500) -> tuple[float, LimitCounter]:
    """Run ``ticks``; the largest EE distance from ``fired`` on the way, and the counts."""
    count = LimitCounter(panda_limits())
    far = 0.0
    for _ in range(ticks):
        r.tick()
        s = r.scene.joint_state()
        count.add(s.q, s.dq, None, r.now / 1e9)
        far = max(far, float(np.linalg.norm(r.ee() - fired)))
    return far, count


def test_the_plan_age_governor_slows_the_arm_before_the_watchdog(rig) -> None:
    """Plans at 0.4 m/s stop coming: as the last one ages past 0.1 s the setpoint slows,
    so the watchdog fires (0.3 s) near ``watchdog_speed`` and the stop after it stays
    within a few millimetres, every joint within its limits; without the governor the
    same stop runs on for centimetres."""
    r = rig()
    prev, fired = _plans_then_silence(r, 0.4)
    speed = np.linalg.norm(fired - prev) / 1e-3
    far, count = _to_rest(r, fired)
    print(f"governed: watchdog at {speed:.3f} m/s, {1e3 * far:.2f} mm on; {count.summary()}")
    assert r.ctrl.governed_ticks > 100
    assert speed < 0.12
    assert far < 3e-3
    assert count.beyond["acceleration"] == 0 and count.beyond["velocity"] == 0
    off = rig(watchdog_speed=0.5)  # = max_speed: the governor never caps
    prev, fired = _plans_then_silence(off, 0.4)
    far_off, _ = _to_rest(off, fired)
    print(f"no governor: watchdog at {np.linalg.norm(fired - prev) / 1e-3:.3f} m/s, "
          f"{1e3 * far_off:.2f} mm on")
    assert off.ctrl.governed_ticks == 0
    assert far_off > 3 * far


def test_fresh_plans_are_not_governed(rig) -> None:
    """Plans every 100 ms (a 10 Hz plan source in time) never meet the governor."""
    r = rig()
    p0 = r.ee()
    r.run(50)
    for i in range(6):
        t = i * 0.1
        traj = p0 + np.outer(t + np.arange(11) * 0.02, [0.0, 0.3, 0.0])
        r.tick(plans=[_plan(traj, t0_ns=r.now, dt_ns=20 * MS, stamp_ns=r.now)])
        r.run(99)
    assert r.ctrl.mode == Mode.RUNNING
    assert r.ctrl.governed_ticks == 0


def test_silent_state_stream_leads_to_a_safe_stop_and_fault(rig) -> None:
    r = rig(safety={"state_timeout_s": 0.02, "operator_key": OPERATOR.public_hex()})
    r.run(100)
    before = r.ee()
    r.run(19, state=False)  # 19 ms without a state: still fine
    assert r.ctrl.mode == Mode.HOLDING
    r.run(1, state=False)
    r.run(1, state=False)
    assert r.ctrl.mode == Mode.FAULT
    assert "state_timeout" in [e.kind for e in r.events]
    cmd = r.commands[-1]
    assert cmd.mode == "position"  # safe stop: the scene's own hold at the last pose
    np.testing.assert_allclose(cmd.position, r.ctrl.js.position)
    r.run(800, state=False)
    assert np.linalg.norm(r.ee() - before) < 1e-3  # not falling
    r.run(50)  # the stream comes back: the fault stays latched until a reset
    assert r.ctrl.mode == Mode.FAULT
    r.tick(estops=[OPERATOR.release(r.now)])
    assert r.ctrl.mode == Mode.HOLDING and r.commands[-1].mode == "torque"


def test_estop_latches_mid_motion_and_only_a_reset_releases(rig) -> None:
    r = rig(safety={"plan_timeout_s": 10.0, "operator_key": OPERATOR.public_hex()})
    p0 = r.ee()
    r.run(20)
    target = p0 + np.array([0.0, 0.15, 0.0])
    r.tick(plans=[_plan(target)])
    r.run(150)  # moving
    assert np.linalg.norm(r.scene.joint_state().dq) > 0.05
    r.tick(estops=[EStop(engage=True, reason="button")])
    assert r.ctrl.mode == Mode.ESTOP
    for _ in range(10):  # plans keep coming: ignored
        r.tick(plans=[_plan(target)])
        r.run(49)
    stopped = r.ee()
    assert r.ctrl.mode == Mode.ESTOP
    assert np.linalg.norm(stopped - target) > 0.03  # it did not go on to the target
    assert np.abs(r.scene.joint_state().dq).max() < 1e-3
    r.tick(estops=[OPERATOR.release(r.now)])
    r.run(200)
    assert r.ctrl.mode == Mode.HOLDING  # released, but the old plan does not resume
    assert np.linalg.norm(r.ee() - stopped) < 2e-4
    r.tick(plans=[_plan(target, stamp_ns=r.now)])  # a new plan (a newer stamp)
    r.run(1500)
    assert r.ctrl.mode == Mode.RUNNING
    assert np.linalg.norm(r.ee() - target) < 1e-3
    assert [e.kind for e in r.events if e.kind in ("estop", "reset")] == ["estop", "reset"]


def test_torques_stay_within_the_limits_with_aggressive_gains(rig) -> None:
    r = rig(omega=150.0, max_speed=1.5, max_accel=12.0,
            safety={"plan_timeout_s": 10.0, "torque_rate": 1000.0})
    r.run(10)
    r.tick(plans=[_plan(r.ee() + np.array([0.1, -0.2, -0.15]))])
    r.run(600)
    tau = np.array([c.effort for c in r.commands])
    assert np.all(np.abs(tau) <= PANDA.tau_limits + 1e-9)
    assert np.abs(np.diff(tau, axis=0)).max() <= 1.0 + 1e-9  # 1000 N m/s at 1 kHz
    assert r.ctrl.events.events["torque_limit"] >= 1
    assert "torque_limit" in [e.kind for e in r.events]


def test_setpoints_outside_the_workspace_are_clipped_into_the_box(rig) -> None:
    r = rig(safety={"plan_timeout_s": 10.0})
    r.run(10)
    r.tick(plans=[_plan([0.55, 0.0, 0.7])])  # 20 cm above the box
    r.run(2000)
    ee = r.ee()
    assert abs(ee[2] - PANDA.workspace_box[2, 1]) < 1e-3 and abs(ee[0] - 0.55) < 1e-3
    assert r.ctrl.events.events["workspace"] == 1  # one event for one long clipping
    assert r.ctrl.events.ticks["workspace"] > 1000


def test_malformed_plans_are_rejected_and_the_arm_keeps_holding(rig) -> None:
    r = rig()
    start = r.ee()
    r.run(10)
    r.tick(plans=[_plan([[np.nan, 0.0, 0.2]]), _plan(np.zeros((2, 3)))])
    r.run(300)
    assert r.ctrl.mode == Mode.HOLDING
    assert r.ctrl.plans_rejected == 2
    assert [e.kind for e in r.events].count("invalid_plan") == 2
    assert np.linalg.norm(r.ee() - start) < 2e-4


def test_commands_carry_the_plan_stamp_and_latency_is_recorded(rig) -> None:
    r = rig()
    r.run(10)
    p = r.ee()
    for _ in range(5):
        r.tick(plans=[_plan(p, stamp_ns=r.now - 7 * MS)])  # computed from a 7 ms old frame
        r.run(19)
    running = [c for c, m in zip(r.commands, r.modes[-len(r.commands):], strict=True)
               if m == Mode.RUNNING]
    assert running and {c.stamp_ns for c in running} == {(10 + 20 * i) * MS - 7 * MS for i in range(5)}
    s = r.ctrl.summary()
    assert s["plan_age_samples"] == len(running)
    assert 7.0 <= s["plan_age_p50_ms"] <= 7.0 + 19.0 and s["plan_age_p99_ms"] <= 26.0


def test_frame_to_command_counts_from_the_frame_being_rendered(rig) -> None:
    r = rig(clock="lockstep")  # commands leave at the tick's graph time
    r.run(10)
    p = r.ee()
    for i in range(5):  # 7 ms old frames that took 2 ms to render, resent once (keepalive)
        plan = _plan(p + [0.0, 0.0, 0.002 * i], stamp_ns=r.now - 7 * MS, render_us=2000.0)
        r.tick(plans=[plan])
        r.run(9)
        r.tick(plans=[plan])
        r.run(9)
    s = r.ctrl.summary()
    assert s["frame_to_command_samples"] == 5
    assert s["frame_to_command_p50_ms"] == s["frame_to_command_p99_ms"] == pytest.approx(5.0)
    assert s["frame_to_command_with_render_p99_ms"] == pytest.approx(7.0)


def test_a_teleported_arm_is_held_where_it_lands(rig) -> None:
    """A simulator's episode reset moves the arm in one tick: start over from there."""
    r = rig(safety={"plan_timeout_s": 10.0})
    r.run(10)
    r.tick(plans=[_plan(r.ee() + np.array([0.0, 0.1, 0.0]))])
    r.run(300)
    q_new = np.array([0.3, -0.2, 0.1, -2.2, 0.0, 2.0, 0.6])
    r.scene.set_joint_positions(q_new)
    landed = r.ee()
    r.run(500)
    assert r.ctrl.mode == Mode.HOLDING  # the old plan was for the old pose
    assert "state_jump" in [e.kind for e in r.events]
    assert np.linalg.norm(r.ee() - landed) < 1e-3
    assert np.abs(np.array([c.effort for c in r.commands[-400:]])).max() < 40.0  # no kick


def test_hold_brakes_hard_when_plans_stop_at_speed(rig) -> None:
    """Plans at 0.4 m/s stop coming: once the watchdog fires the arm stops within 2 mm
    (braking at 2 m/s^2, the setpoint's acceleration limit, it took 4 mm). With a 0.1 s
    plan timeout the plan-age governor slows the arm from the first tick of a plan on."""
    r = rig(safety={"plan_timeout_s": 0.1})
    p0 = r.ee()
    r.run(50)
    for i in range(60):
        t = i * 0.01
        traj = p0 + np.outer(np.minimum(t + np.arange(11) * 0.01, 0.5), [0.0, -0.4, 0.0])
        r.tick(plans=[_plan(traj, t0_ns=r.now, dt_ns=10 * MS, stamp_ns=r.now)])
        r.run(9)
        if i == 40:
            moving = np.linalg.norm(r.ee() - p0)
    assert moving > 0.08
    r.run(102)
    assert r.ctrl.mode == Mode.HOLDING
    fired = r.ee()
    r.run(600)
    assert np.linalg.norm(r.ee() - fired) < 2e-3, np.linalg.norm(r.ee() - fired)


def test_no_joint_is_driven_past_its_velocity_limit(rig) -> None:
    """A far step (the shaper lets the EE go at 1.7 m/s): measured joint speeds stay
    within the speed guard of their limits."""

    r = rig(max_speed=1.7, max_accel=13.0, safety={"plan_timeout_s": 10.0, "velocity_scale": 1.0})
    p0 = r.ee()
    r.run(20)
    r.tick(plans=[_plan(p0 + np.array([0.15, -0.3, 0.1]))])
    peak = 0.0
    for _ in range(1500):
        r.tick()
        peak = max(peak, float(np.max(np.abs(r.scene.joint_state().dq) / PANDA.dq_limits)))
    assert 0.3 < peak <= 0.95, peak
