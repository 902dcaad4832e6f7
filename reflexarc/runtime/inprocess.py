"""Nodes stepped in one process on a lockstep clock, with no bus and no processes.

Each tick steps the nodes due at it (a node every ``every`` ticks), and what a node
publishes reaches its subscribers at the next tick, numbered per topic as the bus's
publisher numbers it: the launcher's lockstep clock without the cost of waking processes.
Used by the control graph's in-process runner (:mod:`reflexarc.sim.inprocess`) and by the
shipped-graph one (:mod:`reflexarc.tools.inprocess`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reflexarc.runtime.bus import TopicMatch
from reflexarc.runtime.node import Inbox, Node


@dataclass
class Slot:
    """One node in the loop: stepped every ``every`` ticks, fed the topics it subscribes."""

    node: Node
    every: int
    wants: TopicMatch = field(init=False)
    inbox: Inbox = field(default_factory=Inbox)

    def __post_init__(self) -> None:
        of = getattr(type(self.node), "subscribes_for", None)
        self.wants = TopicMatch(list(of(self.node.cfg) if of is not None
                                     else type(self.node).subscribes))


def step_nodes(slots: list[Slot], tick_ns: int, done: Callable[[], bool], limit_ns: float) -> int:
    """Step ``slots`` tick by tick until ``done()`` or ``limit_ns`` of clock time; the ticks run."""
    pending: list[tuple[str, Any]] = []
    seqs: dict[str, int] = {}  # the runtime numbers every topic's messages (the bus does)
    k = 0
    while not done() and k * tick_ns < limit_ns:
        now = k * tick_ns
        for topic, msg in pending:  # last tick's messages arrive now
            seqs[topic] = seq = seqs.get(topic, -1) + 1
            object.__setattr__(msg, "seq", seq)  # as the bus's publisher does
            for slot in slots:
                if slot.wants(topic):
                    slot.inbox.put(topic, msg, now)
        pending = []
        for slot in slots:
            if k % slot.every == 0:
                pending.extend(slot.node.step(now, slot.inbox))
                slot.inbox.clear_new()
        k += 1
    return k
