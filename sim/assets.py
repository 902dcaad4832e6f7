"""Scene constants shared by both simulator backends: the table, the blocks, the cameras.

The robot's facts (model, joints, limits, gains, home pose) are its description
(:mod:`reflexarc.robot.panda`, docs/robots.md), not repeated here. Conventions
(docs/architecture.md, "Conventions"): world frame = the robot's base frame, x forward,
y left, z up, metres; the table top is z = 0.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

import numpy as np

from reflexarc.robot.description import RobotDescription
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.errors import ReflexarcError


class SceneError(ReflexarcError):
    """A scene, task or environment was misconfigured or asked for something it lacks."""


def has_display() -> bool:
    """Whether a window can be opened (X11 or Wayland on Linux; assumed elsewhere)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


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

SPAWN_MARGIN = 0.05  # m blocks spawn inside the robot's table area (RobotDescription.table_area)
TARGETS = PANDA.table_box  # (2, 2) the Panda's target area
SPAWN = TARGETS + [SPAWN_MARGIN, -SPAWN_MARGIN]  # (2, 2) the Panda's block spawn area


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


HAND = "hand"  # CameraSpec.body of a camera on the robot's hand


def _look(eye: tuple[float, float, float], target: tuple[float, float, float]):
    return tuple(float(t - e) for e, t in zip(eye, target, strict=True))


# The front camera looks at the workspace from the front-left, a little above, so the
# hand's height and the blocks are both visible.
FRONT_EYE = (1.25, 0.5, 0.75)
CAMERAS: dict[str, CameraSpec] = {
    "front": CameraSpec("front", FRONT_EYE, _look(FRONT_EYE, (0.45, 0.0, 0.12)), (0, 0, 1), 50.0),
    # on the robot's hand (RobotDescription.hand_link, at its wrist_camera position)
    "wrist": CameraSpec(
        "wrist", PANDA.wrist_camera, (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), 75.0, HAND
    ),
}


def robot_camera(cam: CameraSpec, robot: RobotDescription) -> CameraSpec:
    """``cam`` on ``robot``: a camera on the hand rides on its ``hand_link`` at its
    ``wrist_camera`` position; a camera fixed in the world is returned as is."""
    if cam.body != HAND:
        return cam
    return replace(cam, body=robot.hand_link, pos=robot.wrist_camera)
