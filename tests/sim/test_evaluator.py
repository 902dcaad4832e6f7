"""The evaluator: runs the episodes on the plant (resets, the goal, success, results) and
scores perception's detections against the truth of the same frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import NodeError
from reflexarc.runtime.inprocess import Slot, step_nodes
from reflexarc.runtime.msgs import Goal, Objects, Reset, SceneState
from reflexarc.runtime.node import Inbox, NodeContext
from reflexarc.sim.evaluator import EvaluatorConfig, EvaluatorNode
from reflexarc.sim.node import SimConfig, SimNode

TICK_NS = 2_000_000  # the plant at 500 Hz


def make_evaluator(seed: int = 0, **args: Any) -> EvaluatorNode:
    cfg = from_mapping(EvaluatorConfig, args, prefix="args.")
    return EvaluatorNode(NodeContext(name="evaluator", rate_hz=50, seed=seed, clock="lockstep"), cfg)


class Tap:
    """A node that keeps every message of the graph with the tick it was published at."""

    subscribes = {"": "all"}

    def __init__(self) -> None:
        self.cfg = None
        self.seen: list[tuple[int, str, Any]] = []

    def step(self, now_ns: int, inbox: Inbox) -> list[Any]:
        for topic in inbox.topics():
            self.seen += [(now_ns, topic, m) for m in inbox.new(topic)]
        return []

    def of(self, topic: str) -> list[Any]:
        return [m for _, t, m in self.seen if t == topic]


def plant_and_evaluator(sim_args: dict[str, Any], eval_args: dict[str, Any], seconds: float,
                        seed: int = 0) -> tuple[SimNode, EvaluatorNode, Tap]:
    """The plant (500 Hz) and the evaluator (50 Hz) stepped together on a lockstep clock."""
    sim = SimNode(NodeContext(name="sim", rate_hz=500, seed=seed, clock="lockstep"),
                  from_mapping(SimConfig, sim_args, prefix="sim."))
    judge = make_evaluator(seed, **eval_args)
    tap = Tap()
    try:
        step_nodes([Slot(sim, 1), Slot(judge, 10), Slot(tap, 1)],  # type: ignore[arg-type]
                   TICK_NS, judge.done, seconds * 1e9)
    finally:
        sim.close()
        judge.close()
    return sim, judge, tap


def test_episodes_are_laid_out_on_the_plant_and_end_at_the_time_limit() -> None:
    sim, judge, tap = plant_and_evaluator(
        {"command": "joint", "camera_hz": 0, "start_timeout_s": 0.02},
        {"task": "reach", "episodes": 2, "episode_s": 0.1, "goal_period_s": 0.0}, 2.0, seed=5)
    assert judge.done() and judge.state() == "done"
    # one reset per episode, each performed once, and the goal stated once per episode
    resets = tap.of("reset")
    assert [r.episode for r in resets] == [0, 1] and [r.seed for r in resets] == [5, 6]
    assert sim.resets == 2 and judge.repeats == 0
    goals = tap.of("goal")
    assert [g.source for g in goals] == ["task", "task"] and all(g.image.size == 0 for g in goals)
    for r, g in zip(resets, goals, strict=True):
        np.testing.assert_array_equal(g.target, r.target)
        assert g.task == "reach" and g.object == ""
    states = tap.of("scene_state")
    assert [s.episode for s in states] == sorted(s.episode for s in states)
    run = judge.summary()["run"]
    assert run["episodes"] == 2 and run["success_rate"] == 0.0 and run["task"] == "reach"
    results = run["episode_results"]
    assert [r["seed"] for r in results] == [5, 6]
    # the clock runs from the plant's start (20 ms after its reset) for 0.1 s of the truth
    assert all(r["duration_s"] == pytest.approx(0.1) for r in results)
    # (the physics steps once at the start tick itself)
    assert all(r["physics_s"] == pytest.approx(0.1 + 0.002) for r in results)
    first = next(s for s in states if s.episode == 0)
    assert first.started_ns == -1 and first.reset_ns == first.stamp_ns


def test_success_ends_the_episode_at_the_state_that_shows_it() -> None:
    judge, inbox = make_evaluator(task="reach", episodes=1, publish_goal=False), Inbox()
    (topic, reset), = judge.step(0, inbox)
    assert topic == "reset" and isinstance(reset, Reset)

    def ss(stamp: int, ee: Any, started: int = 0) -> SceneState:
        return SceneState(stamp_ns=stamp, ee_pos=np.asarray(ee, float),
                          ee_quat=np.array([1.0, 0, 0, 0]), objects=reset.objects, names="red",
                          target=reset.target, episode=0, reset_ns=1000, started_ns=started)

    far = reset.target + [0.1, 0.0, 0.0]
    inbox.put("scene_state", ss(1000, far, started=-1), 0)  # laid out, not started: no clock
    inbox.put("scene_state", ss(3000, reset.target, started=-1), 0)
    assert judge.step(4000, inbox) == [] and judge.phase == "laid"
    inbox.clear_new()
    inbox.put("scene_state", ss(5000, far, started=4000), 0)
    inbox.put("scene_state", ss(9000, reset.target, started=4000), 0)  # the hand at the target
    inbox.put("scene_state", ss(9500, far, started=4000), 0)  # (after the end: not judged)
    judge.step(10_000, inbox)
    assert judge.done()
    (r,) = judge.summary()["run"]["episode_results"]
    assert r["success"] and r["time_to_success_s"] == pytest.approx(5e-6)
    assert r["final_distance_m"] == 0.0


def test_the_reset_is_asked_again_until_the_plant_did_it() -> None:
    judge, inbox = make_evaluator(reset_period_s=0.5), Inbox()
    assert [t for t, _ in judge.step(0, inbox)] == ["reset"]
    assert judge.step(int(0.4e9), inbox) == []
    (topic, again), = judge.step(int(0.5e9), inbox)
    assert topic == "reset" and again.episode == 0 and judge.repeats == 1
    # the plant's blocks must be the evaluator's
    bad = SceneState(stamp_ns=1, ee_pos=np.zeros(3), ee_quat=np.array([1.0, 0, 0, 0]),
                     objects=np.zeros((2, 7)), names="red,blue", target=np.zeros(3), episode=0)
    inbox.put("scene_state", bad, 0)
    with pytest.raises(NodeError, match="objects"):
        judge.step(int(0.6e9), inbox)


def test_a_goal_image_is_rendered_by_the_evaluator_and_is_privileged() -> None:
    args = {"task": "push", "episodes": 1, "episode_s": 0.05, "goal_images": True}
    assert EvaluatorNode.privileged_for(from_mapping(EvaluatorConfig, args)) == ("reset", "goal")
    assert EvaluatorNode.privileged_for(EvaluatorConfig()) == ("reset",)
    sim, judge, tap = plant_and_evaluator(
        {"command": "joint", "camera_hz": 10, "start_timeout_s": 0.0, "frame_state": True},
        args, 1.0)
    (goal,) = tap.of("goal")
    assert isinstance(goal, Goal) and goal.source == "imagined" and goal.object == "red"
    frame = tap.of("camera/front")[0]
    assert goal.image.shape == frame.rgb.shape == (64, 64, 3)
    assert not np.array_equal(goal.image, frame.rgb)  # the block is at the target there
    # frame_state: the truth at every frame's stamp, for perception's score
    assert {f.stamp_ns for f in tap.of("camera/front")} <= {s.stamp_ns for s in tap.of("scene_state")}


def state(stamp: int, red_x: float) -> SceneState:
    objs = np.zeros((2, 7))
    objs[:, 3] = 1.0
    objs[0, :3] = [red_x, 0.0, 0.025]
    objs[1, :3] = [0.5, 0.1, 0.025]
    return SceneState(stamp_ns=stamp, ee_pos=np.zeros(3), ee_quat=np.array([1.0, 0, 0, 0]),
                      objects=objs, names="red,green", target=np.zeros(3))


def seen(stamp: int, red_x: float) -> Objects:
    return Objects(stamp_ns=stamp, camera="front", names="red",
                   position=np.array([[red_x, 0.0, 0.025]]), confidence=np.array([0.9], "f4"))


def test_each_detection_is_scored_against_the_state_of_its_frame() -> None:
    node = EvaluatorNode(NodeContext("evaluator", 50), EvaluatorConfig(episodes_on=False))
    inbox = Inbox()
    # the red block moves 1 cm per frame; perception sees it 5 mm off, a frame late to arrive
    inbox.put("scene_state", state(1, 0.40), 0)
    inbox.put("scene_state", state(2, 0.41), 0)
    inbox.put("objects/front", seen(1, 0.405), 0)
    node.step(0, inbox)
    inbox.clear_new()
    inbox.put("objects/front", seen(2, 0.415), 0)  # its state came the step before
    inbox.put("objects/front", seen(3, 0.42), 0)  # its state has not come yet: waits
    node.step(1, inbox)
    inbox.clear_new()
    inbox.put("scene_state", state(3, 0.42), 0)
    node.step(2, inbox)
    s = node.summary()
    front = s["perception"]["front"]
    assert front["frames"] == 3 and front["detections"] == 3
    assert front["missed"] == 3  # green was never seen
    assert front["error_cm_max"] == 0.5 and front["error_cm_p50"] == 0.5
    assert s["run"]["perception_error_cm_p95"] == front["error_cm_p95"]
    assert s["unmatched"] == 0
