"""A shipped graph's nodes stepped in one process on a lockstep clock: seeded episodes that
cost only the nodes' own compute.

The launcher runs one process per node and a lockstep clock over the bus; on a small,
busy machine most of a lockstep run's time then goes to waking processes, not to the
nodes' work. Here the graph is composed as ``reflexarc run`` composes it (the same YAML,
the same overrides, the same validated node configs) and its nodes are built with
``build_node``'s arguments, then stepped with their own ``step`` code: each 1 ms tick
steps the nodes due at it (a node at ``rate_hz`` every ``1000 / rate_hz`` ticks), and what
a node publishes reaches its subscribers at the next tick, as on the launcher's lockstep
clock, until a node is done (the evaluator, after its episodes). The figures are the
nodes' ``run`` summaries merged as the launcher merges them (the evaluator's episode
results) and each node's summary, with ``ok`` and its ``reasons`` as the launcher gives
them (a node that ended in fault, episodes left undone). Nodes named in ``skip`` are left
out (the recorder writes files).

    python -m reflexarc.tools.inprocess graph=pixels task=push backend=mujoco episodes=10 seed=0

``table`` makes one row of docs/benchmarks.md's success table per backend: the graph's
episodes in process, beside the scripted expert and random actions on the same seeds and
the same three blocks (:func:`reflexarc.tools.evaluate.evaluate_policy`, the gymnasium
envs; the experts read the simulator's truth: references, not part of an acting graph)::

    python -m reflexarc.tools.inprocess table task=push episodes=50 seed=0 out=push.json
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.inprocess import Slot, step_nodes
from reflexarc.runtime.limits_log import note_limits
from reflexarc.runtime.node import Node, NodeContext, node_class

TICK_NS = 1_000_000  # the lockstep clock: 1 kHz


def graph_episodes(overrides: list[str], skip: tuple[str, ...] = ("recorder",),
                   max_sim_s: float | None = None) -> dict[str, Any]:
    """Run the graph ``reflexarc run`` would compose from ``overrides`` (``graph=pixels
    task=push episodes=10 ...``) in this process until a node is done (or ``max_sim_s``
    of simulated time, default: every episode's limit plus 10 s); the run figures: the
    nodes' ``run`` summaries (success rate, episode results) and each node's summary."""
    import reflexarc.runtime.launcher  # noqa: F401  (registers the run config's schema)
    from reflexarc.runtime import config

    return config_episodes(config.load("run", overrides), skip, max_sim_s, list(overrides))


def config_episodes(cfg: Any, skip: tuple[str, ...] = ("recorder",), max_sim_s: float | None = None,
                    overrides: list[str] | None = None) -> dict[str, Any]:
    """:func:`graph_episodes` for a run config already composed and validated (as
    ``reflexarc.runtime.api.configure`` gives it)."""
    slots: list[Slot] = []
    sim: Node | None = None
    try:
        for name, e in cfg.graph.nodes.items():
            if not e.enabled or name in skip:
                continue
            every = 1000.0 / e.rate_hz
            if abs(every - round(every)) > 1e-9:
                raise ConfigError(f"graph.nodes.{name}.rate_hz",
                                  f"got {e.rate_hz}; in process, 1000 Hz must be a multiple of it")
            args = dict(e.args)
            cls = node_class(e.target, args)
            node_cfg = from_mapping(cls.Config, args, prefix=f"graph.nodes.{name}.args.")
            ctx = NodeContext(name=name, rate_hz=e.rate_hz, seed=cfg.seed, clock="lockstep",
                              log=logging.getLogger(f"reflexarc.{name}"))
            node = cls(ctx, node_cfg)
            slots.append(Slot(node, round(every)))
            if name == "sim":
                sim = node
        if sim is None:
            raise ConfigError("graph.nodes.sim", "the graph has no node named sim")
        # the episodes are the evaluator's (the node that says how many and how long)
        judge = next((s.node for s in slots if hasattr(s.node, "episode_ns")), sim)
        episode_s = getattr(judge, "episode_ns", 0) / 1e9
        episodes = max(1, int(getattr(judge.cfg, "episodes", 1)))
        limit_s = max_sim_s if max_sim_s is not None else episodes * (episode_s + 10.0)
        t0 = time.monotonic()
        k = step_nodes(slots, TICK_NS, lambda: any(s.node.done() for s in slots), limit_s * 1e9)
        states = {s.node.ctx.name: s.node.state() for s in slots}
        summaries = {s.node.ctx.name: s.node.summary() for s in slots}
        run: dict[str, Any] = {}
        for fig in summaries.values():  # as the launcher merges the nodes' "run"
            if isinstance(fig.get("run"), dict):
                run.update(fig["run"])
        # the launcher's outcome, for what can go wrong in one process: a node that ended in
        # fault, episodes left undone (a node raising ends the run with its exception)
        done = next((s.node.ctx.name for s in slots if s.node.done()), "")
        ended_by = f"{done} finished" if done else f"{limit_s:g} s of simulated time"
        reasons = [f"{name} ended in fault" for name, st in states.items() if st == "fault"]
        if run.get("episodes", 0) < episodes:
            reasons.append(f"{getattr(judge.ctx, 'name', 'sim')} ran {run.get('episodes', 0)} "
                           f"of {episodes} episodes (ended by: {ended_by})")
        result = {"ok": not reasons, "reasons": reasons, **run, "ended_by": ended_by,
                  "simulated_s": k * TICK_NS / 1e9, "wall_s": time.monotonic() - t0,
                  "in_process": True, "overrides": list(overrides or []), "node_states": states,
                  "node_figures": summaries}
        note_limits(result)  # the plants' joint-limit figures, as the launcher logs them
        return result
    finally:
        for slot in slots:
            slot.node.close()


TABLE_BACKENDS = ("mujoco", "pybullet")
SCENE_BLOCKS = ("red", "green", "blue")  # the default graph's scene: the task's block first


def table(overrides: list[str], backends: tuple[str, ...] = TABLE_BACKENDS,
          references: bool = True, out: str = "") -> list[dict[str, Any]]:
    """One row per backend: the graph ``overrides`` compose (default ``graph=pixels``; the
    task, episodes and seed as given) run in process, and, with ``references``, the scripted
    expert's and random actions' success on the same task, seeds and blocks. Each row:
    task, backend, graph, episodes, seeds, successes, success_rate,
    mean_time_to_success_s, failed_seeds, wall_s, planner (its stages, re-plans and
    re-grasps), expert, random (success rates). ``out``: the rows so far are written there
    as JSON after each row (a long table keeps what it has measured)."""
    from reflexarc.tools.evaluate import evaluate_policy

    keys = {a.split("=", 1)[0] for a in overrides}
    if "backend" in keys:
        raise ConfigError("backend", "table runs every backend in turn; leave backend out "
                                     "(backends are the function's argument)")
    given = [*([] if "graph" in keys else ["graph=pixels"]), *overrides]
    rows: list[dict[str, Any]] = []
    for backend in backends:
        run = graph_episodes([*given, f"backend={backend}"])
        results = run.get("episode_results", [])
        seeds = [r["seed"] for r in results]
        row: dict[str, Any] = {
            "task": run.get("task"),
            "backend": backend,
            "graph": next(a.split("=", 1)[1] for a in given if a.startswith("graph=")),
            "episodes": len(results),
            "seeds": f"{min(seeds)}-{max(seeds)}" if seeds else "",
            "successes": sum(bool(r["success"]) for r in results),
            "success_rate": run.get("success_rate"),
            "mean_time_to_success_s": run.get("mean_time_to_success_s"),
            "failed_seeds": [r["seed"] for r in results if not r["success"]],
            "wall_s": round(run["wall_s"], 1),
            "overrides": [*given, f"backend={backend}"],
            # the acting planner's own account: plans per stage, re-plans, re-grasps
            "planner": {k: v for k, v in run["node_figures"].get("planner", {}).items()
                        if k in ("goal_kind", "stages", "replans", "regrasps", "solves",
                                 "solve_errors")},
        }
        if references and seeds:
            for policy in ("expert", "random"):
                ref = evaluate_policy(str(row["task"]), backend, policy, len(seeds),
                                      seed=min(seeds), objects=SCENE_BLOCKS)
                row[policy] = ref["success_rate"]
        rows.append(row)
        if out:
            with open(out, "w") as f:
                json.dump(rows, f, indent=1, default=str)
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """``rows`` of :func:`table` as docs/benchmarks.md's markdown table."""
    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.0f} %"

    lines = ["| task | backend | graph (in process) | seeds | mean time to success | "
             "failed seeds | expert | random | wall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t = r["mean_time_to_success_s"]
        lines.append(
            f"| {r['task']} | {r['backend']} | {r['successes']}/{r['episodes']} "
            f"({pct(r['success_rate'])}) | {r['seeds']} | "
            f"{'' if t is None else f'{t:.1f} s'} | "
            f"{', '.join(map(str, r['failed_seeds'])) or 'none'} | {pct(r.get('expert'))} | "
            f"{pct(r.get('random'))} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m reflexarc.tools.inprocess KEY=VALUE ... [out=FILE]``: the run's figures as
    JSON (to ``out``, else stdout). ``python -m reflexarc.tools.inprocess table KEY=VALUE
    ... [backends=mujoco,pybullet] [out=FILE]``: :func:`table`'s rows as JSON to ``out``
    and the markdown table on stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = next((a.split("=", 1)[1] for a in args if a.startswith("out=")), "")
    overrides = [a for a in args if not a.startswith("out=")]
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
    if overrides[:1] == ["table"]:
        t0 = time.monotonic()
        given = [a for a in overrides[1:] if not a.startswith("backends=")]
        chosen = next((a.split("=", 1)[1] for a in overrides if a.startswith("backends=")), "")
        backends = tuple(b for b in chosen.split(",") if b) or TABLE_BACKENDS
        for b in backends:
            if b not in TABLE_BACKENDS:
                raise ConfigError("backends", f"got {b!r}; allowed: "
                                              f"{', '.join(TABLE_BACKENDS)} (comma-separated)")
        rows = table(given, backends, out=out)
        print(table_markdown(rows))
        print(f"\n{time.monotonic() - t0:.0f} s in all")
        return 0
    result = graph_episodes(overrides)
    text = json.dumps(result, indent=1, default=str)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
