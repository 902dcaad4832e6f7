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
    assert _drift_from("controller", 1.0, signs) == 1.0  # command loss: from the fault
    assert _drift_from("sim", 1.0, signs) == 1.0
    # a plan source lost: the arm runs on along its plan until the watchdog fires, and a
    # sim hold on the way (a late tick) is no reaction to it; signs before the fault neither
    assert _drift_from("expert", 1.0, signs) == 1.31
    assert _drift_from("perception", 1.0, [(1.2, "sim holding")]) == 1.0  # none came
