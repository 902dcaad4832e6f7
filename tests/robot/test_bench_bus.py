"""robot.bench_bus: every row measured over real sockets, ours beside raw pyzmq."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from robot.bench_bus import bench_bus


def test_quick_bench_measures_every_message_and_transport_beside_raw(tmp_path: Path) -> None:
    out = tmp_path / "bus.json"
    rows = bench_bus(SimpleNamespace(quick=True, messages=3000, rate_hz=1000.0, out=str(out)))
    assert [(r["name"], r["transport"]) for r in rows] == [
        (kind, transport)
        for transport in ("ipc", "tcp")
        for kind in ("JointState", "Image 64x64x3", "Image 224x224x3")
    ]
    for r in rows:
        assert r["n"] == 200  # every counted message arrived, none lost or double-counted
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] < 1e6
        assert 0 < r["raw_p50_us"] <= r["raw_p99_us"] <= r["raw_p999_us"] < 1e6
        assert r["ratio_p50"] == pytest.approx(r["p50_us"] / r["raw_p50_us"], rel=0.01)
        assert not any(k.startswith("_") for k in r)  # the samples stay out of the JSON rows
    sizes = {r["name"]: r["bytes"] for r in rows}
    assert sizes["JointState"] < 1024 < sizes["Image 64x64x3"] < sizes["Image 224x224x3"]
    assert sizes["Image 224x224x3"] > 224 * 224 * 3  # the pixels travel, plus topic and header
    assert out.with_suffix(".png").stat().st_size > 10_000
