"""Joint limits at the plant: an independent check on commands, and a count of every
measured sample beyond a limit.

Two plain objects (numpy only, no I/O), used where commands meet the arm -- the bridge,
the pretend arm, the sim node -- whatever the controller did upstream:

- :class:`JointLimits`: the arm's joint limits (position, velocity, acceleration, torque,
  torque rate), arrays of shape (n,).
- :class:`CommandGuard`: makes a joint command safe to send (torques and their rate of
  change clipped, position targets clipped into the limits and rate limited, velocity
  feedforward clipped, torques damped near the position limits), and says when the arm
  must be stopped (a measured joint faster than ``stop_share`` of its limit).
- :class:`LimitCounter`: counts measured samples beyond a limit, per kind (position,
  velocity, acceleration, torque), and keeps the largest joint speed and acceleration as a
  share of their limits; the run summary shows them (see docs/safety.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from reflexarc.robot.description import RobotDescription, robot_description
from reflexarc.runtime.errors import ConfigError


class JointLimits(NamedTuple):
    """An arm's joint limits, each (n,) (``dtau_max`` per joint too)."""

    q_min: np.ndarray  # rad
    q_max: np.ndarray  # rad
    dq_max: np.ndarray  # rad/s
    tau_max: np.ndarray  # N m
    dtau_max: np.ndarray  # N m/s
    ddq_max: np.ndarray  # rad/s^2

    @property
    def n(self) -> int:
        return int(self.q_min.shape[0])


def joint_limits(robot: RobotDescription) -> JointLimits:
    """The joint limits of ``robot`` (its description: reflexarc.robot.description)."""
    return JointLimits(robot.q_lo, robot.q_hi, robot.dq_limits, robot.tau_limits,
                       np.full(robot.dof, float(robot.dtau_max)), robot.ddq_limits)


def panda_limits() -> JointLimits:
    """The Franka Panda's published joint limits."""
    return joint_limits(robot_description("panda"))


@dataclass
class GuardConfig:
    """How the plant-side check shapes commands (shares of the limits, zones in rad)."""

    torque_share: float = 1.0  # |tau| <= share * tau_max
    torque_rate: bool = True  # |d tau / dt| <= dtau_max between commands
    position_margin: float = 0.01  # rad kept from the position limits (position mode)
    speed_share: float = 0.85  # position mode: a target moves at most this share of dq_max
    # a measured speed above this share of dq_max stops the arm; a loaded machine's late
    # ticks let a joint overshoot it by up to ~8 % before the stop bites (docs/safety.md)
    stop_share: float = 0.9
    zone: float = 0.15  # rad from a position limit where torques toward it are damped
    damping: float = 0.1  # N m s/rad per N m of the joint's torque limit, in the zone

    def validate(self) -> None:
        for key in ("torque_share", "speed_share", "stop_share"):
            v = getattr(self, key)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"guard.{key}", f"must be in (0, 1], got {v}")
        if self.speed_share > self.stop_share:
            raise ConfigError("guard.speed_share", "must not exceed guard.stop_share")


