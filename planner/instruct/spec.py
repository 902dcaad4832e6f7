"""Task intents and their resolution to a goal position.

An :class:`Intent` is what an instruction means, independent of where things are now:
a task, the object it acts on and a :class:`Target` (a named place, a direction from the
object's current position, a relation to another object, or an explicit position).
:func:`resolve` checks an intent against a :class:`SceneInfo` and turns it into a 3-D
target position inside the target area; anything that does not fit raises
:class:`InvalidInstruction`, which callers turn into a refusal. The fast parser, the
memory and the LLM all produce intents, so all three go through the same validation.

Targets as text (``TaskSpec.target``)::

    place:<name>                 place:left, place:back_right, place:center
    direction:<dir>[:<metres>]   direction:left:0.10 (from the object; reach: from the hand)
    <relation>:<object>          next_to:green, on:blue, left_of:green, at:red
    position:<x>,<y>,<z>         position:0.500,0.100,0.025
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.planner.instruct.scene import SceneInfo, SceneObject, Vec3
from reflexarc.runtime.msgs import Goal, TaskSpec

TASKS = ("reach", "push", "pick_place")
DIRECTIONS: dict[str, Vec3] = {
    "left": (0.0, 1.0, 0.0),
    "right": (0.0, -1.0, 0.0),
    "forward": (1.0, 0.0, 0.0),  # away from the robot
    "backward": (-1.0, 0.0, 0.0),  # towards the robot
    "up": (0.0, 0.0, 1.0),
    "down": (0.0, 0.0, -1.0),
}
TABLE_DIRECTIONS = ("left", "right", "forward", "backward")
RELATIONS = ("at", "on", "next_to", "left_of", "right_of", "in_front_of", "behind")
_SIDE_OF = {  # relation -> unit offset from the reference object
    "left_of": (0.0, 1.0),
    "right_of": (0.0, -1.0),
    "in_front_of": (-1.0, 0.0),  # between the object and the robot
    "behind": (1.0, 0.0),
}
TARGET_KINDS = ("place", "direction", "relation", "position")
MAX_DISTANCE = 0.5  # metres: no direction moves further than the workspace is wide


@dataclass(frozen=True, slots=True)
class Target:
    """Where the task should end. ``name`` is the place, direction or relation name;
    ``ref`` the reference object of a relation; ``distance`` a direction's length in metres
    (None: the configured default); ``xyz`` an explicit position."""

    kind: str
    name: str = ""
    ref: str = ""
    distance: float | None = None
    xyz: Vec3 | None = None

    @property
    def text(self) -> str:
        if self.kind == "place":
            return f"place:{self.name}"
        if self.kind == "direction":
            return f"direction:{self.name}" + ("" if self.distance is None else f":{self.distance:.3f}")
        if self.kind == "relation":
            return f"{self.name}:{self.ref}"
        if self.kind == "position" and self.xyz is not None:
            return "position:" + ",".join(f"{v:.3f}" for v in self.xyz)
        return self.kind

    @classmethod
    def parse(cls, text: str) -> Target:
        """Inverse of :attr:`text`. Raises InvalidInstruction on anything else."""
        head, _, rest = text.partition(":")
        try:
            if head == "place" and rest:
                return cls("place", rest)
            if head == "direction" and rest:
                name, _, dist = rest.partition(":")
                return cls("direction", name, distance=float(dist) if dist else None)
            if head == "position":
                xyz = tuple(float(v) for v in rest.split(","))
                if len(xyz) == 3:
                    return cls("position", xyz=xyz)  # type: ignore[arg-type]
            if head in RELATIONS and rest:
                return cls("relation", head, ref=rest)
        except ValueError:
            pass
        raise InvalidInstruction("target", f"cannot read target {text!r}")


@dataclass(frozen=True, slots=True)
class Intent:
    """What an instruction means: ``task`` on ``object`` ("" for a reach to a place or a
    direction) toward ``target``."""

    task: str
    object: str
    target: Target


@dataclass(frozen=True, slots=True)
class Resolved:
    """An intent checked against a scene: the target with its defaults filled in and the
    goal position (x, y, z) in the world frame."""

    intent: Intent
    pos: Vec3


def _rest_z(scene: SceneInfo, obj: SceneObject) -> float:
    return scene.table_z + 0.5 * obj.size


def _outside(scene: SceneInfo, what: str, pos: Vec3) -> InvalidInstruction:
    return InvalidInstruction(
        "target",
        f"{what} resolves to ({pos[0]:.3f}, {pos[1]:.3f}, {pos[2]:.3f}), outside the "
        f"target area {scene.bounds_text()}",
    )


def resolve(intent: Intent, scene: SceneInfo, distance: float = 0.10) -> Resolved:
    """Validate ``intent`` against ``scene`` and compute its goal position.

    ``distance`` is the default length of a direction ("to the left") in metres.
    push and pick_place act on an object and put it down at the target (z = its resting
    height, or on top of the reference object for ``on``); reach moves the hand: to the top
    of an object (``at``), ``reach_height`` above a place, or from its current position in
    a direction. Raises InvalidInstruction when the intent names an unknown task, object,
    place, direction or relation, or when the goal leaves the target area.
    """
    task, target = intent.task, intent.target
    if task not in TASKS:
        raise InvalidInstruction("task", f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    reach = task == "reach"
    named = scene.object(intent.object) if intent.object else None
    if named is None and not reach:
        raise InvalidInstruction("object", f"{task} needs an object; objects: {', '.join(scene.names)}")
    mover = None if reach else named  # the object that moves; reach moves the hand

    if target.kind == "place":
        xy = scene.places.get(target.name)
        if xy is None:
            raise InvalidInstruction(
                "target", f"unknown place {target.name!r}; places: {', '.join(scene.places)}"
            )
        if named is not None and reach:
            raise InvalidInstruction("target", "reach goes to an object or to a place, not both")
        z = scene.table_z + scene.reach_height if mover is None else _rest_z(scene, mover)
        pos = (xy[0], xy[1], z)

    elif target.kind == "direction":
        unit = DIRECTIONS.get(target.name)
        if unit is None:
            raise InvalidInstruction(
                "target", f"unknown direction {target.name!r}; directions: {', '.join(DIRECTIONS)}"
            )
        if not reach and target.name not in TABLE_DIRECTIONS:
            raise InvalidInstruction(
                "target",
                f"{task} moves the object along the table: direction {target.name!r} is not "
                f"allowed; directions: {', '.join(TABLE_DIRECTIONS)}",
            )
        d = distance if target.distance is None else target.distance
        if not (isinstance(d, int | float) and math.isfinite(d) and 0.0 < d <= MAX_DISTANCE):
            raise InvalidInstruction("target", f"distance {d!r} m must be in (0, {MAX_DISTANCE}]")
        target = replace(target, distance=float(d))
        if named is not None and reach:
            raise InvalidInstruction("target", "reach moves the hand in a direction, not an object")
        start = scene.ee_pos if mover is None else mover.pos
        z = start[2] + d * unit[2] if mover is None else _rest_z(scene, mover)
        pos = (start[0] + d * unit[0], start[1] + d * unit[1], z)

    elif target.kind == "relation":
        if target.name not in RELATIONS:
            raise InvalidInstruction(
                "target", f"unknown relation {target.name!r}; relations: {', '.join(RELATIONS)}"
            )
        ref = scene.object(target.ref)
        if mover is not None and ref.name == mover.name:
            raise InvalidInstruction("target", f"{ref.name} cannot be placed relative to itself")
        if reach and named is not None and named.name != ref.name:
            raise InvalidInstruction(
                "object", f"reach goes to one object: object {named.name!r} but target {target.text!r}"
            )
        pos = _relation(scene, task, mover, target.name, ref)

    elif target.kind == "position":
        if target.xyz is None or len(target.xyz) != 3 or not all(map(math.isfinite, target.xyz)):
            raise InvalidInstruction("target", f"position must be 3 finite numbers, got {target.xyz}")
        pos = tuple(float(v) for v in target.xyz)  # type: ignore[assignment]

    else:
        raise InvalidInstruction(
            "target", f"unknown target kind {target.kind!r}; allowed: {', '.join(TARGET_KINDS)}"
        )

    if not scene.inside(pos):
        raise _outside(scene, target.text, pos)
    if mover is not None and not (target.kind == "relation" and target.name == "on"):
        _free(scene, mover, target.text, pos)
    return Resolved(replace(intent, target=target), pos)


def _free(scene: SceneInfo, mover: SceneObject, text: str, pos: Vec3) -> None:
    """Raise when another object stands where ``mover`` is to be put down: the two would
    overlap (centres closer than their half sizes added), so pushing or placing it there
    would shove the other one."""
    for o in scene.objects:
        if o.name == mover.name:
            continue
        d = math.hypot(o.pos[0] - pos[0], o.pos[1] - pos[1])
        if d < 0.5 * (o.size + mover.size):
            raise InvalidInstruction(
                "target", f"{text} puts {mover.name} at ({pos[0]:.3f}, {pos[1]:.3f}), where "
                f"{o.name} stands ({100 * d:.1f} cm from it): there is no room"
            )


def _relation(
    scene: SceneInfo, task: str, mover: SceneObject | None, rel: str, ref: SceneObject
) -> Vec3:
    rx, ry, rz = ref.pos
    if rel == "at":
        if task != "reach":
            raise InvalidInstruction("target", f"'at:{ref.name}' is a reach target; {task} needs a place")
        return (rx, ry, rz + 0.5 * ref.size)
    if rel == "on":
        if task == "push":
            raise InvalidInstruction(
                "task", f"a push cannot put an object on top of {ref.name}; that is pick_place"
            )
        return (rx, ry, rz + 0.5 * ref.size + (0.5 * mover.size if mover is not None else 0.0))
    size = mover.size if mover is not None else 0.0
    gap = 0.5 * ref.size + 0.5 * size + scene.clearance
    z = scene.table_z + scene.reach_height if task == "reach" else _rest_z(scene, mover)  # type: ignore[arg-type]
    if rel in _SIDE_OF:
        ux, uy = _SIDE_OF[rel]
        return (rx + gap * ux, ry + gap * uy, z)
    # next_to: the free side inside the target area closest to where the mover is now
    start = scene.ee_pos if mover is None else mover.pos
    best: Vec3 | None = None
    best_d = math.inf
    for ux, uy in _SIDE_OF.values():
        cand = (rx + gap * ux, ry + gap * uy, z)
        if not scene.inside(cand):
            continue
        if any(
            o.name not in (ref.name, mover.name if mover else "")
            and math.hypot(o.pos[0] - cand[0], o.pos[1] - cand[1]) < 0.5 * (o.size + size) + scene.clearance
            for o in scene.objects
        ):
            continue
        d = math.hypot(cand[0] - start[0], cand[1] - start[1])
        if d < best_d:
            best, best_d = cand, d
    if best is None:
        raise InvalidInstruction(
            "target", f"no free place next to {ref.name} inside the target area {scene.bounds_text()}"
        )
    return best


# --------------------------------------------------------------------------------------
# Task specs on the wire
# --------------------------------------------------------------------------------------


def task_spec(
    resolved: Resolved, confidence: float, source: str, stamp_ns: int = 0
) -> TaskSpec:
    """The wire message of a resolved intent."""
    it = resolved.intent
    return TaskSpec(
        stamp_ns=stamp_ns,
        task=it.task,
        object=it.object,
        target=it.target.text,
        target_pos=np.asarray(resolved.pos, dtype=np.float64),
        confidence=float(confidence),
        source=source,
    )


def refusal(
    reason: str,
    source: str,
    confidence: float = 0.0,
    intent: Intent | None = None,
    stamp_ns: int = 0,
) -> TaskSpec:
    """A TaskSpec that refuses the instruction; ``reason`` says why and what is possible.

    ``intent`` (the best guess, if any) fills task/object/target for the reader's benefit;
    ``target_pos`` stays empty, so a refusal can never be mistaken for a goal.
    """
    return TaskSpec(
        stamp_ns=stamp_ns,
        task=intent.task if intent else "",
        object=intent.object if intent else "",
        target=intent.target.text if intent else "",
        target_pos=np.zeros(0, dtype=np.float64),
        confidence=float(confidence),
        source=source,
        refusal=reason or "refused",
    )


def spec_dict(spec: TaskSpec) -> dict:
    """A JSON-ready dict of a TaskSpec (what ``reflexarc say dry_run=true`` prints)."""
    return {
        "task": spec.task,
        "object": spec.object,
        "target": spec.target,
        "target_pos": [round(float(v), 4) for v in spec.target_pos],
        "confidence": round(float(spec.confidence), 3),
        "source": spec.source,
        "refusal": spec.refusal,
    }


def goal_from_spec(spec: TaskSpec) -> Goal | None:
    """The planner Goal of an accepted TaskSpec (None for a refusal)."""
    if spec.refusal or len(spec.target_pos) != 3:
        return None
    return Goal(
        stamp_ns=spec.stamp_ns,
        task=spec.task,
        object=spec.object,
        target=np.asarray(spec.target_pos, dtype=np.float64),
        image=np.zeros((0, 0, 3), dtype=np.uint8),
        z=np.zeros(0, dtype=np.float32),
        source="instruction",
    )
