"""The evaluator: the only node of an acting graph that reads privileged simulator state.

The rule of the senses (docs/architecture.md; docs/senses.md): no node that perceives, plans or acts
reads the simulator's truth. Scoring needs it, so scoring happens here, beside the graph,
never inside it. The evaluator subscribes to the sim's privileged ``scene_state`` and to
what perception published, and reports how far perception was from the truth:

- **Object perception accuracy.** Each ``objects/<camera>`` message (stamped with its
  frame) is matched with the ``scene_state`` of the same stamp (the sim publishes one at
  every frame it renders); each detected block's error is the distance from its true
  centre. Reported as p50 / p95 / max per camera and per object (and apart for the
  detections at least ``confident``), and how often an object
  of the scene was not found (``missed``).

Episodes, resets and success are still kept by the sim node (its task bookkeeping);
docs/senses.md says what moves here next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflexarc.runtime.config import bounded
from reflexarc.runtime.msgs import Objects, SceneState
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

OBJECTS_PREFIX = "objects/"


@dataclass
class EvaluatorConfig:
    """Arguments of :class:`EvaluatorNode` (``graph.nodes.<evaluator>.args``)."""

    # a detection is matched with the scene_state of its frame's stamp; a frame whose state
    # is not among the newest ``history`` ones is not scored
    history: int = bounded(64, 1, 10_000)
    min_confidence: float = bounded(0.0, 0.0, 1.0)  # detections below it are not scored
    # the figures are given for every detection and, apart, for those at least this
    # confident (a block half hidden by the hand is placed off by its visible part)
    confident: float = bounded(0.75, 0.0, 1.0)


class EvaluatorNode(Node):
    """Scores what perception saw against the simulator's truth (module docstring)."""

    Config = EvaluatorConfig
    subscribes = {"scene_state": "all", OBJECTS_PREFIX: "all"}
    publishes = ()

    def __init__(self, ctx: NodeContext, cfg: EvaluatorConfig) -> None:
        super().__init__(ctx, cfg)
        self.states: deque[SceneState] = deque(maxlen=cfg.history)
        self.pending: list[Objects] = []  # detections whose frame's state has not come yet
        self.errors: dict[str, dict[str, list[float]]] = {}  # camera -> object -> m
        self.confident_errors: dict[str, list[float]] = {}  # camera -> m (confident ones)
        self.missed: dict[str, int] = {}  # camera -> objects of the scene not found
        self.frames: dict[str, int] = {}  # camera -> frames scored
        self.unmatched = 0  # detections whose frame's state never came

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self.states.extend(inbox.new("scene_state"))
        for topic in inbox.topics():
            if topic.startswith(OBJECTS_PREFIX):
                self.pending.extend(inbox.new(topic))
        if self.pending and self.states:
            by_stamp = {s.stamp_ns: s for s in self.states}
            oldest = self.states[0].stamp_ns
            keep = []
            for objs in self.pending:
                state = by_stamp.get(objs.stamp_ns)
                if state is not None:
                    self._score(objs, state)
                elif objs.stamp_ns < oldest:
                    self.unmatched += 1
                else:
                    keep.append(objs)
            self.pending = keep[-self.cfg.history:]
        return ()

    def _score(self, objs: Objects, state: SceneState) -> None:
        cam = objs.camera or "front"
        names = state.names.split(",") if state.names else []
        seen = objs.as_dict()
        per = self.errors.setdefault(cam, {})
        self.frames[cam] = self.frames.get(cam, 0) + 1
        for i, name in enumerate(names):
            hit = seen.get(name)
            if hit is None or hit[1] < self.cfg.min_confidence:
                self.missed[cam] = self.missed.get(cam, 0) + 1
                continue
            err = float(np.linalg.norm(np.asarray(hit[0]) - state.objects[i, :3]))
            per.setdefault(name, []).append(err)
            if hit[1] >= self.cfg.confident:
                self.confident_errors.setdefault(cam, []).append(err)

    def summary(self) -> dict[str, Any]:
        """Per camera: perception's error against the truth, in cm."""
        out: dict[str, Any] = {}
        for cam, per in self.errors.items():
            allerr = np.concatenate([np.asarray(v) for v in per.values()]) if per else np.zeros(0)
            conf = np.asarray(self.confident_errors.get(cam, []))
            out[cam] = {
                "frames": self.frames.get(cam, 0),
                "detections": int(allerr.size),
                "missed": self.missed.get(cam, 0),
                **_cm(allerr),
                "confident": {"detections": int(conf.size), **_cm(conf)},
                "per_object": {n: _cm(np.asarray(v)) for n, v in per.items()},
            }
        first = next(iter(out.values()), None)
        run = {}
        if first is not None:
            run = {"perception_error_cm_p50": first["error_cm_p50"],
                   "perception_error_cm_p95": first["error_cm_p95"],
                   "perception_confident_cm_p50": first["confident"]["error_cm_p50"],
                   "perception_confident_cm_p95": first["confident"]["error_cm_p95"],
                   "perception_confident_share": round(
                       first["confident"]["detections"] / max(1, first["detections"]), 3)}
        return {"run": run, "perception": out, "unmatched": self.unmatched}


def _cm(errors_m: np.ndarray) -> dict[str, float | None]:
    if errors_m.size == 0:
        return {"error_cm_p50": None, "error_cm_p95": None, "error_cm_max": None}
    p50, p95 = np.percentile(errors_m, [50, 95])
    return {"error_cm_p50": round(100 * float(p50), 3), "error_cm_p95": round(100 * float(p95), 3),
            "error_cm_max": round(100 * float(errors_m.max()), 3)}
