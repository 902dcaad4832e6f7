"""Robot description and scene constants shared by both simulator backends.

The robot is the Franka Panda described by the URDF and meshes shipped in the pybullet
wheel (``pybullet_data/franka_panda``). Nothing is downloaded: the path is resolved at
run time and the URDF text is patched in memory (absolute mesh paths, MuJoCo compiler
options, optionally the simplified collision meshes for rendering too).

Conventions (docs/architecture.md, "Conventions"): world frame = Panda base frame, x forward,
y left, z up, metres; the table top is z = 0.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reflexarc.runtime.errors import ReflexarcError


class SceneError(ReflexarcError):
    """A scene, task or environment was misconfigured or asked for something it lacks."""


def has_display() -> bool:
    """Whether a window can be opened (X11 or Wayland on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


# --------------------------------------------------------------------------------------
# Robot
# --------------------------------------------------------------------------------------

ARM_JOINTS: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")
HAND_LINK = "panda_hand"
EE_LINK = "panda_grasptarget"  # between the fingertips, 0.105 m below the flange
EE_SITE = "ee"  # MuJoCo site on EE_LINK (the end-effector frame of every scene)

#: Effort limits of the URDF, N m.
TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
#: Joint limits of the URDF, rad. (7, 2)
JOINT_LIMITS = np.array(
    [
        [-2.9671, 2.9671],
        [-1.8326, 1.8326],
        [-2.9671, 2.9671],
        [-3.1416, 0.0],
        [-2.9671, 2.9671],
        [-0.0873, 3.8223],
        [-2.9671, 2.9671],
    ]
)
FINGER_MAX = 0.04  # opening of one finger, m (gripper opening = 2 * finger)
FINGER_FORCE = 20.0  # N, URDF effort limit of a finger

#: Home configuration: the hand points down, fingers close along world y,
#: end effector at (0.4, 0, 0.3).
HOME_Q = np.array([0.0, -0.4207, 0.0, -2.5762, 0.0, 2.1555, 0.7854])

#: Joint-space PD gains of the scenes' position mode (N m / rad, N m s / rad): critically
#: damped at 25 rad/s for the diagonal of the mass matrix at HOME_Q
#: ([1.73, 2.19, 1.67, 1.72, 0.81, 0.74, 0.60] kg m^2; the URDF's inertias are large).
#: Stiffer gains make the joint-1/joint-3 null-space mode ring at 500 Hz.
KP = np.array([1100.0, 1400.0, 1050.0, 1100.0, 500.0, 450.0, 375.0])
KD = np.array([85.0, 110.0, 85.0, 85.0, 40.0, 37.0, 30.0])


def gripper_target(command: float) -> float:
    """Map a gripper command in [-1 close, 1 open] to a finger position in [0, FINGER_MAX]."""
    return float(np.clip(0.5 * (command + 1.0), 0.0, 1.0) * FINGER_MAX)


def panda_dir() -> Path:
    """Folder of the Panda URDF and meshes inside the installed pybullet_data."""
    try:
        import pybullet_data
    except ImportError as e:  # pragma: no cover - pybullet is a dependency
        raise SceneError("pybullet_data is not installed; `pip install pybullet`") from e
    path = Path(pybullet_data.getDataPath()) / "franka_panda"
    if not (path / "panda.urdf").is_file():
        raise SceneError(f"no Panda URDF at {path}/panda.urdf (is the pybullet wheel complete?)")
    return path


def panda_urdf(meshes: str = "collision", mujoco_compiler: bool = False) -> str:
    """The Panda URDF text with absolute mesh paths.

    Args:
        meshes: "visual" keeps the detailed visual meshes (about 100k triangles);
            "collision" draws the collision meshes instead (about 3k triangles), which
            makes software rendering 20x faster and looks the same at 64-224 px.
        mujoco_compiler: insert a ``<mujoco><compiler .../></mujoco>`` element so MuJoCo
            keeps the visual geoms and every link as a body.
    """
    if meshes not in ("visual", "collision"):
        raise SceneError(f"meshes must be 'visual' or 'collision', got {meshes!r}")
    root = panda_dir()
    text = (root / "panda.urdf").read_text()
    text = text.replace("package://", f"{root.as_posix()}/")
    if meshes == "collision":
        text = text.replace("meshes/visual/", "meshes/collision/")
    if mujoco_compiler:
        compiler = (
            '<mujoco><compiler strippath="false" discardvisual="false" '
            'fusestatic="false" balanceinertia="true" angle="radian"/></mujoco>'
        )
        text = re.sub(r"(<robot[^>]*>)", r"\1" + compiler, text, count=1)
    return text


# --------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------

BLOCK_SIZE = 0.05  # edge of a block, m
BLOCK_MASS = 0.1  # kg
BLOCK_COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.12, 0.7, 0.2, 1.0),
    "blue": (0.15, 0.3, 0.9, 1.0),
}
TABLE_HALF = (0.6, 0.6, 0.025)  # half extents, m
TABLE_CENTER = (0.35, 0.0, -0.025)
TABLE_RGBA = (0.62, 0.55, 0.45, 1.0)
FLOOR_Z = -0.75
FLOOR_RGBA = (0.3, 0.32, 0.35, 1.0)
ROBOT_RGBA = (0.92, 0.92, 0.92, 1.0)
HAND_RGBA = (0.25, 0.25, 0.25, 1.0)

WORKSPACE = np.array([[0.25, 0.75], [-0.35, 0.35], [0.0, 0.5]])  # (3, 2) EE box
SPAWN = np.array([[0.4, 0.6], [-0.2, 0.2]])  # (2, 2) block spawn area
TARGETS = np.array([[0.35, 0.65], [-0.25, 0.25]])  # (2, 2) target area


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera, the same in both backends.

    ``body`` is None for a camera fixed in the world, or the link it rides on; ``pos``,
    ``forward`` and ``up`` are then in that link's frame. ``fovy`` is in degrees.
    """

    name: str
    pos: tuple[float, float, float]
    forward: tuple[float, float, float]
    up: tuple[float, float, float]
    fovy: float
    body: str | None = None
    near: float = 0.01
    far: float = 10.0

    def axes(self) -> np.ndarray:
        """Camera x and y axes (image right, image up) in the parent frame. (2, 3)"""
        f = np.asarray(self.forward, float)
        f = f / np.linalg.norm(f)
        u = np.asarray(self.up, float)
        x = np.cross(f, u)
        x /= np.linalg.norm(x)
        y = np.cross(x, f)
        return np.stack([x, y])


def _look(eye: tuple[float, float, float], target: tuple[float, float, float]):
    return tuple(float(t - e) for e, t in zip(eye, target, strict=True))


# The front camera looks at the workspace from the front-left, a little above, so the
# hand's height and the blocks are both visible.
FRONT_EYE = (1.25, 0.5, 0.75)
CAMERAS: dict[str, CameraSpec] = {
    "front": CameraSpec("front", FRONT_EYE, _look(FRONT_EYE, (0.45, 0.0, 0.12)), (0, 0, 1), 50.0),
    "wrist": CameraSpec(
        "wrist", (0.06, 0.0, 0.02), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), 75.0, HAND_LINK
    ),
}
