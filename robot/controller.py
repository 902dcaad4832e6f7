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

Steps 1-4 cost tens of microseconds a tick: MuJoCo's calls for the tick are made in one
go (:meth:`ArmKinematics.update`, on views taken once), and the arithmetic of steps 1-4 runs
in compiled kernels (:mod:`reflexarc.robot.control_kernel`: numba, cached on disk; the numpy
twin, ``kernel: numpy``, gives the same commands) on buffers made once. The summary's
``compute_tracking_p50_us``/``_p99_us`` is the step's cost on the ticks that ran them.
In realtime the node runs SCHED_FIFO by default (docs/liveness.md, "Scheduling").

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

from reflexarc.robot import control_kernel as ck
from reflexarc.robot.description import RobotDescription, robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.plan import PlanSampler, Setpoint, check_plan
from reflexarc.robot.rotations import mat_to_quat, nlerp, quat_to_mat, rotation_error
from reflexarc.robot.safety import EventLog, Limits, Mode, SafetyConfig, Supervisor
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import JointCommand, JointState, Plan, frame_ready_ns, maker
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs, set_scheduling
from reflexarc.runtime.stats import Ring

log = logging.getLogger(__name__)

__all__ = [  # the plan and rotation helpers the controller is made of, importable from here
    "ArmKinematics", "ControllerError", "ControllerNode", "PlanSampler", "Setpoint",
    "SetpointShaper", "check_plan", "mat_to_quat", "nlerp", "quat_to_mat", "rotation_error",
    "set_realtime",
]


_clock = time.perf_counter_ns
# JointCommand(seq, stamp_ns, mode, position, velocity, effort, gripper), positional: the
# dataclass's keyword __init__ costs more than the rest of the command's making
_command = maker(JointCommand)

# the modes, looked up once: an Enum member's lookup on its class costs ~0.3 us, a dozen a tick
_WAITING, _RUNNING, _FAULT = Mode.WAITING, Mode.RUNNING, Mode.FAULT

