"""A busy machine on demand: N CPU-bound background processes, bounded and self-stopping.

``reflexarc run load=4`` runs the graph beside four of them; tests and benches use
:func:`background_load`. Each process spins on pure Python arithmetic at nice 0 (the
scheduling priority of the jobs a shared runner or a laptop is doing) and stops by itself
at its deadline, when its parent dies (Linux parent-death signal, and a check of its
parent pid in case that signal is unavailable), or when asked. Nothing it starts can
outlive the run: see docs/liveness.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reflexarc.runtime.config import bounded, register
from reflexarc.runtime.errors import ConfigError

MAX_PROCESSES = 64
MAX_SECONDS = 3600.0

# the busy loop: checks its deadline and its parent every ~10 ms of work
_BURN = """
import ctypes, os, signal, sys, time
try:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except OSError:
    pass
parent, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
x = 0
while time.monotonic() < deadline and os.getppid() == parent:
    for i in range(20000):
        x = (x * 31 + i) % 1000003
"""


def start_load(n: int, seconds: float) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` CPU-bound processes that stop by themselves after ``seconds``."""
    if not 0 <= n <= MAX_PROCESSES:
        raise ConfigError("load", f"got {n}; allowed: 0 to {MAX_PROCESSES} processes")
    if not 0 < seconds <= MAX_SECONDS:
        raise ConfigError("load_seconds", f"got {seconds}; allowed: (0, {MAX_SECONDS}] seconds")
    return [
        subprocess.Popen(
            [sys.executable, "-c", _BURN, str(os.getpid()), str(seconds)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the processes of :func:`start_load` and reap them."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()


@contextmanager
def background_load(n: int, seconds: float = MAX_SECONDS) -> Iterator[list[int]]:
    """``n`` CPU-bound background processes for the block (at most ``seconds``); their pids."""
    procs = start_load(n, seconds) if n else []
    try:
        yield [p.pid for p in procs]
    finally:
        stop_load(procs)


@dataclass
class LoadConfig:
    """``reflexarc load N seconds=S``: a busy machine on demand, in the foreground."""

    processes: int = bounded(4, 1, MAX_PROCESSES)
    seconds: float = bounded(60.0, 0.1, MAX_SECONDS)
    out: str = ""


register("load_schema", LoadConfig)


def load_verb(cfg: LoadConfig) -> dict[str, float]:
    """``reflexarc load``: ``processes`` CPU-bound processes for ``seconds``; Ctrl-C ends them."""
    t0 = time.monotonic()
    with background_load(cfg.processes, cfg.seconds):
        try:
            while time.monotonic() - t0 < cfg.seconds:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    return {
        "processes": cfg.processes,
        "seconds": round(time.monotonic() - t0, 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": len(os.sched_getaffinity(0)),
    }
