"""The low-level controller: tracks Plans at 1 kHz with joint impedance.

One tick (the controller in docs/architecture.md, "The nodes"):

1. **Sample** the plan at ``now`` (:class:`PlanSampler`): EE setpoints over time,
   linearly interpolated, the last one held past the plan's end. A new plan is blended
   in over ``blend_s`` from the old setpoint, extrapolated at its velocity, with a
   smoothstep weight (position and velocity continuous).
2. **Clip** the setpoint into the workspace box (:mod:`reflexarc.robot.safety`), then **shape** it
   (:class:`SetpointShaper`): at most ``max_speed``, ``max_accel``, ``max_rot_speed``;
   a plan within those passes unchanged, a step becomes a motion that stops on target.
3. **Differential IK** (damped least squares on MuJoCo's model of the same robot:
   ``mj_jacSite``): a joint reference ``q_r`` (n,) moves by
   ``dq = J^T (J J^T + d^2 I)^-1 (v dt + g (e - v dt)) + N k (q_rest - q_r) dt``: the
   shaped setpoint's own motion ``v dt`` fed forward plus a share ``g`` of the rest of the
   6-D error ``e`` (position, orientation) at ``q_r``; ``N`` projects the pull toward the
   rest posture into the null space. The step is limited to the joint acceleration,
   velocity and position limits.
4. **Joint impedance** with gravity and Coriolis compensation (``mj_rne`` at the
   measured state). ``impedance: inertia`` (default) shapes it with the joint-space
   inertia ``M(q)`` so every joint and null-space mode gets the same bandwidth:
   ``tau = M(q) (w^2 (q_r - q) + 2 z w (dq_r - dq) + ddq_r) + bias(q, dq)``; per-joint
   gains (``impedance: diagonal``: ``tau = Kp (q_r - q) + Kd (dq_r - dq) + bias``) leave
   the joint-1/joint-3 mode of the Panda underdamped against the bus delay. The torque is
   clipped to the effort and effort-rate limits and sent as a torque-mode
   :class:`JointCommand` (``position``/``velocity`` carry ``q_r``/``dq_r``). The plan's
   gripper command passes through.

The safety layer (:mod:`reflexarc.robot.safety`) picks the mode: ``running`` (track), ``holding``
(no fresh plan, or a measured overspeed: brake the setpoint at ``max_accel`` and hold
where it stops), ``estop`` (latched: the same stop), ``fault`` (the joint state went
silent: safe stop, a position-mode hold at the last measured pose, latched),
``waiting`` (no state yet: no command). Safety events are published on ``safety``.

Every command carries the stamp of the frame its plan came from (``Plan.stamp_ns``).
Frame-to-command latency is recorded once per plan: from its frame's being ready (the
stamp plus the sim's render time, ``Plan.render_us``) to the first command that applies
the plan (on the graph clock; in realtime the time the command leaves the step), summary
``frame_to_command_p50_ms``/``_p99_ms``; ``frame_to_command_with_render_*`` counts from
the stamp, the render included. A plan resent with the
same stamp (a keepalive) is not a new one. The age of the plan being executed,
``now - plan.stamp_ns`` on every running tick, is ``plan_age_p50_ms``/``_p99_ms``: it
grows while a plan is tracked and includes the wait for the next camera frame, so it is
no latency. The EE tracking error (measured EE against the shaped setpoint) is
recorded on every running tick.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from reflexarc.robot.description import RobotDescription, robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.plan import PlanSampler, Setpoint, check_plan
from reflexarc.robot.rotations import mat_to_quat, nlerp, quat_to_mat, rotation_error
from reflexarc.robot.safety import EventLog, Limits, Mode, SafetyConfig, Supervisor
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import JointCommand, JointState, Plan, frame_ready_ns
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs, set_scheduling
from reflexarc.runtime.stats import Ring

log = logging.getLogger(__name__)

__all__ = [  # the plan and rotation helpers the controller is made of, importable from here
    "ArmKinematics", "ControllerError", "ControllerNode", "PlanSampler", "Setpoint",
    "SetpointShaper", "check_plan", "mat_to_quat", "nlerp", "quat_to_mat", "rotation_error",
    "set_realtime",
]


class ControllerError(ReflexarcError):
    """The controller was given something it cannot use (a bad model, a bad message)."""


# --------------------------------------------------------------------------------------
# The robot model
# --------------------------------------------------------------------------------------


class SetpointShaper:
    """Limits the EE setpoint's speed and acceleration (and its angular speed).

    The shaped setpoint follows the target with its velocity (finite differences of the
    targets, at most ``max_speed``) plus a correction toward it, at most the speed from
    which it can still brake to a stop on it at ``max_accel``; the sum is limited to
    ``max_speed`` and its change to ``max_accel``. A plan within the limits passes
    through unchanged; a step, or a plan faster than allowed, becomes a motion that
    accelerates at most ``max_accel``, cruises at most at ``max_speed`` and stops on the
    target.
    """

    def __init__(
        self, max_speed: float, max_accel: float, max_rot_speed: float,
        box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.vmax, self.amax, self.wmax = max_speed, max_accel, max_rot_speed
        self.box = box  # (lo (3,), hi (3,)): the setpoint never leaves it
        self.pos: np.ndarray | None = None
        self.quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.vel = np.zeros(3)
        self.target = np.zeros(3)

    def reset(self, sp: Setpoint) -> None:
        """Start at rest at ``sp``."""
        self.pos, self.quat, self.vel = sp.pos.copy(), sp.quat.copy(), np.zeros(3)
        self.target = sp.pos.copy()

    def stopping_point(self, gripper: float) -> Setpoint:
        """Where the setpoint comes to rest braking at ``max_accel`` from now."""
        if self.pos is None:
            raise ControllerError("the setpoint shaper has not started")
        speed = _norm(self.vel)
        pos = self.pos + self.vel * (speed / (2.0 * self.amax))
        return Setpoint(pos, self.quat.copy(), gripper)

    def __call__(self, sp: Setpoint, dt: float) -> Setpoint:
        if self.pos is None:
            self.reset(sp)
            return sp
        # 3-vectors as Python floats: a dozen numpy calls on (3,) arrays cost more than the math
        vmax, amax = self.vmax, self.amax
        tx, ty, tz = sp.pos.tolist()
        ox, oy, oz = self.target.tolist()
        px, py, pz = self.pos.tolist()
        vx, vy, vz = self.vel.tolist()
        ux, uy, uz = _clip3((tx - ox) / dt, (ty - oy) / dt, (tz - oz) / dt, vmax)  # target's velocity
        self.target = sp.pos.copy()
        ex, ey, ez = tx - (px + ux * dt), ty - (py + uy * dt), tz - (pz + uz * dt)
        dist = math.sqrt(ex * ex + ey * ey + ez * ez)  # error left after the target's own motion
        h = 0.5 * amax * dt  # discrete braking: v^2 / 2a + v dt / 2 <= dist
        cap = min(vmax, math.sqrt(h * h + 2.0 * amax * dist) - h)
        k = 1.0 / dt if dist / dt <= cap else cap / dist
        gx, gy, gz = _clip3(ux + ex * k, uy + ey * k, uz + ez * k, vmax)
        dx, dy, dz = _clip3(gx - vx, gy - vy, gz - vz, amax * dt)
        vx, vy, vz = vx + dx, vy + dy, vz + dz
        self.vel = np.array((vx, vy, vz))
        self.pos = np.array((px + vx * dt, py + vy * dt, pz + vz * dt))
        if self.box is not None:  # braking past a target on a face of the box: stop on it
            lo, hi = self.box
            out = (self.pos < lo) | (self.pos > hi)
            if out.any():
                self.pos = np.clip(self.pos, lo, hi)
                self.vel[out] = 0.0
        # orientation: at most wmax * dt per tick toward the target
        dot = float(sp.quat @ self.quat)
        q = sp.quat if dot >= 0.0 else -sp.quat
        angle = 2.0 * math.acos(min(1.0, abs(dot)))
        step = self.wmax * dt
        self.quat = q.copy() if angle <= step else nlerp(self.quat, q, step / angle)
        return Setpoint(self.pos.copy(), self.quat, sp.gripper)


def _norm(v: np.ndarray) -> float:
    return math.sqrt(float(v @ v))


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = _norm(v)
    return v if n <= limit else v * (limit / n)


def _clip3(x: float, y: float, z: float, limit: float) -> tuple[float, float, float]:
    """(x, y, z) scaled down to norm ``limit`` if longer."""
    n = math.sqrt(x * x + y * y + z * z)
    if n <= limit:
        return x, y, z
    s = limit / n
    return x * s, y * s, z * s


# --------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------


def set_realtime(priority: int, name: str = "", pid: int = 0) -> bool:
    """Put process ``pid`` (0: this one) under SCHED_FIFO at ``priority``; False (one
    warning) when the OS refuses (:func:`reflexarc.runtime.node.set_scheduling`)."""
    return set_scheduling("fifo", priority, name, pid) == "fifo"


class ControllerNode(Node):
    """Plans + joint state in, torque-mode joint commands out, at 1 kHz (module docstring)."""

    @dataclass
    class Config:
        impedance: str = choice("inertia", "inertia", "diagonal")
        omega: float = bounded(30.0, 1.0, 200.0)  # inertia: natural frequency, rad/s
        zeta: float = bounded(1.0, 0.1, 5.0)  # inertia: damping ratio
        robot: str = "panda"  # the arm (reflexarc.robot.description): shapes, limits, defaults
        # diagonal: N m/rad, N m s/rad, one per joint; empty: the robot's (the scenes' joint PD)
        kp: list[float] = field(default_factory=list)
        kd: list[float] = field(default_factory=list)
        ik_gain: float = bounded(0.1, 0.01, 1.0)  # share of the task error corrected per tick
        damping: float = bounded(0.05, 1e-4, 1.0)  # DLS damping d (m)
        rot_weight: float = bounded(0.5, 0.0, 10.0)  # m/rad: orientation error weight
        nullspace_gain: float = bounded(1.0, 0.0, 100.0)  # 1/s pull toward ``rest``
        rest: list[float] = field(default_factory=list)  # rad, one per joint; empty: home
        blend_s: float = bounded(0.05, 0.0, 5.0)  # transition to a new plan
        # EE setpoint limits, at most the robot's (ee_speed_max ...; Panda: 1.7, 13, 2.5)
        max_speed: float = bounded(0.5, 0.01, None)  # m/s
        max_accel: float = bounded(2.0, 0.1, None)  # m/s^2
        max_rot_speed: float = bounded(2.5, 0.1, None)  # rad/s
        coriolis: bool = True  # compensate Coriolis/centrifugal torques too
        accel_ff_s: float = bounded(0.02, 0.0, 1.0)  # inertia: acceleration feedforward,
        # low-passed with this time constant (s); 0: none
        jump_rad: float = bounded(0.1, 0.001, None)  # a state this far from the last: start over
        # m/s^2: how hard the setpoint brakes when holding begins (no fresh plan, e-stop,
        # overspeed); the Panda's EE may decelerate at 13, and the joints' acceleration
        # limits (accel_guard) bound it too
        brake_accel: float = bounded(12.0, 0.1, 13.0)
        # inertia: no joint is driven faster than this share of its velocity limit (the
        # commanded joint acceleration is capped so the speed reaches it within speed_horizon_s)
        speed_guard: float = bounded(0.9, 0.1, 1.0)
        # inertia: while holding or stopping, the commanded joint acceleration is at most
        # this share of the robot's acceleration limits (the model's error takes the rest)
        accel_guard: float = bounded(0.9, 0.1, 1.0)
        speed_horizon_s: float = bounded(0.02, 0.001, 1.0)
        # rad: the reference stays within this of the measured pose per joint (after the
        # plant held the arm, the controller does not yank it back to a reference that ran on)
        track_max_rad: float = bounded(0.15, 0.01, 10.0)
        safety: SafetyConfig = field(default_factory=SafetyConfig)

        def validate(self) -> None:
            robot = robot_description(self.robot)
            n = robot.dof
            for key, top in (("max_speed", robot.ee_speed_max), ("max_accel", robot.ee_accel_max),
                             ("max_rot_speed", robot.ee_rot_speed_max)):
                if getattr(self, key) > top:
                    raise ConfigError(key, f"got {getattr(self, key)}; at most {top}, the "
                                      f"{self.robot}'s limit")
            for key in ("kp", "kd", "rest"):
                v = np.asarray(getattr(self, key), dtype=float)
                if v.size and (v.shape != (n,) or not np.all(np.isfinite(v))):
                    raise ConfigError(key, f"needs {n} finite values (one per joint of "
                                      f"{self.robot}) or none, got {getattr(self, key)}")
            if np.any(np.asarray(self.kp) < 0) or np.any(np.asarray(self.kd) < 0):
                raise ConfigError("kp", "gains must be >= 0")
            if self.safety.torque_rate > robot.dtau_max:
                raise ConfigError("safety.torque_rate", f"got {self.safety.torque_rate}; at "
                                  f"most {robot.dtau_max}, the {self.robot}'s limit")

    subscribes = {"joint_state": "latest", "plan": "all", "estop": "all"}
    publishes = ("joint_command", "safety")
    # realtime: SCHED_FIFO unless the graph says otherwise (graph.nodes.NAME.sched): a 1 kHz
    # loop that costs tens of microseconds a tick, woken on time whatever else runs
    default_sched = "fifo"

    def __init__(self, ctx: NodeContext, cfg: Config, model: mujoco.MjModel | None = None) -> None:
        super().__init__(ctx, cfg)
        self.robot: RobotDescription = robot_description(cfg.robot)
        self.arm = ArmKinematics(self.robot, model)
        n = self.n = self.robot.dof
        self.kp = np.asarray(cfg.kp, dtype=float) if cfg.kp else self.robot.kp_gains
        self.kd = np.asarray(cfg.kd, dtype=float) if cfg.kd else self.robot.kd_gains
        self.rest = np.asarray(cfg.rest, dtype=float) if cfg.rest else self.robot.home_q
        self.dt_nom = 1.0 / ctx.rate_hz
        self.events = EventLog(ctx.name, cfg.safety.rearm_s)
        self.supervisor = Supervisor(cfg.safety, self.events, realtime=ctx.clock == "realtime")
        self.limits = Limits(cfg.safety, self.events, self.robot)
        self.sampler = PlanSampler(cfg.blend_s)
        self.shaper = SetpointShaper(cfg.max_speed, cfg.max_accel, cfg.max_rot_speed,
                                     (self.limits.ws_lo, self.limits.ws_hi))
        self.v_guard = self.limits.dq_max / cfg.safety.velocity_scale * cfg.speed_guard  # rad/s
        self.a_guard = self.robot.ddq_limits * cfg.accel_guard  # rad/s^2
        self.eye6 = np.eye(6) * cfg.damping**2
        self._rhs = np.zeros((6, 2))  # _ik: the task step and the null-space pull, weighted
        self._jw = np.zeros((6, self.n))  # _ik: the weighted Jacobian
        self.weights = np.array([1.0, 1.0, 1.0, cfg.rot_weight, cfg.rot_weight, cfg.rot_weight])
        self._w_col = self.weights[:, None].copy()  # (6, 1)
        # state
        self.mode = Mode.WAITING
        self.q_r = np.zeros(n)  # joint reference
        self.dq_r = np.zeros(n)
        self.ddq_r = np.zeros(n)
        self.tau_prev: np.ndarray | None = None
        self.last_sp: Setpoint | None = None  # shaped setpoint of the last tick
        self.last_target: Setpoint | None = None  # sampled (unshaped) setpoint of the last tick
        self.target_vel = np.zeros(3)  # its velocity (at most max_speed), m/s
        self.grip_cmd: float | None = None  # last gripper command sent
        self.plan_stamp: int | None = None  # the newest plan's stamp
        self.unsent: Plan | None = None  # a new plan, until a command first applies it
        self.prev_ns: int | None = None
        self.state_seq = -1
        self.js: JointState | None = None  # newest valid joint state
        self.jump = 0.0  # > 0: the newest state jumped this far (rad) from the previous one
        self.q_fault: np.ndarray | None = None
        # figures
        self.plan_age_ms = Ring(1 << 17)  # every running tick: now - plan.stamp_ns
        self.f2c_ms = Ring(1 << 17)  # once per plan: frame ready -> first command applying it
        self.f2c_render_ms = Ring(1 << 17)  # the same from the frame's stamp (render included)
        self.err_mm = Ring(1 << 17)
        self.state_age_ms = Ring(1 << 17)
        self.compute_us = Ring(1 << 17)
        self.state_jumps = 0
        self.mode_ticks = dict.fromkeys((m.value for m in Mode), 0)
        self.plans = 0
        self.plans_rejected = 0
        self.plans_repeated = 0  # plans not newer than the last one taken (keepalives)
        self.states_rejected = 0
        self.overspeed_holds = 0

    # -- inputs ----------------------------------------------------------------------------

    def _take_state(self, inbox: Inbox, now_ns: int) -> JointState | None:
        """The newest valid joint state (a new one restarts the state watchdog)."""
        js = inbox.latest("joint_state")
        if js is None or js.seq == self.state_seq:
            return self.js
        self.state_seq = js.seq
        if js.position.shape != (self.n,) or js.velocity.shape != (self.n,) or not (
            np.isfinite(js.position).all() and np.isfinite(js.velocity).all()
        ):
            if self.states_rejected == 0:
                log.warning("%s: dropping joint_state with position %s, velocity %s",
                            self.ctx.name, js.position.shape, js.velocity.shape)
            self.states_rejected += 1
            return self.js
        self.supervisor.state_arrived(now_ns)
        if self.js is not None:
            jump = float(np.abs(js.position - self.js.position).max())
            if jump > self.cfg.jump_rad:
                self.jump = jump
        self.js = js
        return js

    def _take_plans(self, inbox: Inbox, now_ns: int) -> None:
        for plan in inbox.new("plan"):
            why = check_plan(plan)
            if why:
                self.plans_rejected += 1
                self.events.once("invalid_plan", now_ns, why)
                continue
            if self.plan_stamp is not None and plan.stamp_ns <= self.plan_stamp:
                # a keepalive (the last plan resent) or an older one: nothing new, so it
                # neither refreshes the watchdog nor restarts the blend (a planner whose
                # input stopped must not keep the arm on its last plan)
                self.plans_repeated += 1
                continue
            if not self.supervisor.plan_arrived(now_ns):
                continue  # e-stop or fault latched: plans are ignored, not queued
            self.plans += 1
            self.unsent = plan
            self.plan_stamp = plan.stamp_ns
            if self.last_target is not None:
                self.sampler.set_plan(plan, now_ns, self.last_target, self.target_vel)
            else:
                self.sampler.plan = plan  # no state yet: adopted when holding begins

    # -- the tick ------------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        t0 = time.perf_counter_ns()
        out = self._tick(now_ns, inbox)
        self.compute_us.add((time.perf_counter_ns() - t0) / 1e3)
        return out

    def _tick(self, now_ns: int, inbox: Inbox) -> list[tuple[str, Any]]:
        js = self._take_state(inbox, now_ns)
        self.supervisor.estops(inbox.new("estop"), now_ns)
        self._take_plans(inbox, now_ns)
        mode = self.supervisor.update(now_ns)
        dt = self.dt_nom
        if self.prev_ns is not None:
            # the real interval (late ticks happen), within reason
            dt = min(max((now_ns - self.prev_ns) / 1e9, 0.25 * self.dt_nom), 10.0 * self.dt_nom)
        self.prev_ns = now_ns
        out: list[tuple[str, Any]] = []
        if mode == Mode.WAITING or js is None:
            self.mode_ticks[mode.value] += 1
            return out
        q, dq = js.position, js.velocity
        self.state_age_ms.add((now_ns - js.stamp_ns) / 1e6)
        if self.jump:  # teleported (a simulator's reset), or an encoder glitch: start over
            self.events.once("state_jump", now_ns, f"joint state jumped {self.jump:.3f} rad")
            self.jump = 0.0
            self.state_jumps += 1
            if mode == Mode.RUNNING:
                self.supervisor.last_plan_ns = None  # that plan was for the old pose
                mode = self.supervisor.mode = Mode.HOLDING
            if mode != Mode.FAULT:
                self.mode = Mode.WAITING  # re-enter from the measured pose, at rest
        if self.limits.measured(q, dq, now_ns) and self.cfg.safety.overspeed_hold and mode == Mode.RUNNING:
            self.supervisor.last_plan_ns = None  # hold until the next plan
            self.overspeed_holds += 1
            mode = self.supervisor.mode = Mode.HOLDING
        if mode != self.mode:
            self._enter(mode, q, dq, js.gripper)
        self.mode = mode
        self.mode_ticks[mode.value] += 1

        if mode == Mode.FAULT:
            cmd = JointCommand(
                stamp_ns=js.stamp_ns, mode="position",
                position=q.copy() if self.q_fault is None else self.q_fault,
                velocity=np.zeros(self.n), effort=np.zeros(self.n),
                gripper=self._gripper(js.gripper),
            )
            out.append(("joint_command", cmd))
            out.extend(("safety", e) for e in self.events.take())
            return out

        # running: the plan; holding, estop: the stopping point taken when they began
        target = self.sampler.sample(now_ns)
        if self.last_target is not None:
            self.target_vel = _clip_norm((target.pos - self.last_target.pos) / dt, self.cfg.max_speed)
        self.last_target = target
        pos = self.limits.workspace(target.pos, now_ns)
        sp = self.shaper(Setpoint(pos, target.quat, target.gripper), dt)
        q_next = self._ik(sp, dt, null=mode == Mode.RUNNING)
        q_next = self.limits.reference(self.q_r, self.dq_r, q_next, dt, now_ns)
        np.clip(q_next, q - self.cfg.track_max_rad, q + self.cfg.track_max_rad, out=q_next)
        dq_next = (q_next - self.q_r) / dt
        if self.cfg.accel_ff_s > 0:  # low-passed: finite differences of IK steps are noisy
            alpha = dt / (self.cfg.accel_ff_s + dt)
            self.ddq_r += alpha * ((dq_next - self.dq_r) / dt - self.ddq_r)
        self.dq_r = dq_next
        self.q_r = q_next
        if mode == Mode.RUNNING:
            stamp = self.plan_stamp or 0  # set: running needs a plan
            self.plan_age_ms.add((now_ns - stamp) / 1e6)
        else:
            stamp = js.stamp_ns
        self.last_sp = sp
        self.grip_cmd = sp.gripper

        bias = self.arm.bias(q, dq if self.cfg.coriolis else None, js.gripper)
        if mode == Mode.RUNNING:
            self.err_mm.add(1e3 * _norm(self.arm.measured_ee() - sp.pos))
        if self.cfg.impedance == "inertia":
            w = self.cfg.omega
            acc = w * w * (self.q_r - q) + 2.0 * self.cfg.zeta * w * (self.dq_r - dq) + self.ddq_r
            # a speed barrier: no joint accelerated past speed_guard of its limit
            np.clip(acc, (-self.v_guard - dq) / self.cfg.speed_horizon_s,
                    (self.v_guard - dq) / self.cfg.speed_horizon_s, out=acc)
            if mode != Mode.RUNNING:  # a stop is a motion: within accel_guard of the limits
                # (not while running: pushing a block needs a force no acceleration shows)
                np.clip(acc, -self.a_guard, self.a_guard, out=acc)
            tau = self.arm.mass() @ acc + bias
        else:
            tau = self.kp * (self.q_r - q) + self.kd * (self.dq_r - dq) + bias
        tau = self.limits.torque(tau, self.tau_prev, dt, now_ns)
        self.tau_prev = tau
        cmd = JointCommand(
            stamp_ns=stamp, mode="torque", position=self.q_r.copy(), velocity=self.dq_r.copy(),
            effort=tau, gripper=float(sp.gripper),
        )
        out.append(("joint_command", cmd))
        if mode == Mode.RUNNING and self.unsent is not None and self.unsent.stamp_ns == stamp:
            # the first command from this plan: in realtime it leaves now, after the
            # compute; in lockstep the step takes no simulated time
            sent_ns = time.monotonic_ns() if self.ctx.clock == "realtime" else now_ns
            self.f2c_render_ms.add((sent_ns - stamp) / 1e6)
            self.f2c_ms.add((sent_ns - frame_ready_ns(self.unsent)) / 1e6)
            self.unsent = None
        out.extend(("safety", e) for e in self.events.take())
        return out

    def _gripper(self, opening: float) -> float:
        """The gripper command to keep: the last one sent, else the measured opening."""
        if self.grip_cmd is not None:
            return self.grip_cmd
        if self.robot.gripper is None:
            return 0.0
        return self.robot.gripper.command(opening)

    def _enter(self, mode: Mode, q: np.ndarray, dq: np.ndarray, opening: float) -> None:
        """Mode transitions: (re)start from the measured pose, or stop where braking ends."""
        if mode == Mode.FAULT:
            self.q_fault = q.copy()
            self.tau_prev = None
            return
        if self.mode in (Mode.WAITING, Mode.FAULT):  # at rest at the measured pose
            pos, rot = self.arm.pose(q)
            start = Setpoint(pos, mat_to_quat(rot), self._gripper(opening))
            self.q_r = q.copy()
            self.dq_r = np.zeros(self.n)
            self.ddq_r = np.zeros(self.n)
            self.tau_prev = None
            pending = self.sampler.plan if mode == Mode.RUNNING else None
            self.sampler.hold(start)
            self.shaper.reset(start)
            self.last_sp = self.last_target = start
            self.target_vel = np.zeros(3)
            if pending is not None:  # a plan that came before the first state
                self.sampler.set_plan(pending, self.prev_ns or 0, start, self.target_vel)
        elif mode in (Mode.HOLDING, Mode.ESTOP):  # brake, hold where it stops
            if self.mode == Mode.RUNNING:
                self._from_measured(q, dq)
            self.shaper.amax = self.cfg.brake_accel
            stop = self.shaper.stopping_point(self._gripper(opening))
            self.sampler.hold(stop)
            self.shaper.target = stop.pos.copy()  # no jump of the target: no feedforward
            self.last_target = stop
        if mode == Mode.RUNNING:
            self.shaper.amax = self.cfg.max_accel

    def _from_measured(self, q: np.ndarray, dq: np.ndarray) -> None:
        """Brake from where the arm is and how it moves, not from the setpoint it lagged:
        the shaper restarts at the measured EE pose and velocity, the joint reference at
        the measured joints, so the stop is the arm's own braking distance and no lag is
        caught up after it."""
        pos, rot, jac = self.arm.pose_jacobian(q)
        self.shaper.pos = pos.copy()
        self.shaper.quat = mat_to_quat(rot)
        self.shaper.vel = _clip_norm(jac[:3] @ dq, self.cfg.max_speed)  # (3,) m/s
        self.shaper.target = self.shaper.pos.copy()
        self.q_r = q.copy()
        self.dq_r = dq.copy()
        self.ddq_r = np.zeros(self.n)

    def _ik(self, sp: Setpoint, dt: float, null: bool) -> np.ndarray:
        """One damped-least-squares step of the reference toward ``sp`` (with the null-space
        pull toward the rest posture when ``null``). (n,)

        ``dq = Jw^T A^-1 (w step) + N v`` with ``A = Jw Jw^T + d^2 I`` and the null-space
        projector ``N = I - Jw^T A^-1 Jw``: both right-hand sides in one solve (6, 2), no
        (n, 6) pseudo-inverse or (n, n) projector formed."""
        pos, rot, jac = self.arm.pose_jacobian(self.q_r)
        # the setpoint's own motion this tick (fed forward), plus a share of what is left
        rhs = self._rhs  # (6, 2)
        move = self.shaper.vel * dt
        g = self.cfg.ik_gain
        rhs[:3, 0] = move + g * (sp.pos - pos - move)
        rhs[3:, 0] = g * rotation_error(rot, quat_to_mat(sp.quat))
        rhs[:, 0] *= self.weights
        jw = np.multiply(jac, self._w_col, out=self._jw)  # (6, n)
        a = jw @ jw.T
        a += self.eye6
        if null and self.cfg.nullspace_gain > 0:
            v = (self.cfg.nullspace_gain * self.dt_nom) * (self.rest - self.q_r)  # (n,)
            rhs[:, 1] = jw @ v
            y = np.linalg.solve(a, rhs)  # (6, 2)
            return self.q_r + jw.T @ (y[:, 0] - y[:, 1]) + v
        return self.q_r + jw.T @ np.linalg.solve(a, rhs[:, 0])

    # -- reporting ---------------------------------------------------------------------------------

    def state(self) -> str:
        return self.mode.value

    def summary(self) -> dict[str, Any]:
        age = self.plan_age_ms.percentiles([50, 99])
        f2c = self.f2c_ms.percentiles([50, 99])
        f2c_render = self.f2c_render_ms.percentiles([50, 99])
        err = self.err_mm.percentiles([50, 99, 100])
        st_age = self.state_age_ms.percentiles([50, 99])
        comp = self.compute_us.percentiles([50, 99])
        return {
            "frame_to_command_p50_ms": f2c[0],
            "frame_to_command_p99_ms": f2c[1],
            "frame_to_command_samples": self.f2c_ms.n,
            "frame_to_command_with_render_p50_ms": f2c_render[0],
            "frame_to_command_with_render_p99_ms": f2c_render[1],
            "plan_age_p50_ms": age[0],
            "plan_age_p99_ms": age[1],
            "plan_age_samples": self.plan_age_ms.n,
            "state_age_p50_ms": st_age[0],
            "state_age_p99_ms": st_age[1],
            "state_jumps": self.state_jumps,
            "compute_p50_us": comp[0],
            "compute_p99_us": comp[1],
            "track_err_p50_mm": err[0],
            "track_err_p99_mm": err[1],
            "track_err_max_mm": err[2],
            "plans": self.plans,
            "plans_rejected": self.plans_rejected,
            "plans_repeated": self.plans_repeated,
            "states_rejected": self.states_rejected,
            "overspeed_holds": self.overspeed_holds,
            "max_state_gap_ms": self.supervisor.max_state_gap_ns / 1e6,
            "mode_ticks": dict(self.mode_ticks),
            "final_mode": self.mode.value,
            **self.events.summary(),
        }
