"""The controller in a real graph (processes, sockets, realtime): SIGKILL of the planner
mid-motion leaves the arm holding still, not drifting or falling."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.runtime import bus as busmod
from reflexarc.runtime.episode import Episode
from tests.conftest import start_reflexarc, wait_for_file


def _plans(run_dir: Path, n: int, timeout_s: float = 90.0) -> None:
    """Wait until ``n`` plans have been published by the planner (the arm is moving)."""
    spec = wait_for_file(run_dir / "config.json", timeout_s)
    address = spec["planner"]["addresses"]["planner"]
    zctx = busmod.context()
    cfg = busmod.BusConfig()
    sec = busmod.Security(zctx, cfg)
    sub = busmod.Subscriber(zctx, [address], ["plan"], cfg, sec, "test")
    got = 0
    deadline = time.monotonic() + timeout_s
    try:
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {got} plans within {timeout_s} s")
            if sub.wait(0.1):
                got += len(sub.drain())
    finally:
        sub.close()
        sec.close()
        zctx.term()


def test_sigkill_of_the_planner_mid_motion_leaves_the_arm_holding_still(tmp_path: Path) -> None:
    run_dir, ep = tmp_path / "run", tmp_path / "ep"
    proc = start_reflexarc(
        "record", "graph=control_scripted", f"path={ep}", f"run_dir={run_dir}",
        "graph.nodes.planner.on_death=restart",  # the graph goes on without its planner
        "graph.nodes.planner.args.start_delay_s=1.5",  # and the restarted one waits
        "graph.nodes.planner.args.duration_s=0",
        "graph.nodes.controller.args.safety.plan_timeout_s=0.2",
        # the joint-state watchdog as the launcher's plant tests have it (1.5 s, not 0.1 s): on
        # a busy machine the realtime sim is starved for longer than 0.1 s, and the fault that
        # latches then is not the plan timeout this test is about
        "graph.nodes.controller.args.safety.state_timeout_s=1.5",
    )
    try:
        _plans(run_dir, 40)  # 0.8 s into the circle at 50 Hz: moving at 0.25 m/s
        pid = json.loads((run_dir / "pids.json").read_text())["planner"]
        kill_ns = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        time.sleep(2.2)
        # the launcher restarts the planner (on_death=restart): the graph goes on with it. Stop
        # the run only once the new one plans, not while it is still importing on a busy
        # machine (a node stopped before it is up exits with SIGTERM's status, not 0)
        _plans(run_dir, 1)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    e = Episode(ep)
    js = e.read("joint_state")
    arm = ArmKinematics()
    t = js["stamp_ns"]
    ee = np.array([arm.pose(q)[0] for q in js["position"][::5]])
    t = t[::5]
    before = (t > kill_ns - 200 * 1_000_000) & (t < kill_ns)
    speed = np.linalg.norm(np.diff(ee[before], axis=0), axis=1).sum() / 0.2
    # the circle is 0.25 m/s; a starved sim lags it (0.075 m/s seen at load 29): moving is
    # what matters, fifty times the 1 mm drift allowed below over the same second
    assert speed > 0.05, f"the arm was not moving when the planner died ({speed:.3f} m/s)"
    # held: from 0.2 s (plan timeout) + 0.3 s (braking) after the kill, for 1 s
    w = (t > kill_ns + 500 * 1_000_000) & (t < kill_ns + 1500 * 1_000_000)
    assert w.sum() > 20  # joint states recorded in the window
    held = ee[w]
    drift = np.linalg.norm(held - held[0], axis=1).max()
    print(f"EE drift over 1 s after the hold: {1e3 * drift:.3f} mm ({w.sum()} states)")
    assert drift < 1e-3, f"EE drifted {1e3 * drift:.2f} mm over 1 s"
    # not falling: it stopped close to where it was when the planner died
    at_kill = ee[np.searchsorted(t, kill_ns)]
    assert np.linalg.norm(held[0] - at_kill) < 0.08
    kinds = list(e.read("safety")["kind"]) if "safety" in e.topics() else []
    assert "plan_timeout" in kinds
