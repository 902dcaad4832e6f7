"""The recorder node and ``reflexarc record`` / ``reflexarc replay``.

The recorder subscribes to every topic and writes each message to an episode
(reflexarc/runtime/episode.py: HDF5 parts closed every second, so a SIGKILL loses at most the
last second). The episode's metadata names the task, backend and robot, and holds the run's
whole config and the project's version (from the launcher's ``run.json``); when the
recording ends, ``meta.json`` adds the cameras' calibration (the scene's ``cameras.json``)
and each topic's message count and rate (docs/data.md); it is rewritten with every part
(about once a second), so a killed recorder leaves it too, as current as its last part. Replay republishes an episode's
messages on their topics, with the original
timing (``speed=1``), faster or slower, or as fast as possible (``speed=0``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.config import bounded, register
from reflexarc.runtime.episode import Episode, EpisodeWriter, write_meta
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.launcher import NodeEntry, RunConfig
from reflexarc.runtime.msgs import INFRA_TOPICS
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

# the open part's age is checked this many times per part_seconds: checked only once, a
# part opened just after a check would stay open nearly two part_seconds
ROTATE_CHECKS = 8


class Recorder(Node):
    """Writes every non-infrastructure topic to an episode directory."""

    @dataclass
    class Config:
        path: str = ""  # episode directory; default <run_dir>/episode
        # a part is closed (complete on disk) this long after it opened: a SIGKILL loses at
        # most the open part, so this plus one check (ROTATE_CHECKS) is what it can lose
        part_seconds: float = bounded(0.75, 0.05, 3600.0)
        include_infra: bool = False

    subscribes = {"": "all"}

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        path = cfg.path or str(Path(ctx.run_dir or ".") / "episode")
        self.writer = EpisodeWriter(
            path, meta={"node": ctx.name, "seed": ctx.seed, "clock": ctx.clock,
                        **run_meta(ctx.run_dir)},
            part_seconds=cfg.part_seconds,
        )
        self.count = 0
        self.last_rotate = time.monotonic()
        # topic -> [messages, first stamp_ns, last stamp_ns], for each topic's rate
        self.seen: dict[str, list[int]] = {}

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        for topic in inbox.topics():
            if topic in INFRA_TOPICS and not self.cfg.include_infra:
                continue
            for msg in inbox.new(topic):
                self.writer.write(topic, msg)
                self.count += 1
                seen = self.seen.get(topic)
                if seen is None:
                    self.seen[topic] = [1, msg.stamp_ns, msg.stamp_ns]
                else:
                    seen[0] += 1
                    seen[2] = msg.stamp_ns
        if time.monotonic() - self.last_rotate >= self.cfg.part_seconds / ROTATE_CHECKS:
            part = self.writer.part_index
            self.writer.maybe_rotate()
            # rewritten as each part closes, when every message counted is in a closed part:
            # a killed recorder leaves the metadata of the parts it left on disk
            if self.writer.part_index != part:
                write_meta(self.writer.path, self.closing_meta())
            self.last_rotate = time.monotonic()
        return ()

    def summary(self) -> dict[str, Any]:
        return {"recorded": self.count, "episode": str(self.writer.path)}

    def close(self) -> None:
        self.writer.close()
        if self.writer.messages_written:
            write_meta(self.writer.path, self.closing_meta())

    def closing_meta(self) -> dict[str, Any]:
        """What is known once recording ends: per-topic counts and rates, calibration."""
        topics = {
            topic: {"messages": n, "hz": (n - 1) * 1e9 / (last - first) if last > first else 0.0}
            for topic, (n, first, last) in sorted(self.seen.items())
        }
        meta: dict[str, Any] = {"topics": topics}
        cameras = Path(self.ctx.run_dir or ".") / "cameras.json"
        if self.ctx.run_dir and cameras.is_file():
            meta["cameras"] = json.loads(cameras.read_text())
        return meta


def run_meta(run_dir: str) -> dict[str, Any]:
    """Task, backend, robot, the run's config and version, from the launcher's ``run.json``.

    Empty when the recorder runs outside a launched graph (no ``run.json``).
    """
    path = Path(run_dir) / "run.json" if run_dir else None
    if path is None or not path.is_file():
        return {}
    run = json.loads(path.read_text())
    config = run.get("config", {})
    return {
        "task": config.get("task", ""),
        "backend": config.get("backend", ""),
        "robot": config.get("robot", "panda"),
        "version": run.get("version", ""),
        "config": config,
    }


@dataclass
class RecordConfig(RunConfig):
    """``reflexarc record``: run the graph with a recorder writing to ``path``."""

    path: str = ""  # episode directory; default <run_dir>/episode
    recorder_hz: float = bounded(100.0, 1.0, 10_000.0)


register("record_schema", RecordConfig)


def record_verb(cfg: RecordConfig) -> dict[str, Any]:
    nodes = dict(cfg.graph.nodes)
    if not any(e.target == "reflexarc.runtime.recorder:Recorder" for e in nodes.values() if e.enabled):
        nodes["recorder"] = NodeEntry(
            target="reflexarc.runtime.recorder:Recorder", rate_hz=cfg.recorder_hz, args={"path": cfg.path}
        )
    cfg.graph.nodes = nodes
    from reflexarc.runtime.launcher import run_verb

    return run_verb(cfg)


@dataclass
class ReplayConfig:
    """``reflexarc replay PATH``: republish a recorded episode."""

    path: str = ""
    speed: float = bounded(1.0, 0.0, 1000.0)  # 1: original timing; 0: as fast as possible
    topics: list[str] = field(default_factory=list)  # empty: every recorded topic
    bus: busmod.BusConfig = field(default_factory=busmod.BusConfig)
    address: str = ""  # PUB address to bind; default ipc under the temp dir
    wait_s: float = bounded(0.5, 0.0, 60.0)  # let subscribers connect before sending
    out: str = ""

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("path", "give the episode directory: reflexarc replay PATH")


register("replay_schema", ReplayConfig)


def replay(cfg: ReplayConfig, publisher: busmod.Publisher | None = None) -> dict[str, Any]:
    """Republish an episode; keeps each topic's recorded seq and stamps."""
    episode = Episode(cfg.path)
    messages = episode.all_messages()
    if cfg.topics:
        messages = [m for m in messages if m[1] in cfg.topics]
    own = publisher is None
    if own:
        zctx = busmod.context()
        security = busmod.Security(zctx, cfg.bus)
        address = cfg.address or busmod.addresses(cfg.bus, ["replay"], "replay")["replay"]
        publisher = busmod.Publisher(zctx, address, cfg.bus, security)
        time.sleep(cfg.wait_s)
    t_first = messages[0][0] if messages else 0
    start = time.monotonic_ns()
    try:
        for recv_ns, topic, msg in messages:
            if cfg.speed > 0:
                due = start + (recv_ns - t_first) / cfg.speed
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
            publisher.seqs[topic] = msg.seq - 1  # keep the recorded seq
            publisher.publish(topic, msg)
    finally:
        if own:
            publisher.close()
            security.close()
            zctx.term()
    took = (time.monotonic_ns() - start) / 1e9
    recorded = (messages[-1][0] - t_first) / 1e9 if messages else 0.0
    return {"messages": len(messages), "recorded_s": recorded, "replay_s": took,
            "topics": sorted({m[1] for m in messages}),
            # a damaged episode replays what it has and says what it had not
            **({"damaged": episode.damage(), "warnings": [
                f"episode {cfg.path} is damaged ({episode.damage()}): replayed the rest"]}
               if episode.damage() else {})}


def replay_verb(cfg: ReplayConfig) -> dict[str, Any]:
    return replay(cfg)
