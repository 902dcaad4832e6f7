"""reflexarc.tools.bench.sim: rows for each backend and resolution, plausible figures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from reflexarc.tools.bench.sim import BACKENDS, RESOLUTIONS, bench_sim


def test_quick_bench_reports_every_backend_and_resolution(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sim.json"
    rows = bench_sim(SimpleNamespace(what="sim", out=str(out), quick=True))
    assert out.with_suffix(".png").stat().st_size > 10_000  # the plot, beside the JSON
    progress = capsys.readouterr().err.splitlines()
    assert progress[-1].startswith(f"bench sim: {len(rows)}/{len(rows)} cases")
    assert [(r["backend"], r["resolution"]) for r in rows] == [
        (b, s) for b in BACKENDS for s in RESOLUTIONS
    ]
    for row in rows:
        assert row["physics_steps_per_s"] > 500  # faster than real time at 500 Hz
        assert row["realtime_factor"] > 1.0
        for key in ("render_ms", "render_depth_ms", "wrist_render_ms"):
            assert 0.0 < row[key] < 2000.0
