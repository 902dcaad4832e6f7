"""Shared test helpers: run the reflexarc CLI and the launcher as real processes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


def reflexarc(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
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
