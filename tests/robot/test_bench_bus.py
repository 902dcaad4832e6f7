"""``reflexarc bench bus``: every row measured over real sockets, ours beside raw pyzmq."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reflexarc.runtime import config
from reflexarc.runtime.cli import main
from reflexarc.runtime.config import CPU_LATENCY_DEV
from reflexarc.runtime.node import cpu_latency
from tests.conftest import cpu_latency_limit, reflexarc


def bench_bus(out: Path, *args: str) -> list[dict]:
    """``reflexarc bench bus quick=true out=OUT ARGS``: its JSON rows."""
    r = reflexarc("bench", "bus", "quick=true", f"out={out}", *args, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def test_quick_bench_measures_every_message_and_transport_beside_raw(tmp_path: Path) -> None:
    out = tmp_path / "bus.json"
    rows = bench_bus(out)
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
        assert r["cpus"] == sorted(os.sched_getaffinity(0))  # not pinned: wherever the OS likes
        assert r["wait"] == "block"
    sizes = {r["name"]: r["bytes"] for r in rows}
    assert sizes["JointState"] < 1024 < sizes["Image 64x64x3"] < sizes["Image 224x224x3"]
    assert sizes["Image 224x224x3"] > 224 * 224 * 3  # the pixels travel, plus topic and header
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_pinned_bench_runs_both_ends_on_the_given_core_and_gives_the_rest_back(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    core = max(before)
    rows = bench_bus(tmp_path / "bus.json", f"cpus=[{core}]")
    assert len(rows) == 6
    for r in rows:
        assert r["cpus"] == [core]  # as the receiver process saw its own affinity
        assert r["n"] == 200 and r["p50_us"] > 0 and r["raw_p50_us"] > 0
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a busy-polling receiver needs a core of its own")
def test_awake_bench_busy_polls_and_still_takes_every_message(tmp_path: Path) -> None:
    rows = bench_bus(tmp_path / "bus.json", "wait=spin")
    assert len(rows) == 6
    for r in rows:
        assert r["wait"] == "spin"
        assert r["n"] == 200  # polling the sockets' event flags misses nothing
        assert 0 < r["p50_us"] <= r["p99_us"] and 0 < r["raw_p50_us"] <= r["raw_p99_us"]


def test_spinning_on_one_core_fails_fast_naming_the_key() -> None:
    core = max(os.sched_getaffinity(0))
    res = reflexarc("bench", "bus", "wait=spin", f"cpus=[{core}]", timeout=60)
    assert res.returncode == 2
    assert "'wait'" in res.stderr and "two cores or more" in res.stderr, res.stderr


def test_a_core_the_machine_lacks_fails_fast_naming_the_key() -> None:
    res = reflexarc("bench", "bus", "cpus=[99999]", timeout=60)
    assert res.returncode == 2
    assert "'cpus'" in res.stderr and "allowed: CPUs" in res.stderr, res.stderr


@pytest.mark.skipif(not os.access(CPU_LATENCY_DEV, os.W_OK), reason="needs root on Linux")
def test_the_cpu_latency_limit_is_held_for_the_block_and_dropped_after() -> None:
    before = cpu_latency_limit()
    with cpu_latency(0):
        assert cpu_latency_limit() == 0  # the kernel's limit is the lowest anyone holds
    assert cpu_latency_limit() == before
    with cpu_latency(-1):
        assert cpu_latency_limit() == before  # -1 touches nothing


def test_a_cpu_latency_limit_the_bench_cannot_hold_fails_fast_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(config, "CPU_LATENCY_DEV", str(tmp_path / "no_such_device"))
    assert main(["bench", "bus", "cpu_latency_us=0"]) == 2
    err = capsys.readouterr().err
    assert "'cpu_latency_us'" in err and "allowed: -1" in err, err


def test_a_key_the_chosen_bench_does_not_read_fails_fast_naming_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    res = reflexarc("bench", "sim", "wait=spin", timeout=60)
    assert res.returncode == 2
    assert "'wait'" in res.stderr and "bench sim does not use it" in res.stderr, res.stderr
    assert "with bench bus" in res.stderr, res.stderr
    assert main(["bench", "bus", "seconds=3.0"]) == 2
    err = capsys.readouterr().err
    assert "'seconds'" in err and "bench control or instruct" in err, err
