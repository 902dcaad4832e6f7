"""What the LLM is asked, the JSON schema its reply must follow, and how a reply is read.

The schema enumerates the scene's objects, places, directions and relations, so a server
that enforces ``response_format`` cannot even name anything else. A reply is still
validated field by field here (servers differ in how strictly they enforce schemas), and
then by :func:`reflexarc.planner.instruct.spec.resolve` against the workspace.
"""

from __future__ import annotations

import math
import re
from typing import Any

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.spec import (
    DIRECTIONS,
    MAX_DISTANCE,
    RELATIONS,
    TASKS,
    Intent,
    Target,
)

REPLY_TARGET_TYPES = ("place", "direction", "relation", "position", "none")
MAX_TEXT = 300


def reply_schema(scene: SceneInfo) -> dict[str, Any]:
    """JSON schema of the reply for ``scene`` (strict: every field required, no others)."""
    objects = [*scene.names, ""]

    def enum(values: list[str] | tuple[str, ...]) -> dict[str, Any]:
        return {"type": "string", "enum": list(values)}

    props: dict[str, Any] = {
        "task": enum([*TASKS, "none"]),
        "object": enum(objects),
        "target_type": enum(REPLY_TARGET_TYPES),
        "place": enum([*scene.places, ""]),
        "direction": enum([*DIRECTIONS, ""]),
        "distance_m": {"type": "number"},
        "relation": enum([*RELATIONS, ""]),
        "reference": enum(objects),
        "position": {"type": "array", "items": {"type": "number"}},
        "refusal": {"type": "string"},
    }
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def messages(text: str, scene: SceneInfo, distance: float) -> list[dict[str, str]]:
    """The chat messages for instruction ``text`` in ``scene`` (a system prompt describing
    the scene and the reply fields, then the instruction)."""
    objs = "; ".join(
        f"{o.name} ({o.colour or 'no colour'} {o.size * 100:.0f} cm cube) at "
        f"({o.pos[0]:.3f}, {o.pos[1]:.3f}, {o.pos[2]:.3f})"
        for o in scene.objects
    )
    places = ", ".join(f"{k} ({v[0]:.2f}, {v[1]:.2f})" for k, v in scene.places.items())
    ee = ", ".join(f"{v:.3f}" for v in scene.ee_pos)
    system = f"""You turn one instruction for a robot arm at a table into a JSON task spec.
World frame: x forward (away from the robot), y to the robot's left, z up, metres; table top z = 0.
Objects: {objs}. The hand is at ({ee}).
Tasks: "reach" moves the hand (to an object: relation "at" with that object as reference; to a place; or in a direction from where it is).
"push" slides an object along the table. "pick_place" lifts an object and puts it down (needed to put it on top of another object).
Target, by target_type:
- "place": place is one of: {places}. front = near the robot, back = far from it.
- "direction": direction is one of {", ".join(DIRECTIONS)} (forward = away from the robot, backward = towards it), from the object's current position (reach: from the hand); distance_m in metres, 0 for the default {distance:g} m.
- "relation": relation is one of {", ".join(RELATIONS)} and reference is the other object ("on" = on top of it, pick_place only).
- "position": position is [x, y, z], inside x in [{scene.x_range[0]:g}, {scene.x_range[1]:g}], y in [{scene.y_range[0]:g}, {scene.y_range[1]:g}].
"object" is the object the task moves ("" for a reach to a place or in a direction).
Unused fields: "" (strings), 0 (distance_m), [] (position).
If the instruction cannot be done with these objects and targets, names something that is not there, asks for several tasks, or is unclear, set task to "none" and say why in "refusal" (one short sentence); otherwise refusal is "".
Reply with the JSON object only."""
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _text(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInstruction(key, f"must be a string, got {type(value).__name__}")
    return value.strip()


def clean(text: str) -> str:
    """Printable, single-line, at most MAX_TEXT characters (for text from outside)."""
    text = re.sub(r"\s+", " ", text)
    text = "".join(c for c in text if c.isprintable())
    return text[:MAX_TEXT] + ("..." if len(text) > MAX_TEXT else "")


def interpret_reply(reply: dict[str, Any], scene: SceneInfo) -> tuple[Intent | None, str]:
    """Read a reply: (intent, "") or (None, the LLM's reason to refuse).

    Raises InvalidInstruction naming the field when the reply names a task, object, place,
    direction or relation that does not exist, or a malformed distance or position. The
    workspace check comes after, in :func:`resolve`.
    """
    refusal = _text(reply, "refusal")
    task = _text(reply, "task")
    if refusal or task in ("none", ""):
        return None, clean(refusal or "the LLM gave no task")
    if task not in TASKS:
        raise InvalidInstruction("task", f"unknown task {clean(task)!r}; allowed: {', '.join(TASKS)}")
    obj = _text(reply, "object")
    if obj and obj not in scene.by_name:
        raise InvalidInstruction(
            "object", f"no object {clean(obj)!r} in the scene; objects: {', '.join(scene.names)}"
        )
    kind = _text(reply, "target_type")
    if kind == "place":
        place = _text(reply, "place")
        if place not in scene.places:
            raise InvalidInstruction(
                "place", f"unknown place {clean(place)!r}; places: {', '.join(scene.places)}"
            )
        target = Target("place", place)
    elif kind == "direction":
        direction = _text(reply, "direction")
        if direction not in DIRECTIONS:
            raise InvalidInstruction(
                "direction", f"unknown direction {clean(direction)!r}; directions: {', '.join(DIRECTIONS)}"
            )
        d = reply.get("distance_m", 0)
        if d is None:
            d = 0
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d):
            raise InvalidInstruction("distance_m", f"must be a number, got {clean(repr(d))}")
        if not 0 <= d <= MAX_DISTANCE:
            raise InvalidInstruction("distance_m", f"{d:g} m is outside [0, {MAX_DISTANCE}] m")
        target = Target("direction", direction, distance=float(d) if d > 0 else None)
    elif kind == "relation":
        relation = _text(reply, "relation")
        if relation not in RELATIONS:
            raise InvalidInstruction(
                "relation", f"unknown relation {clean(relation)!r}; relations: {', '.join(RELATIONS)}"
            )
        ref = _text(reply, "reference")
        if ref not in scene.by_name:
            raise InvalidInstruction(
                "reference", f"no object {clean(ref)!r} in the scene; objects: {', '.join(scene.names)}"
            )
        target = Target("relation", relation, ref=ref)
    elif kind == "position":
        pos = reply.get("position")
        if (
            not isinstance(pos, list)
            or len(pos) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos)
            or not all(math.isfinite(v) for v in pos)
        ):
            raise InvalidInstruction("position", f"must be 3 finite numbers, got {clean(repr(pos))}")
        target = Target("position", xyz=(float(pos[0]), float(pos[1]), float(pos[2])))
    else:
        raise InvalidInstruction(
            "target_type", f"got {clean(kind)!r}; allowed: {', '.join(REPLY_TARGET_TYPES[:-1])}"
        )
    if task == "reach":  # the hand moves: the object, if any, is the one it goes to
        obj = target.ref if kind == "relation" else ""
    return Intent(task, obj, target), ""
