"""The launcher: ``reflexarc run`` starts each node of the graph as its own OS process.

It validates the whole graph before any process starts (every node's target and
arguments), starts the nodes, watches their exits and their liveness, applies each node's
death policy (``restart`` or ``stop`` the graph), ends every child on Ctrl-C/SIGTERM
(children also get SIGTERM from the kernel if the launcher itself dies), and closes with
a summary table: per node rate, misses, drops, restarts. A node's summary may carry a
dict under ``run`` (task figures: success rate...), merged into the run summary's top level.
A graph may name a ``report`` function, run after the nodes have stopped (videos, plots).

Liveness (docs/liveness.md): each node writes its records on a pipe made for that process
alone (not on the bus, where anyone could speak for it). A node whose loop has not moved
for ``hung_timeout_s`` of the time it could run (scaled up for slow nodes) is hung; a
silent one is judged by what the OS says of it: stopped by a signal, or asleep, or busy
without a word, is hung; one waiting for a core is starved, which a busy machine does,
and is given up to ``starved_timeout_s``.

The summary's ``ok`` is true only when every node came up, every requested episode ran,
no node died unplanned, none ended in fault and every node exited cleanly; ``reasons`` says
why not, and ``warnings`` names what degraded the run and what to change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.argkeys import argument_names
from reflexarc.runtime.config import (
    bounded,
    check_cpu_latency,
    check_cpus,
    choice,
    did_you_mean,
    from_mapping,
    register,
)
from reflexarc.runtime.errors import ConfigError, NodeError, ReflexarcError
from reflexarc.runtime.limits_log import note_limits
from reflexarc.runtime.load import background_load
from reflexarc.runtime.node import NodeSpec, cpu_latency, node_class, spec_json

log = logging.getLogger("reflexarc.launcher")


def _version() -> str:
    from reflexarc import __version__

    return __version__


@dataclass
class NodeEntry:
    """One node of the graph."""

    target: str = MISSING  # "package.module:Class"
    rate_hz: float = bounded(10.0, 0.01, 20_000.0)  # ticks per second (the sim's: its physics rate)
    args: dict[str, Any] = field(default_factory=dict)
    on_death: str = choice("stop", "stop", "restart")  # when its process dies: stop the graph, or restart it
    max_restarts: int = bounded(3, 0, 1000)  # restart: at most this many times
    enabled: bool = True  # false: leave the node out of the run
    # CPU cores the node's process may run on (Linux sched_setaffinity); empty: any. On a
    # small machine, keeping the 1 kHz loops off the cores of the perception -> planner
    # chain stops them from delaying each other's wake-ups
    cpus: list[int] = field(default_factory=list)
    # realtime: microseconds busy-waited before each deadline, for an on-time tick; -1:
    # automatic (150 at 200 Hz and faster, else 0). The spin is CPU no other process
    # gets: on a small machine a node that steps on arrival (wakes_on) can do without
    spin_us: float = bounded(-1.0, -1.0, 10_000.0)
    # scheduling priority of the node's process, added to the launcher's (Linux nice, as
    # ``nice -n``: lower runs first). On a small machine, putting the frame -> plan chain
    # ahead of the sim and the recorder shortens its wake-ups. Below 0 needs
    # CAP_SYS_NICE (root); without it the node warns and keeps the launcher's
    nice: int = bounded(0, -39, 39)
    # realtime: the scheduling policy of the node's process once it is built: "fifo" runs
    # it SCHED_FIFO at sched_priority, ahead of every time-shared process (needs
    # CAP_SYS_NICE or root; without it one warning, and time-shared); "other" time-shared;
    # "auto" the node's own default (the controller: fifo). docs/liveness.md, "Scheduling"
    sched: str = choice("auto", "auto", "other", "fifo")
    sched_priority: int = bounded(10, 1, 99)
    # the machine that runs this node, by a name of ``bus.hosts``, when the graph is split
    # over several launchers (``host=``); ignored when one launcher runs the whole graph
    host: str = ""


@dataclass
class GraphConfig:
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    # "package.module:function", called as function(run_dir, summary) after the run; the
    # dict it returns (figures, paths of videos and plots) joins the summary's top level
    report: str = ""
    # folders put on the Python path (here and in every node process) before targets are
    # imported: a node may then live in any module there. A graph file's own folder is
    # added by itself (docs/python-api.md)
    pythonpath: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """``reflexarc run``: which graph, which clock, for how long."""

    graph: GraphConfig = field(default_factory=GraphConfig)  # graph=NAME (configs/graph/) or graph=FILE.yaml
    clock: str = choice("realtime", "realtime", "lockstep")  # lockstep: deterministic, as fast as it goes
    duration_s: float = bounded(0.0, 0.0, None)  # 0: until a node finishes, or Ctrl-C
    base_hz: float = bounded(1000.0, 1.0, 100_000.0)  # lockstep tick rate
    seed: int = 0  # episode k of the sim is reset with seed + k
    heartbeat_hz: float = bounded(10.0, 0.5, 200.0)  # how often each node says it is alive
    startup_timeout_s: float = bounded(60.0, 1.0, None)  # a node not up this long after start is hung
    # a live process silent this long (and at least 3 heartbeat periods) is asked about at
    # the OS: stopped by a signal, it is hung (killed, its death policy applied); waiting
    # for a core, it is starved and waited for. An exited process is noticed at once.
    silent_timeout_s: float = bounded(1.0, 0.01, None)
    # a node whose loop has not moved for this long of the time it could run (CPU time, or
    # asleep inside a step) is hung; at least 2.5 of its periods
    hung_timeout_s: float = bounded(2.0, 0.05, None)
    # a starved node (waiting for a core, silent) is hung after this long all the same
    starved_timeout_s: float = bounded(20.0, 0.1, None)
    # CPU-bound background processes for the run (a busy machine on demand: reflexarc load)
    load: int = bounded(0, 0, 64)
    stop_timeout_s: float = bounded(5.0, 0.1, 60.0)  # a stopping node is killed after this
    bus: busmod.BusConfig = field(default_factory=busmod.BusConfig)  # sockets: ipc or tcp, CURVE
    # the kernel's CPU latency limit held while the graph runs (Linux PM QoS, needs
    # root), in microseconds: idle cores then wake within it (0: they poll instead of
    # halting, so a message wakes its node sooner, dearly so in a VM). -1: leave it alone
    cpu_latency_us: int = bounded(-1, -1, 2_000_000_000)
    run_dir: str = ""  # default: runs/<time>-<id>
    out: str = ""  # also write the summary to this JSON file
    # scene-level choices that graph configs reference by interpolation (${task}...)
    task: str = choice("push", "reach", "push", "pick_place", "instruction")  # the scene's task
    backend: str = choice("mujoco", "mujoco", "pybullet")  # the simulator
    robot: str = "panda"  # the arm, in graphs that pass it on (docs/robots.md): panda, xarm6
    episodes: int = bounded(1, 1, 100_000)  # episodes the sim runs before the run ends
    policy: str = "expert"  # graph=expert: expert or random actions
    instruction: str = ""  # graph=instruction: the instruction in plain language
    viewer: bool = False  # open the simulator's window (needs a display)
    image_size: int = bounded(64, 16, 512)  # camera frames, pixels a side
    env_id: str = "InvertedPendulum-v5"  # graph=gym: the gymnasium env (any id with Box spaces)
    goal_image: str = ""  # graph=gym: plan toward this image (docs/anyscene.md); "": random actions
    world_model: str = ""  # graph=gym with goal_image: the env's world model (reflexarc train)
    # a graph split over machines: the name (in bus.hosts) of this launcher's machine. It
    # starts the nodes placed here (graph.nodes.<n>.host) and reaches the others at their
    # host's address; "" runs every node here (docs/scale.md, "A graph across hosts")
    host: str = ""

    def validate(self) -> None:
        check_cpu_latency("cpu_latency_us", self.cpu_latency_us)
        if self.host:
            if self.bus.transport != "tcp":
                raise ConfigError("bus.transport", f"host={self.host}: a graph across hosts needs tcp")
            if self.host not in self.bus.hosts:
                raise ConfigError("host", f"{self.host!r} is not a name of bus.hosts ({', '.join(self.bus.hosts) or 'none'})")
            if self.clock == "lockstep":
                raise ConfigError("clock", "a graph across hosts runs on the realtime clock; lockstep is for one launcher")


register("run_schema", RunConfig)


def os_view(pid: int) -> tuple[set[str], float]:
    """What the OS says of a process: its threads' scheduler states (R, S, D, T, t, Z...)
    and its CPU time in seconds (all threads). Empty and 0 where /proc is not there."""
    states: set[str] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            states.add(chr(stat[stat.rindex(b")") + 2]))
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return states, 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return states, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Proc:
    entry: NodeEntry
    spec: NodeSpec
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fd: int = -1  # read end of the node's liveness pipe
    buf: bytes = b""
    last_rec: float = 0.0  # when its latest liveness record arrived
    last_hb: float = 0.0  # when its latest record arrived since it came up (0: not up)
    rec: dict[str, Any] | None = None  # its latest liveness record
    up: bool = False  # its current process's loop has started
    ever_up: bool = False
    up_s: float | None = None  # seconds into the run its current process came up
    last_state: str = ""  # its last state before stopping (running, holding, fault...)
    silent_cpu: float = -1.0  # its CPU time when it fell silent; -1: not silent
    starved_s: float = 0.0  # longest starved silence seen
    slow_start: bool = False  # still starting past startup_timeout_s, and progressing
    slow_stop: bool = False  # still stopping past stop_timeout_s, and progressing
    restarts: int = 0
    finished: bool = False
    died: bool = False  # died (or was killed as hung) and not restarted

    stop_killed: bool = False  # killed at the end for not stopping in time
    stacks: str = ""  # where its threads' stacks were written before it was killed
    silent_look: float = 0.0  # when its CPU time was last read while it was silent
    exit_code: int | None = None

    @property
    def closed(self) -> bool:
        """The node stopped and wrote its summary (its last record says so)."""
        return bool(self.rec) and self.rec.get("state") == "closed"  # type: ignore[union-attr]


class Launcher:
    """Start, watch and stop one graph of node processes."""

    def __init__(self, cfg: RunConfig, peers: tuple[str, ...] = ()) -> None:
        """``peers``: names that get a bus address but no process (a script publishing
        into the graph from the launcher's process: :mod:`reflexarc.runtime.api`)."""
        self.cfg = cfg
        self.run_id = uuid.uuid4().hex[:8]
        self.run_dir = Path(cfg.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{self.run_id}")
        self.events: list[dict[str, Any]] = []
        self.stopping = False
        self.reason = ""
        self.ok = True
        nodes = {n: e for n, e in cfg.graph.nodes.items() if e.enabled}
        if not nodes:
            raise ConfigError("graph.nodes", "the graph has no enabled node")
        if cfg.clock == "lockstep":
            nodes = {**nodes, "clock": self._clock_entry(nodes)}
        for folder in reversed(cfg.graph.pythonpath):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        self._validate(nodes)
        if cfg.graph.report:
            self._report_fn()
        placement = self._placement(nodes)
        self.addresses = busmod.addresses(cfg.bus, [*nodes, *peers], self.run_id, placement)
        self.remote = sorted(n for n, h in placement.items() if h != cfg.host)
        bus_dict = {k: getattr(cfg.bus, k) for k in cfg.bus.__dataclass_fields__}
        self.procs = {
            name: _Proc(
                entry=e,
                spec=NodeSpec(
                    name=name,
                    target=e.target,
                    rate_hz=e.rate_hz,
                    args=dict(e.args),
                    seed=cfg.seed,
                    clock=cfg.clock,
                    bus=bus_dict,
                    addresses=self.addresses,
                    heartbeat_hz=cfg.heartbeat_hz,
                    base_hz=cfg.base_hz,
                    run_dir=str(self.run_dir.resolve()),
                    parent_pid=os.getpid(),
                    cpus=list(e.cpus),
                    spin_us=e.spin_us,
                    nice=e.nice,
                    sched=e.sched,
                    sched_priority=e.sched_priority,
                ),
            )
            for name, e in nodes.items()
            if name not in self.remote
        }

    def _placement(self, nodes: dict[str, NodeEntry]) -> dict[str, str]:
        """Node -> host name when the graph is split (``host`` set); else empty."""
        if not self.cfg.host:
            return {}
        names = ", ".join(self.cfg.bus.hosts)
        for name, e in nodes.items():
            if e.host not in self.cfg.bus.hosts:
                raise ConfigError(
                    f"graph.nodes.{name}.host",
                    f"{e.host!r}: the graph runs split over hosts ({names}); say which one runs {name}",
                )
        return {name: e.host for name, e in nodes.items()}

    def _clock_entry(self, nodes: dict[str, NodeEntry]) -> NodeEntry:
        for name, e in nodes.items():
            if e.rate_hz > self.cfg.base_hz:
                raise ConfigError(
                    f"graph.nodes.{name}.rate_hz",
                    f"{e.rate_hz} Hz is above the lockstep tick rate base_hz={self.cfg.base_hz}",
                )
        return NodeEntry(
            target="reflexarc.runtime.clock:LockstepClock",
            rate_hz=1.0,
            args={
                "base_hz": self.cfg.base_hz,
                "duration_s": self.cfg.duration_s,
                "nodes": {n: e.rate_hz for n, e in nodes.items()},
            },
        )

    def _validate(self, nodes: dict[str, NodeEntry]) -> None:
        """Import every target and validate its arguments, before any process starts."""
        # first the argument names, from the nodes' sources: a misspelled one is reported
        # before any node module (torch, a simulator) is imported
        for name, e in nodes.items():
            allowed = argument_names(e.target)
            for key in e.args if allowed is not None else ():
                if key not in allowed:
                    raise ConfigError(
                        f"graph.nodes.{name}.args.{key}",
                        f"Key {key!r} not in the arguments of {e.target}{did_you_mean(key, allowed)}",
                    )
        owners: dict[str, str] = {}
        for name, e in nodes.items():
            try:
                cls = node_class(e.target, e.args)
            except NodeError as err:
                raise ConfigError(f"graph.nodes.{name}.target", str(err)) from None
            args = from_mapping(cls.Config, e.args, prefix=f"graph.nodes.{name}.args.")
            # the files a node reads at start, checked now (a damaged checkpoint is one line
            # and exit 2 here, not a node dying after the others started)
            try:
                cls.preflight(args)
            except ReflexarcError as err:
                raise ConfigError(f"graph.nodes.{name}.args", str(err)) from None
            check_cpus(f"graph.nodes.{name}.cpus", e.cpus)
            # a node whose topics depend on its arguments says so with publishes_for(cfg)
            publishes_for = getattr(cls, "publishes_for", None)
            for topic in publishes_for(args) if publishes_for else cls.publishes:
                if topic in owners and not topic.endswith("/"):
                    raise ConfigError(
                        f"graph.nodes.{name}",
                        f"topic {topic!r} is already published by node {owners[topic]!r}; "
                        "a topic has one publisher",
                    )
                owners[topic] = name

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, name: str) -> None:
        p = self.procs[name]
        env = None
        if self.cfg.graph.pythonpath:
            path = [*self.cfg.graph.pythonpath, *filter(None, [os.environ.get("PYTHONPATH")])]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        self._close_pipe(p)
        r, w = os.pipe()
        p.spec.liveness_fd = w
        try:
            p.popen = subprocess.Popen(
                [sys.executable, "-c", _NODE_MAIN, spec_json(p.spec)],
                stdin=subprocess.DEVNULL, pass_fds=(w,), env=env,
            )
        finally:
            os.close(w)
        os.set_blocking(r, False)
        p.fd, p.buf = r, b""
        p.started = time.monotonic()
        p.last_hb = p.last_rec = 0.0
        p.rec = None
        p.up = False
        p.silent_cpu = -1.0
        p.finished = False
        p.exit_code = None
        self._write_pids()

    @staticmethod
    def _close_pipe(p: _Proc) -> None:
        if p.fd >= 0:
            os.close(p.fd)
            p.fd = -1

    def _read(self, p: _Proc, now: float) -> None:
        """Take in every liveness record waiting on the node's pipe."""
        while True:
            try:
                chunk = os.read(p.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:  # every writer gone: the process is exiting; poll() tells
                self._close_pipe(p)
                break
            p.buf += chunk
        *lines, p.buf = p.buf.split(b"\n")
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            p.rec, p.last_rec, p.silent_cpu = rec, now, -1.0
            if rec.get("done") and not self.stopping:  # its work is finished: the run ends
                self._event(p.spec.name, "finished")
                self.stopping, self.reason = True, self.reason or f"{p.spec.name} finished"
            if rec.get("node_state"):
                p.last_state = str(rec["node_state"])
            if rec.get("up"):
                p.last_hb = now
                if not p.up:
                    p.up = p.ever_up = True
                    p.up_s = round(now - self.t0, 3)
                    self._write_pids()

    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self.procs.items() if p.popen is not None}

    def _write_pids(self) -> None:
        """``run_dir/pids.json``: the launcher's and every node's current pid, and under
        ``up`` the nodes whose current process has sent a heartbeat."""
        path = self.run_dir / "pids.json"
        tmp = path.with_suffix(".tmp")
        up = [n for n, p in self.procs.items() if p.up]
        tmp.write_text(json.dumps({"launcher": os.getpid(), **self.pids(), "up": up}))
        os.replace(tmp, path)

    def _event(self, node: str, what: str, **extra: Any) -> None:
        ev = {
            "t": round(time.monotonic() - self.t0, 4),
            "wall": time.time(),
            "node": node,
            "event": what,
            **extra,
        }
        self.events.append(ev)
        # a node that finished its work ends a normal run, the graph comes up: news, not warnings
        level = logging.INFO if what in ("finished", "up") else logging.WARNING
        log.log(level, "%s: %s %s", node, what, extra or "")

    @contextmanager
    def listen(self, topics: list[str], name: str) -> Iterator[busmod.Subscriber]:
        """A subscriber to every node of this graph (own ZeroMQ context), closed on exit.

        For the launcher's own heartbeat watch and for probes (benchmarks) that measure a
        running graph from a thread of the launcher's process.
        """
        zctx = busmod.context()
        security = busmod.Security(zctx, self.cfg.bus)
        sub = busmod.Subscriber(
            zctx, list(self.addresses.values()), topics, self.cfg.bus, security, name
        )
        try:
            yield sub
        finally:
            sub.close()
            security.close()
            zctx.term()

    def stop(self, reason: str) -> None:
        """Ask the watch loop to end the run (keeps an earlier reason)."""
        self.reason = self.reason or reason
        self.stopping = True

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.reason = self.reason or signal.Signals(signum).name

    def run(self) -> dict[str, Any]:
        """Run the graph to its end; returns the summary."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(
            json.dumps({n: p.spec.__dict__ for n, p in self.procs.items()}, indent=1, default=str)
        )
        # the run's whole config and the project's version, for the recorder's episode meta
        (self.run_dir / "run.json").write_text(json.dumps(
            {"version": _version(), "config": asdict(self.cfg)}, indent=1, default=str
        ))
        # signal handlers can only be set from the main thread; a script's handle runs
        # the launcher in another one and stops it with stop()
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
               if main}
        self.t0 = time.monotonic()
        self.t_up = 0.0  # when every node had come up
        self.loadavg_max = 0.0
        try:
            with cpu_latency(self.cfg.cpu_latency_us), background_load(self.cfg.load):
                try:
                    for name in self.procs:
                        self._spawn(name)
                    self._watch()
                finally:
                    self._stop_all()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            for p in self.procs.values():
                self._close_pipe(p)
                stacks = self.run_dir / f"{p.spec.name}.stacks.txt"
                with contextlib.suppress(OSError):
                    if not stacks.stat().st_size:
                        stacks.unlink()  # no dump asked for
            busmod.cleanup_ipc(self.addresses)
        summary = self._summary()
        note_limits(summary)  # for a test session that adds up the limits (runtime/limits_log.py)
        return summary | self._report(summary)

    def _report_fn(self) -> Any:
        import importlib

        module, _, name = self.cfg.graph.report.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(
                "graph.report", f"cannot import {self.cfg.graph.report!r} "
                f"(want 'package.module:function'): {e}"
            ) from None

    def _report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Run the graph's report function, if any; its failure is reported, not raised."""
        if not self.cfg.graph.report:
            return {}
        try:
            return dict(self._report_fn()(self.run_dir, summary) or {})
        except Exception as e:  # a failing report must not lose the run's summary
            log.exception("report %s failed", self.cfg.graph.report)
            return {"report_error": f"{type(e).__name__}: {e}"}

    def _watch(self) -> None:
        silent_limit = max(3.0 / self.cfg.heartbeat_hz, self.cfg.silent_timeout_s)
        next_load = 0.0
        while not self.stopping:
            fds = {p.fd: p for p in self.procs.values() if p.fd >= 0 and not p.finished}
            if fds:
                ready, _, _ = select.select(list(fds), [], [], 0.02)
            else:
                ready = []
                time.sleep(0.02)
            now = time.monotonic()
            for fd in ready:
                self._read(fds[fd], now)
            if now >= next_load:
                self.loadavg_max = max(self.loadavg_max, os.getloadavg()[0])
                next_load = now + 1.0
            for name, p in self.procs.items():
                if p.finished or p.popen is None:
                    continue
                rc = p.popen.poll()
                if rc is None:
                    why = self._hung(name, p, now, silent_limit)
                    if why:
                        self._event(name, why[0], why=why[1], seconds=round(now - (p.last_rec or p.started), 3))
                        self._kill(p)
                        if p.closed:  # its work and summary were done: stuck in its exit
                            p.finished, p.exit_code, p.stop_killed = True, -9, True
                            self.stopping, self.reason = True, self.reason or f"{name} finished"
                        else:
                            self._died(name, p, -9)
                    continue
                if rc == 0:
                    p.finished, p.exit_code = True, 0
                    if not (p.rec or {}).get("done"):  # else said when it reported done
                        self._event(name, "finished")
                    self.stopping, self.reason = True, self.reason or f"{name} finished"
                else:
                    self._died(name, p, rc)
            if not self.t_up and all(p.up or p.finished for p in self.procs.values()):
                self.t_up = now
                self._event("graph", "up", after_s=round(now - self.t0, 3))
            # the run's duration counts from when the whole graph is up: a slow start on a
            # busy machine does not eat it
            if (self.cfg.duration_s and self.cfg.clock == "realtime" and self.t_up
                    and now - self.t_up > self.cfg.duration_s):
                self.stopping, self.reason = True, self.reason or "duration reached"

    def _hung(self, name: str, p: _Proc, now: float, silent_limit: float) -> tuple[str, str] | None:
        """Whether a live node is hung, as (event, why); None while it lives or is starved."""
        rec = p.rec or {}
        stopping = rec.get("state") in ("stopped", "closed")
        # scaled with the node's own steps as its liveness thread measured them lately (a
        # node whose steps take 0.6 s on this machine now is not hung 2 s into one)
        stall_limit = max(self.cfg.hung_timeout_s, 2.5 / p.entry.rate_hz,
                          STEP_SCALE * float(rec.get("step_s", 0.0)))
        if p.up and not stopping and rec.get("stall_s", 0.0) > stall_limit:
            return "stalled", (f"its loop has not moved for {rec['stall_s']:.2f} s it could run "
                               f"(limit {stall_limit:.2f} s)")
        silent = now - (p.last_rec or p.started)
        starting = now - p.started
        if not p.up and starting > self.cfg.startup_timeout_s:
            # past the limit, a node still importing or building (running, or waiting for a
            # core) gets up to STARTUP_STARVED times it; one asleep, or silent, does not
            asleep = rec.get("stall_s", 0.0) > STARTUP_ASLEEP * self.cfg.hung_timeout_s
            if not asleep and silent > silent_limit:
                states = os_view(p.popen.pid)[0]  # type: ignore[union-attr]
                asleep = not states & {"R", "D"}
            if asleep:
                return "silent", f"not up {starting:.1f} s after it started, and asleep (startup_timeout_s)"
            if starting > STARTUP_STARVED * self.cfg.startup_timeout_s:
                return "silent", f"not up {starting:.1f} s after it started ({STARTUP_STARVED} x startup_timeout_s)"
            p.slow_start = True
        if stopping:
            # ending by itself (its work done, or the clock's final tick): past
            # stop_timeout_s, one still working (on a core or waiting for one, or using CPU)
            # gets up to STOP_STARVED times it, as at the launcher's stop; one asleep does not
            if silent <= self.cfg.stop_timeout_s:
                return None
            if silent > STOP_STARVED * self.cfg.stop_timeout_s:
                return "silent", f"did not end within {STOP_STARVED} x stop_timeout_s of stopping"
            states, cpu = os_view(p.popen.pid)  # type: ignore[union-attr]
            working = bool(states & {"R", "D"}) or (p.silent_cpu >= 0 and cpu - p.silent_cpu >= ASLEEP_CPU_S)
            if working or p.silent_cpu < 0:
                p.silent_cpu, p.silent_look = cpu, now
                p.slow_stop = p.slow_stop or working
                return None
            if now - p.silent_look < ASLEEP_WINDOW_S:
                return None
            return "silent", f"did not end within stop_timeout_s of stopping, and asleep for {ASLEEP_WINDOW_S:g} s"
        if silent <= silent_limit:
            return None
        states, cpu = os_view(p.popen.pid)  # type: ignore[union-attr]
        if states & {"T", "t"}:
            return "silent", "stopped by a signal (the OS says T)"
        if not p.up:
            return None  # starting: importing, building; judged by startup_timeout_s
        if p.silent_cpu < 0:
            p.silent_cpu = cpu
        if cpu - p.silent_cpu > stall_limit:
            return "silent", f"busy {cpu - p.silent_cpu:.2f} s of CPU without a heartbeat"
        if (states and states <= {"S"} and silent > stall_limit
                and cpu - p.silent_cpu < ASLEEP_CPU_S):
            return "silent", f"asleep {silent:.2f} s without a heartbeat (deadlocked)"
        if silent > self.cfg.starved_timeout_s:
            return "silent", f"silent {silent:.1f} s (starved_timeout_s) waiting for a core"
        p.starved_s = max(p.starved_s, silent)
        return None

    def _kill(self, p: _Proc) -> None:
        """SIGKILL a node; one that came up first writes its threads' stacks to
        ``<run_dir>/<name>.stacks.txt`` (faulthandler on SIGUSR1), which says where it hung."""
        popen = p.popen
        if popen is None:
            return
        # (not of a process the OS has stopped or that has ended: it cannot answer)
        if p.ever_up and popen.poll() is None and not os_view(popen.pid)[0] & {"T", "t", "Z"}:
            stacks = self.run_dir / f"{p.spec.name}.stacks.txt"
            with contextlib.suppress(OSError):
                popen.send_signal(signal.SIGUSR1)
                deadline, size = time.monotonic() + STACKS_WAIT_S, -1
                while time.monotonic() < deadline and popen.poll() is None:
                    time.sleep(0.05)
                    now_size = stacks.stat().st_size if stacks.exists() else 0
                    if now_size and now_size == size:
                        break  # written in full
                    size = now_size
                if stacks.exists() and stacks.stat().st_size:
                    p.stacks = str(stacks)
        popen.kill()
        popen.wait()

    def _died(self, name: str, p: _Proc, rc: int) -> None:
        self._event(name, "died", exit_code=rc)
        if p.entry.on_death == "restart" and p.restarts < p.entry.max_restarts:
            p.restarts += 1
            self._event(name, "restart", restarts=p.restarts)
            self._spawn(name)
            return
        p.finished, p.exit_code, p.died = True, rc, True
        self.ok = False
        self.stopping, self.reason = True, self.reason or f"{name} died (exit {rc})"

    def _stop_all(self) -> None:
        live = [p for p in self.procs.values() if p.popen is not None and p.popen.poll() is None]
        stopping = list(live)  # every node running at the stop, ended in the grace or after it
        clock = self.procs.get("clock") if self.cfg.clock == "lockstep" else None
        if self.ok and clock is not None and clock.finished and not self.reason.startswith("SIG"):
            # the clock's final tick ends every node by itself: let them close their files
            # (a node that finished first, e.g. the evaluator after its episodes, sent no final tick)
            deadline = time.monotonic() + self.cfg.stop_timeout_s
            while live and time.monotonic() < deadline:
                time.sleep(0.01)
                live = [p for p in live if p.popen.poll() is None]  # type: ignore[union-attr]
        for p in self.procs.values():
            if p.fd >= 0:
                self._read(p, time.monotonic())
        for p in live:
            if not p.closed:  # a closed node is exiting already; a signal now would only race it
                p.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # past stop_timeout_s, a node still working at its exit (running, or waiting for a
        # core on a busy machine) gets up to STOP_STARVED times it; one asleep is killed
        start = time.monotonic()
        waiting = list(live)
        cpu: dict[int, float] = {}  # pid -> CPU time at the previous look past the limit
        next_look = start + self.cfg.stop_timeout_s
        while waiting:
            waiting = [p for p in waiting if p.popen.poll() is None]  # type: ignore[union-attr]
            now = time.monotonic()
            if waiting and now >= next_look:
                next_look = now + ASLEEP_WINDOW_S
                for p in waiting:
                    pid = p.popen.pid  # type: ignore[union-attr]
                    states, used = os_view(pid)
                    # asleep: no thread on a core or waiting for one, and no CPU used over
                    # a whole window (one look can catch a working process between two waits)
                    asleep = pid in cpu and used - cpu[pid] < ASLEEP_CPU_S and not states & {"R", "D"}
                    cpu[pid] = used
                    if now - start > STOP_STARVED * self.cfg.stop_timeout_s or asleep:
                        self._kill(p)
                        p.stop_killed = True
                    else:
                        p.slow_stop = True
            time.sleep(0.02)
        for p in stopping:
            if p.fd >= 0:  # its last records (the pipe keeps them after the process ends)
                self._read(p, time.monotonic())
            if p.exit_code is None:
                p.exit_code = p.popen.returncode  # type: ignore[union-attr]
        for p in self.procs.values():
            # a node that ended by itself after the loop's last look (a lockstep node at the
            # clock's final tick, on a busy machine) is in neither: its status is there too
            if p.exit_code is None and p.popen is not None:
                p.exit_code = p.popen.poll()

    def _summary(self) -> dict[str, Any]:
        rows = []
        extra: dict[str, Any] = {}
        top: dict[str, Any] = {}  # a node's summary key "run" (a dict) goes to the top level
        episodes: dict[str, int] = {}
        for name, p in self.procs.items():
            path = self.run_dir / f"{name}.summary.json"
            figures = json.loads(path.read_text()) if path.exists() else {}
            if isinstance(figures.get("run"), dict):
                if isinstance(figures["run"].get("episodes"), int):
                    episodes[name] = figures["run"]["episodes"]
                top.update(figures.pop("run"))
            row = {
                "node": name,
                "target_hz": p.entry.rate_hz,
                "rate_hz": round(figures.get("rate_hz", 0.0), 1),
                "misses": figures.get("misses", 0),
                "miss_share": figures.get("miss_share", 0.0),
                "drops": figures.get("drops", 0),
                "restarts": p.restarts,
                "up_s": p.up_s,  # when its (last) process came up, seconds into the run
                "jitter_p99_us": round(figures.get("jitter_p99_us", 0.0), 1),
                "step_p99_us": round(figures.get("step_p99_us", 0.0), 1),
                "exit": p.exit_code,
            }
            rows.append(row)
            node_extra = {k: v for k, v in figures.items() if k not in row and k not in _LOOP_KEYS}
            if node_extra:
                extra[name] = node_extra
        reasons = self._reasons(rows, episodes)
        return {
            "ok": not reasons,
            "reasons": reasons,
            "warnings": self._warnings(rows, episodes) + _recording_warnings(extra),
        } | top | {
            "clock": self.cfg.clock,
            "cpu_latency_us": self.cfg.cpu_latency_us,
            "seconds": round(time.monotonic() - self.t0, 3),
            "loadavg_max": round(self.loadavg_max, 1),  # the largest 1-minute load seen
            "ended_by": self.reason,
            "run_dir": str(self.run_dir),
            "nodes": rows,
            "events": self.events,
            "node_figures": extra,
        }

    def _reasons(self, rows: list[dict[str, Any]], episodes: dict[str, int]) -> list[str]:
        """Why the run is not ok (empty: it is)."""
        reasons, later = [], []  # causes first, then what they left undone
        for name, p in self.procs.items():
            if p.died:
                when = "" if p.ever_up else " before it came up"
                reasons.append(f"{name} died{when} (exit {p.exit_code}), not restarted "
                               f"(on_death={p.entry.on_death}, max_restarts={p.entry.max_restarts})")
            elif not p.ever_up:
                later.append(f"{name} never came up (ended by: {self.reason}; exit {p.exit_code})")
            elif p.exit_code not in (0, None) and not p.stop_killed and not p.closed:
                reasons.append(f"{name} exited with {p.exit_code} when asked to stop")
            if p.last_state == "fault":
                reasons.append(f"{name} ended in fault")
            if not self.cfg.duration_s:  # a duration caps the run: it is said in warnings
                later += self._short_of_episodes(name, episodes)
        reasons += later
        return reasons

    def _short_of_episodes(self, name: str, episodes: dict[str, int]) -> list[str]:
        """The node's episodes when it ran fewer than its ``episodes`` argument asked for."""
        wanted = self.procs[name].entry.args.get("episodes")
        if name in episodes and isinstance(wanted, int) and episodes[name] < wanted:
            return [f"{name} ran {episodes[name]} of {wanted} episodes (ended by: {self.reason})"]
        return []

    def _warnings(self, rows: list[dict[str, Any]], episodes: dict[str, int]) -> list[str]:
        """What degraded the run, one line per kind, each with what to change."""
        out = []
        if self.cfg.duration_s:
            out += [f"{short} within duration_s={self.cfg.duration_s:g}: a longer duration_s, "
                    "or duration_s=0 to run every episode"
                    for name in self.procs for short in self._short_of_episodes(name, episodes)]
        cpus = len(os.sched_getaffinity(0))
        load = f"load {self.loadavg_max:.1f} on {cpus} CPUs"
        procs = self.procs
        for name, p in procs.items():
            if p.restarts:
                what = sorted({e["event"] for e in self.events if e["node"] == name
                               and e["event"] in ("died", "silent", "stalled")})
                out.append(f"{name} restarted {p.restarts}x ({', '.join(what)}): see its log above")
        starved = [f"{n} {p.starved_s:.1f} s" for n, p in procs.items() if p.starved_s > 0]
        if starved:
            out.append(f"starved, the longest wait for a core: {', '.join(starved)} ({load}): "
                       "run fewer jobs beside the graph, or a lower graph.nodes.NAME.nice for "
                       "the nodes that matter")
        slow = [n for n, p in procs.items() if p.slow_start]
        if slow:
            out.append(f"slow to start (past startup_timeout_s={self.cfg.startup_timeout_s:g}, "
                       f"still working): {', '.join(slow)} ({load})")
        missed = [f"{r['node']} {r['miss_share']:.0%} at {r['target_hz']:g} Hz" for r in rows
                  if r["miss_share"] > MISS_WARN_SHARE and r["rate_hz"] > 0]
        if missed:
            out.append(f"missed deadlines: {', '.join(missed)}: a lower graph.nodes.NAME.rate_hz, "
                       "or a core of its own (graph.nodes.NAME.cpus)")
        slow = [n for n, p in procs.items() if p.slow_stop and not p.stop_killed]
        if slow:
            out.append(f"slow to stop (past stop_timeout_s={self.cfg.stop_timeout_s:g}, still "
                       f"working): {', '.join(slow)} ({load})")
        killed = [n for n, p in procs.items() if p.stop_killed]
        if killed:
            out.append(f"killed at stop: {', '.join(killed)} (not ended "
                       f"{STOP_STARVED}x stop_timeout_s={self.cfg.stop_timeout_s:g} after being "
                       "asked, or asleep past it): their files may be cut short")
        stacks = [p.stacks for p in procs.values() if p.stacks]
        if stacks:
            out.append(f"where the killed nodes were stuck: {', '.join(stacks)}")
        if self.loadavg_max > cpus:
            out.append(f"the machine was busy ({load}): timings are not those of a quiet machine")
        return out


def _recording_warnings(figures: dict[str, dict[str, Any]]) -> list[str]:
    """A recorder that gave up messages (behind its writing) or never got some (its socket
    queue full) degrades the run: its episode has holes (docs/liveness.md, "Recordings")."""
    out = []
    for name, f in figures.items():
        dropped, lost = f.get("dropped"), f.get("lost")
        if isinstance(dropped, int) and isinstance(lost, int) and dropped + lost:
            out.append(f"{name} kept {f.get('recorded', 0)} messages and gave up {dropped}, "
                       f"lost {lost} (behind its writing): a lower graph.nodes.{name}.nice, a "
                       f"larger graph.nodes.{name}.args.max_pending_parts, or fewer topics")
        behind = f.get("behind_s_at_stop")
        if isinstance(behind, float) and behind > 1.0:
            out.append(f"{name} was {behind:.1f} s behind the stream at the stop (what came "
                       f"later is not recorded): a lower graph.nodes.{name}.nice")
    return out


STEP_SCALE = 4  # a step may take this many times the node's longest recent one before it is hung
ASLEEP_WINDOW_S = 1.0  # a process is asleep when it used no more than ASLEEP_CPU_S in this
ASLEEP_CPU_S = 0.005
STOP_STARVED = 4  # a stopping node still working gets this many stop_timeout_s
STACKS_WAIT_S = 1.0  # at most this long for a node to write its stacks before SIGKILL
STARTUP_STARVED = 4  # a starting node still progressing gets this many startup_timeout_s
STARTUP_ASLEEP = 5  # past startup_timeout_s, asleep this many hung_timeout_s at once is hung
MISS_WARN_SHARE = 0.05  # a node missing more of its deadlines than this degrades the run

_NODE_MAIN = "import sys; from reflexarc.runtime.node import process_main; process_main(sys.argv[1:])"
_LOOP_KEYS = {"ticks", "jitter_p50_us", "step_p50_us", "drops_by_kind", "node"}


def run_verb(cfg: RunConfig) -> dict[str, Any]:
    """``reflexarc run``."""
    logging.basicConfig(level=logging.INFO, format="[launcher] %(levelname)s %(message)s")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # its import notes, not the run's
    return Launcher(cfg).run()
