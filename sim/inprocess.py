"""The control graph's nodes stepped in one process on a lockstep clock: fast episodes.

:func:`control_episodes` runs the nodes of ``configs/graph/control.yaml`` -- the sim
(``command: joint``, physics 1 kHz), the 1 kHz controller, the scripted expert
publishing Plans at 10 Hz and the evaluator (the episodes) -- or of ``configs/graph/expert.yaml`` (``graph="expert"``: the
sim at 500 Hz tracking the expert's end-effector actions with its joint PD) with their own
``step`` code, in one process: each tick of the sim's rate steps the nodes due at it,
and what a node publishes reaches its subscribers at the next tick, as on the
launcher's lockstep clock. No bus,
no processes: seeded episodes cost only the nodes' own compute, which makes the 20-seed
success figures of docs/benchmarks.md ("A second arm") affordable on a small machine.
Camera frames are off (they do not change the physics or the expert's privileged view).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from reflexarc.robot.controller import ControllerNode
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.inprocess import Slot, step_nodes
from reflexarc.runtime.node import NodeContext
from reflexarc.sim.evaluator import EpisodeResult, EvaluatorNode
from reflexarc.sim.node import SimNode
from reflexarc.sim.policy_node import PolicyNode

GRAPHS = ("control", "expert")


class ControlRun(NamedTuple):
    """What :func:`control_episodes` ran: the evaluator's episode results and each node's summary
    (as in ``<node>.summary.json`` of a launched run: limits, holds, safety events)."""

    results: list[EpisodeResult]
    summaries: dict[str, dict[str, Any]]  # node name -> its summary()


def control_episodes(
    task: str = "reach",
    backend: str = "mujoco",
    robot: str = "panda",
    episodes: int = 1,
    seed: int = 0,
    max_sim_s: float | None = None,
    graph: str = "control",
) -> ControlRun:
    """Run ``episodes`` seeded episodes (episode ``i``: seed ``seed + i``) of the scripted
    expert driving ``robot`` through the controller: the evaluator's results, one per episode,
    and the nodes' summaries.

    ``max_sim_s`` bounds the simulated time (default: every episode's limit plus 10 s).
    ``graph``: "control" (Plans through the 1 kHz controller) or "expert" (end-effector
    actions tracked by the sim's joint PD at 500 Hz).
    """
    if task not in ("reach", "push", "pick_place"):
        raise ConfigError("task", f"got {task!r}; allowed: reach, push, pick_place")
    if graph not in GRAPHS:
        raise ConfigError("graph", f"got {graph!r}; allowed: {', '.join(GRAPHS)}")
    if episodes < 1:
        raise ConfigError("episodes", f"got {episodes}; at least 1")

    def ctx(name: str, rate_hz: float) -> NodeContext:
        return NodeContext(name=name, rate_hz=rate_hz, seed=seed, clock="lockstep")

    control = graph == "control"
    rate = 1000 if control else 500  # the sim's rate in the graph: the clock's tick
    tick_ns = 1_000_000_000 // rate
    sim_cfg = from_mapping(SimNode.Config, {
        "backend": backend, "robot": robot,
        "command": "joint" if control else "ee_action", "state_hz": 100 if control else 1000,
        "camera_hz": 0,
    })
    sim = SimNode(ctx("sim", float(rate)), sim_cfg)
    slots = [Slot(sim, 1)]
    try:
        judge = EvaluatorNode(ctx("evaluator", 50.0), from_mapping(EvaluatorNode.Config, {
            "task": task, "backend": backend, "robot": robot, "episodes": episodes}))
        slots.append(Slot(judge, rate // 50))
        if control:
            ctrl = ControllerNode(ctx("controller", 1000.0),
                                  from_mapping(ControllerNode.Config, {"robot": robot}))
            slots.append(Slot(ctrl, 1))
        expert = PolicyNode(ctx("expert", 10.0), from_mapping(PolicyNode.Config, {
            "task": task, "policy": "expert", "output": "plan" if control else "ee_action"}))
        slots.append(Slot(expert, rate // 10))
        limit_s = max_sim_s if max_sim_s is not None else episodes * (judge.episode_ns / 1e9 + 10.0)
        step_nodes(slots, tick_ns, judge.done, limit_s * 1e9)
        return ControlRun(list(judge.results),
                          {slot.node.ctx.name: slot.node.summary() for slot in slots})
    finally:
        for slot in slots:
            slot.node.close()
