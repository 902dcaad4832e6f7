"""``reflexarc bench sim``: rows for each backend and resolution, plausible figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc


@pytest.mark.slow
def test_quick_bench_reports_every_backend_and_resolution(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    r = reflexarc("bench", "sim", "quick=true", f"out={out}", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000  # the plot, beside the JSON
    progress = r.stderr.splitlines()
    assert any(line.startswith(f"bench sim: {len(rows)}/{len(rows)} cases") for line in progress)
    backends = sorted({row["backend"] for row in rows})
    assert backends == ["mujoco", "pybullet"]
    resolutions = [row["resolution"] for row in rows if row["backend"] == "mujoco"]
    assert resolutions == [row["resolution"] for row in rows if row["backend"] == "pybullet"]
    assert len(resolutions) >= 2 and len(rows) == 2 * len(resolutions)
    for row in rows:
        assert row["physics_steps_per_s"] > 500  # faster than real time at 500 Hz
        assert row["realtime_factor"] > 1.0
        for key in ("render_ms", "render_depth_ms", "wrist_render_ms"):
            assert 0.0 < row[key] < 2000.0
