"""Intents resolved to goal positions: places, directions and relations land where they
should, inside the target area, or are refused with a reason."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.planner.instruct.scene import SceneInfo, SceneObject
from reflexarc.planner.instruct.spec import (
    DIRECTIONS,
    TABLE_DIRECTIONS,
    Intent,
    Target,
    goal_from_spec,
    refusal,
    resolve,
    task_spec,
)
from reflexarc.runtime.msgs import SceneState
from reflexarc.runtime.wire import decode, encode

SCENE = SceneInfo()


@pytest.mark.parametrize("place", list(SCENE.places))
@pytest.mark.parametrize("task", ["push", "pick_place"])
def test_every_place_is_inside_the_target_area_at_rest_height(place: str, task: str) -> None:
    r = resolve(Intent(task, "red", Target("place", place)), SCENE)
    assert SCENE.inside(r.pos)
    assert r.pos[2] == pytest.approx(0.025)  # a 5 cm block resting on the table top z = 0


def test_places_mean_what_their_names_say() -> None:
    p = {name: resolve(Intent("push", "red", Target("place", name)), SCENE).pos for name in SCENE.places}
    assert p["left"][1] > p["center"][1] > p["right"][1]  # y is to the robot's left
    assert p["back"][0] > p["center"][0] > p["front"][0]  # front = near the robot (small x)
    assert p["back_left"][:2] == (p["back"][0], p["left"][1])
    assert p["front_right"][:2] == (p["front"][0], p["right"][1])


@pytest.mark.parametrize("direction", TABLE_DIRECTIONS)
def test_a_direction_moves_the_object_by_the_distance(direction: str) -> None:
    start = np.array(SCENE.by_name["red"].pos)
    for distance, target in ((0.07, Target("direction", direction)), (0.05, Target("direction", direction, distance=0.05))):
        r = resolve(Intent("push", "red", target), SCENE, distance=0.07)
        step = np.array(r.pos) - start
        assert np.allclose(step, distance * np.array(DIRECTIONS[direction]))
        assert r.intent.target.distance == pytest.approx(distance)  # the default is filled in


def test_reach_directions_start_at_the_hand() -> None:
    r = resolve(Intent("reach", "", Target("direction", "up", distance=0.05)), SCENE)
    assert np.allclose(r.pos, np.array(SCENE.ee_pos) + [0, 0, 0.05])


def test_a_target_outside_the_workspace_is_refused_with_the_bounds() -> None:
    scene = SCENE.with_positions({"red": (0.5, 0.22, 0.025)})
    with pytest.raises(InvalidInstruction, match=r"outside the target area x in \[0.35, 0.65\], y in \[-0.25, 0.25\]"):
        resolve(Intent("push", "red", Target("direction", "left")), scene)
    with pytest.raises(InvalidInstruction, match="outside"):
        resolve(Intent("pick_place", "red", Target("position", xyz=(0.9, 0.0, 0.025))), SCENE)


def test_relations() -> None:
    green = np.array(SCENE.by_name["green"].pos)
    on = resolve(Intent("pick_place", "red", Target("relation", "on", ref="green")), SCENE).pos
    assert np.allclose(on, green + [0, 0, 0.05])  # stacked: one block higher
    left = resolve(Intent("push", "red", Target("relation", "left_of", ref="blue")), SCENE).pos
    assert left[1] > SCENE.by_name["blue"].pos[1] and left[0] == SCENE.by_name["blue"].pos[0]
    front = resolve(Intent("push", "red", Target("relation", "in_front_of", ref="blue")), SCENE).pos
    assert front[0] < SCENE.by_name["blue"].pos[0]
    at = resolve(Intent("reach", "red", Target("relation", "at", ref="red")), SCENE).pos
    assert np.allclose(at, np.array(SCENE.by_name["red"].pos) + [0, 0, 0.025])  # top face


def test_next_to_takes_the_free_side_nearest_the_object() -> None:
    red = SCENE.by_name["red"].pos
    pos = resolve(Intent("push", "red", Target("relation", "next_to", ref="green")), SCENE).pos
    green = SCENE.by_name["green"].pos
    gap = math.hypot(pos[0] - green[0], pos[1] - green[1])
    assert gap == pytest.approx(0.05 + SCENE.clearance)  # touching distance + clearance
    for ux, uy in ((1, 0), (-1, 0), (0, 1), (0, -1)):  # no other free side is nearer to red
        cand = (green[0] + gap * ux, green[1] + gap * uy, 0.025)
        if SCENE.inside(cand):
            assert math.dist(cand[:2], red[:2]) >= math.dist(pos[:2], red[:2]) - 1e-12
    # blocked on every side: refused
    crowded = SceneInfo(objects=(
        SceneObject("red", (0.50, 0.0, 0.025), "red"),
        SceneObject("green", (0.36, -0.24, 0.025), "green"),  # in the front right corner
        SceneObject("blue", (0.44, -0.24, 0.025), "blue"),  # behind it
        SceneObject("yellow", (0.36, -0.16, 0.025), "yellow"),  # left of it
    ))
    with pytest.raises(InvalidInstruction, match="no free place next to green"):
        resolve(Intent("push", "red", Target("relation", "next_to", ref="green")), crowded)


@pytest.mark.parametrize(
    "intent, match",
    [
        (Intent("fly", "red", Target("place", "left")), "unknown task"),
        (Intent("push", "yellow", Target("place", "left")), "no object 'yellow'.*objects: red, green, blue"),
        (Intent("push", "", Target("place", "left")), "push needs an object"),
        (Intent("push", "red", Target("place", "moon")), "unknown place"),
        (Intent("push", "red", Target("direction", "up")), "direction 'up' is not allowed"),
        (Intent("push", "red", Target("direction", "left", distance=-0.1)), "distance"),
        (Intent("push", "red", Target("relation", "on", ref="blue")), "pick_place"),
        (Intent("push", "red", Target("relation", "next_to", ref="red")), "relative to itself"),
        (Intent("pick_place", "red", Target("relation", "at", ref="blue")), "reach target"),
        (Intent("reach", "red", Target("place", "left")), "not both"),
        (Intent("reach", "red", Target("relation", "at", ref="blue")), "one object"),
    ],
)
def test_invalid_intents_are_refused_with_a_reason(intent: Intent, match: str) -> None:
    with pytest.raises(InvalidInstruction, match=match):
        resolve(intent, SCENE)


@pytest.mark.parametrize(
    "target",
    [Target("place", "back_left"), Target("direction", "left"), Target("direction", "right", distance=0.05),
     Target("relation", "next_to", ref="green"), Target("position", xyz=(0.5, 0.1, 0.025))],
)
def test_target_text_round_trip(target: Target) -> None:
    assert Target.parse(target.text) == target


def test_task_spec_and_goal_round_trip_on_the_wire() -> None:
    r = resolve(Intent("push", "red", Target("direction", "left")), SCENE)
    spec = task_spec(r, 0.95, "fast", stamp_ns=7)
    _, back = decode(encode("task_spec", spec))
    assert back == spec and back.target == "direction:left:0.100"
    goal = goal_from_spec(spec)
    assert goal is not None and np.allclose(goal.target, r.pos) and goal.source == "instruction"
    assert goal_from_spec(refusal("no", "fast")) is None
    _, back = decode(encode("goal", goal))
    assert back == goal


def test_scene_info_from_scene_state() -> None:
    msg = SceneState(
        ee_pos=np.array([0.4, 0.0, 0.3]), ee_quat=np.array([1.0, 0, 0, 0]),
        objects=np.array([[0.5, 0.1, 0.025, 1, 0, 0, 0], [0.55, -0.1, 0.025, 1, 0, 0, 0]]),
        names="red,blue_block", target=np.zeros(3),
    )
    scene = SceneInfo.from_scene_state(msg)
    assert scene.names == ("red", "blue_block")
    assert scene.by_name["blue_block"].colour == "blue" and scene.by_name["red"].pos == (0.5, 0.1, 0.025)
    assert scene.ee_pos == (0.4, 0.0, 0.3)
    # the signature ignores positions, not the set of objects
    assert scene.signature == scene.with_positions({"red": (0.4, 0.0, 0.025)}).signature
    assert scene.signature != SCENE.signature
    with pytest.raises(InvalidInstruction, match="2 names but 1 object"):
        SceneInfo.from_scene_state(msg.replace(objects=msg.objects[:1]))


def test_a_target_where_another_block_stands_is_refused() -> None:
    from reflexarc.planner.instruct.spec import Intent, Target, resolve

    scene = SceneInfo().with_positions({"green": (0.5, 0.12, 0.025)})  # 2 cm from red's goal
    with pytest.raises(InvalidInstruction, match=r"puts red at \(0.500, 0.100\), where green stands \(2.0 cm"):
        resolve(Intent("push", "red", Target("direction", "left")), scene)
    # a free spot, on top of the other block and reaching to it are fine
    free = scene.with_positions({"green": (0.5, 0.16, 0.025)})
    assert np.allclose(resolve(Intent("push", "red", Target("direction", "left")), free).pos, [0.5, 0.1, 0.025])
    assert resolve(Intent("pick_place", "red", Target("relation", "on", ref="green")), scene).pos[2] > 0.05
    assert resolve(Intent("reach", "", Target("place", "left")), scene).pos[1] == 0.2
