"""A shipped graph's nodes stepped in one process on a lockstep clock: seeded episodes that
cost only the nodes' own compute.

The launcher runs one process per node and a lockstep clock over the bus; on a small,
busy machine most of a lockstep run's time then goes to waking processes, not to the
nodes' work. Here the graph is composed as ``reflexarc run`` composes it (the same YAML,
the same overrides, the same validated node configs) and its nodes are built with
``build_node``'s arguments, then stepped with their own ``step`` code: each 1 ms tick
steps the nodes due at it (a node at ``rate_hz`` every ``1000 / rate_hz`` ticks), and what
a node publishes reaches its subscribers at the next tick, as on the launcher's lockstep
clock. The figures are the sim's episode results (its summary's ``run``) and each node's
summary. Nodes named in ``skip`` are left out (the recorder writes files; the evaluator
only scores perception).

    python -m reflexarc.tools.inprocess graph=pixels task=push backend=mujoco episodes=10 seed=0
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
from reflexarc.runtime.node import Node, NodeContext, node_class

TICK_NS = 1_000_000  # the lockstep clock: 1 kHz


def graph_episodes(overrides: list[str], skip: tuple[str, ...] = ("recorder",),
                   max_sim_s: float | None = None) -> dict[str, Any]:
    """Run the graph ``reflexarc run`` would compose from ``overrides`` (``graph=pixels
    task=push episodes=10 ...``) in this process until its sim is done (or ``max_sim_s``
    of simulated time, default: every episode's limit plus 10 s); the run figures: the
    sim's ``run`` summary (success rate, episode results) and each node's summary."""
    import reflexarc.runtime.launcher  # noqa: F401  (registers the run config's schema)
    from reflexarc.runtime import config

    cfg = config.load("run", overrides)
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
        episode_s = getattr(sim, "episode_ns", 0) / 1e9
        episodes = max(1, int(getattr(sim.cfg, "episodes", 1)))
        limit_s = max_sim_s if max_sim_s is not None else episodes * (episode_s + 10.0)
        t0 = time.monotonic()
        k = step_nodes(slots, TICK_NS, sim.done, limit_s * 1e9)
        summaries = {s.node.ctx.name: s.node.summary() for s in slots}
        run = dict(summaries.get("sim", {}).get("run", {}))
        return {**run, "simulated_s": k * TICK_NS / 1e9, "wall_s": time.monotonic() - t0,
                "in_process": True, "overrides": list(overrides), "node_figures": summaries}
    finally:
        for slot in slots:
            slot.node.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m reflexarc.tools.inprocess KEY=VALUE ... [out=FILE]``: the run's figures as
    JSON (to ``out``, else stdout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = next((a.split("=", 1)[1] for a in args if a.startswith("out=")), "")
    overrides = [a for a in args if not a.startswith("out=")]
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
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
