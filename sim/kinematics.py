"""Kinematics of the Panda from its MuJoCo model: forward kinematics, the end-effector
Jacobian and damped-least-squares inverse kinematics.

Both backends simulate the same URDF, so one kinematic model serves both: the envs'
built-in controller solves IK here and sends joint position commands to either scene.
"""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from reflexarc.sim.assets import EE_SITE, FINGER_MAX, HOME_Q, JOINT_LIMITS, SceneError

#: End effector pointing down, fingers closing along world y (the home orientation).
R_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


class IKResult(NamedTuple):
    q: np.ndarray  # (7,) joint positions
    pos_err: float  # m, remaining position error
    rot_err: float  # rad, remaining orientation error (small-angle)


def rotation_error(rot: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector taking ``rot`` to ``target`` (both (3, 3)), world frame. (3,)"""
    return 0.5 * (
        np.cross(rot[:, 0], target[:, 0])
        + np.cross(rot[:, 1], target[:, 1])
        + np.cross(rot[:, 2], target[:, 2])
    )


class ArmKinematics:
    """FK, Jacobian and IK of the end-effector site of a Panda ``MjModel``.

    Args:
        model: a model whose first 9 qpos are the Panda's (default: the robot alone,
            :func:`reflexarc.sim.mujoco_scene.panda_model`).
    """

    def __init__(self, model: mujoco.MjModel | None = None) -> None:
        if model is None:
            from reflexarc.sim.mujoco_scene import panda_model

            model = panda_model()
        self.model = model
        self.data = mujoco.MjData(model)
        self.site = model.site(EE_SITE).id
        self.data.qpos[7:9] = FINGER_MAX
        self._jac = np.zeros((6, model.nv))  # rows: translation (3), rotation (3)
        self._margin = 0.02
        self.lower = JOINT_LIMITS[:, 0] + self._margin
        self.upper = JOINT_LIMITS[:, 1] - self._margin

    def _update(self, q: np.ndarray) -> None:
        self.data.qpos[:7] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (3,) and rotation matrix (3, 3) at joint positions ``q`` (7,)."""
        self._update(np.asarray(q, dtype=float))
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(
            3, 3
        ).copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """End-effector Jacobian at ``q``: (6, 7), rows (vx, vy, vz, wx, wy, wz) in the world."""
        self._update(np.asarray(q, dtype=float))
        mujoco.mj_jacSite(self.model, self.data, self._jac[:3], self._jac[3:], self.site)
        return self._jac[:, :7].copy()

    def gravity(self, q: np.ndarray, gripper: float = 2 * FINGER_MAX) -> np.ndarray:
        """Joint torques (7,) N m that hold the arm still at ``q`` (gripper opening in m)."""
        self.data.qpos[:7] = q
        self.data.qpos[7:9] = gripper / 2
        self.data.qvel[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        return self.data.qfrc_bias[:7].copy()

    def solve(
        self,
        pos: np.ndarray,
        rot: np.ndarray | None = R_DOWN,
        q0: np.ndarray | None = None,
        iters: int = 30,
        damping: float = 0.03,
        rot_weight: float = 0.5,
        rest_gain: float = 0.1,
        tol: float = 1e-4,
    ) -> IKResult:
        """Damped least squares IK for the end-effector site.

        Iterates ``dq = J^T (J J^T + damping^2 I)^-1 e`` on the 6-D error ``e`` (position,
        and ``rot_weight`` x orientation error; orientation is free when ``rot`` is None),
        plus a null-space pull toward :data:`HOME_Q`, clipped to the joint limits (less
        2 cm). Starts at ``q0`` (default home). Returns the last iterate even if the
        target is out of reach; check ``pos_err``.
        """
        pos = np.asarray(pos, dtype=float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise SceneError(f"IK target position must be 3 finite values, got {pos!r}")
        q = (HOME_Q if q0 is None else np.asarray(q0, dtype=float)).copy()
        rows = slice(0, 3) if rot is None else slice(0, 6)
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
            jac = self.jacobian(q)[rows]  # (r, 7)
            if rot is not None:
                jac[3:] *= rot_weight
            jjt = jac @ jac.T + damping**2 * np.eye(jac.shape[0])
            pinv = jac.T @ np.linalg.inv(jjt)  # (7, r)
            dq = pinv @ err[rows]
            dq += (np.eye(7) - pinv @ jac) @ (rest_gain * (HOME_Q - q))
            scale = max(1.0, np.abs(dq).max() / 0.3)  # at most 0.3 rad per iteration
            q = np.clip(q + dq / scale, self.lower, self.upper)
        return IKResult(q, pos_err, rot_err)