# the parts of a tick the profile times (Config.profile), in order
PARTS = ("state", "mode", "sample", "mujoco", "kernel", "command")


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

    Its state is one array, ``state`` (13,): position, velocity, last target, quaternion
    (``pos``, ``vel``, ``target``, ``quat`` are views of it), advanced in place by
    :func:`reflexarc.robot.control_kernel.shape_numpy` here and by the controller's kernel.
    """

    def __init__(
        self, max_speed: float, max_accel: float, max_rot_speed: float,
        box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.vmax, self.amax, self.wmax = max_speed, max_accel, max_rot_speed
        # (lo (3,), hi (3,)): the setpoint never leaves it
        self.box = box if box is not None else (np.full(3, -np.inf), np.full(3, np.inf))
        self.state = np.zeros(13)
        self.state[ck.SH_QUAT] = (1.0, 0.0, 0.0, 0.0)
        self.started = False

    # views of ``state``; assigning one writes into it
    pos = property(lambda self: self.state[ck.SH_POS],
                   lambda self, v: self.state.__setitem__(ck.SH_POS, v))
    vel = property(lambda self: self.state[ck.SH_VEL],
                   lambda self, v: self.state.__setitem__(ck.SH_VEL, v))
    target = property(lambda self: self.state[ck.SH_TARGET],
                      lambda self, v: self.state.__setitem__(ck.SH_TARGET, v))
    quat = property(lambda self: self.state[ck.SH_QUAT],
                    lambda self, v: self.state.__setitem__(ck.SH_QUAT, v))

    def reset(self, sp: Setpoint) -> None:
        """Start at rest at ``sp``."""
        self.pos[:], self.quat[:], self.vel[:] = sp.pos, sp.quat, 0.0
        self.target[:] = sp.pos
        self.started = True

    def stopping_point(self, gripper: float) -> Setpoint:
        """Where the setpoint comes to rest braking at ``max_accel`` from now."""
        if not self.started:
            raise ControllerError("the setpoint shaper has not started")
        speed = _norm(self.vel)
        pos = self.pos + self.vel * (speed / (2.0 * self.amax))
        return Setpoint(pos, self.quat.copy(), gripper)

    def __call__(self, sp: Setpoint, dt: float) -> Setpoint:
        if not self.started:
            self.reset(sp)
            return sp
        ck.shape_numpy(self.state, sp.pos, sp.quat, self.vmax, self.amax, self.wmax,
                       self.box[0], self.box[1], dt)
        return Setpoint(self.pos.copy(), self.quat.copy(), sp.gripper)


def _norm(v: np.ndarray) -> float:
    return math.sqrt(float(v @ v))


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
        # the plan-age speed governor: as the plan ages toward safety.plan_timeout_s, the
        # setpoint's speed cap falls at most at governor_accel
        # (m/s^2; less where the joints could not follow) to watchdog_speed (m/s) when the
        # watchdog fires; a plan refreshed in time never meets it (docs/safety.md, "Holds")
        watchdog_speed: float = bounded(0.07, 0.01, None)
        governor_accel: float = bounded(2.0, 0.1, 13.0)
        # inertia: no joint is driven faster than this share of its velocity limit (the
        # commanded joint acceleration is capped so the speed reaches it within speed_horizon_s)
        speed_guard: float = bounded(0.85, 0.1, 1.0)
        # inertia: while holding or stopping, the commanded joint acceleration is at most
        # this share of the robot's acceleration limits (the model's error takes the rest)
        accel_guard: float = bounded(0.9, 0.1, 1.0)
        speed_horizon_s: float = bounded(0.02, 0.001, 1.0)
        # rad: the reference stays within this of the measured pose per joint (after the
        # plant held the arm, the controller does not yank it back to a reference that ran on)
        track_max_rad: float = bounded(0.15, 0.01, 10.0)
        # the tick's arithmetic: numba (compiled, cached on disk), numpy (the reference), or
        # auto (numba where installed); both give the same commands
        kernel: str = choice("auto", "auto", "numba", "numpy")
        # time each part of the tick (summary ``step_parts``: p50/p99 in us of taking the
        # state, the plans and the mode, sampling the plan, MuJoCo, the kernel, the
        # command); off by default: the clock reads cost a few microseconds a tick
        profile: bool = False
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
        # the kernel's buffers (reflexarc.robot.control_kernel), made once: a tick allocates none
        self.kernel_name, self.kernel = ck.kernel(cfg.kernel)
        self.v_guard = self.limits.dq_max / cfg.safety.velocity_scale * cfg.speed_guard  # rad/s
        self.a_guard = self.robot.ddq_limits * cfg.accel_guard  # rad/s^2
        lim = self._lim = np.zeros((ck.NLIM, n))
        lim[ck.L_QLO], lim[ck.L_QHI] = self.limits.q_lo, self.limits.q_hi
        lim[ck.L_DQMAX], lim[ck.L_DDQMAX] = self.limits.dq_max, self.limits.ddq_max
        lim[ck.L_TAUMAX], lim[ck.L_VGUARD] = self.limits.tau_max, self.v_guard
        lim[ck.L_REST], lim[ck.L_KP], lim[ck.L_KD] = self.rest, self.kp, self.kd
        lim[ck.L_AGUARD] = self.a_guard
        par = self._par = np.zeros(ck.NPAR)
        par[ck.P_DT_NOM] = self.dt_nom
        par[ck.P_INERTIA] = float(cfg.impedance == "inertia")
        par[ck.P_IK_GAIN], par[ck.P_DAMP2] = cfg.ik_gain, cfg.damping**2
        par[ck.P_NULL_GAIN], par[ck.P_TRACK] = cfg.nullspace_gain, cfg.track_max_rad
        par[ck.P_ACCEL_FF], par[ck.P_OMEGA], par[ck.P_ZETA] = cfg.accel_ff_s, cfg.omega, cfg.zeta
        par[ck.P_HORIZON], par[ck.P_TORQUE_RATE] = cfg.speed_horizon_s, cfg.safety.torque_rate
        par[ck.P_MAX_SPEED], par[ck.P_VMAX], par[ck.P_WMAX] = cfg.max_speed, cfg.max_speed, cfg.max_rot_speed
        par[ck.P_WS_LO:ck.P_WS_LO + 3], par[ck.P_WS_HI:ck.P_WS_HI + 3] = self.limits.ws_lo, self.limits.ws_hi
        par[ck.P_W:ck.P_W + 6] = (1.0, 1.0, 1.0, cfg.rot_weight, cfg.rot_weight, cfg.rot_weight)
        self._tgt = np.zeros(13)  # sampled target, last target, target velocity
        self._js = np.zeros((4, n))  # joint reference, its velocity, torque, acceleration
        self._info = np.zeros(ck.I_MASKS + 2 * n)
        # the newest valid joint state (positions, velocities), copied in, and the buffer
        # the next one is checked in
        self._state, self._state_in = np.zeros((2, n)), np.zeros((2, n))
        self._q, self._dq = self._state[0], self._state[1]
        # state
        self.mode = Mode.WAITING
        self.has_tau = False  # tau holds a command sent (the torque rate limit applies)
        self._tgt7 = self._tgt[:7]  # the sampled target: position, quaternion
        self._target_grip = 1.0  # and its gripper
        self._has_target = False  # a target was sampled (last_target)
        self.target_vel = self._tgt[ck.T_VEL]  # its velocity (at most max_speed), m/s (a view)
        self._mlim = np.stack([self.limits.q_min, self.limits.q_max, self.limits.dq_limit])
        compiled = self.kernel_name == "numba"
        self.within = ck.within_limits_numba if compiled else ck.within_limits_numpy
        self.state_check = ck.state_check_numba if compiled else ck.state_check_numpy
        self._coriolis, self._inertia = cfg.coriolis, cfg.impedance == "inertia"  # per tick
        self._mlim_rows = tuple(self._mlim)  # its rows as views, made once
        self._warm_up()
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
        self.compute_us = Ring(1 << 17)  # every tick's step()
        self.compute_track_us = Ring(1 << 17)  # the ticks that tracked a setpoint (the kernel's)
        # profile: the clock at the end of each part of a tracking tick (PARTS), and their
        # durations, one row per tick
        self._marks: list[int] | None = [0] * (len(PARTS) + 1) if cfg.profile else None
        self._parts = np.zeros((1 << 16, len(PARTS)))
        self._parts_n = 0
        self.state_jumps = 0
        # ticks per mode: the finished runs of one mode, and the current run (mode_ticks)
        self._mode_ticks = dict.fromkeys((m.value for m in Mode), 0)
        self._run_mode, self._run_len = Mode.WAITING, 0
        self.plans = 0
        self.plans_rejected = 0
        self.plans_repeated = 0  # plans not newer than the last one taken (keepalives)
        self.states_rejected = 0
        self.overspeed_holds = 0
        self.governed_ticks = 0  # running ticks the plan-age governor slowed
        self._governed = False  # the shaper's speed cap (par P_VMAX) is the governor's
        # the governor looks at plans older than this (ns): from max_speed it can slow to
        # watchdog_speed by the timeout at governor_accel
        self._gov_from_ns = 1e9 * max(0.0, cfg.safety.plan_timeout_s - max(
            0.0, cfg.max_speed - cfg.watchdog_speed) / cfg.governor_accel)

    # -- inputs ----------------------------------------------------------------------------

    def _take_state(self, inbox: Inbox, now_ns: int) -> JointState | None:
        """The newest valid joint state (a new one restarts the state watchdog)."""
        js = inbox.latest("joint_state")
        if js is None or js.seq == self.state_seq:
            return self.js
        self.state_seq = js.seq
        jump = -1.0
        if js.position.shape == (self.n,) and js.velocity.shape == (self.n,):
            new = self._state_in  # copied in: the checks and the kernels read own buffers
            new[0], new[1] = js.position, js.velocity
            jump = self.state_check(new, self._state[0], self.js is None)
        if jump < 0.0:  # wrong shape, or not finite
            if self.states_rejected == 0:
                log.warning("%s: dropping joint_state with position %s, velocity %s",
                            self.ctx.name, js.position.shape, js.velocity.shape)
            self.states_rejected += 1
            return self.js
        self.supervisor.state_arrived(now_ns)
        if jump > self.cfg.jump_rad:
            self.jump = jump
        self._state, self._state_in = self._state_in, self._state
        self._q, self._dq = self._state[0], self._state[1]
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
                self.sampler.set_plan(plan, now_ns, self.last_target, self.target_vel.copy())
            else:
                self.sampler.plan = plan  # no state yet: adopted when holding begins

    # -- the tick ------------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        t0 = _clock()
        marks = self._marks
        if marks is not None:
            marks[0] = t0
        out = self._tick(now_ns, inbox)
        t1 = _clock()
        us = (t1 - t0) / 1e3
        self.compute_us.add(us)
        if self.has_tau:  # running, holding, estop: not waiting, not a fault's hold
            self.compute_track_us.add(us)
            if marks is not None and marks[5] >= t0:  # the kernel ran: every part marked
                marks[6] = t1
                self._parts[self._parts_n % len(self._parts)] = np.diff(marks) / 1e3
                self._parts_n += 1
        return out

    def _tick(self, now_ns: int, inbox: Inbox) -> list[tuple[str, Any]]:
        marks = self._marks
        js = self._take_state(inbox, now_ns)
        if marks is not None:
            marks[1] = _clock()
        estops = inbox.new("estop")
        if estops:  # most ticks bring no e-stop and no plan: no call for them
            self.supervisor.estops(estops, now_ns)
        if inbox.new("plan"):
            self._take_plans(inbox, now_ns)
        mode = self.supervisor.update(now_ns)
        dt = self.dt_nom
        if self.prev_ns is not None:
            # the real interval (late ticks happen), within reason
            dt = min(max((now_ns - self.prev_ns) / 1e9, 0.25 * self.dt_nom), 10.0 * self.dt_nom)
        self.prev_ns = now_ns
        out: list[tuple[str, Any]] = []
        if mode is _WAITING or js is None:
            self._count(mode)
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
        # the check in full (its events) only when a limit is passed
        q_min, q_max, dq_lim = self._mlim_rows
        overspeed = not self.within(self._q, self._dq, q_min, q_max, dq_lim) and \
            self.limits.measured(q, dq, now_ns)
        if overspeed and self.cfg.safety.overspeed_hold and mode == Mode.RUNNING:
            self.supervisor.last_plan_ns = None  # hold until the next plan
            self.overspeed_holds += 1
            mode = self.supervisor.mode = Mode.HOLDING
        if mode is not self.mode:
            self._enter(mode, q, dq, js.gripper)
        self.mode = mode
        if mode is self._run_mode:  # _count, inline: most ticks continue the run
            self._run_len += 1
        else:
            self._count(mode)

        if mode is _FAULT:
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
        tgt, par, info = self._tgt, self._par, self._info
        if marks is not None:
            marks[2] = _clock()
        self._target_grip = self.sampler.sample_into(now_ns, self._tgt7)
        if marks is not None:
            marks[3] = _clock()
        running = mode is _RUNNING
        par[ck.P_DT], par[ck.P_RUNNING] = dt, running
        par[ck.P_HAS_TAU], par[ck.P_AMAX] = self.has_tau, self.shaper.amax
        # the plan-age governor, only for an aged plan (running: last_plan_ns is set)
        if running and now_ns - self.supervisor.last_plan_ns > self._gov_from_ns:  # type: ignore[operator]
            self._govern(now_ns)
        elif self._governed:
            par[ck.P_VMAX], self._governed = self.cfg.max_speed, False
        arm = self.arm
        arm.update(self.q_r, q, dq if self._coriolis else None, js.gripper, mass=self._inertia)
        if marks is not None:
            marks[4] = _clock()
        clipped = self.kernel(self._q, self._dq, tgt, self.shaper.state, arm.ref_pos, arm.ref_rot,
                              arm._jac, arm._bias, arm._mass, arm.meas_pos, self._js, self._lim,
                              par, info)
        if marks is not None:
            marks[5] = _clock()
        self.has_tau = True
        if clipped:
            self._clip_events(tgt[ck.T_LAST].copy(), now_ns)
        if running:
            stamp = self.plan_stamp or 0  # set: running needs a plan
            self.plan_age_ms.add((now_ns - stamp) / 1e6)
            self.err_mm.add(info[ck.I_ERR])
        else:
            stamp = js.stamp_ns
        self.grip_cmd = grip = self._target_grip
        rows = self._js[:3].copy()  # the command's own arrays: q_r, dq_r, tau
        out.append(("joint_command",
                    _command(0, stamp, "torque", rows[0], rows[1], rows[2], float(grip))))
        if running and self.unsent is not None and self.unsent.stamp_ns == stamp:
            # the first command from this plan: in realtime it leaves now, after the
            # compute; in lockstep the step takes no simulated time
            sent_ns = time.monotonic_ns() if self.ctx.clock == "realtime" else now_ns
            self.f2c_render_ms.add((sent_ns - stamp) / 1e6)
            self.f2c_ms.add((sent_ns - frame_ready_ns(self.unsent)) / 1e6)
            self.unsent = None
        if self.events.pending:
            out.extend(("safety", e) for e in self.events.take())
        return out

    def _govern(self, now_ns: int) -> None:
        """The plan-age speed governor (``watchdog_speed``, ``governor_accel``), for a plan
        older than ``_gov_from_ns`` (0.085 s by default: a 10 Hz plan source in time meets
        it only in the last milliseconds of a cycle, capped near ``max_speed``). The
        shaper's speed is capped at what can still slow to ``watchdog_speed`` by the plan
        timeout, decelerating at ``governor_accel`` or at what the joints can follow
        (:meth:`_brake_accel`), whichever is less: the watchdog's stop then starts slow and
        ends within a few millimetres."""
        cfg, par = self.cfg, self._par
        age = now_ns - (self.supervisor.last_plan_ns or now_ns)
        accel = min(cfg.governor_accel, self._brake_accel(self._dq))
        left_s = (self.supervisor.plan_timeout_ns - age) / 1e9
        cap = min(cfg.max_speed, cfg.watchdog_speed + accel * max(left_s, 0.0))
        par[ck.P_VMAX] = cap
        self._governed = True
        if cap >= cfg.max_speed:
            return
        # the shaper may slow a little faster than the cap falls: a turning target uses
        # some of its acceleration
        par[ck.P_AMAX] = max(self.shaper.amax, 1.5 * accel)
        if cap < _norm(self.shaper.vel):
            self.governed_ticks += 1

    def _clip_events(self, target: np.ndarray, now_ns: int) -> None:
        """The safety events of what the kernel's limits clipped this tick (``_info``)."""
        info, n, log_ = self._info, self.n, self.events
        if info[ck.I_WS]:
            log_.clipped("workspace", now_ns, lambda: f"setpoint {np.round(target, 3).tolist()} clipped")
        if info[ck.I_ACC] > 1.0:
            r = float(info[ck.I_ACC])
            log_.clipped("velocity_limit", now_ns, lambda: f"reference acceleration scaled by {1 / r:.3f}")
        if info[ck.I_SPEED] > 1.0:
            r2 = float(info[ck.I_SPEED])
            log_.clipped("velocity_limit", now_ns, lambda: f"reference speed scaled by {1 / r2:.3f}")
        if info[ck.I_JOINT]:
            joints = np.flatnonzero(info[ck.I_MASKS:ck.I_MASKS + n]) + 1
            log_.clipped("joint_limit", now_ns, lambda: f"reference clipped at joints {joints}")
        if info[ck.I_TORQUE]:
            joints_t = np.flatnonzero(info[ck.I_MASKS + n:ck.I_MASKS + 2 * n]) + 1
            log_.clipped("torque_limit", now_ns, lambda: f"torque clipped at joints {joints_t}")

    def _warm_up(self) -> None:
        """One kernel call on this controller's own buffers, then cleared: numba loads (or
        compiles) its kernel now, not on the first tick."""
        arm = self.arm
        arm.update(self.robot.home_q, self.robot.home_q, np.zeros(self.n), 0.0)
        self.shaper.state[ck.SH_QUAT] = (1.0, 0.0, 0.0, 0.0)
        self._par[ck.P_DT], self._par[ck.P_AMAX] = self.dt_nom, self.shaper.amax
        self._tgt[ck.T_QUAT] = (1.0, 0.0, 0.0, 0.0)
        self.kernel(self._q, self._dq, self._tgt, self.shaper.state, arm.ref_pos, arm.ref_rot,
                    arm._jac, arm._bias, arm._mass, arm.meas_pos, self._js, self._lim, self._par,
                    self._info)
        self.within(self._q, self._dq, self._mlim[0], self._mlim[1], self._mlim[2])
        self.state_check(self._state_in, self._state[0], False)
        if ck.numba is not None:  # the plan sampler's kernel too
            ck.sample_numba(np.zeros((2, 3)), np.zeros((2, 4)) + 0.5, 0, 1, 0, np.zeros(10) + 0.5,
                            0, 1, np.zeros(4), self._tgt7)
        for buf in (self._tgt, self._js, self._info, self.shaper.state):
            buf[...] = 0.0
        self.shaper.state[ck.SH_QUAT] = (1.0, 0.0, 0.0, 0.0)

    def _count(self, mode: Mode) -> None:
        """One tick in ``mode`` (mode_ticks)."""
        if mode is not self._run_mode:
            self._mode_ticks[self._run_mode.value] += self._run_len
            self._run_mode, self._run_len = mode, 0
        self._run_len += 1

    @property
    def mode_ticks(self) -> dict[str, int]:
        """Ticks spent in each mode (by its name)."""
        ticks = dict(self._mode_ticks)
        ticks[self._run_mode.value] += self._run_len
        return ticks

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
            self.has_tau = False
            return
        if self.mode in (Mode.WAITING, Mode.FAULT):  # at rest at the measured pose
            pos, rot = self.arm.pose(q)
            start = Setpoint(pos, mat_to_quat(rot), self._gripper(opening))
            self.q_r[:] = q
            self.dq_r[:] = 0.0
            self.ddq_r[:] = 0.0
            self.has_tau = False
            pending = self.sampler.plan if mode == Mode.RUNNING else None
            self.sampler.hold(start)
            self.shaper.reset(start)
            self.last_target = start
            self.target_vel[:] = 0.0
            if pending is not None:  # a plan that came before the first state
                self.sampler.set_plan(pending, self.prev_ns or 0, start, self.target_vel.copy())
        elif mode in (Mode.HOLDING, Mode.ESTOP):  # brake, hold where it stops
            self.shaper.amax = self.cfg.brake_accel
            if self.mode == Mode.RUNNING:
                self._from_measured(q, dq)
                self.shaper.amax = self._brake_accel(dq)
            stop = self.shaper.stopping_point(self._gripper(opening))
            self.sampler.hold(stop)
            self.shaper.target[:] = stop.pos  # no jump of the target: no feedforward
            self.last_target = stop
        if mode == Mode.RUNNING:
            self.shaper.amax = self.cfg.max_accel

    def _brake_accel(self, dq: np.ndarray) -> float:
        """The EE deceleration (m/s^2) of a stop that every joint can follow within
        ``accel_guard`` of its acceleration limit: the joints stop together in
        ``T = max_k |dq_k| / a_k``, so the EE (straight on, at its measured speed ``v``)
        decelerates at ``v / T``; at most ``brake_accel``. A harder EE brake would ask a
        joint for more than its limit: its reference lags, overshoots the stop and is
        pulled back (docs/safety.md, "Holds")."""
        t_stop = float(np.max(np.abs(dq) / self.a_guard))
        speed = _norm(self.shaper.vel)
        if t_stop <= 0.0 or speed <= 0.0:
            return self.cfg.brake_accel
        return min(self.cfg.brake_accel, max(speed / t_stop, 0.5))

    def _from_measured(self, q: np.ndarray, dq: np.ndarray) -> None:
        """Brake from where the arm is and how it moves, not from the setpoint it lagged:
        the shaper restarts at the measured EE pose and velocity, the joint reference at
        the measured joints, so the stop is the arm's own braking distance and no lag is
        caught up after it."""
        pos, rot, jac = self.arm.pose_jacobian(q)
        sh = self.shaper
        sh.pos[:] = pos
        sh.quat[:] = mat_to_quat(rot)
        v = jac[:3] @ dq  # (3,) m/s
        speed = _norm(v)
        sh.vel[:] = v if speed <= self.cfg.max_speed else v * (self.cfg.max_speed / speed)
        sh.target[:] = sh.pos
        self.q_r[:] = q
        self.dq_r[:] = dq
        self.ddq_r[:] = 0.0

    # the joint reference, its velocity and acceleration, the torque: views of the kernel's
    # buffer (rows of ``_js``); assigning one writes into it
    q_r = property(lambda self: self._js[ck.J_QR],
                   lambda self, v: self._js.__setitem__(ck.J_QR, v))
    dq_r = property(lambda self: self._js[ck.J_DQR],
                    lambda self, v: self._js.__setitem__(ck.J_DQR, v))
    ddq_r = property(lambda self: self._js[ck.J_DDQR],
                     lambda self, v: self._js.__setitem__(ck.J_DDQR, v))
    tau = property(lambda self: self._js[ck.J_TAU])

    @property
    def last_target(self) -> Setpoint | None:
        """The sampled (unshaped) setpoint of the last tick (None before the first);
        assigning one makes it the origin of the next blend and target velocity."""
        if not self._has_target:
            return None
        tgt = self._tgt
        return Setpoint(tgt[ck.T_LAST].copy(), tgt[ck.T_QUAT].copy(), self._target_grip)

    @last_target.setter
    def last_target(self, sp: Setpoint) -> None:
        self._tgt[ck.T_LAST], self._tgt[ck.T_QUAT] = sp.pos, sp.quat
        self._target_grip, self._has_target = sp.gripper, True

    @property
    def last_sp(self) -> Setpoint | None:
        """The shaped setpoint of the last tick (None before the first)."""
        if not self.shaper.started:
            return None
        return Setpoint(self.shaper.pos.copy(), self.shaper.quat.copy(), self._gripper(0.0))

    # -- reporting ---------------------------------------------------------------------------------

    def state(self) -> str:
        return self.mode.value

    def _parts_summary(self) -> dict[str, list[float]]:
        """part -> [p50, p99] us over the profiled tracking ticks (the last 65536)."""
        k = min(self._parts_n, len(self._parts))
        if k == 0:
            return {}
        pct = np.percentile(self._parts[:k], [50, 99], axis=0)
        return {name: [round(float(pct[0, i]), 2), round(float(pct[1, i]), 2)]
                for i, name in enumerate(PARTS)}

    def summary(self) -> dict[str, Any]:
        age = self.plan_age_ms.percentiles([50, 99])
        f2c = self.f2c_ms.percentiles([50, 99])
        f2c_render = self.f2c_render_ms.percentiles([50, 99])
        err = self.err_mm.percentiles([50, 99, 100])
        st_age = self.state_age_ms.percentiles([50, 99])
        comp = self.compute_us.percentiles([50, 99])
        comp_track = self.compute_track_us.percentiles([50, 99])
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
            "compute_tracking_p50_us": comp_track[0],  # running, holding, estop ticks only
            "compute_tracking_p99_us": comp_track[1],
            "compute_tracking_ticks": self.compute_track_us.n,
            "kernel": self.kernel_name,
            **({"step_parts": self._parts_summary()} if self._marks is not None else {}),
            "track_err_p50_mm": err[0],
            "track_err_p99_mm": err[1],
            "track_err_max_mm": err[2],
            "plans": self.plans,
            "plans_rejected": self.plans_rejected,
            "plans_repeated": self.plans_repeated,
            "states_rejected": self.states_rejected,
            "overspeed_holds": self.overspeed_holds,
            "governed_ticks": self.governed_ticks,
            "max_state_gap_ms": self.supervisor.max_state_gap_ns / 1e6,
            "mode_ticks": self.mode_ticks,
            "final_mode": self.mode.value,
            **self.events.summary(),
        }
