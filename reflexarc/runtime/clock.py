"""The lockstep clock: simulated time advances only when every due node has answered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reflexarc.runtime.config import bounded
from reflexarc.runtime.msgs import Tick
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

if TYPE_CHECKING:
    from reflexarc.runtime.node import Runtime


class LockstepClock(Node):
    """Publishes ``Tick`` k at simulated time k / base_hz once the nodes due at tick k-1
    have acknowledged it; ends the run with a final tick after ``duration_s``. With a
    duration, a progress line with an ETA is logged every ``progress_s`` of wall time.

    Added to the graph by the launcher when ``clock=lockstep``; its ``nodes`` argument
    maps each node to its rate, from which the ticks where a node is due follow
    (node due at k when k is a multiple of base_hz / rate_hz).
    """

    @dataclass
    class Config:
        base_hz: float = bounded(1000.0, 1.0, 100_000.0)
        duration_s: float = bounded(1.0, 0.0, None)  # simulated seconds; 0 = until stopped
        nodes: dict[str, float] = field(default_factory=dict)  # name -> rate_hz
        start_timeout_s: float = bounded(120.0, 1.0, None)
        progress_s: float = bounded(10.0, 0.0, None)  # wall seconds between progress lines; 0: none

    subscribes = {"ack": "all"}
    publishes = ("tick",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.periods = {n: max(1, round(cfg.base_hz / r)) for n, r in cfg.nodes.items()}
        self.dt_ns = int(round(1e9 / cfg.base_hz))
        self.ticks_done = 0
        self.wait_s = 0.0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:  # pragma: no cover - loop() drives
        return ()

    def loop(self, rt: Runtime) -> None:
        """Drive the graph tick by tick (replaces the runtime's default loop)."""
        deadline = time.monotonic() + self.cfg.start_timeout_s
        states: dict[str, str] = {}
        while not rt.stopping and not self._all_ready(rt, states):
            rt.heartbeat()
            if time.monotonic() > deadline:
                rt.node.ctx.log.error("lockstep: nodes not ready: %s", sorted(set(self.periods) - set(states)))
                return
            if rt.sub.wait(0.05):
                for topic, msg, _ in rt.sub.drain():
                    if topic == "heartbeat":
                        rt.heard.add(msg.node)  # type: ignore[attr-defined]
                        states[msg.node] = msg.state  # type: ignore[attr-defined]
        rt.ready = True
        n_ticks = int(round(self.cfg.duration_s * self.cfg.base_hz)) if self.cfg.duration_s else -1
        required: dict[str, int] = {}
        k = 0
        started = time.monotonic()
        next_note = started + self.cfg.progress_s / 2  # a short run needs no progress line
        while not rt.stopping and (n_ticks < 0 or k <= n_ticks):
            if n_ticks > 0 and self.cfg.progress_s and time.monotonic() >= next_note and k:
                next_note = time.monotonic() + self.cfg.progress_s
                self._progress(k, n_ticks, time.monotonic() - started)
            due = {n for n, p in self.periods.items() if k % p == 0}
            rt.pub.publish("tick", Tick(stamp_ns=k * self.dt_ns, tick=k, required=dict(required)))
            t0 = time.monotonic()
            while due and not rt.stopping:
                rt.heartbeat()
                if not rt.sub.wait(0.5):
                    if not rt._parent_alive():
                        rt.stopping = True
                    continue
                for topic, msg, _ in rt.sub.drain():
                    if topic == "ack" and msg.tick == k:  # type: ignore[attr-defined]
                        due.discard(msg.node)  # type: ignore[attr-defined]
                        required.update(msg.published)  # type: ignore[attr-defined]
            self.wait_s += time.monotonic() - t0
            rt.stats.add(0.0, (time.monotonic() - t0) * 1e6, False)
            self.ticks_done = k
            k += 1
        rt.pub.publish("tick", Tick(stamp_ns=k * self.dt_ns, tick=k, final=True))
        rt.heartbeat(force=True)

    def _progress(self, k: int, n_ticks: int, wall_s: float) -> None:
        from reflexarc.runtime.progress import eta_text

        eta = eta_text(k, n_ticks, wall_s)
        self.ctx.log.info("lockstep: %.1f/%.1f s simulated, %.1f s%s", k / self.cfg.base_hz,
                          n_ticks / self.cfg.base_hz, wall_s, f", {eta}" if eta else "")

    def _all_ready(self, rt: Runtime, states: dict[str, str]) -> bool:
        return all(states.get(n) not in (None, "starting") for n in self.periods)

    def summary(self) -> dict[str, Any]:
        sim_s = self.ticks_done / self.cfg.base_hz
        return {"sim_seconds": sim_s, "ticks": self.ticks_done, "wall_in_ticks_s": self.wait_s}
