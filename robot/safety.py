"""The safety layer of the low-level controller: limits, workspace, watchdogs, e-stop.

Two parts, both plain objects driven by the controller once per tick (no I/O):

- :class:`Supervisor` decides the controller's :class:`Mode` from what arrived and when:
  no JointState yet -> ``waiting``; a fresh Plan -> ``running``; no fresh Plan within
  ``plan_timeout_s`` -> ``holding`` (hold the current pose); no JointState within
  ``state_timeout_s`` -> ``fault`` (safe stop, latched); an engaged EStop -> ``estop``
  (latched). Both latches are released only by an explicit ``EStop(engage=False)`` signed
  by the operator (:mod:`reflexarc.robot.authority`; any other release is refused and
  counted as ``release_refused``), and a fault only while the state stream is fresh again. After a release the controller
  holds until a Plan arrives that is newer than the release.
- :class:`Limits` clips what the controller commands: the EE setpoint into the workspace
  box, the joint reference into the position limits (less a margin) and under the
  velocity limits, the torque under the effort and effort-rate limits; it also checks
  the measured joint state against the limits.

Every intervention is a :class:`reflexarc.runtime.msgs.SafetyEvent` (published on ``safety`` by the
controller) and is counted. A limit that clips on many consecutive ticks is one event
(it is re-armed once it has not clipped for ``rearm_s``); ``ticks`` counts every tick
that clipped. Timeouts, e-stops and resets are one event each.

Times are the controller's clock (``now_ns`` of its steps: wall-clock monotonic in
realtime, simulated in lockstep), and "arrived" means first seen by a step, so the
watchdogs never compare two hosts' clocks.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc.robot.authority import AuthorityError, ReleaseCheck
from reflexarc.robot.description import RobotDescription, robot_description
from reflexarc.runtime.config import bounded
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EStop, SafetyEvent

KINDS = (
    "joint_limit",
    "velocity_limit",
    "torque_limit",
    "workspace",
    "plan_timeout",
    "state_timeout",
    "estop",
    "reset",
    "invalid_plan",
    "state_jump",
    "release_refused",
)
"""Kinds of SafetyEvent this module emits."""


@dataclass
class SafetyConfig:
    """Limits and timeouts of the safety layer. The joint limits are the robot's
    (:class:`~reflexarc.robot.description.RobotDescription`, given to :class:`Limits`), the
    workspace box too unless set here."""

    # no fresh Plan for this long (its age, whatever is left of it) -> brake and hold
    plan_timeout_s: float = bounded(0.3, 0.001, 60.0)
    state_timeout_s: float = bounded(0.1, 0.001, 10.0)  # no JointState -> safe stop, fault
    # the EE setpoint's box, m (x, y, z); empty: the robot's workspace
    workspace_lo: list[float] = field(default_factory=list)
    workspace_hi: list[float] = field(default_factory=list)
    joint_margin: float = bounded(0.02, 0.0, 0.5)  # rad the reference keeps from the limits
    velocity_scale: float = bounded(0.8, 0.01, 1.0)  # share of the velocity limits usable
    accel_scale: float = bounded(1.0, 0.01, 1.0)  # share of the acceleration limits usable
    overspeed_hold: bool = True  # a measured joint speed over its limit -> hold the pose
    # N m/s (at most the robot's dtau_max; Panda: 1000); 0: none. Off by default: a
    # slew-limited torque inside the high-gain impedance loop turns a large error (a
    # reset, a contact, a late state) into a growing oscillation (``reflexarc bench
    # control`` shows it)
    torque_rate: float = bounded(0.0, 0.0, None)
    rearm_s: float = bounded(0.05, 0.0, 10.0)  # a limit clipping again after this is a new event
    # the operator's public key (a file, or 64 hex digits) that e-stop releases must be
    # signed with (docs/safety.md); "": every release refused
    operator_key: str = ""

    def validate(self) -> None:
        lo, hi = np.asarray(self.workspace_lo, float), np.asarray(self.workspace_hi, float)
        if lo.size or hi.size:  # both empty: the robot's workspace
            if lo.shape != (3,) or hi.shape != (3,):
                raise ConfigError("workspace_lo", "workspace_lo and workspace_hi are 3 values "
                                  "(x, y, z), or both empty (the robot's workspace)")
            if not np.all(lo < hi):
                raise ConfigError("workspace_hi", f"must be above workspace_lo {lo.tolist()} on every axis")
        if self.operator_key:
            try:
                ReleaseCheck(self.operator_key)
            except (AuthorityError, ValueError) as e:
                raise ConfigError("operator_key", f"{e} (a public key file or 64 hex digits)") from None


class Mode(str, enum.Enum):
    """What the controller does this tick (also its heartbeat state, see ``Supervisor.state``)."""

    WAITING = "waiting"  # no JointState yet: nothing is commanded
    HOLDING = "holding"  # hold the pose taken when holding began
    RUNNING = "running"  # track the plan
    ESTOP = "estop"  # latched e-stop: hold the pose taken when it engaged
    FAULT = "fault"  # latched: the state stream went silent; safe stop


class EventLog:
    """Counts safety interventions and queues the SafetyEvents to publish."""

    def __init__(self, node: str, rearm_s: float) -> None:
        self.node = node
        self.rearm_ns = int(rearm_s * 1e9)
        self.events: Counter[str] = Counter()  # published events per kind
        self.ticks: Counter[str] = Counter()  # ticks on which a limit clipped, per kind
        self._last: dict[str, int] = {}
        self.pending: list[SafetyEvent] = []

    def once(self, kind: str, now_ns: int, detail: str = "") -> None:
        """A one-off event (timeout, e-stop, reset): always published."""
        self.events[kind] += 1
        self.pending.append(
            SafetyEvent(stamp_ns=now_ns, node=self.node, kind=kind, detail=detail,
                        count=self.events[kind])
        )

    def clipped(self, kind: str, now_ns: int, detail: Callable[[], str]) -> None:
        """A limit clipped this tick: an event unless it also clipped within ``rearm_s``."""
        self.ticks[kind] += 1
        last = self._last.get(kind)
        self._last[kind] = now_ns
        if last is None or now_ns - last > self.rearm_ns:
            self.once(kind, now_ns, detail())

    def take(self) -> list[SafetyEvent]:
        """The events queued since the last call."""
        out, self.pending = self.pending, []
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "safety_events": {k: self.events[k] for k in KINDS if self.events[k]},
            "safety_ticks_clipped": {k: self.ticks[k] for k in KINDS if self.ticks[k]},
        }


class Supervisor:
    """Watchdogs and e-stop latch: the controller's mode for each tick (module docstring)."""

    def __init__(self, cfg: SafetyConfig, log: EventLog, realtime: bool = True) -> None:
        self.cfg = cfg
        self.log = log
        self.releases = ReleaseCheck(cfg.operator_key, realtime=realtime)
        self.plan_timeout_ns = int(cfg.plan_timeout_s * 1e9)
        self.state_timeout_ns = int(cfg.state_timeout_s * 1e9)
        self.last_state_ns: int | None = None  # when the newest JointState arrived
        self.last_plan_ns: int | None = None  # when the newest usable Plan arrived
        self.estop = False
        self.fault = False
        self.mode = Mode.WAITING
        self.max_state_gap_ns = 0

    def state_arrived(self, now_ns: int) -> None:
        if self.last_state_ns is not None:
            self.max_state_gap_ns = max(self.max_state_gap_ns, now_ns - self.last_state_ns)
        self.last_state_ns = now_ns

    def plan_arrived(self, now_ns: int) -> bool:
        """A valid Plan arrived; False if it must be ignored (e-stop or fault latched)."""
        if self.estop or self.fault:
            return False
        self.last_plan_ns = now_ns
        return True

    def estops(self, msgs: list[EStop], now_ns: int) -> None:
        for m in msgs:
            if m.engage:
                if not self.estop:
                    self.log.once("estop", now_ns, m.reason or "engaged")
                self.estop = True
            elif self.estop or self.fault:
                why = self.releases(m, now_ns)
                if why:
                    self.log.once("release_refused", now_ns, why)
                    continue
                fresh = self._state_fresh(now_ns)
                released = ["estop"] if self.estop else []
                self.estop = False
                if self.fault and fresh:
                    self.fault = False
                    released.append("fault")
                detail = "released " + ",".join(released) if released else ""
                if self.fault:
                    detail += ("; " if detail else "") + "fault kept: joint state still silent"
                self.log.once("reset", now_ns, detail)
                self.last_plan_ns = None  # resume only on a plan newer than the reset

    def _state_fresh(self, now_ns: int) -> bool:
        return self.last_state_ns is not None and now_ns - self.last_state_ns <= self.state_timeout_ns

    def update(self, now_ns: int) -> Mode:
        """The mode for this tick (after ``state_arrived``/``plan_arrived``/``estops``)."""
        if self.last_state_ns is None:
            mode = Mode.WAITING
        else:
            if not self.fault and not self._state_fresh(now_ns):
                self.fault = True
                gap = (now_ns - self.last_state_ns) / 1e6
                self.log.once("state_timeout", now_ns, f"no joint_state for {gap:.1f} ms")
            if self.fault:
                mode = Mode.FAULT
            elif self.estop:
                mode = Mode.ESTOP
            elif self.last_plan_ns is not None and now_ns - self.last_plan_ns <= self.plan_timeout_ns:
                mode = Mode.RUNNING
            else:
                if self.mode == Mode.RUNNING:
                    age = (now_ns - self.last_plan_ns) / 1e6  # type: ignore[operator]
                    self.log.once("plan_timeout", now_ns, f"no plan for {age:.1f} ms: holding")
                mode = Mode.HOLDING
        self.mode = mode
        return mode


