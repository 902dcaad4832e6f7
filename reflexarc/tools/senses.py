"""The rule of the senses, checked on a graph's declared topics (docs/senses.md).

In every graph that acts, no node that perceives, plans or acts reads privileged simulator
state: not ``scene_state``, not the evaluator's ``reset`` (an episode's layout), not a goal
rendered from the simulator's truth. Only the plant (the sim node, which *is* the
simulator and performs the resets), the evaluator (which runs and scores the episodes)
and the recorder (which writes every topic to files and never acts) may subscribe to
those.

The check is static: each enabled node's class and arguments, as the launcher validates
them; its subscriptions are ``subscribes_for(cfg)`` when the class has one, else
``subscribes``; a publisher says which of its topics are privileged with
``privileged_for(cfg)``. Reference graphs, where a scripted expert acts on the simulator's
truth on purpose (to compare against), are named in :data:`REFERENCE_GRAPHS`.

    python -m reflexarc.tools.senses            # every shipped graph: ok, or what breaks it
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from reflexarc.runtime.node import node_class

#: Topics that carry the simulator's truth whoever publishes them (a publisher names more
#: with ``privileged_for``).
PRIVILEGED_TOPICS = frozenset({"scene_state"})
#: Node classes that may read privileged topics: the plant itself (it performs the resets),
#: the evaluator, the recorder.
MAY_READ = frozenset({
    "reflexarc.sim.node:SimNode",
    "reflexarc.sim.evaluator:EvaluatorNode",
    "reflexarc.runtime.recorder:Recorder",
})
#: Graphs where a scripted expert acts on privileged state on purpose: references for the
#: figures (expert, control, instruction_expert) and the exploration that collects the
#: world model's data (learn).
REFERENCE_GRAPHS = frozenset({"expert", "control", "instruction_expert", "learn"})


@dataclass(frozen=True)
class Violation:
    """Node ``node`` of a graph subscribes to privileged ``topic``, published by ``source``."""

    node: str
    topic: str
    source: str

    def __str__(self) -> str:
        return f"{self.node} reads {self.topic!r} (privileged, from {self.source})"


def _subscribes(cls: type, cfg: object) -> list[str]:
    fn = getattr(cls, "subscribes_for", None)
    return list(fn(cfg) if fn else cls.subscribes)  # type: ignore[attr-defined]


def _matches(sub: str, topic: str) -> bool:
    """Whether subscription ``sub`` (a topic, or a prefix ending in '/', or '') gets ``topic``."""
    return sub == topic or sub == "" or (sub.endswith("/") and topic.startswith(sub))


def check_graph(graph: str, overrides: tuple[str, ...] = ()) -> list[Violation]:
    """The violations of the rule in shipped graph ``graph`` (with ``overrides``)."""
    import reflexarc.runtime.launcher  # noqa: F401  (registers the run config's schema)
    from reflexarc.runtime import config

    cfg = config.load("run", [f"graph={graph}", *overrides], check=False)
    nodes = {}
    privileged: dict[str, str] = {}
    for name, e in cfg.graph.nodes.items():
        if not e.enabled:
            continue
        cls = node_class(e.target, dict(e.args))
        # the arguments as the node gets them, unvalidated: the rule is about topics, and
        # a graph may name files made by earlier runs (learn's checkpoint)
        args = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), e.args))
        nodes[name] = (e.target, cls, args)
        pubs = getattr(cls, "publishes_for", None)
        flagged = getattr(cls, "privileged_for", None)
        for topic in (*(t for t in (pubs(args) if pubs else cls.publishes)
                        if t in PRIVILEGED_TOPICS), *(flagged(args) if flagged else ())):
            privileged[topic] = name
    out = []
    for name, (target, cls, args) in nodes.items():
        if target in MAY_READ:
            continue
        for sub in _subscribes(cls, args):
            for topic, source in privileged.items():
                if _matches(sub, topic):
                    out.append(Violation(name, topic, source))
    return out


def shipped_graphs() -> list[str]:
    from reflexarc.runtime.config import CONFIG_DIR

    return sorted(p.stem for p in Path(CONFIG_DIR, "graph").glob("*.yaml"))


def main() -> int:
    bad = 0
    for graph in shipped_graphs():
        v = check_graph(graph)
        ref = graph in REFERENCE_GRAPHS
        status = "ok" if not v else ("reference" if ref else "BREAKS THE RULE")
        bad += bool(v) and not ref
        print(f"{graph:18s} {status}" + "".join(f"\n    {x}" for x in v))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
