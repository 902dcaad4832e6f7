"""Instructions in the sim, stepped with plain objects: the sim adopts the instruct node's
task spec as its episode (block, target, goal) and the expert follows that goal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.msgs import EEAction, Goal, SceneState, TaskSpec
from reflexarc.runtime.node import Inbox, NodeContext
from reflexarc.sim.node import SimConfig, SimNode
from reflexarc.sim.policy_node import PolicyConfig, PolicyNode

DT_NS = 2_000_000  # 500 Hz


def make_sim(**args: Any) -> SimNode:
    cfg = from_mapping(SimConfig, {"objects": ["red", "green", "blue"], "follow_spec": True,
                                   "camera_hz": 0, "episodes": 1, **args})
    return SimNode(NodeContext(name="sim", rate_hz=500, seed=0, clock="lockstep"), cfg)


def spec(obj: str, target: list[float], stamp_ns: int = 0, task: str = "push") -> TaskSpec:
    return TaskSpec(stamp_ns=stamp_ns, task=task, object=obj, target="direction:left",
                    target_pos=np.array(target), confidence=1.0, source="fast")


def step(node: Any, k: int, *items: tuple[str, Any]) -> dict[str, Any]:
    """One step at tick ``k`` with ``items`` received (numbered ``k``, as the runtime would)."""
    box = Inbox()
    for topic, msg in items:
        box.put(topic, replace(msg, seq=k), 0)
    return dict(node.step(k * DT_NS, box))


def test_the_sim_adopts_the_spec_and_the_expert_follows_its_goal() -> None:
    sim = make_sim()
    policy = PolicyNode(NodeContext(name="expert", rate_hz=10), from_mapping(PolicyConfig, {"follow_goal": True}))
    try:
        out = step(sim, 0)
        assert "goal" not in out and sim.phase == "waiting"  # no task before the spec
        state: SceneState = out["scene_state"]
        assert state.names == "red,green,blue"
        assert step(policy, 0, ("scene_state", state)) == {}  # no goal: the expert waits
        blue = state.objects[2, :3]
        target = [blue[0], blue[1] + 0.1, blue[2]]
        out = step(sim, 1, ("task_spec", spec("blue", target, stamp_ns=DT_NS)))
        goal: Goal = out["goal"]
        assert (goal.task, goal.object, goal.source) == ("push", "blue", "instruction")
        assert np.allclose(goal.target, target) and goal.image.shape == (64, 64, 3)
        assert sim.task.obj == 2 and np.array_equal(out["scene_state"].target, goal.target)
        # the expert acts on the blue block: it heads above the point behind it (toward -y)
        act = step(policy, 1, ("scene_state", out["scene_state"]), ("goal", goal))["ee_action"]
        assert isinstance(act, EEAction)
        ee = out["scene_state"].ee_pos
        behind = np.array([blue[0], blue[1] - 0.06, 0.08])
        assert np.dot(act.action[:3], behind - ee) > 0.9 * np.linalg.norm(act.action[:3]) * np.linalg.norm(behind - ee)
        # a goal the sim does not pursue (another target) is not followed
        other = Goal(stamp_ns=goal.stamp_ns + 1, task="push", object="red", target=np.array([0.5, 0.2, 0.025]),
                     image=np.zeros((0, 0, 3), np.uint8), z=np.zeros(0, np.float32), source="instruction")
        state2 = step(sim, 2)["scene_state"]
        assert step(policy, 2, ("scene_state", state2), ("goal", other)) == {}
    finally:
        sim.close()


def test_a_spec_the_sim_cannot_do_ends_the_episode_with_the_reason() -> None:
    sim = make_sim()
    try:
        step(sim, 0)
        step(sim, 1, ("task_spec", spec("purple", [0.5, 0.0, 0.025], stamp_ns=DT_NS)))
        assert sim.done()
        (r,) = sim.summary()["run"]["episode_results"]
        assert not r["success"] and "no block 'purple'" in r["refusal"]
    finally:
        sim.close()


def test_instructions_are_said_in_turn_one_per_episode() -> None:
    texts = ["push the red block to the left", "reach above the blue block"]
    sim = make_sim(instructions=texts, episodes=3)
    try:
        said: list[str] = []
        reply: tuple[tuple[str, Any], ...] = ()
        for k in range(20):  # each episode: said at its start, then refused (ends it at once)
            out = step(sim, k, *reply)
            reply = ()
            if "instruction" in out:
                said.append(out["instruction"].text)
                reply = (("task_spec", spec("purple", [0.5, 0.0, 0.025], stamp_ns=(k + 1) * DT_NS)),)
            if sim.done():
                break
        assert said == [texts[0], texts[1], texts[0]] and sim.done()
        results = sim.summary()["run"]["episode_results"]
        assert [r["instruction"] for r in results] == said
        assert [r["seed"] for r in results] == [0, 1, 2]
    finally:
        sim.close()


def test_instruction_and_instructions_together_are_refused() -> None:
    import pytest

    from reflexarc.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="instructions.*one or the other"):
        from_mapping(SimConfig, {"instruction": "push the red block", "instructions": ["reach the red block"]})
    with pytest.raises(ConfigError, match="instructions.*every item must be a text"):
        from_mapping(SimConfig, {"instructions": ["reach the red block", " "]})
