"""``reflexarc bench faults``, a quick subset: real graphs, real signals, real injections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc


@pytest.mark.slow
def test_bench_faults_quick_rows(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    r = reflexarc("bench", "faults", "quick=true", f"out={out}", timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {(row["graph"], row["case"]): row for row in json.loads(out.read_text())}
    assert set(rows) == {("control", "kill:controller"), ("control", "estop_release"),
                         ("bridge", "bad_frames")}
    for row in rows.values():
        assert "error" not in row, row
        assert row["left_over"] == 0, row
        assert row["max_speed_share"] is not None and row["max_speed_share"] <= 1.0, row
    kill = rows[("control", "kill:controller")]
    assert "sim hold" in kill["policy"] and kill["detected_ms"] is not None
    # the sim holds 10 ms after the last command; then its joint PD brakes the arm from
    # whatever speed it had (the figures are in docs/benchmarks.md)
    assert kill["drift_mm"] is not None and kill["drift_mm"] < 15.0, kill
    release = rows[("control", "estop_release")]
    assert release["refused"] == 1 and "release_refused" in release["policy"]
    bad = rows[("bridge", "bad_frames")]
    assert "arm dropped 4 bad frames" in bad["policy"] and "arm clipped" in bad["policy"], bad


def test_drift_counts_from_the_fault_or_for_a_lost_plan_source_from_the_watchdog() -> None:
    from reflexarc.tools.bench.faults import _drift_from

    signs = [(0.9, "controller holding"), (1.05, "sim holding"), (1.31, "controller plan_timeout"),
             (1.32, "controller holding")]
    assert _drift_from("kill:controller", "controller", 1.0, signs) == 1.0  # from the fault
    assert _drift_from("stop:sim", "sim", 1.0, signs) == 1.0
    # a plan source lost: the arm runs on along its plan until the watchdog fires, and a
    # sim hold on the way (a late tick) is no reaction to it; signs before the fault neither
    assert _drift_from("kill:expert", "expert", 1.0, signs) == 1.31
    assert _drift_from("stop:perception", "perception", 1.0, [(1.2, "sim holding")]) == 1.0
    # an e-stop, then an unsigned release: what counts is the motion after the refusal,
    # not the e-stop's braking before it
    release = [(1.001, "controller estop"), (1.302, "controller release_refused")]
    assert _drift_from("estop_release", "", 1.0, release) == 1.302
    assert _drift_from("estop_release", "", 1.0, release[:1]) == pytest.approx(1.3)  # not seen


def test_forged_heartbeats_count_until_the_controller_commands_again() -> None:
    """The controller is SIGSTOPped under forged heartbeats: the fault lasts until its
    commands flow again (the launcher restarted it), and only the motion until then
    counts -- not the restarted controller tracking its plans again."""
    import numpy as np

    from reflexarc.robot.kinematics import ArmKinematics
    from reflexarc.tools.bench.faults import _row, _Watch

    class Launcher:
        t0 = 0.0
        run_dir = Path("/nonexistent")

    arm = ArmKinematics()
    q0 = arm.robot.home_q
    watch = _Watch(Launcher(), "forged_heartbeat", 1.0, 2.5)
    watch.fault_t = 10.0
    # still before the fault; held after it; moving again from 11.0 (commands back)
    for k in range(300):
        t = 9.9 + 0.01 * k
        q = q0.copy()
        if t >= 11.0:
            q[0] += 0.5 * (t - 11.0)  # 0.5 rad/s on joint 1: centimetres
        watch.states.append((t, q, np.zeros(7)))
    watch.outputs["joint_command"] = [9.9 + 0.001 * k for k in range(100)] + \
        [11.0 + 0.001 * k for k in range(1000)]
    summary = {"run_dir": "/nonexistent", "events": [], "ok": True}
    row = _row("control", "forged_heartbeat", watch, summary, arm, 1.0)
    assert row["fault_lasted_s"] == pytest.approx(1.0, abs=0.01)
    assert row["drift_mm"] < 1.0, row  # held until the controller came back
