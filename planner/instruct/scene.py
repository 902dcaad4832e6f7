"""What the instruct node knows about the scene: objects, where they are, where goals may go.

:class:`SceneInfo` is filled from the simulator's :class:`reflexarc.runtime.msgs.SceneState` (or built by
hand on a real robot). The default is the default table scene (docs/architecture.md, "Conventions"): three 5 cm
blocks named by colour on a table whose top is z = 0, targets inside x in [0.35, 0.65],
y in [-0.25, 0.25] (world frame = Panda base: x forward, y left, z up, metres).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType

import numpy as np

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.runtime.msgs import Objects, SceneState

Vec3 = tuple[float, float, float]

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "black", "white",
           "brown", "grey", "gray", "cyan", "magenta")
"""Colour words the parser recognises; only those of objects in the scene can be chosen."""


@dataclass(frozen=True)
class SceneObject:
    """One movable object: its name (what messages call it), colour and current centre."""

    name: str
    pos: Vec3
    colour: str = ""
    size: float = 0.05  # edge length of the cube, metres


def default_places(
    x_range: tuple[float, float], y_range: tuple[float, float], margin: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Named table places (x, y) inside the target area, ``margin`` in from its edges.

    front = near the robot (small x), back = far (large x), left = +y, right = -y.
    """
    x0, x1 = x_range[0] + margin, x_range[1] - margin
    y0, y1 = y_range[0] + margin, y_range[1] - margin
    xc, yc = 0.5 * (x_range[0] + x_range[1]), 0.5 * (y_range[0] + y_range[1])
    return {
        "center": (xc, yc),
        "left": (xc, y1),
        "right": (xc, y0),
        "front": (x0, yc),
        "back": (x1, yc),
        "front_left": (x0, y1),
        "front_right": (x0, y0),
        "back_left": (x1, y1),
        "back_right": (x1, y0),
    }


_X_RANGE = (0.35, 0.65)
_Y_RANGE = (-0.25, 0.25)


