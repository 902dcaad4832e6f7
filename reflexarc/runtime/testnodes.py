"""Small nodes for exercising the graph: a seeded source, an echo, a sink, a crasher, and
nodes that hang, latch a fault or forge heartbeats.

They use the real message types and the real runtime, so a graph of them tests
everything the real nodes rely on: rates, lockstep determinism, drops, deaths.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.msgs import Heartbeat, JointCommand, JointState
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs


class Source(Node):
    """Publishes a seeded random-walk JointState every tick."""

    @dataclass
    class Config:
        dof: int = bounded(7, 1, 64)
        noise: float = bounded(0.01, 0.0, 10.0)

    publishes = ("joint_state",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.rng = ctx.rng
        self.q = np.zeros(cfg.dof)

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self.q += self.rng.normal(0.0, self.cfg.noise, self.q.shape)
        zeros = np.zeros_like(self.q)
        return [("joint_state", JointState(stamp_ns=now_ns, position=self.q.copy(), velocity=zeros, effort=zeros))]


class Plant(Node):
    """A plant that holds still: publishes the JointState ``position`` every tick, for
    ``ticks`` ticks once every node of the graph is up, then is done. ``silent_after_ticks`` (> 0) stops its states earlier
    while it keeps running (a state stream lost mid-run); ``close_s`` makes its shutdown
    that slow (a simulator closing its renderer on a busy machine)."""

    @dataclass
    class Config:
        position: list[float] = field(default_factory=lambda: [0.0] * 7)
        ticks: int = bounded(1000, 1, None)
        silent_after_ticks: int = bounded(0, 0, None)
        close_s: float = bounded(0.0, 0.0, 10.0)

    publishes = ("joint_state",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.q = np.array(cfg.position, dtype=float)
        self.n = 0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        if self.ctx.graph_up():  # its ticks count once every node is up, as a sim's episodes
            self.n += 1
        if self.cfg.silent_after_ticks and self.n > self.cfg.silent_after_ticks:
            return ()
        zeros = np.zeros_like(self.q)
        return [("joint_state", JointState(stamp_ns=now_ns, position=self.q.copy(), velocity=zeros, effort=zeros))]

    def done(self) -> bool:
        return self.n >= self.cfg.ticks

    def state(self) -> str:
        return "done" if self.done() else "running"

    def close(self) -> None:
        time.sleep(self.cfg.close_s)


class Echo(Node):
    """Turns each newest JointState into a JointCommand carrying its stamp forward."""

    @dataclass
    class Config:
        gain: float = bounded(1.0, -100.0, 100.0)

    subscribes = {"joint_state": "latest"}
    publishes = ("joint_command",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.last_seq = -1
        self.latencies_ns: list[int] = []

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        js = inbox.latest("joint_state")
        if js is None or js.seq == self.last_seq:
            return ()
        self.last_seq = js.seq
        self.latencies_ns.append(now_ns - js.stamp_ns)
        return [(
            "joint_command",
            JointCommand(stamp_ns=js.stamp_ns, mode="position", position=js.position * self.cfg.gain,
                         velocity=js.velocity, effort=js.effort),
        )]

    def summary(self) -> dict[str, Any]:
        if not self.latencies_ns:
            return {}
        lat = np.asarray(self.latencies_ns) / 1e3
        return {"echo_latency_p50_us": float(np.percentile(lat, 50)),
                "echo_latency_p99_us": float(np.percentile(lat, 99))}


class WakingEcho(Echo):
    """An echo stepped by each joint state as it arrives (``wakes_on``), whatever its rate."""

    wakes_on = ("joint_state",)


class Sink(Node):
    """Counts what it receives on every topic."""

    @dataclass
    class Config:
        pass

    subscribes = {"": "all"}

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.counts: dict[str, int] = {}

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        for topic in inbox.topics():
            self.counts[topic] = self.counts.get(topic, 0) + len(inbox.new(topic))
        return ()

    def summary(self) -> dict[str, Any]:
        return {"received": dict(self.counts), "cpus": sorted(os.sched_getaffinity(0))}


class Counting(Node):
    """Counts its ticks against ``after_ticks``: the base of the test nodes below that
    misbehave once past it."""

    @dataclass
    class Config:
        after_ticks: int = bounded(10, 0, None)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.ticks = 0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self.ticks += 1
        return ()

    def past(self) -> bool:
        return self.ticks > self.cfg.after_ticks


class Crasher(Counting):
    """Kills its own process after ``after_ticks`` ticks (tests death policies)."""

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        super().step(now_ns, inbox)
        if self.past():
            os.kill(os.getpid(), signal.SIGKILL)
        return ()


class Stuck(Counting):
    """Gets stuck forever in ``step`` after ``after_ticks`` ticks: asleep (``how=sleep``) or
    spinning in Python (``how=spin``). Tests that a hung node is found."""

    @dataclass
    class Config:
        after_ticks: int = bounded(10, 0, None)
        how: str = choice("sleep", "sleep", "spin")

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        super().step(now_ns, inbox)
        while self.past():
            if self.cfg.how == "sleep":
                time.sleep(3600)
        return ()


class SlowSteps(Node):
    """Steps that each take ``step_cpu_s`` of the thread's CPU time (step ``slow_at`` takes
    ``slow_cpu_s``), done after ``done_after`` steps; from step ``stuck_at`` on (0: never)
    stuck forever, asleep or spinning. A node slow but progressing, and one stuck after
    long steps, as a busy machine makes of a node that encodes frames."""

    @dataclass
    class Config:
        step_cpu_s: float = bounded(0.1, 0.0, 60.0)
        slow_at: int = bounded(0, 0, None)  # 0: no slower step
        slow_cpu_s: float = bounded(1.0, 0.0, 60.0)
        done_after: int = bounded(0, 0, None)  # 0: never done
        stuck_at: int = bounded(0, 0, None)  # 0: never stuck
        how: str = choice("sleep", "sleep", "spin")

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.ticks = 0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self.ticks += 1
        cfg = self.cfg
        while cfg.stuck_at and self.ticks >= cfg.stuck_at:
            if cfg.how == "sleep":
                time.sleep(3600)
        end = time.thread_time() + (cfg.slow_cpu_s if self.ticks == cfg.slow_at else cfg.step_cpu_s)
        while time.thread_time() < end:
            pass
        return ()

    def done(self) -> bool:
        return bool(self.cfg.done_after) and self.ticks >= self.cfg.done_after

    def summary(self) -> dict[str, int]:
        return {"steps": self.ticks}


class StuckInClose(Counting):
    """Done after ``after_ticks`` ticks, then stuck forever in ``close`` (asleep): a node
    that never ends its shutdown."""

    def done(self) -> bool:
        return self.ticks >= self.cfg.after_ticks

    def close(self) -> None:
        threading.Event().wait()


class Faulty(Counting):
    """Reports state ``fault`` after ``after_ticks`` ticks, as a controller that latched one."""

    def state(self) -> str:
        return "fault" if self.past() else "running"


class Forger(Node):
    """Publishes heartbeats in another node's name, with that node's pid (from the run's
    ``pids.json``): what a hostile or broken node could do to hide a stopped one."""

    @dataclass
    class Config:
        victim: str = "sink"

    publishes = ("heartbeat",)

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        try:
            pids = json.loads((Path(self.ctx.run_dir) / "pids.json").read_text())
        except (OSError, ValueError):
            return ()
        pid = pids.get(self.cfg.victim)
        if not isinstance(pid, int):
            return ()
        return [("heartbeat", Heartbeat(stamp_ns=now_ns, node=self.cfg.victim, pid=pid,
                                        state="running", ticks=0))]
