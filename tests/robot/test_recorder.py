"""Recorder and replay with real processes: SIGKILL loses at most the last second."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import zmq

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.episode import Episode
from reflexarc.runtime.recorder import ReplayConfig, replay
from reflexarc.runtime.wire import decode
from tests.conftest import reflexarc, start_reflexarc, wait_for_file


def test_sigkill_of_the_recorder_loses_at_most_the_last_second(run_dir: Path) -> None:
    proc = start_reflexarc(
        "record", "graph=counter", f"run_dir={run_dir}", f"path={run_dir / 'ep'}",
        "graph.nodes.source.rate_hz=200",
    )
    deadline = time.monotonic() + 180  # a loaded machine takes long to import
    while "recorder" not in wait_for_file(run_dir / "pids.json") or not any((run_dir / "ep").glob("part-*.h5")):
        assert time.monotonic() < deadline, "recording did not start"
        time.sleep(0.05)
    time.sleep(3.0)
    pid = wait_for_file(run_dir / "pids.json")["recorder"]
    killed_ns = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    proc.wait(30)
    ep = Episode(run_dir / "ep")  # the parts on disk are complete and readable
    states = ep.read("joint_state")
    last = int(states["stamp_ns"][-1])
    assert (killed_ns - last) / 1e9 <= 1.0  # the open part: part_seconds and one check
    assert len(states["seq"]) > 200
    assert np.all(np.diff(states["seq"]) >= 1)  # no duplicates within what was kept
    # the metadata survives too, as of the last part: counts no higher than what was kept
    topics = ep.meta["topics"]
    assert 0 < topics["joint_state"]["messages"] <= len(states["seq"])


def test_replay_republishes_what_was_recorded(run_dir: Path) -> None:
    res = reflexarc(
        "run", "graph=counter_rec", "clock=lockstep", "duration_s=0.3", f"run_dir={run_dir}"
    )
    assert res.returncode == 0, res.stderr
    ep = Episode(run_dir / "episode")
    recorded = ep.read("joint_state")
    span_s = (recorded["recv_ns"][-1] - recorded["recv_ns"][0]) / 1e9

    address = f"ipc://{run_dir}/replay.pub"
    ctx = zmq.Context()
    ctx.linger = 0  # closing never waits on a peer that is gone
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"joint_state")
    sub.connect(address)
    cfg = busmod.BusConfig()
    sec = busmod.Security(ctx, cfg)
    pub = busmod.Publisher(ctx, address, cfg, sec)
    time.sleep(0.5)
    summary = replay(ReplayConfig(path=str(run_dir / "episode"), speed=1.0), publisher=pub)
    got = []
    while sub.poll(500):
        got.append(decode(sub.recv_multipart())[1])
    pub.close()
    sub.close()
    ctx.term()
    assert len(got) == len(recorded["seq"])
    np.testing.assert_array_equal([m.seq for m in got], recorded["seq"])
    np.testing.assert_array_equal(np.stack([m.position for m in got]), recorded["position"])
    assert summary["replay_s"] >= 0.9 * span_s  # original timing kept, not a burst


def test_a_damaged_episode_replays_what_it_can_and_names_the_missing_part(tmp_path: Path) -> None:
    from reflexarc.runtime.episode import EpisodeWriter
    from reflexarc.runtime.msgs import JointState

    path = tmp_path / "ep"
    z = np.zeros(7)
    with EpisodeWriter(path, part_seconds=0.05) as w:
        for part in range(4):
            for i in range(5):
                w.write("joint_state", JointState(seq=part * 5 + i, stamp_ns=part * 5 + i + 1,
                                                  position=z, velocity=z, effort=z))
            w.flush()
            time.sleep(0.06)
            w.maybe_rotate()
    parts = sorted(path.glob("part-*.h5"))
    assert len(parts) == 4
    parts[1].unlink()  # the middle part deleted
    parts[2].write_bytes(parts[2].read_bytes()[:100])  # another cut short
    ep = Episode(path)
    assert ep.missing == ["part-000001.h5"] and ep.unreadable == ["part-000002.h5"]
    np.testing.assert_array_equal(ep.read("joint_state")["seq"], [0, 1, 2, 3, 4, 15, 16, 17, 18, 19])
    summary = replay(ReplayConfig(path=str(path), speed=0.0, wait_s=0.0))
    assert summary["messages"] == 10
    assert summary["damaged"] == "missing part-000001.h5; unreadable part-000002.h5"
