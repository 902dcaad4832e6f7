"""The task layer decides stages from perceived positions only."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.planner.tasks import CLOSE, OPEN, TaskError, TaskLayer

BLOCK = np.array([0.5, 0.0, 0.025])
TARGET = np.array([0.4, 0.0, 0.025])  # a push toward the robot: along -x


def seen(layer: TaskLayer, pos: np.ndarray, conf: float = 1.0, stamp: int = 0) -> None:
    layer.see({layer.obj: (pos, conf), "green": (np.array([0.6, 0.2, 0.025]), 1.0)}, stamp)


def test_reach_goes_to_the_target_without_seeing_anything() -> None:
    layer = TaskLayer("reach", np.array([0.5, 0.1, 0.2]))
    st = layer.stage(np.array([0.4, 0.0, 0.3]), 0.08, 0)
    assert st is not None and st.name == "reach" and st.gripper == OPEN
    np.testing.assert_array_equal(st.hand, [0.5, 0.1, 0.2])


def test_push_stages_follow_the_perceived_block() -> None:
    layer = TaskLayer("push", TARGET, "red")
    hand = np.array([0.4, 0.0, 0.3])
    assert layer.stage(hand, 0.0, 0) is None  # the block has not been seen yet
    seen(layer, BLOCK)
    st = layer.stage(hand, 0.0, 1)
    c = layer.cfg
    # above the pre-push point: behind the block on the line from the target through it
    assert st.name == "above" and st.gripper == CLOSE
    np.testing.assert_allclose(st.hand, [0.5 + c.standoff, 0.0, c.above_z])
    st = layer.stage(st.hand, 0.0, 2)
    assert st.name == "down" and st.hand[2] == c.push_z
    st = layer.stage(st.hand, 0.0, 3)
    assert st.name == "push" and st.speed == c.push_speed
    assert st.hand[0] < 0.5 + c.standoff  # toward the target
    # the block seen sliding off the line: back off and look again
    seen(layer, BLOCK + [0.0, 0.03, 0.0], stamp=4)
    st = layer.stage(np.array([0.5 + c.standoff, 0.0, c.push_z]), 0.0, 4)
    assert st.name == "back" and layer.replans == 1


def test_a_hidden_block_is_where_the_hand_pushes_it() -> None:
    layer = TaskLayer("push", TARGET, "red")
    c = layer.cfg
    seen(layer, BLOCK)
    hand = np.array([0.5 + c.standoff, 0.0, c.push_z])
    layer.stage(np.array([*hand[:2], c.above_z]), 0.0, 0)  # above -> down
    layer.stage(hand, 0.0, 1)  # down -> push
    # the hand 3 cm on, the block hidden (a weak detection does not count)
    seen(layer, BLOCK + [0.1, 0.1, 0.0], conf=0.2, stamp=2)
    hand2 = hand - [0.03 + c.standoff - c.contact, 0.0, 0.0]
    st = layer.stage(hand2, 0.0, 2)
    assert st.name == "push" and layer.replans == 0
    # aimed from the reckoned block (contact ahead of the hand), toward the target
    assert st.hand[0] < hand2[0] and abs(st.hand[1]) < 1e-9
    # pushed home by that reckoning: back off until the camera sees the block again
    home = np.array([TARGET[0] + c.contact, 0.0, c.push_z])
    assert layer.stage(home, 0.0, 3).name == "back"


def test_pick_place_goes_back_for_a_block_it_lost() -> None:
    layer = TaskLayer("pick_place", TARGET, "red")
    c = layer.cfg
    seen(layer, BLOCK)
    st = layer.stage(np.array([0.4, 0.0, 0.3]), 0.08, 0)
    assert st.name == "above" and st.gripper == OPEN
    st = layer.stage(np.array([0.5, 0.0, c.lift_z]), 0.08, 1)
    assert st.name == "down"
    assert layer.stage(np.array([0.5, 0.0, c.grasp_z]), 0.08, 2).name == "grasp"
    assert layer.stage(np.array([0.5, 0.0, c.grasp_z]), 0.05, int(1e9)).name == "lift"
    # fingers closed on nothing while lifting: go back for it
    st = layer.stage(np.array([0.45, 0.0, 0.06]), 0.0, int(2e9))
    assert st.name == "above" and layer.regrasps == 1


@pytest.mark.parametrize(("task", "target", "obj", "match"), [
    ("dance", [0.5, 0.0, 0.0], "red", "not one of"),
    ("push", [0.5, np.nan, 0.0], "red", "finite"),
    ("push", [0.5, 0.0, 0.0], "", "name of its block"),
])
def test_goals_it_cannot_pursue_say_why(task: str, target: list[float], obj: str,
                                        match: str) -> None:
    with pytest.raises(TaskError, match=match):
        TaskLayer(task, np.array(target), obj)


def test_a_half_hidden_block_places_the_task_until_it_is_seen_whole() -> None:
    layer = TaskLayer("push", TARGET, "red")
    hand = np.array([0.4, 0.0, 0.3])
    seen(layer, BLOCK, conf=0.2)  # too weak even to start from
    assert layer.stage(hand, 0.0, 0) is None
    seen(layer, BLOCK + [0.01, 0.0, 0.0], conf=0.6, stamp=1)  # the arm hides part of it
    st = layer.stage(hand, 0.0, 1)
    assert st is not None and st.name == "above" and not layer.block.fresh
    np.testing.assert_allclose(st.hand[:2], [0.51 + layer.cfg.standoff, 0.0])
    seen(layer, BLOCK, stamp=2)  # seen whole: its place is refined
    st = layer.stage(hand, 0.0, 2)
    np.testing.assert_allclose(st.hand[:2], [0.5 + layer.cfg.standoff, 0.0])
    seen(layer, BLOCK + [0.05, 0.0, 0.0], conf=0.6, stamp=3)  # later weak sightings do not move it
    np.testing.assert_allclose(layer.block.position, BLOCK)


def test_a_block_hidden_after_the_push_is_looked_for_from_the_view_pose() -> None:
    layer = TaskLayer("push", TARGET, "red")
    c = layer.cfg
    seen(layer, BLOCK)
    layer.phase, layer.push_dir = "look", np.array([-1.0, 0.0])
    layer.phase_ns = 0
    hand = np.array([0.6, 0.0, c.above_z])
    seen(layer, BLOCK, conf=0.3, stamp=1)  # the arm hides it
    st = layer.stage(hand, 0.0, int(0.1e9))
    assert st.name == "look" and np.allclose(st.hand, hand)  # wait a moment where it is
    st = layer.stage(hand, 0.0, int((c.look_s + 0.1) * 1e9))
    assert st.name == "look" and np.allclose(st.hand, c.view_pose)  # then look from afar
    seen(layer, TARGET, stamp=2)  # seen, on target: done
    assert layer.stage(np.asarray(c.view_pose), 0.0, int(2e9)).name == "done"


def test_a_block_sliding_off_the_target_line_with_the_hand_re_plans() -> None:
    layer = TaskLayer("push", TARGET, "red")  # toward -x
    c = layer.cfg
    seen(layer, BLOCK)
    start = np.array([0.5 + c.standoff, 0.0, c.push_z])
    layer.stage(np.array([*start[:2], c.above_z]), 0.0, 0)
    layer.stage(start, 0.0, 1)  # down -> push
    assert layer.phase == "push"
    # hand and block slid sideways together: still in line with each other, not with the target
    slid = BLOCK + [-0.04, -(c.drift + 0.01), 0.0]
    seen(layer, slid, stamp=2)
    st = layer.stage(np.array([slid[0] + c.contact, slid[1], c.push_z]), 0.0, 2)
    assert st.name == "back" and layer.replans == 1
    # and a block pushed past its target re-plans too
    layer2 = TaskLayer("push", TARGET, "red")
    seen(layer2, BLOCK)
    layer2.stage(np.array([*start[:2], c.above_z]), 0.0, 0)
    layer2.stage(start, 0.0, 1)
    past = TARGET + [-(c.done_radius + 0.01), 0.0, 0.0]
    seen(layer2, past, stamp=2)
    assert layer2.stage(np.array([past[0] + c.contact, 0.0, c.push_z]), 0.0, 2).name == "back"
    assert layer2.replans == 1
