"""Shared test helpers: run the reflexarc CLI and the launcher as real processes."""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

pytest_plugins = ("tests.limits_plugin",)  # joint limits over every graph run (tests/limits_plugin.py)


def reflexarc(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    """Run ``reflexarc ARGS`` in a subprocess (the installed entry point's module)."""
    return subprocess.run(
        [sys.executable, "-m", "reflexarc.runtime.cli", *args],
        capture_output=True, text=True, timeout=timeout, **kw,
    )


def start_reflexarc(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reflexarc.runtime.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def cpu_latency_limit() -> int:
    """The kernel's CPU latency limit now (Linux PM QoS), in microseconds."""
    from reflexarc.runtime.config import CPU_LATENCY_DEV

    with open(CPU_LATENCY_DEV, "rb") as f:
        return struct.unpack("i", f.read(4))[0]


def wait_for_file(path: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout} s")


EXIT_GRACE_S = 180.0  # how long the end of a test run may take after its last test


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Collect what the tests left behind while a watchdog can still act: a ZeroMQ context
    left open is destroyed by the garbage collector, and that waits for every socket a
    leaked thread still holds. Rather than hang, the run prints every stack and ends with
    the tests' own exit status (the leak itself fails its test: no_leaked_threads)."""

    def watchdog() -> None:
        time.sleep(EXIT_GRACE_S)
        print(f"\ntest run still ending after {EXIT_GRACE_S} s; stacks:", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(int(exitstatus))

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()
    gc.collect()


LEAK_JOIN_S = 5.0  # how long a test's threads get to end after it


def _library_threads() -> set[threading.Thread]:
    """Daemon threads a library keeps for the life of the process once it needs one, not a
    test's to end: pyzmq's garbage collector for zero-copy frames and tqdm's monitor."""
    from tqdm.std import TMonitor
    from zmq.utils.garbage import gc as zmq_gc

    keep = {t for t in threading.enumerate() if isinstance(t, TMonitor)}
    if zmq_gc.thread is not None:
        keep.add(zmq_gc.thread)
    return keep


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Every thread a test starts must end with it: one left running keeps sockets (and
    their ZeroMQ context) open and can hang the run at exit."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_JOIN_S
    leaked = []
    for t in set(threading.enumerate()) - before - _library_threads():
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            leaked.append(t.name)
    if leaked:
        pytest.fail(f"threads still running {LEAK_JOIN_S} s after the test: {sorted(leaked)}")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def pub_sub(tmp_path: Path):
    """``pub_sub(topics) -> (publisher, subscriber)``: a real ipc socket pair in this
    process, closed after the test."""
    import zmq

    from reflexarc.runtime import bus as busmod

    cfg = busmod.BusConfig()
    ctx = zmq.Context()
    ctx.linger = 0  # closing never waits on a peer that is gone
    sec = busmod.Security(ctx, cfg)
    made: list = []

    def make(topics: list[str]) -> tuple[busmod.Publisher, busmod.Subscriber]:
        addr = f"ipc://{tmp_path}/pub{len(made)}"
        pub = busmod.Publisher(ctx, addr, cfg, sec)
        sub = busmod.Subscriber(ctx, [addr], topics, cfg, sec, "test")
        made.extend((sub, pub))
        return pub, sub

    yield make
    for s in made:
        s.close()
    sec.close()
    ctx.term()
