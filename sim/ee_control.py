"""The built-in joint controller that tracks end-effector displacement actions.

Shared by the gymnasium envs (:class:`reflexarc.sim.envs.PandaEnv`, one action per ``env.step``)
and the graph's sim node (:class:`reflexarc.sim.node.SimNode`, ``command=ee_action``: one
EEAction per control period, physics ticking in between).

An action (dx, dy, dz, gripper) moves the commanded hand position by the displacement.
The new target is the last commanded hand position + delta, so displacements add up
exactly; it is kept within :data:`WINDUP` of the measured hand (a hand blocked by
contact pushes with a bounded force and does not jump when released) and inside the
workspace box. Damped least squares IK turns it into joint positions with the hand
pointing down, and the joint setpoint ramps there over the control period, with the
ramp's velocity as feedforward, for the scene's joint PD with gravity compensation to
track: the velocity goes linearly from the previous ramp's to a cruise over the first
:data:`FF_BLEND` of the period, then holds (the position is its integral and ends on
the IK solution), so that repeated actions give a steady motion and a new action no
step in the joints' velocity reference. A step shorter than asked keeps the cruise
within :data:`SPEED_SHARE` of every joint's speed limit (all joints scaled alike, so the
hand keeps its direction). Why both (docs/safety.md, "The end-effector tracker"): a
5 cm action from the Panda's start pose asked its joint 2 for 1.03x its limit and the
PD overshot that by up to 9 %; on the xArm6 a velocity step at an episode's first
action flung its lightly held wrist (joint 5) to 1.12x its limit.
"""

from __future__ import annotations

import numpy as np

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.sim.assets import SceneError

REST_GAIN = 0.002  # IK's null-space pull toward home per iteration: slow, so no joint races
WINDUP = 0.03  # m: how far the commanded hand position may lead the measured one
IK_ITERS = 10
SPEED_SHARE = 0.85  # a ramp moves each joint at most this share of its speed limit
FF_BLEND = 0.35  # share of the period over which a ramp's velocity blends from the old one's


