"""``reflexarc bench control``: the realtime graph's figures and the tracking rows/PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc


def test_bench_control_quick_writes_rows_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "control.json"
    r = reflexarc("bench", "control", "quick=true", f"out={out}", timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    graph = [row for row in rows if row["part"] == "graph"]
    assert len(graph) == 1 and graph[0]["ok"] and not graph[0]["error"]
    g = graph[0]
    for key in ("rate_hz", "miss_share", "jitter_p50_us", "jitter_p99_us", "step_p99_us",
                "plan_age_p50_ms", "plan_age_p99_ms", "compute_p50_us", "load1"):
        assert isinstance(g[key], float), key
    assert 0.0 <= g["miss_share"] <= 1.0 and g["rate_hz"] > 0
    assert g["running_share"] > 0  # the expert's plans reached the controller
    tracking = {(row["backend"], row["trajectory"]): row for row in rows if row["part"] == "tracking"}
    assert set(tracking) == {("mujoco", "step"), ("mujoco", "circle")}
    assert tracking[("mujoco", "circle")]["rms_err_mm"] < 1.0
    png = Path(tracking[("mujoco", "step")]["png"])
    assert png.exists() and png.stat().st_size > 10_000


@pytest.mark.slow
def test_bench_control_pixels_quick_measures_the_controller_and_the_planner_beside_it(
        tmp_path: Path) -> None:
    """The issue's table from one command: a short default job with the controller under
    its default SCHED_FIFO (time-shared where the OS refuses), its step and tick figures
    and the planner's, from the run's own summaries."""
    out = tmp_path / "pixels.json"
    r = reflexarc("bench", "control", "graphs=[pixels]", "quick=true", f"out={out}", timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["part"] == "pixels" and row["variant"] == "fifo" and row["load_procs"] == 0
    assert row["sched"] in ("fifo", "other") and row["rate_hz"] > 0
    assert 0 < row["step_p50_us"] <= row["step_p99_us"]
    assert row["tick_p50_us"] >= row["recv_p50_us"] > 0 and row["publish_p50_us"] > 0
    assert 0 < row["ctrl_cpu_share"] <= row["cores"]
    assert row["planner_solves_per_s"] > 0 and row["plan_ms_p50"] > 0  # it planned beside it
    assert row["sim_rate_hz"] > 0 and row["state_age_p50_ms"] >= 0


def test_bench_control_takes_only_the_pixels_graph() -> None:
    r = reflexarc("bench", "control", "graphs=[bridge]")
    assert r.returncode != 0 and "graphs" in r.stderr and "pixels" in r.stderr
