"""The learner takes experience from several graphs at once, over TCP with CURVE."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from reflexarc.policies.learner import LearnerConfig, LearnerNode, StreamSource
from reflexarc.policies.train import OptimConfig
from reflexarc.runtime import bus as busmod
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EEAction, Image
from reflexarc.runtime.node import Inbox, NodeContext
from tests.policies.test_learner import TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Graph:
    """A stand-in for another graph's sim + explorer: one CURVE-secured PUB on TCP."""

    def __init__(self, keys: Path, value: int, clock_ns: int) -> None:
        self.cfg = busmod.BusConfig(transport="tcp", curve=True, keys_dir=str(keys))
        self.ctx = busmod.context()
        self.sec = busmod.Security(self.ctx, self.cfg)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.pub = busmod.Publisher(self.ctx, self.address, self.cfg, self.sec)
        self.value = value  # every frame of this graph is filled with it
        self.t = clock_ns  # each graph's own clock
        self.j = 0

    def send_frame(self) -> None:
        rgb = np.full((32, 32, 3), self.value, np.uint8)
        self.pub.publish("camera/front", Image(stamp_ns=self.t, camera="front", rgb=rgb,
                                               depth=np.zeros((0, 0), np.float32)))
        a = np.array([0.01 * self.value / 100, 0.0, 0.0, 1.0], np.float32)
        self.pub.publish("ee_action", EEAction(stamp_ns=self.t, action=a))
        self.t += 100_000_000
        self.j += 1

    def close(self) -> None:
        self.pub.close()
        self.sec.close()
        self.ctx.term()


def test_learner_trains_on_two_graphs_streams_at_once(tmp_path: Path) -> None:
    keys = busmod.make_keys(tmp_path / "keys")
    a, b = Graph(keys, 100, clock_ns=0), Graph(keys, 200, clock_ns=5_000_000_000_000)
    cfg = LearnerConfig(
        model=TINY, out_dir=str(tmp_path / "live"), stream=False, train_in="step",
        optim=OptimConfig(horizon=2, batch_size=16, warmup=0), min_windows=10,
        updates_per_step=1, publish_every=1000, max_step_ms=60000,
        sources=[StreamSource("a", [a.address], str(keys)), StreamSource("b", [b.address], str(keys))],
    )
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0), cfg)
    try:
        deadline = time.monotonic() + 20
        while min(node.streams["a"].buffer.added, node.streams["b"].buffer.added) < 12:
            assert time.monotonic() < deadline, node.summary()
            if a.j < 40:
                a.send_frame()
                b.send_frame()
            time.sleep(0.02)
            node.step(0, Inbox())
        s = node.summary()
        assert s["stream_frames"]["local"] == 0
        for name, value in (("a", 100), ("b", 200)):
            buf = node.streams[name].buffer
            # each ring holds only its graph's frames, linked on its own clock
            assert (buf.frames[: buf.size] == value).all()
            starts = buf.window_starts(2)
            assert len(starts) >= buf.size - 4
            torch.testing.assert_close(buf.actions[starts[0]], torch.tensor([0.01 * value / 100, 0, 0, 1.0]))
        assert node.updates > 0  # trained on windows drawn over both rings
        images, _ = node._windows(node._starts(), 2)
        seen = {int(v) for v in images[:, 0, 0, 0, 0].unique()}
        assert seen == {100, 200}
        assert s["transitions"] >= 20
    finally:
        node.close()
        a.close()
        b.close()


def test_a_source_without_the_graphs_keys_gets_nothing(tmp_path: Path) -> None:
    keys = busmod.make_keys(tmp_path / "keys")
    other = busmod.make_keys(tmp_path / "other")  # a different key set: not authorised
    g = Graph(keys, 100, clock_ns=0)
    cfg = LearnerConfig(model=TINY, out_dir=str(tmp_path / "live"), stream=False, train_in="step",
                        sources=[StreamSource("intruder", [g.address], str(other))])
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0), cfg)
    try:
        for _ in range(30):
            g.send_frame()
            time.sleep(0.02)
            node.step(0, Inbox())
        assert node.streams["intruder"].buffer.added == 0
    finally:
        node.close()
        g.close()


def test_sources_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="connect"):
        StreamSource("a", ["127.0.0.1:5000"]).validate()
    with pytest.raises(ConfigError, match="unique"):
        LearnerNode(NodeContext(name="learner", rate_hz=1.0), LearnerConfig(
            model=TINY, out_dir=str(tmp_path), sources=[StreamSource("a", ["tcp://127.0.0.1:1"])] * 2))
