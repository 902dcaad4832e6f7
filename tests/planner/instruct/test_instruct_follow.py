"""Instructions in a simulated graph, stepped with plain objects: the evaluator adopts the
instruct node's task spec as its episode (block, target, goal) on the plant it laid out,
and the expert follows that goal."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EEAction, Goal, SceneState, TaskSpec
from reflexarc.runtime.node import Inbox, NodeContext
from reflexarc.sim.evaluator import EvaluatorConfig, EvaluatorNode
from reflexarc.sim.node import SimConfig, SimNode
from reflexarc.sim.policy_node import PolicyConfig, PolicyNode

DT_NS = 2_000_000  # 500 Hz
BLOCKS = ["red", "green", "blue"]


class Pair:
    """The plant and the evaluator, each tick's messages delivered at the next, as the
    lockstep clock does."""

    def __init__(self, **args: Any) -> None:
        ctx = NodeContext(name="sim", rate_hz=500, seed=0, clock="lockstep")
        self.sim = SimNode(ctx, from_mapping(SimConfig, {"objects": BLOCKS, "camera_hz": 0}))
        cfg = from_mapping(EvaluatorConfig, {"objects": BLOCKS, "follow_spec": True,
                                             "episodes": 1, **args})
        self.judge = EvaluatorNode(replace(ctx, name="evaluator"), cfg)
        self.k = 0
        self.to_sim: list[tuple[str, Any]] = []
        self.to_judge: list[tuple[str, Any]] = []

    def tick(self, *items: tuple[str, Any]) -> dict[str, Any]:
        """One tick; ``items`` reach the evaluator with it. Both nodes' outputs."""
        boxes = Inbox(), Inbox()
        for box, msgs in zip(boxes, (self.to_sim, [*self.to_judge, *items]), strict=True):
            for topic, msg in msgs:
                box.put(topic, replace(msg, seq=self.k), 0)
        now = self.k * DT_NS
        out_sim = list(self.sim.step(now, boxes[0]))
        out_judge = list(self.judge.step(now, boxes[1])) if not self.judge.done() else []
        self.to_sim = [(t, m) for t, m in out_judge if t == "reset"]
        self.to_judge = [(t, m) for t, m in out_sim if t == "scene_state"]
        self.k += 1
        return dict(out_sim + out_judge)

    def close(self) -> None:
        self.sim.close()
        self.judge.close()


def spec(obj: str, target: list[float], stamp_ns: int = 0, task: str = "push") -> TaskSpec:
    return TaskSpec(stamp_ns=stamp_ns, task=task, object=obj, target="direction:left",
                    target_pos=np.array(target), confidence=1.0, source="fast")


def step(node: Any, k: int, *items: tuple[str, Any]) -> dict[str, Any]:
    """One step at tick ``k`` with ``items`` received (numbered ``k``, as the runtime would)."""
    box = Inbox()
    for topic, msg in items:
        box.put(topic, replace(msg, seq=k), 0)
    return dict(node.step(k * DT_NS, box))


def test_the_evaluator_adopts_the_spec_and_the_expert_follows_its_goal() -> None:
    g = Pair(goal_images=True)
    policy = PolicyNode(NodeContext(name="expert", rate_hz=10), from_mapping(PolicyConfig, {"follow_goal": True}))
    try:
        assert "reset" in g.tick()
        state: SceneState = g.tick()["scene_state"]  # the plant laid it out
        assert state.names == "red,green,blue" and state.episode == 0
        out = g.tick()
        assert "goal" not in out and g.judge.phase == "laid"  # no task before the spec
        assert step(policy, 0, ("scene_state", state)) == {}  # no goal: the expert waits
        blue = state.objects[2, :3]
        target = [blue[0], blue[1] + 0.1, blue[2]]
        out = g.tick(("task_spec", spec("blue", target, stamp_ns=state.reset_ns)))
        goal: Goal = out["goal"]
        assert (goal.task, goal.object, goal.source) == ("push", "blue", "instruction")
        assert np.allclose(goal.target, target) and goal.image.shape == (64, 64, 3)
        assert g.judge.task.obj == 2
        # the expert acts on the blue block: it heads above the point behind it (toward -y)
        now = out["scene_state"]
        act = step(policy, 1, ("scene_state", now), ("goal", goal))["ee_action"]
        assert isinstance(act, EEAction)
        behind = np.array([blue[0], blue[1] - 0.06, 0.08])
        assert np.dot(act.action[:3], behind - now.ee_pos) > 0.9 * np.linalg.norm(act.action[:3]) * np.linalg.norm(behind - now.ee_pos)
        # a goal stated before the plant's last reset (an earlier episode's) is not followed
        policy = PolicyNode(NodeContext(name="expert", rate_hz=10), from_mapping(PolicyConfig, {"follow_goal": True}))
        old = replace(goal, stamp_ns=state.reset_ns - 1)
        assert step(policy, 2, ("scene_state", g.tick()["scene_state"]), ("goal", old)) == {}
    finally:
        g.close()


def test_a_spec_that_cannot_be_done_ends_the_episode_with_the_reason() -> None:
    g = Pair()
    try:
        g.tick()
        state = g.tick()["scene_state"]
        g.tick(("task_spec", spec("purple", [0.5, 0.0, 0.025], stamp_ns=state.reset_ns)))
        assert g.judge.done()
        (r,) = g.judge.summary()["run"]["episode_results"]
        assert not r["success"] and "no block 'purple'" in r["refusal"]
        # a spec resolved against an earlier scene (before the reset) is not adopted
        g2 = Pair(spec_timeout_s=0.1)
        g2.tick()
        state = g2.tick()["scene_state"]
        g2.tick(("task_spec", spec("red", [0.5, 0.0, 0.025], stamp_ns=state.reset_ns - 1)))
        assert g2.judge.specs_stale == 1 and not g2.judge.done()
        for _ in range(60):
            g2.tick()
        (r,) = g2.judge.summary()["run"]["episode_results"]
        assert r["refusal"] == "no task spec within 0.1 s"
        g2.close()
    finally:
        g.close()


def test_instructions_are_said_in_turn_one_per_episode() -> None:
    texts = ["push the red block to the left", "reach above the blue block"]
    g = Pair(instructions=texts, episodes=3)
    try:
        said: list[str] = []
        reply: tuple[tuple[str, Any], ...] = ()
        for _ in range(30):  # each episode: said at its start, then refused (ends it at once)
            out = g.tick(*reply)
            reply = ()
            if "instruction" in out:
                said.append(out["instruction"].text)
                reply = (("task_spec", spec("purple", [0.5, 0.0, 0.025], stamp_ns=g.k * DT_NS)),)
            if g.judge.done():
                break
        assert said == [texts[0], texts[1], texts[0]] and g.judge.done()
        results = g.judge.summary()["run"]["episode_results"]
        assert [r["instruction"] for r in results] == said
        assert [r["seed"] for r in results] == [0, 1, 2]
        assert g.sim.resets == 3
    finally:
        g.close()


def test_instruction_and_instructions_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="instructions.*one or the other"):
        from_mapping(EvaluatorConfig, {"instruction": "push the red block",
                                       "instructions": ["reach the red block"]})
    with pytest.raises(ConfigError, match="instructions.*every item must be a text"):
        from_mapping(EvaluatorConfig, {"instructions": ["reach the red block", " "]})
