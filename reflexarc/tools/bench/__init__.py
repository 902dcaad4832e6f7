"""``reflexarc bench <what>``: measurements printed as a table, JSON rows and PNG plots.

Timings are compared as ratios within one run (machines are noisy): the bus bench
measures the raw ZeroMQ floor in the same run, interleaved with our messages.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from reflexarc.runtime.config import bounded, check_cpu_latency, check_cpus, choice, register
from reflexarc.runtime.errors import ConfigError


@dataclass
class BenchConfig:
    what: str = choice("bus", "bus", "sim", "control", "plan", "instruct", "faults", "arms", "liveness")
    out: str = ""  # JSON rows; PNG plots are written beside it
    quick: bool = False  # a small, fast run (used by the tests)
    messages: int = bounded(3000, 10, 1_000_000)  # bus: messages per row
    rate_hz: float = bounded(1000.0, 1.0, 100_000.0)  # bus: send rate
    # bus: CPU cores the sender and the receiver (and their ZeroMQ I/O threads) run on;
    # empty: the OS places them. [0] puts both ends on core 0, as a graph does with
    # graph.nodes.<node>.cpus
    cpus: list[int] = field(default_factory=list)
    # bus: how both ends wait between messages. block: asleep, as a node between ticks;
    # spin: awake (the receiver busy-polls, taking a core; the sender busy-waits before
    # each send, as a kHz node does before its deadline)
    wait: str = choice("block", "block", "spin")
    # bus: the kernel's CPU latency limit held while it runs (Linux PM QoS, needs root),
    # in microseconds: idle cores then wake within it (0: they poll). -1: leave it alone
    cpu_latency_us: int = bounded(-1, -1, 2_000_000_000)
    seconds: float = bounded(10.0, 0.5, 3600.0)  # control, instruct: how long the graph runs
    backend: str = choice("mujoco", "mujoco", "pybullet")
    device: str = "cpu"  # plan: torch device
    threads: int = bounded(1, 1, 256)  # plan: torch intra-op threads (1 is fastest for small batches)
    model: str = ""  # plan: a world-model checkpoint: also success vs budget from pixels
    episodes: int = bounded(10, 1, 100_000)  # plan with model, arms: episodes per setting and task
    robots: list[str] = field(default_factory=list)  # arms: the arms measured; empty: all shipped
    # faults: control, pixels, bridge; empty: all. control: [pixels] measures the default
    # job instead (the controller SCHED_FIFO and time-shared, quiet and with load=4)
    graphs: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)  # faults: only these (kill:controller...)
    # instruct: seeds per text of the instruction set carried out in graph instruction
    # (lockstep, from pixels); 0: the latency rows instead
    texts: int = bounded(0, 0, 100)
    # instruct texts: auto (the fast parser when sure, else the LLM) or llm (every text to
    # the LLM: the scripted local server)
    path: str = choice("auto", "auto", "llm")
    runs: int = bounded(10, 1, 1000)  # liveness: default runs in a row
    load: int = bounded(4, 0, 64)  # liveness: CPU-bound background processes beside each run
    stop: str = ""  # liveness: one more run that SIGSTOPs this node (planner...); "": none

    def validate(self) -> None:
        defaults = BenchConfig()
        for key, whats in _USED_BY.items():
            value, default = getattr(self, key), getattr(defaults, key)
            if self.what not in whats and value != default:
                raise ConfigError(key, f"got {value!r}, but bench {self.what} does not use it; "
                                  f"allowed: the default {default!r}, or this key with bench "
                                  f"{' or '.join(whats)}")
        check_cpus("cpus", self.cpus)
        cores = sorted(set(self.cpus) or os.sched_getaffinity(0))
        if self.wait == "spin" and len(cores) < 2:
            raise ConfigError("wait", f"got 'spin' on cores {cores}: a receiver that busy-polls "
                              "would starve the sender on its one core; allowed: 'block', or "
                              "'spin' with two cores or more")
        check_cpu_latency("cpu_latency_us", self.cpu_latency_us)
        if self.robots:
            from reflexarc.robot.description import robot_description

            for name in self.robots:
                robot_description(name, key="robots")
        allowed = ("pixels",) if self.what == "control" else ("control", "pixels", "bridge")
        for g in self.graphs:
            if g not in allowed:
                raise ConfigError("graphs", f"got {g!r}; allowed: {', '.join(allowed)}")


_USED_BY = {  # keys only some benches read: set for another, they would do nothing
    "messages": ("bus",),
    "rate_hz": ("bus",),
    "cpus": ("bus",),
    "wait": ("bus",),
    "cpu_latency_us": ("bus",),
    "seconds": ("control", "instruct"),
    "backend": ("control", "instruct", "plan", "faults"),
    "graphs": ("faults", "control"),
    "cases": ("faults",),
    "texts": ("instruct",),
    "path": ("instruct",),
    "device": ("plan",),
    "threads": ("plan",),
    "model": ("plan",),
    "episodes": ("plan", "arms"),
    "robots": ("arms",),
    "runs": ("liveness",),
    "load": ("liveness",),
    "stop": ("liveness",),
}

register("bench_schema", BenchConfig)

_BENCHES = {
    "bus": "reflexarc.tools.bench.bus:bench_bus",
    "sim": "reflexarc.tools.bench.sim:bench_sim",
    "control": "reflexarc.tools.bench.control:bench_control",
    "plan": "reflexarc.tools.bench.plan:bench_plan",
    "instruct": "reflexarc.tools.bench.instruct:bench_instruct",
    "faults": "reflexarc.tools.bench.faults:bench_faults",
    "arms": "reflexarc.tools.bench.arms:bench_arms",
    "liveness": "reflexarc.tools.bench.liveness:bench_liveness",
}


def bench_verb(cfg: BenchConfig) -> Any:
    module, fn = _BENCHES[cfg.what].split(":")
    return getattr(importlib.import_module(module), fn)(cfg)
