"""Camera calibration: a pinhole camera's intrinsics and its pose in the robot's base frame.

A calibration file is what a calibrated real camera comes with (the OpenCV conventions: the
camera frame has x right, y down, z along the optical axis; pixel ``(u, v)`` has its centre
at integer coordinates, ``u`` along a row). It is YAML::

    camera: front
    width: 64            # the resolution the intrinsics are given for
    height: 64
    K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    T_base_camera: [[...4 x 4...]]   # camera frame -> robot base frame (metres)

A frame of another resolution (same aspect) scales the intrinsics: a camera driver that
bins or crops says so in its own file. The simulated cameras' files are written by
``python -m reflexarc.sim.calibration`` from the scene's camera definitions and shipped in
``perception/calibration/`` (``sim-front-mujoco.yaml``, ``sim-front-pybullet.yaml``); perception reads them as it would read a
real camera's, and never asks the simulator where its camera is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.errors import ReflexarcError

#: The calibration files the project ships (the simulated cameras).
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


class CalibrationError(ReflexarcError):
    """A calibration file is missing, malformed, or does not fit the frame."""


def calibration_path(name: str | Path) -> Path:
    """A calibration file, or the shipped one of that name (``sim-front-mujoco``)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    shipped = CALIBRATION_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(f.stem for f in CALIBRATION_DIR.glob("*.yaml"))
    raise CalibrationError(
        f"no calibration file {str(name)!r}: give a .yaml path or a shipped name "
        f"({', '.join(known) or 'none'})"
    )


@dataclass(frozen=True)
class CameraCalibration:
    """Intrinsics ``K`` (3, 3) at ``width`` x ``height`` and the pose ``T_base_camera`` (4, 4)."""

    camera: str
    width: int
    height: int
    K: np.ndarray  # (3, 3)
    T_base_camera: np.ndarray  # (4, 4) camera frame -> base frame

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=float)
        T = np.asarray(self.T_base_camera, dtype=float)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CalibrationError(f"camera {self.camera!r}: K must be a 3x3 pinhole matrix "
                                   f"with positive focal lengths, got {K.tolist()}")
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise CalibrationError(f"camera {self.camera!r}: T_base_camera must be a finite "
                                   f"4x4 matrix, got shape {T.shape}")
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise CalibrationError(f"camera {self.camera!r}: the rotation of T_base_camera is "
                                   "not a proper rotation")
        if self.width < 1 or self.height < 1:
            raise CalibrationError(f"camera {self.camera!r}: width and height must be positive")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "T_base_camera", T)

    @property
    def position(self) -> np.ndarray:
        """The camera's optical centre in the base frame. (3,)"""
        return self.T_base_camera[:3, 3]

    def scaled(self, width: int, height: int) -> CameraCalibration:
        """The same camera at another resolution (binning or resampling the whole frame)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > 1e-9:
            raise CalibrationError(
                f"camera {self.camera!r}: a {width}x{height} frame is not a scaled "
                f"{self.width}x{self.height} one (another aspect ratio needs its own file)")
        K = self.K.copy()
        # pixel centres at integers: u' + 0.5 = s (u + 0.5)
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
        K[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
        return CameraCalibration(self.camera, width, height, K, self.T_base_camera)

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """Unit directions in the base frame of the rays through pixels ``uv`` (N, 2). (N, 3)"""
        uv = np.atleast_2d(np.asarray(uv, dtype=float))
        d_cam = np.stack([(uv[:, 0] - self.K[0, 2]) / self.K[0, 0],
                          (uv[:, 1] - self.K[1, 2]) / self.K[1, 1],
                          np.ones(len(uv))], axis=1)
        d = d_cam @ self.T_base_camera[:3, :3].T
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) of base-frame points (N, 3) (in front of the camera)."""
        p = np.atleast_2d(np.asarray(points, dtype=float))
        R, t = self.T_base_camera[:3, :3], self.T_base_camera[:3, 3]
        pc = (p - t) @ R  # (N, 3) in the camera frame
        uv = pc[:, :2] / pc[:, 2:3]
        return uv * [self.K[0, 0], self.K[1, 1]] + [self.K[0, 2], self.K[1, 2]]

    def on_plane(self, uv: np.ndarray, z: float | np.ndarray) -> np.ndarray:
        """Where the rays through pixels ``uv`` (N, 2) meet the horizontal plane(s) at height
        ``z`` (base frame). (N, 3); NaN where a ray does not go down to it."""
        d = self.rays(uv)
        c = self.position
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (np.asarray(z, dtype=float) - c[2]) / d[:, 2]
        s = np.where(s > 0, s, np.nan)
        return c + s[:, None] * d

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "width": int(self.width),
            "height": int(self.height),
            "K": [[round(float(v), 9) for v in row] for row in self.K],
            "T_base_camera": [[round(float(v), 9) for v in row] for row in self.T_base_camera],
        }

    def save(self, path: str | Path) -> Path:
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.as_dict(), sort_keys=False,
                                       default_flow_style=None))
        return path

    @classmethod
    def load(cls, name: str | Path) -> CameraCalibration:
        """Read a calibration file, or a shipped one by name (``sim-front-mujoco``)."""
        import yaml

        path = calibration_path(name)
        try:
            d = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise CalibrationError(f"cannot read {path}: {e}") from None
        if not isinstance(d, dict):
            raise CalibrationError(f"{path}: expected a mapping, got {type(d).__name__}")
        missing = [k for k in ("camera", "width", "height", "K", "T_base_camera") if k not in d]
        if missing:
            raise CalibrationError(f"{path}: missing {', '.join(missing)}")
        try:
            return cls(str(d["camera"]), int(d["width"]), int(d["height"]),
                       np.asarray(d["K"], dtype=float), np.asarray(d["T_base_camera"], dtype=float))
        except (TypeError, ValueError) as e:
            raise CalibrationError(f"{path}: {e}") from None
