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
from reflexarc.runtime.recorder import Recorder, ReplayConfig, replay
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
    lost_s = (killed_ns - last) / 1e9
    print(f"lost the last {lost_s:.3f} s")
    assert lost_s <= 1.0  # the part gathering (part_seconds), the one being written
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


def _recorder(tmp_path: Path, **cfg: object) -> Recorder:
    from reflexarc.runtime.node import NodeContext

    return Recorder(NodeContext(name="recorder", rate_hz=50.0, run_dir=str(tmp_path)),
                    Recorder.Config(path=str(tmp_path / "ep"), **cfg))  # type: ignore[arg-type]


def _tick(rec: Recorder, topics: dict[str, range]) -> None:
    from reflexarc.runtime.msgs import JointCommand, JointState
    from reflexarc.runtime.node import Inbox

    inbox = Inbox()
    z = np.zeros(7)
    for topic, seqs in topics.items():
        cls = JointState if topic == "joint_state" else JointCommand
        for s in seqs:
            inbox.put(topic, cls(seq=s, stamp_ns=s + 1, position=z, velocity=z, effort=z), 0)
    rec.step(0, inbox)


def test_a_recorder_behind_its_work_drops_whole_parts_and_counts_them(tmp_path: Path) -> None:
    """One topic of one part written per step (a budget nothing fits in: what a starved
    recorder or a slow disk comes to), three topics a part, a part sealed at every step
    (what it gathered is part_seconds old by then), at most one waiting: the backlog
    stays bounded, what is given up is counted, and what is kept is on disk, whole, in
    order, each message once."""
    rec = _recorder(tmp_path, part_seconds=0.01, step_budget_s=1e-9, max_pending_parts=1)
    seq = 0
    for k in range(12):
        gap = 5 if k == 6 else 0  # 5 joint states never arrive: lost, not dropped
        _tick(rec, {"joint_state": range(seq + gap, seq + 10), "joint_command": range(k, k + 1),
                    "command_copy": range(k, k + 1)})
        seq += 10
        assert len(rec.writer.sealed) <= 1  # bounded: the one waiting (and maybe the one in hand)
        time.sleep(0.02)  # the part gathered is then older than part_seconds
    s = rec.summary()
    assert s["dropped"] > 0 and s["most_pending_parts"] <= 1
    assert s["lost_by_topic"] == {"joint_state": 5}
    rec.finish()  # the stop: what is held is written
    s = rec.summary()
    assert s["recorded"] + s["dropped"] == s["taken"] == 115 + 2 * 12
    first, last = s["seqs_by_topic"]["joint_state"]
    assert s["taken"] - 2 * 12 + s["lost"] == last - first + 1
    ep = Episode(tmp_path / "ep")
    states, commands = ep.read("joint_state"), ep.read("joint_command")
    assert len(states["seq"]) + len(commands["seq"]) + len(ep.read("command_copy")["seq"]) == s["recorded"]
    assert len(states["seq"]) + s["dropped_by_topic"].get("joint_state", 0) == 115
    assert np.all(np.diff(states["seq"]) >= 1) and np.all(np.diff(commands["seq"]) >= 1)
    assert ep.meta["topics"]["joint_state"]["messages"] == len(states["seq"])  # meta.json: what is on disk
    assert not list((tmp_path / "ep").glob("*.tmp"))


def test_a_recorder_on_its_budget_writes_every_message(tmp_path: Path) -> None:
    """With the time to write (the default budget, half a period), nothing is dropped and
    every message taken in is on disk once the recorder has finished."""
    rec = _recorder(tmp_path, part_seconds=0.05)
    for k in range(20):
        _tick(rec, {"joint_state": range(10 * k, 10 * k + 10)})
        time.sleep(0.01)
    rec.finish()
    s = rec.summary()
    assert s["dropped"] == 0 and s["lost"] == 0 and s["recorded"] == s["taken"] == 200
    assert s["parts"] >= 2
    np.testing.assert_array_equal(Episode(tmp_path / "ep").read("joint_state")["seq"], np.arange(200))


