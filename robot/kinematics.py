"""Kinematics and dynamics of an arm from its MuJoCo model: forward kinematics, the
end-effector Jacobian, bias (gravity, Coriolis) torques, the joint-space inertia and
damped-least-squares inverse kinematics.

One class serves every user: the controller's 1 kHz loop (views into reused buffers:
:meth:`ArmKinematics.pose_jacobian`, :meth:`~ArmKinematics.bias`, :meth:`~ArmKinematics.mass`),
the planner's hand from proprioception, and the sims' tasks and end-effector tracker
(copies: :meth:`~ArmKinematics.fk`, :meth:`~ArmKinematics.jacobian`, :meth:`~ArmKinematics.solve`).
Both simulators simulate the same URDF, so this one model serves both.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import mujoco
import numpy as np

from reflexarc.robot.description import RobotDescription, RobotError, robot_description
from reflexarc.robot.rotations import rotation_error


class IKResult(NamedTuple):
    q: np.ndarray  # (dof,) joint positions
    pos_err: float  # m, remaining position error
    rot_err: float  # rad, remaining orientation error (small-angle)


class ArmKinematics:
    """FK, Jacobian, bias torques, inertia and IK of one arm's end-effector site.

    Args:
        robot: the arm's description (default: the Panda).
        model: a model whose first ``dof`` joints are the arm (and the next ones the
            gripper's joints, if the robot has a gripper), with the site ``robot.ee_site``
            -- e.g. a whole scene. Default: the robot alone (:meth:`RobotDescription.mj_model`).
    """

    def __init__(self, robot: RobotDescription | None = None,
                 model: mujoco.MjModel | None = None) -> None:
        self.robot = robot if robot is not None else robot_description("panda")
        n = self.robot.dof
        model = self.robot.mj_model() if model is None else model
        if model.nv < n:
            raise RobotError(f"the {self.robot.name} model has {model.nv} dofs; at least {n} "
                             "are needed")
        try:
            self.site = model.site(self.robot.ee_site).id
        except KeyError:
            raise RobotError(f"the arm model has no site {self.robot.ee_site!r}") from None
        self.model = model
        self.n = n
        self.ref = mujoco.MjData(model)  # kinematics at a reference (fk, jacobian, IK)
        self.meas = mujoco.MjData(model)  # dynamics at the measured state (bias, mass)
        grip = self.robot.gripper
        self.n_grip = len(grip.joints) if grip is not None else 0  # gripper joints after the arm
        self.fingers = grip is not None and model.nq >= n + self.n_grip
        self._opening = np.nan  # the gripper opening last written into self.meas
        if self.fingers:
            self.ref.qpos[n:n + self.n_grip] = grip.q_open
        self._jac = np.zeros((6, model.nv))  # (6, nv): rows vx vy vz wx wy wz
        self._bias = np.zeros(model.nv)
        self._mass = np.zeros((model.nv, model.nv))
        # views into MjData and the buffers, taken once (the controller's update reads them)
        self._jacp, self._jacr = self._jac[:3], self._jac[3:]
        self._ref_q, self._meas_q = self.ref.qpos[:n], self.meas.qpos[:n]
        self._meas_dq = self.meas.qvel[:n]
        self.ref_pos = self.ref.site_xpos[self.site]  # (3,) EE position at the reference
        self.ref_rot = self.ref.site_xmat[self.site]  # (9,) its rotation, row-major
        self.meas_pos = self.meas.site_xpos[self.site]  # (3,) EE position measured
        self.home = self.robot.home_q
        self.ik_margin = 0.02  # rad IK solutions keep from the joint limits
        self.lower = self.robot.q_lo + self.ik_margin
        self.upper = self.robot.q_hi - self.ik_margin

    # -- the controller's loop: views into buffers ------------------------------------------

    def pose_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """EE position (3,), rotation (3, 3) and Jacobian (6, dof) at joint positions ``q``
        (dof,); Jacobian rows (vx, vy, vz, wx, wy, wz) in the world.

        The returned arrays are views into buffers overwritten by the next call.
        """
        m, d = self.model, self.ref
        d.qpos[:self.n] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_jacSite(m, d, self._jac[:3], self._jac[3:], self.site)
        return d.site_xpos[self.site], d.site_xmat[self.site].reshape(3, 3), self._jac[:, :self.n]

    def bias(self, q: np.ndarray, dq: np.ndarray | None, gripper: float) -> np.ndarray:
        """Gravity (and Coriolis, when ``dq`` (dof,) is given) torques (dof,) at the measured
        state; ``gripper`` is the finger opening in m. Also updates :meth:`measured_ee`.
        A view, overwritten by the next call."""
        m, d, n = self.model, self.meas, self.n
        d.qpos[:n] = q
        if self.fingers and gripper != self._opening:
            d.qpos[n:n + self.n_grip] = self.robot.gripper.joint_positions(gripper)
            self._opening = gripper
        d.qvel[:] = 0.0
        if dq is not None:
            d.qvel[:n] = dq
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        mujoco.mj_rne(m, d, 0, self._bias)
        return self._bias[:n]

    def update(self, q_ref: np.ndarray, q: np.ndarray, dq: np.ndarray | None, gripper: float,
               mass: bool = True) -> None:
        """The controller's MuJoCo calls for one tick, in one go: the EE pose and Jacobian at
        the reference ``q_ref`` (:attr:`ref_pos`, :attr:`ref_rot`, the Jacobian buffer) and
        the bias torques (Coriolis too when ``dq`` is given), the EE position
        (:attr:`meas_pos`) and, with ``mass``, the inertia at the measured ``q``, ``dq``
        (dof,), the fingers at ``gripper`` (m) -- the same as :meth:`pose_jacobian`,
        :meth:`bias` and :meth:`mass`, with no array made."""
        m, r, d = self.model, self.ref, self.meas
        self._ref_q[:] = q_ref
        mujoco.mj_kinematics(m, r)
        mujoco.mj_comPos(m, r)
        mujoco.mj_jacSite(m, r, self._jacp, self._jacr, self.site)
        self._meas_q[:] = q
        if self.fingers and gripper != self._opening:  # as bias()
            d.qpos[self.n:self.n + self.n_grip] = self.robot.gripper.joint_positions(gripper)  # type: ignore[union-attr]
            self._opening = gripper
        if dq is None:
            d.qvel[:] = 0.0
        else:
            self._meas_dq[:] = dq  # the fingers' velocities stay 0 (nothing else sets them)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        mujoco.mj_rne(m, d, 0, self._bias)
        if mass:
            mujoco.mj_makeM(m, d)
            mujoco.mj_fullM(m, d, self._mass)

    def mass(self) -> np.ndarray:
        """Joint-space inertia matrix (dof, dof) of the arm at the state of the last
        :meth:`bias` call (a view)."""
        mujoco.mj_makeM(self.model, self.meas)  # composite rigid bodies (+ armature)
        mujoco.mj_fullM(self.model, self.meas, self._mass)
        return self._mass[:self.n, :self.n]

    def measured_ee(self) -> np.ndarray:
        """EE position (3,) at the state of the last :meth:`bias` call (a view)."""
        return self.meas.site_xpos[self.site]

    # -- copies ---------------------------------------------------------------------------

    def pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """EE position (3,) and rotation (3, 3) at ``q`` (dof,), as copies."""
        pos, rot, _ = self.pose_jacobian(q)
        return pos.copy(), rot.copy()

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (3,) and rotation matrix (3, 3) at ``q`` (dof,)."""
        return self.pose(np.asarray(q, dtype=float))

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """End-effector Jacobian at ``q``: (6, dof), rows (vx, vy, vz, wx, wy, wz) in the world."""
        return self.pose_jacobian(np.asarray(q, dtype=float))[2].copy()

    def gravity(self, q: np.ndarray, gripper: float | None = None) -> np.ndarray:
        """Joint torques (dof,) N m that hold the arm still at ``q`` (gripper opening in m;
        default fully open)."""
        opening = self.robot.finger_max * 2 if gripper is None else gripper
        return self.bias(np.asarray(q, dtype=float), None, opening).copy()

    def solve(
        self,
        pos: np.ndarray,
        rot: np.ndarray | Literal["down"] | None = "down",
        q0: np.ndarray | None = None,
        iters: int = 30,
        damping: float = 0.03,
        rot_weight: float = 0.5,
        rest_gain: float = 0.1,
        tol: float = 1e-4,
    ) -> IKResult:
        """Damped least squares IK for the end-effector site.

        Iterates ``dq = J^T (J J^T + damping^2 I)^-1 e`` on the 6-D error ``e`` (position,
        and ``rot_weight`` x orientation error; ``rot`` "down" is the robot's hand-down
        orientation, None leaves the orientation free), plus a null-space pull toward the
        home pose, clipped to the joint limits (less ``ik_margin``). Starts at ``q0``
        (default home). Returns the last iterate even if the target is out of reach;
        check ``pos_err``.
        """
        pos = np.asarray(pos, dtype=float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise RobotError(f"IK target position must be 3 finite values, got {pos!r}")
        if isinstance(rot, str):
            rot = self.robot.ee_down_rot
        n = self.n
        home = self.home
        q = (home if q0 is None else np.asarray(q0, dtype=float)).copy()
        rows = slice(0, 3) if rot is None else slice(0, 6)
        eye = np.eye(n)
        pos_err = rot_err = np.inf
        for _ in range(iters):
            cur, cur_rot = self.fk(q)
            err = np.zeros(6)
            err[:3] = pos - cur
            if rot is not None:
                err[3:] = rot_weight * rotation_error(cur_rot, rot)
            pos_err = float(np.linalg.norm(err[:3]))
            rot_err = float(np.linalg.norm(err[3:]) / rot_weight) if rot is not None else 0.0
            if pos_err < tol and rot_err < 10 * tol:
                break
            jac = self.jacobian(q)[rows]  # (r, dof)
            if rot is not None:
                jac[3:] *= rot_weight
            jjt = jac @ jac.T + damping**2 * np.eye(jac.shape[0])
            pinv = jac.T @ np.linalg.inv(jjt)  # (dof, r)
            dq = pinv @ err[rows]
            dq += (eye - pinv @ jac) @ (rest_gain * (home - q))
            scale = max(1.0, np.abs(dq).max() / 0.3)  # at most 0.3 rad per iteration
            q = np.clip(q + dq / scale, self.lower, self.upper)
        return IKResult(q, pos_err, rot_err)
