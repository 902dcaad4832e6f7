"""The recorder node and ``reflexarc record`` / ``reflexarc replay``.

The recorder subscribes to every topic and writes each message to an episode
(reflexarc/runtime/episode.py). It gathers ``part_seconds`` of messages in memory, then
writes them as one part, so a SIGKILL loses at most what it had not written: under a
second when it gets a core. The episode's metadata names the task, backend and robot, and
holds the run's whole config and the project's version (from the launcher's ``run.json``);
``meta.json`` adds the cameras' calibration (the scene's ``cameras.json``) and each topic's
message count and rate as kept on disk (docs/data.md), rewritten with every part, so a
killed recorder leaves it too, as current as its last part.

On a busy machine (docs/liveness.md, "Recordings") it stays bounded: a step writes parts
for at most ``step_budget_s`` of wall time and leaves the rest for the next step; sealed
parts waiting beyond ``max_pending_parts`` are given up, oldest first, and counted
(``dropped``), as are messages that never reached it (``lost``: gaps in a topic's
``seq``, a full socket queue). At the stop it raises its priority back to the launcher's
where the OS allows and writes what it holds: at most ``max_pending_parts`` + 1 parts.

Replay republishes an episode's messages on their topics, with the original timing
(``speed=1``), faster or slower, or as fast as possible (``speed=0``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
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


class Recorder(Node):
    """Writes every non-infrastructure topic to an episode directory, on a time budget."""

    @dataclass
    class Config:
        path: str = ""  # episode directory; default <run_dir>/episode
        # a part gathers this long of messages in memory and is then written whole: a
        # SIGKILL loses what is not written yet, this and the time to write it
        part_seconds: float = bounded(0.5, 0.05, 3600.0)
        include_infra: bool = False
        # wall time one step may spend writing parts (at least one topic of one part): the
        # rest waits for the next step, so the loop keeps its rate; 0: half the period
        step_budget_s: float = bounded(0.0, 0.0, 60.0)
        # sealed parts waiting to be written beyond this many are given up, the oldest
        # not started first, and counted (summary "dropped"): a starved recorder keeps a
        # bounded backlog, and so a bounded stop, rather than fall ever further behind
        max_pending_parts: int = bounded(2, 1, 1000)
        # wall time the stop may spend writing what is held: what does not fit is given up
        # and counted, so the recorder ends with its summary well within the launcher's
        # patience (4 x stop_timeout_s) instead of being killed with everything unsaid
        stop_budget_s: float = bounded(3.0, 0.0, 600.0)

    subscribes = {"": "all"}

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        path = cfg.path or str(Path(ctx.run_dir or ".") / "episode")
        self.writer = EpisodeWriter(
            path, meta={"node": ctx.name, "seed": ctx.seed, "clock": ctx.clock,
                        **run_meta(ctx.run_dir)},
            part_seconds=cfg.part_seconds,
        )
        self.budget_s = cfg.step_budget_s or 0.5 / ctx.rate_hz
        self.count = 0  # messages taken in
        self.first_seq: dict[str, int] = {}  # topic -> seq of the first message taken in
        self.last_seq: dict[str, int] = {}  # topic -> newest seq taken in
        self.lost: dict[str, int] = {}  # topic -> messages missing from its seq numbering
        self.dropped: dict[str, int] = {}  # topic -> messages given up (too far behind)
        self.most_pending = 0  # the most sealed parts waiting at once
        self.over_budget = 0  # steps whose writing ran past the budget (one topic is at least written)
        self.stop_nice: int | None = None  # niceness at the stop, when it was raised back
        self.cameras: dict[str, Any] | None = None
        self.behind_s: float | None = None  # at the stop: now less the newest stamp taken in
        self.newest_ns = 0  # the newest stamp_ns taken in

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        t0 = time.monotonic()
        writer = self.writer
        if writer.part_due(t0):  # what was gathered before this step: a part on the wall clock
            writer.seal()
            self._drop(writer.drop_sealed(self.cfg.max_pending_parts))
        for topic in inbox.topics():
            if topic in INFRA_TOPICS and not self.cfg.include_infra:
                continue
            for msg in inbox.new(topic):
                self._seq(topic, msg.seq)
                if msg.stamp_ns > self.newest_ns:
                    self.newest_ns = msg.stamp_ns
                writer.write(topic, msg)
                self.count += 1
        if writer.sealed:
            closed = writer.parts_closed
            writer.write_sealed(t0 + self.budget_s)
            self.over_budget += time.monotonic() > t0 + self.budget_s
            if writer.parts_closed != closed:
                # rewritten as parts close: counts of what is on disk, so a killed recorder
                # leaves the metadata of the parts it left
                write_meta(writer.path, self.closing_meta())
        return ()

    def _seq(self, topic: str, seq: int) -> None:
        last = self.last_seq.get(topic)
        if last is None:
            self.first_seq[topic] = seq
        elif seq > last + 1:
            self.lost[topic] = self.lost.get(topic, 0) + seq - last - 1
        self.last_seq[topic] = seq  # a seq that goes back: its publisher restarted

    def _drop(self, dropped: dict[str, int]) -> None:
        for topic, n in dropped.items():
            self.dropped[topic] = self.dropped.get(topic, 0) + n
        self.most_pending = max(self.most_pending, len(self.writer.sealed))

    def finish(self) -> None:
        """At the stop: back to the launcher's priority where the OS allows (a recorder at
        ``nice 10`` on a busy machine would wait long for a core), then write what it holds,
        at most ``max_pending_parts`` + 1 parts."""
        with contextlib.suppress(OSError):  # PermissionError without CAP_SYS_NICE: as it is
            tid = threading.get_native_id()  # niceness is per thread on Linux
            mine = os.getpriority(os.PRIO_PROCESS, tid)
            theirs = os.getpriority(os.PRIO_PROCESS, os.getppid())
            if theirs < mine:
                os.setpriority(os.PRIO_PROCESS, tid, theirs)
            self.stop_nice = os.getpriority(os.PRIO_PROCESS, tid)
        self._write_all()

    def _write_all(self) -> None:
        t0 = time.monotonic()
        # how far behind the stream it stopped: messages published later were never taken in
        if self.newest_ns:
            self.behind_s = max(0.0, (time.monotonic_ns() - self.newest_ns) / 1e9)
        self.writer.seal()
        self.writer.write_sealed(t0 + self.cfg.stop_budget_s)
        self._drop(self.writer.drop_sealed(0, started=True))
        if self.writer.messages_written:
            write_meta(self.writer.path, self.closing_meta())

    def summary(self) -> dict[str, Any]:
        writer = self.writer
        return {
            "recorded": writer.messages_written,  # in closed parts, complete on disk
            "taken": self.count,
            "dropped": sum(self.dropped.values()),
            "dropped_by_topic": dict(self.dropped),
            "lost": sum(self.lost.values()),
            "lost_by_topic": dict(self.lost),
            # the first and last seq taken in: with no restart, taken + lost = last - first + 1
            "seqs_by_topic": {t: [self.first_seq[t], self.last_seq[t]] for t in self.last_seq},
            "parts": writer.parts_closed,
            "most_pending_parts": self.most_pending,
            "steps_over_budget": self.over_budget,
            "step_budget_s": self.budget_s,
            **({"stop_nice": self.stop_nice} if self.stop_nice is not None else {}),
            **({"behind_s_at_stop": round(self.behind_s, 3)} if self.behind_s is not None else {}),
            "episode": str(writer.path),
        }

    def close(self) -> None:
        if self.writer.buffered or self.writer.sealed:  # not finished (run outside a runtime)
            self._write_all()

    def closing_meta(self) -> dict[str, Any]:
        """What is known as recording goes on: per-topic counts and rates of what is on
        disk, the cameras' calibration."""
        topics = {
            topic: {"messages": n, "hz": (n - 1) * 1e9 / (last - first) if last > first else 0.0}
            for topic, (n, first, last) in sorted(self.writer.kept.items())
        }
        meta: dict[str, Any] = {"topics": topics}
        if self.cameras is None and self.ctx.run_dir:
            cameras = Path(self.ctx.run_dir) / "cameras.json"
            if cameras.is_file():
                self.cameras = json.loads(cameras.read_text())
        if self.cameras is not None:
            meta["cameras"] = self.cameras
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
