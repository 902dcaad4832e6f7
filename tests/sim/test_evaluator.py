"""The evaluator scores perception's detections against the truth of the same frame."""

from __future__ import annotations

import numpy as np

from reflexarc.runtime.msgs import Objects, SceneState
from reflexarc.runtime.node import Inbox, NodeContext
from reflexarc.sim.evaluator import EvaluatorConfig, EvaluatorNode


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
    node, inbox = EvaluatorNode(NodeContext("evaluator", 50), EvaluatorConfig()), Inbox()
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