class EETracker:
    """Turns end-effector displacement actions into a ramp of joint position setpoints.

    Args:
        kin: kinematics of the arm (IK and FK).
        max_delta: largest displacement per action, m (each axis is clipped to it).
        period_s: control period over which each action's joint ramp runs, s.

    Use: :meth:`reset` at the start of an episode, :meth:`act` for each action, then
    :meth:`setpoint` at fractions of the period to get the joint command.
    """

    def __init__(self, kin: ArmKinematics, max_delta: float, period_s: float) -> None:
        if not 0.0 < max_delta <= 0.2:
            raise SceneError(f"max_delta must be in (0, 0.2] m, got {max_delta}")
        if not period_s > 0.0:
            raise SceneError(f"the control period must be > 0 s, got {period_s}")
        self.kin = kin
        self.max_delta = float(max_delta)
        self.period_s = period_s
        self.box = kin.robot.workspace_box  # (3, 2) the commanded hand stays inside
        self.down = kin.robot.ee_down_rot  # (3, 3) hand pointing down
        n = kin.robot.dof
        self.v_max = kin.robot.dq_limits * SPEED_SHARE  # (n,) rad/s a ramp may ask of a joint
        self.q_from = np.zeros(n)  # (n,) start of the current ramp
        self.q_cmd = np.zeros(n)  # (n,) end of the current ramp (the IK solution)
        self.x_cmd = np.zeros(3)  # (3,) commanded hand position (what IK reached)
        self.velocity = np.zeros(n)  # (n,) rad/s: the current ramp's cruise
        self.v_from = np.zeros(n)  # (n,) rad/s: the feedforward when the current ramp started
        self.gripper = 1.0

    def reset(self, q: np.ndarray, gripper: float = 1.0) -> None:
        """Hold joint positions ``q`` (n,): no ramp, the commanded hand where ``q`` puts it."""
        self.q_cmd = np.asarray(q, dtype=np.float64).copy()
        self.q_from = self.q_cmd
        self.x_cmd = self.kin.fk(self.q_cmd)[0]
        self.velocity = np.zeros_like(self.q_cmd)
        self.v_from = np.zeros_like(self.q_cmd)
        self.gripper = float(gripper)

    def act(self, action: np.ndarray, ee: np.ndarray, q_from: np.ndarray | None = None,
            v_from: np.ndarray | None = None) -> None:
        """Start the ramp of ``action`` (4,) from the measured hand position ``ee`` (3,).

        ``q_from`` (n,): where the ramp starts (default: the end of the previous ramp;
        the sim node passes the current setpoint when an action comes before the
        previous ramp has ended), ``v_from`` (n,) the feedforward there (default: the
        previous ramp's velocity). Raises SceneError on a malformed action.
        """
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,) or not np.all(np.isfinite(action)):
            raise SceneError(
                f"action must be 4 finite values (dx, dy, dz, gripper), got {action!r}"
            )
        delta = np.clip(action[:3], -self.max_delta, self.max_delta)
        self.gripper = float(np.clip(action[3], -1.0, 1.0))
        lead = self.x_cmd - ee
        dist = float(np.linalg.norm(lead))
        base = ee + lead * min(1.0, WINDUP / dist) if dist > 0 else ee
        goal = np.clip(base + delta, self.box[:, 0], self.box[:, 1])
        q_from = self.q_cmd if q_from is None else q_from
        q_to = self.kin.solve(goal, self.down, q0=q_from, iters=IK_ITERS, rest_gain=REST_GAIN).q
        v_from = self.velocity if v_from is None else np.asarray(v_from, dtype=np.float64)
        q_to = q_from + self._cap(q_to - q_from, v_from) * (q_to - q_from)
        self.x_cmd = self.kin.fk(q_to)[0]  # what IK reached (the goal, unless out of reach)
        self.v_from = v_from.copy()
        self.q_from = q_from
        self.q_cmd = q_to
        # the cruise velocity (setpoint): repeated actions give a steady motion
        self.velocity = self._cruise(q_to - q_from, self.v_from)

    def _cruise(self, step: np.ndarray, v_from: np.ndarray) -> np.ndarray:
        """The velocity (n,) a ramp of ``step`` (n,) holds after its blend from ``v_from``."""
        b = FF_BLEND
        return (step / self.period_s - v_from * b / 2.0) / (1.0 - b / 2.0)

    def _cap(self, step: np.ndarray, v_from: np.ndarray) -> float:
        """The largest share c in [0, 1] of ``step`` (n,) whose cruise velocity is within
        ``v_max`` on every joint (c = 0 always is: ``v_from`` is within it)."""
        b = FF_BLEND
        a = v_from * b / 2.0
        m = self.v_max * (1.0 - b / 2.0)
        rate = step / self.period_s
        with np.errstate(divide="ignore", invalid="ignore"):
            top = np.where(rate > 0, (a + m) / rate, np.where(rate < 0, (a - m) / rate, np.inf))
        return float(np.clip(np.min(top), 0.0, 1.0))

    def setpoint(self, frac: float) -> tuple[np.ndarray, np.ndarray]:
        """Joint position (n,) and velocity feedforward (n,) at ``frac`` of the period.

        Past the end of the ramp (``frac > 1``, no new action yet) it holds the ramp's
        end at rest.
        """
        if frac > 1.0:
            return self.q_cmd, np.zeros_like(self.q_cmd)
        # the velocity goes linearly from the old ramp's to the cruise over FF_BLEND of the
        # period, the position is its integral (it ends at q_cmd): a step in the velocity
        # kicks the joints (the xArm6's light wrist past its limit)
        b, T, v0, v1 = FF_BLEND, self.period_s, self.v_from, self.velocity
        if frac < b:
            return self.q_from + T * (v0 * frac + (v1 - v0) * frac * frac / (2.0 * b)), \
                v0 + (v1 - v0) * (frac / b)
        return self.q_from + T * ((v0 + v1) * b / 2.0 + v1 * (frac - b)), v1
