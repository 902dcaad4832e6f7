"""Plans as the controller reads them: checked, sampled at any instant, blended.

A :class:`~reflexarc.runtime.msgs.Plan` is end-effector setpoints ``dt_ns`` apart from
``t0_ns``. :func:`plan_segment` is the one interpolation rule (linear between setpoints,
held before the first and after the last); the controller's :class:`PlanSampler` and the
planner's :func:`sample_plan` (where the previous plan has the hand now) both use it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from reflexarc.robot import control_kernel as ck
from reflexarc.robot.rotations import nlerp
from reflexarc.runtime.msgs import Plan


def plan_segment(plan: Plan, now_ns: int) -> tuple[int, int, float]:
    """Where ``now_ns`` falls in ``plan``: setpoints ``i`` and ``j`` and the weight ``f`` of
    ``j`` in [0, 1] (``j = i`` for a one-setpoint plan; held at the ends)."""
    n = plan.ee_pos.shape[0]
    if n == 1 or plan.dt_ns <= 0:
        return 0, 0, 0.0
    u = min(max((now_ns - plan.t0_ns) / plan.dt_ns, 0.0), n - 1.0)
    i = min(int(u), n - 2)
    return i, i + 1, u - i


def sample_plan(plan: Plan, now_ns: int) -> np.ndarray:
    """The plan's position (3,) at ``now_ns`` (linear between setpoints, held at the ends)."""
    i, j, f = plan_segment(plan, now_ns)
    return (1.0 - f) * plan.ee_pos[i] + f * plan.ee_pos[j]


class Setpoint(NamedTuple):
    """An end-effector setpoint: position (3,) m, orientation (4,) wxyz, gripper [-1, 1]."""

    pos: np.ndarray
    quat: np.ndarray
    gripper: float


def check_plan(plan: Plan) -> str:
    """Why ``plan`` cannot be tracked, or "" if it can."""
    p, q, g = plan.ee_pos, plan.ee_quat, plan.gripper
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != 3:
        return f"ee_pos must be (T>=1, 3), got {p.shape}"
    n = p.shape[0]
    if q.size and q.shape != (n, 4):
        return f"ee_quat must be ({n}, 4) or empty, got {q.shape}"
    if g.size and g.shape != (n,):
        return f"gripper must be ({n},) or empty, got {g.shape}"
    if n > 1 and plan.dt_ns <= 0:
        return f"dt_ns must be > 0 for a plan of {n} setpoints, got {plan.dt_ns}"
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and np.all(np.isfinite(g))):
        return "setpoints must be finite"
    if q.size and np.any(np.linalg.norm(q, axis=1) < 1e-6):
        return "ee_quat rows must be non-zero"
    return ""


class PlanSampler:
    """EE setpoint at any instant from the current plan (see module docstring, step 1).

    Args:
        blend_s: duration of the transition to a new plan, s (0: switch at once).
    """

    def __init__(self, blend_s: float) -> None:
        self.blend_ns = int(blend_s * 1e9)
        self.plan: Plan | None = None
        self.quat = np.array([1.0, 0.0, 0.0, 0.0])  # orientation kept by plans without one
        self.gripper = 1.0  # gripper kept by plans without one
        self.start = Setpoint(np.zeros(3), self.quat.copy(), 1.0)  # blend origin
        self.start_vel = np.zeros(3)
        self.start_ns = 0
        self.quats: np.ndarray | None = None  # plan orientations, normalised (T, 4)
        # sample_into's copies: setpoints (T, 3), orientations (T, 4; (0, 4): none), and
        # the blend origin (position, quaternion, velocity)
        self._pos = np.zeros((1, 3))
        self._quats = np.zeros((0, 4))
        self._start = np.zeros(10)

    def hold(self, sp: Setpoint) -> None:
        """Hold ``sp`` from now on (no plan, no blend)."""
        self.plan = None
        self.start = Setpoint(sp.pos.copy(), sp.quat.copy(), sp.gripper)
        self.start_vel = np.zeros(3)
        self.quat, self.gripper = sp.quat.copy(), sp.gripper

    def set_plan(self, plan: Plan, now_ns: int, current: Setpoint, velocity: np.ndarray) -> None:
        """Switch to ``plan`` (checked with :func:`check_plan`), blending from ``current``
        moving at ``velocity`` (3,) m/s."""
        self.plan = plan
        self.start = current
        self.start_vel = velocity
        self.start_ns = now_ns
        self.quat, self.gripper = current.quat, current.gripper
        q = plan.ee_quat
        self.quats = q / np.linalg.norm(q, axis=1, keepdims=True) if q.size else None
        self._pos = np.array(plan.ee_pos, dtype=float)
        self._quats = np.zeros((0, 4)) if self.quats is None else np.array(self.quats, dtype=float)
        self._start[:3], self._start[3:7], self._start[7:] = current.pos, current.quat, velocity

    def _plan_at(self, plan: Plan, now_ns: int) -> Setpoint:
        i, j, f = plan_segment(plan, now_ns)
        pos = (1.0 - f) * plan.ee_pos[i] + f * plan.ee_pos[j]
        quat = self.quat if self.quats is None else nlerp(self.quats[i], self.quats[j], f)
        g = plan.gripper
        grip = self.gripper if g.size == 0 else float(g[j] if f >= 0.5 else g[i])
        return Setpoint(pos, quat, grip)

    def sample_into(self, now_ns: int, out: np.ndarray) -> float:
        """:meth:`sample` written into ``out`` (7,): position, quaternion (wxyz); returns the
        gripper. Compiled (reflexarc.robot.control_kernel) where numba is installed: the
        controller's 1 kHz tick makes no array here."""
        plan = self.plan
        if plan is None or ck.numba is None:
            sp = self.sample(now_ns)
            out[:3], out[3:7] = sp.pos, sp.quat
            return sp.gripper
        i, j, f = ck.sample_numba(self._pos, self._quats, plan.t0_ns, plan.dt_ns, now_ns,
                                  self._start, self.start_ns, self.blend_ns, self._start[3:7], out)
        g = plan.gripper
        return self.gripper if g.size == 0 else float(g[j] if f >= 0.5 else g[i])

    def sample(self, now_ns: int) -> Setpoint:
        """The setpoint at ``now_ns``."""
        if self.plan is None:
            return self.start
        target = self._plan_at(self.plan, now_ns)
        dt = now_ns - self.start_ns
        if dt >= self.blend_ns:
            return target
        s = max(dt, 0) / self.blend_ns
        w = s * s * (3.0 - 2.0 * s)  # smoothstep: zero slope at both ends
        old = self.start.pos + self.start_vel * (dt / 1e9)
        pos = (1.0 - w) * old + w * target.pos
        return Setpoint(pos, nlerp(self.start.quat, target.quat, w), target.gripper)