@dataclass(frozen=True)
class SceneInfo:
    """The scene as the instruct node sees it.

    ``x_range``/``y_range`` bound every target (the target area, docs/architecture.md, "Conventions"),
    ``z_range`` bounds target heights. ``places`` maps place names to (x, y).
    ``reach_height`` is the end-effector height above the table for a reach to a place;
    ``clearance`` the gap left between two blocks placed next to each other.
    """

    objects: tuple[SceneObject, ...] = (
        SceneObject("red", (0.50, 0.00, 0.025), "red"),
        SceneObject("green", (0.45, 0.12, 0.025), "green"),
        SceneObject("blue", (0.58, -0.12, 0.025), "blue"),
    )
    ee_pos: Vec3 = (0.45, 0.0, 0.20)
    x_range: tuple[float, float] = _X_RANGE
    y_range: tuple[float, float] = _Y_RANGE
    z_range: tuple[float, float] = (0.0, 0.5)
    table_z: float = 0.0
    reach_height: float = 0.10
    clearance: float = 0.03
    places: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: MappingProxyType(default_places(_X_RANGE, _Y_RANGE))
    )

    def __post_init__(self) -> None:
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise InvalidInstruction("scene", f"object names must be unique, got {names}")
        if not isinstance(self.places, MappingProxyType):
            object.__setattr__(self, "places", MappingProxyType(dict(self.places)))

    # ------------------------------------------------------------------ look-ups

    @cached_property
    def by_name(self) -> Mapping[str, SceneObject]:
        return MappingProxyType({o.name: o for o in self.objects})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objects)

    def object(self, name: str) -> SceneObject:
        """The object called ``name``; raises InvalidInstruction naming the scene's objects."""
        obj = self.by_name.get(name)
        if obj is None:
            known = ", ".join(self.names) or "none"
            raise InvalidInstruction("object", f"no object {name!r} in the scene; objects: {known}")
        return obj

    def inside(self, pos: Vec3, tol: float = 1e-9) -> bool:
        """Whether ``pos`` lies inside the target area and height range."""
        x, y, z = pos
        return (
            self.x_range[0] - tol <= x <= self.x_range[1] + tol
            and self.y_range[0] - tol <= y <= self.y_range[1] + tol
            and self.z_range[0] - tol <= z <= self.z_range[1] + tol
        )

    def bounds_text(self) -> str:
        (x0, x1), (y0, y1), (z0, z1) = self.x_range, self.y_range, self.z_range
        return f"x in [{x0:g}, {x1:g}], y in [{y0:g}, {y1:g}], z in [{z0:g}, {z1:g}]"

    @cached_property
    def signature(self) -> str:
        """A short hash of what an instruction's meaning depends on: the objects (names,
        colours), the target area and the named places; not the objects' positions, so a
        remembered instruction still applies after the blocks have moved."""
        parts = [f"{o.name}:{o.colour}" for o in sorted(self.objects, key=lambda o: o.name)]
        parts.append(f"x{self.x_range} y{self.y_range} z{self.z_range}")
        parts += [f"{k}={v[0]:.3f},{v[1]:.3f}" for k, v in sorted(self.places.items())]
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ construction

    def with_positions(self, positions: Mapping[str, Vec3], ee_pos: Vec3 | None = None) -> SceneInfo:
        """A copy with some objects moved (and optionally the end effector)."""
        objects = tuple(
            replace(o, pos=tuple(map(float, positions[o.name]))) if o.name in positions else o
            for o in self.objects
        )
        return replace(self, objects=objects, ee_pos=self.ee_pos if ee_pos is None else ee_pos)

    @classmethod
    def from_objects(cls, msg: Objects, ee_pos: Vec3 | None = None,
                     base: SceneInfo | None = None) -> SceneInfo:
        """The scene as perception sees it: the blocks of an Objects message (names are
        colours, positions in the base frame) and the hand at ``ee_pos`` (forward
        kinematics of the measured joints; None: ``base``'s); bounds, places and sizes
        come from ``base`` (default scene). An object not seen in the frame is not in it."""
        base = cls() if base is None else base
        names = [n.strip() for n in msg.names.split(",") if n.strip()]
        pos = np.asarray(msg.position, dtype=np.float64).reshape(-1, 3)
        if pos.shape[0] != len(names):
            raise InvalidInstruction(
                "scene", f"Objects lists {len(names)} names but {pos.shape[0]} positions")
        sizes = {o.name: o.size for o in base.objects}
        objects = tuple(
            SceneObject(name, tuple(float(v) for v in pos[i]),  # type: ignore[arg-type]
                        name if name in COLOURS else "", sizes.get(name, 0.05))
            for i, name in enumerate(names)
        )
        return replace(base, objects=objects, ee_pos=base.ee_pos if ee_pos is None else ee_pos)

    @classmethod
    def from_scene_state(cls, msg: SceneState, base: SceneInfo | None = None) -> SceneInfo:
        """The scene of a simulator's SceneState: its objects (names, positions) and the
        end-effector position; bounds, places and sizes come from ``base`` (default scene).

        An object's colour is the colour word in its name ("red", "red_block"), if any.
        """
        base = cls() if base is None else base
        names = [n.strip() for n in msg.names.split(",") if n.strip()]
        poses = np.asarray(msg.objects, dtype=np.float64).reshape(-1, 7) if len(names) else None
        if poses is not None and poses.shape[0] != len(names):
            raise InvalidInstruction(
                "scene", f"SceneState lists {len(names)} names but {poses.shape[0]} object poses"
            )
        sizes = {o.name: o.size for o in base.objects}
        objects = []
        for i, name in enumerate(names):
            words = name.lower().replace("-", "_").split("_")
            colour = next((w for w in words if w in COLOURS), "")
            pos = tuple(float(v) for v in poses[i, :3])  # type: ignore[index]
            objects.append(SceneObject(name, pos, colour, sizes.get(name, 0.05)))  # type: ignore[arg-type]
        ee = tuple(float(v) for v in msg.ee_pos[:3]) if len(msg.ee_pos) >= 3 else base.ee_pos
        return replace(base, objects=tuple(objects), ee_pos=ee)  # type: ignore[arg-type]