class Limits:
    """Joint, velocity, torque and workspace limits of ``robot`` (clip, count, report).

    Args:
        robot: the arm whose limits apply (default: the Panda); every joint vector
            handled here has its ``dof`` values.
    """

    def __init__(self, cfg: SafetyConfig, log: EventLog,
                 robot: RobotDescription | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.robot = robot if robot is not None else robot_description("panda")
        box = self.robot.workspace_box
        self.ws_lo = np.asarray(cfg.workspace_lo, dtype=float) if cfg.workspace_lo else box[:, 0]
        self.ws_hi = np.asarray(cfg.workspace_hi, dtype=float) if cfg.workspace_hi else box[:, 1]
        self.q_min = self.robot.q_lo  # the limits themselves (measured states)
        self.q_max = self.robot.q_hi
        self.dq_limit = self.robot.dq_limits
        self.q_lo = self.q_min + cfg.joint_margin  # what the reference may reach
        self.q_hi = self.q_max - cfg.joint_margin
        self.dq_max = self.dq_limit * cfg.velocity_scale
        self.ddq_max = self.robot.ddq_limits * cfg.accel_scale
        self.tau_max = self.robot.tau_limits

    def workspace(self, pos: np.ndarray, now_ns: int) -> np.ndarray:
        """The EE setpoint ``pos`` (3,) clipped into the workspace box."""
        out = np.clip(pos, self.ws_lo, self.ws_hi)
        if (out != pos).any():
            self.log.clipped("workspace", now_ns, lambda: f"setpoint {np.round(pos, 3).tolist()} clipped")
        return out

    def reference(
        self, q_prev: np.ndarray, dq_prev: np.ndarray, q_next: np.ndarray, dt: float, now_ns: int
    ) -> np.ndarray:
        """Limit a joint reference step ``q_prev -> q_next`` (dof,) from velocity ``dq_prev``:
        acceleration, then speed (each scaling the whole step, so its direction is kept),
        then position (the limits less the margin; a reference already beyond them, as
        when holding starts there, may stay but not go further)."""
        dq = (q_next - q_prev) / dt
        acc = (dq - dq_prev) / dt
        ratio = float(np.max(np.abs(acc) / self.ddq_max))
        if ratio > 1.0:
            dq = dq_prev + (acc / ratio) * dt
            self.log.clipped(
                "velocity_limit", now_ns, lambda: f"reference acceleration scaled by {1 / ratio:.3f}"
            )
        ratio = float(np.max(np.abs(dq) / self.dq_max))
        if ratio > 1.0:
            dq = dq / ratio
            self.log.clipped(
                "velocity_limit", now_ns, lambda: f"reference speed scaled by {1 / ratio:.3f}"
            )
        q = q_prev + dq * dt
        out = np.clip(q, np.minimum(self.q_lo, q_prev), np.maximum(self.q_hi, q_prev))
        if (out != q).any():
            self.log.clipped(
                "joint_limit", now_ns,
                lambda: f"reference clipped at joints {np.flatnonzero(out != q) + 1}",
            )
        return out

    def torque(self, tau: np.ndarray, tau_prev: np.ndarray | None, dt: float, now_ns: int) -> np.ndarray:
        """Clip ``tau`` (dof,) to the effort limits and, after the first command, the rate limit."""
        out = np.clip(tau, -self.tau_max, self.tau_max)
        if tau_prev is not None and self.cfg.torque_rate > 0:
            step = self.cfg.torque_rate * dt
            out = np.clip(out, tau_prev - step, tau_prev + step)
        if (out != tau).any():
            self.log.clipped(
                "torque_limit", now_ns,
                lambda: f"torque clipped at joints {np.flatnonzero(out != tau) + 1}",
            )
        return out

    def measured(self, q: np.ndarray, dq: np.ndarray, now_ns: int) -> bool:
        """Check a measured state; True if a joint is faster than its limit (overspeed)."""
        outside = (q < self.q_min) | (q > self.q_max)
        if outside.any():
            self.log.clipped(
                "joint_limit", now_ns, lambda: f"measured past the limit at joints {np.flatnonzero(outside) + 1}"
            )
        fast = np.abs(dq) > self.dq_limit
        if fast.any():
            self.log.clipped(
                "velocity_limit", now_ns, lambda: f"measured overspeed at joints {np.flatnonzero(fast) + 1}"
            )
            return True
        return False