class CommandGuard:
    """Shapes commands to the joint limits (module docstring); counts what it changed."""

    def __init__(self, limits: JointLimits, cfg: GuardConfig | None = None) -> None:
        self.lim = limits
        self.cfg = cfg or GuardConfig()
        self.cfg.validate()
        n = limits.n
        self.tau_max = limits.tau_max * self.cfg.torque_share
        self.q_lo = limits.q_min + self.cfg.position_margin
        self.q_hi = limits.q_max - self.cfg.position_margin
        self.v_pos = limits.dq_max * self.cfg.speed_share
        self.v_stop = limits.dq_max * self.cfg.stop_share
        self.d_zone = limits.tau_max * self.cfg.damping
        self.last_tau: np.ndarray | None = None
        self.last_q: np.ndarray | None = None
        self.last_ns = 0
        self.tau = np.zeros(n)
        self.counts = {"torque_clipped": 0, "torque_rate_clipped": 0, "position_clipped": 0,
                       "position_rate_clipped": 0, "velocity_clipped": 0, "damped": 0,
                       "overspeed_stops": 0}

    def reset(self) -> None:
        """Forget the last command (after a stop: the arm holds, rates start over)."""
        self.last_tau = self.last_q = None

    def overspeed(self, dq: np.ndarray) -> bool:
        """True (counted) if a measured joint speed ``dq`` (n,) is above ``stop_share``."""
        if bool(np.any(np.abs(dq) > self.v_stop)):
            self.counts["overspeed_stops"] += 1
            return True
        return False

    def torque(self, tau: np.ndarray, q: np.ndarray | None, dq: np.ndarray | None,
               now_ns: int) -> np.ndarray:
        """A safe torque (n,) for the wish ``tau`` at the measured ``q``, ``dq`` (n,)."""
        out = np.clip(tau, -self.tau_max, self.tau_max)
        if (out != tau).any():
            self.counts["torque_clipped"] += 1
        if q is not None and dq is not None:
            # near a position limit and moving toward it: damp the motion, harder the closer
            lo = np.clip((self.lim.q_min + self.cfg.zone - q) / self.cfg.zone, 0.0, 1.0)
            hi = np.clip((q - (self.lim.q_max - self.cfg.zone)) / self.cfg.zone, 0.0, 1.0)
            toward = np.where(dq < 0.0, lo, 0.0) + np.where(dq > 0.0, hi, 0.0)
            if toward.any():
                out = out - toward * self.d_zone * dq
                np.clip(out, -self.tau_max, self.tau_max, out=out)
                self.counts["damped"] += 1
        if self.cfg.torque_rate and self.last_tau is not None:
            dt = max((now_ns - self.last_ns) / 1e9, 1e-3)
            step = self.lim.dtau_max * dt
            limited = np.clip(out, self.last_tau - step, self.last_tau + step)
            if (limited != out).any():
                self.counts["torque_rate_clipped"] += 1
                out = limited
        self.last_tau = out
        self.last_ns = now_ns
        return out

    def position(self, q_cmd: np.ndarray, q_meas: np.ndarray | None, now_ns: int) -> np.ndarray:
        """A safe position target (n,): inside the limits, and moving at most
        ``speed_share`` of the velocity limits from the last target (or the measured pose)."""
        out = np.clip(q_cmd, self.q_lo, self.q_hi)
        if (out != q_cmd).any():
            self.counts["position_clipped"] += 1
        ref = self.last_q if self.last_q is not None else q_meas
        if ref is not None:
            dt = 1e-3 if self.last_q is None else min(max((now_ns - self.last_ns) / 1e9, 1e-3), 0.05)
            step = self.v_pos * dt
            limited = np.clip(out, ref - step, ref + step)
            if (limited != out).any():
                self.counts["position_rate_clipped"] += 1
                out = limited
        self.last_q = out
        self.last_ns = now_ns
        return out

    def velocity(self, dq_cmd: np.ndarray) -> np.ndarray:
        """Velocity feedforward (n,) within ``speed_share`` of the limits."""
        out = np.clip(dq_cmd, -self.v_pos, self.v_pos)
        if (out != dq_cmd).any():
            self.counts["velocity_clipped"] += 1
        return out


class LimitCounter:
    """Counts measured samples beyond the joint limits and the largest speed and
    acceleration shares.

    The acceleration of a sample is the change of its velocity since the previous sample
    over the time between them (``t_s`` of :meth:`add`), counted only when that time is at
    most ``accel_window_s``: over a longer gap (a paused stream, the first sample) a
    difference is no acceleration. :meth:`restart` forgets the previous sample (the arm
    was teleported: a simulator's episode reset).
    """

    def __init__(self, limits: JointLimits, accel_window_s: float = 0.02) -> None:
        self.lim = limits
        self.accel_window_s = accel_window_s
        self.samples = 0
        self.accel_samples = 0  # samples whose acceleration was measured
        self.beyond = {"position": 0, "velocity": 0, "acceleration": 0, "torque": 0}
        self.max_speed_share = 0.0
        self.max_accel_share = 0.0
        self.max_position_excess = 0.0  # rad past a position limit, largest seen
        self._dq: np.ndarray | None = None
        self._t = 0.0

    def restart(self) -> None:
        """Forget the previous sample: the next one measures no acceleration."""
        self._dq = None

    def add(self, q: np.ndarray, dq: np.ndarray, tau: np.ndarray | None = None,
            t_s: float | None = None) -> None:
        """One measured sample: positions, velocities and (if known) applied torques (n,),
        taken at ``t_s`` seconds (any clock; None: no acceleration measured)."""
        self.samples += 1
        excess = max(float(np.max(self.lim.q_min - q)), float(np.max(q - self.lim.q_max)))
        if excess > 0.0:
            self.beyond["position"] += 1
            self.max_position_excess = max(self.max_position_excess, excess)
        share = float(np.max(np.abs(dq) / self.lim.dq_max))
        if share > 1.0:
            self.beyond["velocity"] += 1
        self.max_speed_share = max(self.max_speed_share, share)
        if tau is not None and bool(np.any(np.abs(tau) > self.lim.tau_max * (1.0 + 1e-9))):
            self.beyond["torque"] += 1
        if t_s is None:
            return
        if self._dq is not None and 0.0 < t_s - self._t <= self.accel_window_s:
            self.accel_samples += 1
            acc = float(np.max(np.abs(dq - self._dq) / self.lim.ddq_max)) / (t_s - self._t)
            if acc > 1.0:
                self.beyond["acceleration"] += 1
            self.max_accel_share = max(self.max_accel_share, acc)
        self._dq = np.array(dq, dtype=float)
        self._t = t_s

    def summary(self) -> dict[str, Any]:
        return {
            "limit_samples": self.samples,
            "beyond_limits": dict(self.beyond),
            "max_speed_share": round(self.max_speed_share, 4),
            "max_accel_share": round(self.max_accel_share, 4),
            "accel_samples": self.accel_samples,
            "max_position_excess_rad": round(self.max_position_excess, 5),
        }
