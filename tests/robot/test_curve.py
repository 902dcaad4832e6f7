"""CURVE across hosts: a peer without the graph's keys can neither read nor inject."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.msgs import JointState
from reflexarc.runtime.node import NodeSpec, spec_json
from reflexarc.runtime.wire import decode, encode

NODE_MAIN = "import sys; from reflexarc.runtime.node import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return busmod.make_keys(tmp_path / "keys")


def _echo_node(tmp_path: Path, keys: Path, addrs: dict[str, str]) -> subprocess.Popen:
    spec = NodeSpec(
        name="echo", target="reflexarc.runtime.testnodes:Echo", rate_hz=100, args={}, seed=0,
        clock="realtime", addresses=addrs, run_dir=str(tmp_path),
        bus={"transport": "tcp", "curve": True, "keys_dir": str(keys)},
    )
    return subprocess.Popen([sys.executable, "-c", NODE_MAIN, spec_json(spec)])


def _client(ctx: zmq.Context, keys: Path | None, address: str) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if keys is not None:
        pub, sec = zmq.auth.load_certificate(keys / "client.key_secret")
        sock.curve_publickey, sock.curve_secretkey = pub, sec
        sock.curve_serverkey, _ = zmq.auth.load_certificate(keys / "server.key")
    sock.connect(address)
    return sock


def _topics_within(sock: zmq.Socket, seconds: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(50):
            seen.add(decode(sock.recv_multipart())[0])
    return seen


def _injector(ctx: zmq.Context, address: str, keys: Path | None) -> zmq.Socket:
    sock = ctx.socket(zmq.PUB)
    if keys is not None:  # holds the graph's server key: an authentic peer
        pub, sec = zmq.auth.load_certificate(keys / "server.key_secret")
        sock.curve_publickey, sock.curve_secretkey, sock.curve_server = pub, sec, True
    sock.bind(address)
    return sock


def _send_states(socks: dict[float, zmq.Socket], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for value, sock in socks.items():
            z = np.full(7, value)
            sock.send_multipart(encode("joint_state", JointState(stamp_ns=1, position=z, velocity=z, effort=z)))
        time.sleep(0.01)


def _commands_within(sock: zmq.Socket, seconds: float) -> list[float]:
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(50):
            topic, msg = decode(sock.recv_multipart())
            if topic == "joint_command":
                values.append(float(msg.position[0]))
    return values


def test_curve_graph_refuses_unauthenticated_readers_and_publishers(tmp_path: Path, keys: Path) -> None:
    addrs = {
        "echo": f"tcp://127.0.0.1:{_free_port()}",
        "rogue": f"tcp://127.0.0.1:{_free_port()}",
        "friend": f"tcp://127.0.0.1:{_free_port()}",
    }
    node = _echo_node(tmp_path, keys, addrs)
    ctx = zmq.Context()
    try:
        reader_ok = _client(ctx, keys, addrs["echo"])
        reader_bad = _client(ctx, None, addrs["echo"])
        # at addresses the node subscribes to: a publisher without the graph's keys
        # (state 1.0) and one holding them (state 2.0)
        rogue = _injector(ctx, addrs["rogue"], None)
        friend = _injector(ctx, addrs["friend"], keys)
        deadline = time.monotonic() + 60
        while "heartbeat" not in _topics_within(reader_ok, 0.5):  # the node is up
            assert time.monotonic() < deadline, "no heartbeat from the node"
        commands: list[float] = []
        while len(commands) < 20 and time.monotonic() < deadline:
            _send_states({1.0: rogue, 2.0: friend}, 0.5)
            commands += _commands_within(reader_ok, 0.2)
        commands += _commands_within(reader_ok, 0.5)
        assert commands, "the authenticated publisher's states did not reach the node"
        assert set(commands) == {2.0}, "the node acted on the unauthenticated publisher"
        assert _topics_within(reader_bad, 0.5) == set(), "an unauthenticated reader got data"
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
        ctx.destroy(linger=0)
