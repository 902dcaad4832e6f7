"""Rotations: unit quaternions (wxyz), rotation matrices and the small-angle error between them."""

from __future__ import annotations

import math

import mujoco
import numpy as np


def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion (4,) wxyz."""
    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def mat_to_quat(mat: np.ndarray) -> np.ndarray:
    """Unit quaternion (4,) wxyz of a rotation matrix (3, 3)."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=float).reshape(-1))
    return quat


def nlerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """Normalised linear interpolation of unit quaternions (4,), shortest way round."""
    if float(a @ b) < 0.0:
        b = -b
    q = (1.0 - w) * a + w * b
    return q / math.sqrt(float(q @ q))


def rotation_error(rot: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector (3,) taking ``rot`` to ``target`` (both (3, 3)), world frame.

    ``0.5 * sum_i rot[:, i] x target[:, i]``, written as the skew part of ``target rot^T``
    (``sin(angle) * axis``).
    """
    e = target @ rot.T
    return 0.5 * np.array([e[2, 1] - e[1, 2], e[0, 2] - e[2, 0], e[1, 0] - e[0, 1]])
