"""Calibration files of the simulated cameras, as a calibrated real camera would come with.

The scene's cameras (:data:`reflexarc.sim.assets.CAMERAS`) are pinholes with a vertical field
of view and square frames, the same in both backends. This writes each fixed camera's
intrinsics and pose in the robot's base frame (= the world frame of the scenes) to the file
perception reads (:mod:`reflexarc.perception.calibration`):

    python -m reflexarc.sim.calibration   # rewrites perception/calibration/sim-<camera>-<backend>.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.sim.assets import CAMERAS, SceneError

REFERENCE_SIZE = 64  # the resolution the files give the intrinsics at (they scale)
#: Where each backend's renderer puts the principal point, in pixels from the image centre
#: ((size - 1) / 2): MuJoCo's is at the centre; PyBullet's tiny renderer samples half a
#: pixel off in both axes (the blob centroids of blocks at known places sit 0.50 px right
#: and 0.51 px up of their projection at 64 and 128 px, tests/perception/test_objects.py).
PRINCIPAL_OFFSET: dict[str, tuple[float, float]] = {"mujoco": (0.0, 0.0),
                                                    "pybullet": (0.5, -0.5)}
#: Where the project ships calibration files (read by reflexarc.perception.calibration).
CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "perception" / "calibration"


def camera_calibration(camera: str = "front", backend: str = "mujoco",
                       size: int = REFERENCE_SIZE) -> dict[str, Any]:
    """The calibration of the fixed camera ``camera`` of ``backend`` at ``size`` x ``size``
    pixels, as the file's mapping (perception/calibration.py: ``K`` (3, 3),
    ``T_base_camera`` (4, 4))."""
    if backend not in PRINCIPAL_OFFSET:
        raise SceneError(f"no backend {backend!r}; backends: {', '.join(PRINCIPAL_OFFSET)}")
    cam = CAMERAS.get(camera)
    if cam is None:
        raise SceneError(f"no camera {camera!r}; cameras: {', '.join(CAMERAS)}")
    if cam.body is not None:
        raise SceneError(f"camera {camera!r} rides on {cam.body}: its pose is not fixed")
    f = size / 2 / np.tan(np.radians(cam.fovy) / 2)
    du, dv = PRINCIPAL_OFFSET[backend]
    c = (size - 1) / 2
    K = np.array([[f, 0.0, c + du], [0.0, f, c + dv], [0.0, 0.0, 1.0]])
    x, y = cam.axes()  # image right, image up, in the world
    fwd = np.asarray(cam.forward, float)
    fwd = fwd / np.linalg.norm(fwd)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, -y, fwd], axis=1)  # OpenCV camera axes: right, down, forward
    T[:3, 3] = cam.pos
    return {"camera": camera, "width": size, "height": size,
            "K": [[round(float(v), 9) for v in row] for row in K],
            "T_base_camera": [[round(float(v), 9) for v in row] for row in T]}


def shipped_name(camera: str, backend: str) -> str:
    """The name of a simulated camera's shipped calibration file (``sim-front-mujoco``)."""
    return f"sim-{camera}-{backend}"


def write_all(out_dir: Path = CALIBRATION_DIR) -> list[Path]:
    """Write the calibration of every fixed simulated camera into ``out_dir``."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, cam in CAMERAS.items():
        for backend in PRINCIPAL_OFFSET if cam.body is None else ():
            path = out_dir / f"{shipped_name(name, backend)}.yaml"
            path.write_text(yaml.safe_dump(camera_calibration(name, backend), sort_keys=False,
                                           default_flow_style=None))
            paths.append(path)
    return paths


def main() -> int:
    for p in write_all():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