def test_a_starved_recorder_process_keeps_its_loop_counts_what_it_drops_and_stops_fast(
    run_dir: Path,
) -> None:
    """The real recorder in a launched graph, starved two ways that do not depend on the
    machine's load: SIGSTOPped 0.6 s at a time (no CPU at all; its socket queue is 20
    messages), and a write budget nothing fits in (one topic a step), with a part of two
    topics sealed every step (10 Hz, part_seconds=0.05). It is
    never killed, its loop keeps going, its backlog stays bounded, every message it took
    in is on disk or counted as dropped, and it stops cleanly."""
    import json

    out = run_dir / "summary.json"
    proc = start_reflexarc(
        "run", "graph=counter_rec", "duration_s=5", f"run_dir={run_dir}", f"out={out}",
        "graph.nodes.source.rate_hz=1000", "graph.nodes.recorder.rate_hz=10",
        "graph.nodes.recorder.nice=10",
        "bus.rcvhwm=20", "bus.sndhwm=20", "silent_timeout_s=30",
        "+graph.nodes.recorder.args.part_seconds=0.05",
        "+graph.nodes.recorder.args.step_budget_s=0.000001",
        "+graph.nodes.recorder.args.max_pending_parts=1",
    )
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "episode").is_dir() or "recorder" not in wait_for_file(run_dir / "pids.json"):
            assert time.monotonic() < deadline, "the recorder did not start"
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        pid = wait_for_file(run_dir / "pids.json")["recorder"]
        for _ in range(3):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.6)
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.4)
        text, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, text
    run = json.loads(out.read_text())
    row = next(r for r in run["nodes"] if r["node"] == "recorder")
    assert run["ok"] and row["exit"] == 0, run
    assert not [e for e in run["events"] if e["node"] == "recorder" and e["event"] in ("silent", "stalled")]
    rec = json.loads((run_dir / "recorder.summary.json").read_text())
    assert rec["dropped"] > 0 and rec["most_pending_parts"] <= 1
    assert rec["recorded"] + rec["dropped"] == rec["taken"]
    assert any(w.startswith(f"recorder kept {rec['recorded']} messages and gave up") for w in run["warnings"])
    first, last = rec["seqs_by_topic"]["joint_state"]
    ep = Episode(run_dir / "episode")
    states = ep.read("joint_state")
    kept = len(states["seq"])
    assert kept + rec["dropped_by_topic"].get("joint_state", 0) + rec["lost_by_topic"].get(
        "joint_state", 0) == last - first + 1
    assert np.all(np.diff(states["seq"]) >= 1)
    assert kept + len(ep.read("joint_command")["seq"]) == rec["recorded"]
    if os.geteuid() == 0:  # at the stop, back from nice 10 to the launcher's (this thread's)
        assert rec["stop_nice"] == os.getpriority(os.PRIO_PROCESS, 0)


def test_the_stop_writes_what_fits_its_budget_and_counts_the_rest(tmp_path: Path) -> None:
    """Far behind at the stop (a part sealed each step, one topic written each step), with
    no time for it (stop_budget_s=0: one topic): the stop ends at once, the part in hand is
    given up with its file, and what is on disk, dropped and taken add up."""
    rec = _recorder(tmp_path, part_seconds=0.01, step_budget_s=1e-9, max_pending_parts=100,
                    stop_budget_s=0.0)
    for k in range(8):
        _tick(rec, {"joint_state": range(10 * k, 10 * k + 10), "joint_command": range(k, k + 1),
                    "command_copy": range(k, k + 1)})
        time.sleep(0.02)
    assert len(rec.writer.sealed) >= 3  # behind: more parts waiting than written
    rec.finish()
    s = rec.summary()
    assert s["dropped"] > 0 and s["recorded"] + s["dropped"] == s["taken"] == 8 * 12
    assert s["behind_s_at_stop"] >= 0.0
    assert not rec.writer.sealed and not list((tmp_path / "ep").glob("*.tmp"))
    ep = Episode(tmp_path / "ep")
    on_disk = sum(len(ep.read(t)["seq"]) for t in ("joint_state", "joint_command", "command_copy"))
    assert on_disk == s["recorded"] and ep.meta["topics"]["joint_state"]["messages"] == len(
        ep.read("joint_state")["seq"])
