"""Liveness of a node whose steps are long (docs/liveness.md): slow but progressing is
never hung; stopped, or stuck forever in a step, is found within 3 s. Real processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import reflexarc, start_reflexarc, wait_for_file

SLOW = "reflexarc.runtime.testnodes:SlowSteps"


def _events(summary: dict, node: str, *kinds: str) -> list[dict]:
    return [e for e in summary["events"] if e["node"] == node and e["event"] in kinds]


def test_a_node_slow_but_progressing_is_not_taken_for_a_hung_one(run_dir: Path) -> None:
    """Steps of 0.3 s of CPU, then one of 0.9 s: past hung_timeout_s (0.5 s here), within
    4 x the steps the node's liveness thread measured. Counted in CPU time, so the same on
    a quiet and a busy machine."""
    out = run_dir / "summary.json"
    res = reflexarc(
        "run", "graph=counter", "hung_timeout_s=0.5", "heartbeat_hz=50", f"run_dir={run_dir}",
        f"out={out}",
        f"+graph.nodes.slow={{target:{SLOW},rate_hz:10,"
        "args:{step_cpu_s:0.3,slow_at:5,slow_cpu_s:0.9,done_after:6}}", timeout=600,
    )
    summary = json.loads(out.read_text())
    assert res.returncode == 0 and summary["ok"], (summary["reasons"], summary["events"])
    assert not _events(summary, "slow", "stalled", "silent", "died")
    assert summary["node_figures"]["slow"]["steps"] == 6  # every step ran to its end


@pytest.mark.parametrize("how", ["sleep", "spin"])
def test_a_node_stuck_after_long_steps_is_found(run_dir: Path, how: str) -> None:
    """Steps of 0.6 s of CPU, then stuck forever in the fourth: found by the stall limit
    scaled to its steps (4 x about 0.6 s, above hung_timeout_s=2), under 3 s of the time
    it could run."""
    out = run_dir / "summary.json"
    res = reflexarc(
        "run", "graph=counter", "duration_s=120", f"run_dir={run_dir}", f"out={out}",
        f"+graph.nodes.slow={{target:{SLOW},rate_hz:10,args:{{step_cpu_s:0.6,stuck_at:4,how:{how}}}}}",
        timeout=600,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    summary = json.loads(out.read_text())
    stalled = _events(summary, "slow", "stalled")
    assert stalled, summary["events"]
    why = stalled[0]["why"]  # its loop has not moved for X s it could run (limit Y s)
    moved, limit = (float(w.split()[0]) for w in (why.split("for ")[1], why.split("limit ")[1]))
    assert 2.0 <= limit <= moved < 3.0, why
    assert summary["reasons"][0].startswith("slow died")


@pytest.mark.slow
def test_a_stopped_node_with_long_steps_is_found_within_three_seconds(run_dir: Path) -> None:
    """SIGSTOP in the middle of its 0.5 s steps: the OS says it is stopped (T)."""
    out = run_dir / "summary.json"
    proc = start_reflexarc(
        "run", "graph=counter", "duration_s=120", f"run_dir={run_dir}", f"out={out}",
        f"+graph.nodes.slow={{target:{SLOW},rate_hz:10,args:{{step_cpu_s:0.5}}}}",
    )
    try:
        deadline = time.monotonic() + 180
        while "slow" not in wait_for_file(run_dir / "pids.json").get("up", []):
            assert time.monotonic() < deadline and proc.poll() is None, "the node did not come up"
            time.sleep(0.05)
        time.sleep(2.0)  # a few long steps
        pid = json.loads((run_dir / "pids.json").read_text())["slow"]
        stopped_at = time.time()
        os.kill(pid, signal.SIGSTOP)
        assert proc.wait(120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = json.loads(out.read_text())
    found = _events(summary, "slow", "silent")
    assert found and "stopped by a signal" in found[0]["why"], summary["events"]
    assert found[0]["wall"] - stopped_at < 3.0
