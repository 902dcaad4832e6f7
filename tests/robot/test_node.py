"""The node runtime with real sockets and a real process: drops, heartbeats, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from reflexarc.runtime import bus as busmod
from reflexarc.runtime import node as nodemod
from reflexarc.runtime.msgs import EStop, JointCommand, JointState
from reflexarc.runtime.node import Inbox, NodeContext, NodeSpec, spec_json
from reflexarc.runtime.testnodes import Echo
from reflexarc.runtime.wire import decode, encode

NODE_MAIN = "import sys; from reflexarc.runtime.node import main; sys.exit(main(sys.argv[1:]))"


def _good(seq: int) -> list:
    z = np.full(7, float(seq))
    return encode("joint_state", JointState(seq=seq, stamp_ns=seq + 1, position=z, velocity=z, effort=z))


def _bad_frames(rng: np.random.Generator) -> list[list[bytes]]:
    good = [memoryview(f).tobytes() for f in _good(0)]
    header = msgpack.unpackb(good[1])
    wrong_version = dict(header, v=99)
    wrong_dtype = dict(header, a=[["<i4", [7], 0, 0]] + header["a"][1:])
    return [
        good[:1],  # truncated
        [good[0], msgpack.packb(wrong_version), *good[2:]],
        [good[0], msgpack.packb(wrong_dtype), *good[2:]],
        [good[0], rng.integers(0, 256, 40, dtype=np.uint8).tobytes(), good[2]],  # random header
        [good[0], good[1], good[2][:-8]],  # wrong size
        [good[0], b"\x81" * 70_000, good[2]],  # oversize header
    ]


def test_echo_step_is_pure_logic() -> None:
    node = Echo(NodeContext(name="echo", rate_hz=100), Echo.Config(gain=2.0))
    inbox = Inbox()
    assert list(node.step(0, inbox)) == []
    z = np.ones(7)
    inbox.put("joint_state", JointState(seq=4, stamp_ns=77, position=z, velocity=z, effort=z), 0)
    (topic, cmd), = node.step(100, inbox)
    assert topic == "joint_command" and cmd.stamp_ns == 77
    np.testing.assert_array_equal(cmd.position, 2 * z)


def test_malformed_messages_are_dropped_counted_and_the_node_keeps_serving(tmp_path: Path) -> None:
    addrs = {"echo": f"ipc://{tmp_path}/echo.pub", "injector": f"ipc://{tmp_path}/inj.pub"}
    spec = NodeSpec(
        name="echo", target="reflexarc.runtime.testnodes:Echo", rate_hz=200, args={}, seed=0,
        clock="realtime", bus={}, addresses=addrs, heartbeat_hz=20, run_dir=str(tmp_path),
    )
    ctx = zmq.Context()
    ctx.linger = 0  # closing never waits on a peer that is gone
    inj = ctx.socket(zmq.PUB)
    inj.bind(addrs["injector"])
    listen = ctx.socket(zmq.SUB)
    listen.setsockopt(zmq.SUBSCRIBE, b"")
    listen.connect(addrs["echo"])
    proc = subprocess.Popen([sys.executable, "-c", NODE_MAIN, spec_json(spec)])
    try:
        commands, heartbeats = [], []
        rng = np.random.default_rng(0)
        deadline = time.monotonic() + 60
        seq = 0
        while time.monotonic() < deadline and (len(commands) < 20 or not heartbeats or heartbeats[-1].drops < 60):
            for bad in _bad_frames(rng):
                inj.send_multipart(bad)
            inj.send_multipart(_good(seq), copy=False)
            seq += 1
            time.sleep(0.01)
            while listen.poll(0):
                topic, msg = decode(listen.recv_multipart())
                (commands if topic == "joint_command" else heartbeats).append(msg)
            assert proc.poll() is None, "the node died on malformed input"
        assert len(commands) >= 20, "the node stopped serving good messages"
        assert heartbeats[-1].drops >= 60
        # every command echoes a good state: nothing malformed got through
        for c in commands:
            assert np.all(c.position == c.stamp_ns - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        inj.close()
        listen.close()
        ctx.term()
    summary = json.loads((tmp_path / "echo.summary.json").read_text())
    kinds = summary["drops_by_kind"]
    assert {"truncated", "version", "dtype", "header", "shape", "oversize"} <= set(kinds), kinds


def test_sigterm_stops_a_node_cleanly_with_a_summary(tmp_path: Path) -> None:
    addrs = {"source": f"ipc://{tmp_path}/s.pub"}
    spec = NodeSpec(
        name="source", target="reflexarc.runtime.testnodes:Source", rate_hz=500, args={}, seed=0,
        clock="realtime", bus={}, addresses=addrs, run_dir=str(tmp_path),
    )
    ctx = zmq.Context()
    ctx.linger = 0  # closing never waits on a peer that is gone
    listen = ctx.socket(zmq.SUB)
    listen.setsockopt(zmq.SUBSCRIBE, b"heartbeat")
    listen.connect(addrs["source"])
    proc = subprocess.Popen([sys.executable, "-c", NODE_MAIN, spec_json(spec)])
    try:
        # its first heartbeat: it is up and has its signal handlers (a loaded machine
        # can take seconds to import); then let it run a while
        assert listen.poll(60_000), "the node never sent a heartbeat"
        time.sleep(0.5)
    finally:
        listen.close()
        ctx.term()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    summary = json.loads((tmp_path / "source.summary.json").read_text())
    assert summary["ticks"] > 100
    assert summary["target_hz"] == 500


def test_bus_config_rejects_curve_without_keys() -> None:
    import pytest

    from reflexarc.runtime.config import from_mapping
    from reflexarc.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="bus.keys_dir"):
        from_mapping(busmod.BusConfig, {"transport": "tcp", "curve": True}, prefix="bus.")


def test_a_priority_the_user_may_not_take_is_a_warning_not_a_failure(monkeypatch, caplog) -> None:
    def refuse(increment: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refuse)  # as for a user without CAP_SYS_NICE
    spec = NodeSpec(name="planner", target="reflexarc.runtime.testnodes:Echo", rate_hz=10.0, args={},
                    seed=0, clock="realtime", bus={}, addresses={}, nice=-10)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    with caplog.at_level("WARNING"):
        nodemod._set_nice(spec)
    assert "planner: nice -10 needs CAP_SYS_NICE" in caplog.text
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_subscriber_waits_to_the_microsecond_and_wakes_on_a_message(pub_sub) -> None:
    pub, sub = pub_sub(["joint_state"])
    z = np.zeros(7)
    # a sub-millisecond wait is a wait (zmq_poll would return at once: 0 whole ms)
    t = time.monotonic()
    assert not sub.wait(0.0009)
    assert time.monotonic() - t >= 0.0009
    # a message published while the subscriber sleeps on its socket wakes it
    woke = []
    for i in range(50):  # the subscription reaches the publisher after the connect
        timer = threading.Timer(0.02, pub.publish, ("joint_state", JointState(
            position=z, velocity=z, effort=z, stamp_ns=i + 1)))
        timer.start()
        t = time.monotonic()
        if sub.wait(2.0):
            woke.append(time.monotonic() - t)
            break
        timer.join()
    assert woke and woke[0] < 1.0
    # the socket's file descriptor is edge-triggered: a message already waiting
    # (unread) is seen without a new signal, every time
    assert sub.wait(0.0) and sub.wait(0.001)
    got = sub.recv()
    assert got is not None and got[0] == "joint_state"
    assert not sub.wait(0.001)


def test_a_topic_the_node_did_not_declare_is_counted_and_warned_about(tmp_path: Path, caplog) -> None:
    """Echo declares joint_command; what else it publishes goes out but is counted."""
    spec = NodeSpec(name="echo", target="reflexarc.runtime.testnodes:Echo", rate_hz=100,
                    args={}, seed=0, clock="realtime", bus={},
                    addresses={"echo": f"ipc://{tmp_path}/e.pub"}, run_dir=str(tmp_path))
    node = Echo(NodeContext(name="echo", rate_hz=100.0), Echo.Config())
    rt = nodemod.Runtime(spec, node)
    try:
        z = np.zeros(7)
        cmd = JointCommand(stamp_ns=1, mode="torque", position=z, velocity=z, effort=z)
        with caplog.at_level("WARNING"):
            rt._publish([("joint_command", cmd), ("estop", EStop(stamp_ns=1, engage=False)),
                         ("estop", EStop(stamp_ns=2, engage=False))])
        assert rt.undeclared == {"estop": 2} and rt.checked == {"joint_command"}
        assert sum("does not declare" in r.message for r in caplog.records) == 1  # once a topic
        rt._write_summary({})
    finally:
        rt.pub.close()
        rt.sub.close()
        rt.security.close()
        rt.zctx.term()
    summary = json.loads((tmp_path / "echo.summary.json").read_text())
    assert summary["undeclared_topics"] == {"estop": 2}


@pytest.mark.parametrize(("declared", "covered", "not_covered"), [
    (("joint_command",), ["joint_command"], ["joint_commands", "joint", "camera/wrist", ""]),
    (("camera/",), ["camera/wrist", "camera/"], ["camera", "cameras/x", "plan"]),
    # "" covers every topic, as in a subscription (a relay that republishes anything)
    (("",), ["plan", "camera/wrist", "estop", ""], []),
])
def test_declared_topics_match_as_the_bus_does(tmp_path: Path, declared, covered,
                                               not_covered) -> None:
    """A node's declared topics are matched with the bus's own TopicMatch: exact names,
    ``prefix/`` families, and ``""`` for every topic."""
    spec = NodeSpec(name="echo", target="reflexarc.runtime.testnodes:Echo", rate_hz=100,
                    args={}, seed=0, clock="realtime", bus={},
                    addresses={"echo": f"ipc://{tmp_path}/e.pub"}, run_dir=str(tmp_path))
    node = Echo(NodeContext(name="echo", rate_hz=100.0), Echo.Config())
    node.publishes = declared  # this instance's declaration
    rt = nodemod.Runtime(spec, node)
    try:
        for topic in covered + not_covered:
            rt._check_declared(topic)
        assert rt.checked == set(covered)
        assert set(rt.undeclared) == set(not_covered)
    finally:
        rt.pub.close()
        rt.sub.close()
        rt.security.close()
        rt.zctx.term()


def test_a_drain_with_a_deadline_takes_what_fits_and_leaves_the_rest_queued(pub_sub) -> None:
    """A starved node whose messages arrive faster than it decodes them still comes back
    from its drain (the loop drains for at most a period): a deadline already past takes
    one message, the rest wait in the socket, in order."""
    pub, sub = pub_sub(["joint_state"])
    z = np.zeros(7)
    deadline = time.monotonic() + 30
    while not sub.wait(0.05):  # the subscription reaches the publisher after the connect
        assert time.monotonic() < deadline
        pub.publish("joint_state", JointState(position=z, velocity=z, effort=z, stamp_ns=1))
    sub.drain()
    for i in range(200):
        pub.publish("joint_state", JointState(position=z, velocity=z, effort=z, stamp_ns=i + 1))
    got: list = []
    while len(got) < 200 and time.monotonic() < deadline:
        part = sub.drain(time.monotonic_ns())  # a deadline past at once
        assert len(part) <= 1
        got += part
        sub.wait(0.01)
    assert [m.stamp_ns for _, m, _ in got] == list(range(1, 201))
