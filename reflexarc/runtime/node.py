"""The node runtime: one node, one OS process, one loop.

A node has three parts (docs/architecture.md, "One tick of a node"): construction (``__init__``: allocate, validate),
``step(now_ns, inbox) -> outputs`` (the logic, no I/O, testable with plain objects), and
the loop, which lives here and is the same for every node: sockets, rate, deadline
accounting, heartbeats, drop counting, lockstep ticks and clean shutdown on
SIGTERM/SIGINT.

Loop figures, published in every Heartbeat and in the node's final summary:

- achieved rate (ticks per second of wall time),
- missed deadlines: a tick whose step ends after the next tick was due,
- jitter: how late a tick started against its schedule (p50/p99, microseconds),
- step time (p50/p99, microseconds),
- dropped messages (malformed or unknown), counted per kind.

Liveness (docs/liveness.md): besides the Heartbeat on the bus (for the other nodes), a
thread of its own writes the launcher, on a pipe the launcher made for this process alone,
how far the loop has got and how long it has been stalled, counted only while the loop
could run. The launcher so tells a node the OS is not scheduling (starved) from one stuck
in ``step`` (hung), and nothing else on the machine can speak for the node.

Lockstep (docs/architecture.md, "Time"): the clock node publishes ``Tick(tick, stamp_ns=sim time,
required)``; a node due at that tick first receives every message up to
``required[topic]`` on the topics it subscribes to, steps with the simulated time,
publishes, then acknowledges with ``Ack(published)``. What each node sees is then
independent of how the OS scheduled the processes: the same seed and config give the
same streams.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import dataclasses
import faulthandler
import json
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from reflexarc.runtime import bus as busmod
from reflexarc.runtime import config
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import NodeError
from reflexarc.runtime.msgs import INFRA_TOPICS, Ack, Heartbeat, Message, Tick
from reflexarc.runtime.targets import import_object

log = logging.getLogger(__name__)

# realtime nodes of 200 Hz and faster busy-wait this long before each deadline (unless
# their spin_us says otherwise): awake, they start a tick on time, not a wake-up late
AUTO_SPIN_US = 150.0

Outputs = Iterable[tuple[str, Message]]


@contextlib.contextmanager
def cpu_latency(us: int) -> Iterator[None]:
    """Hold the kernel's CPU latency limit (Linux PM QoS) at ``us`` for the block; -1: none.

    Idle cores then use only idle states that wake within ``us`` (0: they poll, never
    halt), as realtime tests such as cyclictest ask. The kernel keeps the limit while
    the file is open and drops it when it closes, so a crash cannot leave it behind.
    """
    if us < 0:
        yield
        return
    fd = os.open(config.CPU_LATENCY_DEV, os.O_WRONLY)
    try:
        os.write(fd, struct.pack("i", us))
        yield
    finally:
        os.close(fd)


class Inbox:
    """What a node has received: the newest message per topic and those new this tick."""

    def __init__(self) -> None:
        self._latest: dict[str, Message] = {}
        self._recv_ns: dict[str, int] = {}
        self._new: dict[str, list[Message]] = {}
        self.seqs: dict[str, int] = {}  # newest seq received per topic

    def put(self, topic: str, msg: Message, recv_ns: int) -> None:
        self._latest[topic] = msg
        self._recv_ns[topic] = recv_ns
        self._new.setdefault(topic, []).append(msg)
        self.seqs[topic] = msg.seq

    def latest(self, topic: str) -> Any:
        """The newest message received on ``topic`` (ever), or None."""
        return self._latest.get(topic)

    def new(self, topic: str) -> list[Any]:
        """Messages received on ``topic`` since the previous step, oldest first."""
        return self._new.get(topic, [])

    def topics(self) -> list[str]:
        """Topics with messages new this tick."""
        return [t for t, v in self._new.items() if v]

    def received_ns(self, topic: str) -> int | None:
        """Wall-clock (monotonic) time the newest message on ``topic`` arrived."""
        return self._recv_ns.get(topic)

    def clear_new(self) -> None:
        for v in self._new.values():
            v.clear()


@dataclass
class NodeContext:
    """What a node knows about its place in the graph."""

    name: str
    rate_hz: float
    seed: int = 0
    clock: str = "realtime"  # realtime | lockstep
    run_dir: str = ""
    bus: dict[str, Any] = field(default_factory=dict)  # the graph's BusConfig, as a mapping
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("reflexarc.node"))
    # whether every other node of the graph is up (this node has heard each one's heartbeat,
    # sent once its loop runs); set by the runtime, always True outside a launched graph.
    # The sim starts its first episode only then: on a busy machine the recorder and the
    # evaluator can come up a minute after the rest, and would miss it
    graph_up: Callable[[], bool] = field(default=lambda: True, repr=False)

    @property
    def rng(self) -> np.random.Generator:
        """A generator seeded from the graph seed and the node's name."""
        return np.random.default_rng([self.seed, *self.name.encode()])


class Node(abc.ABC):
    """Base class of every node. Subclasses set ``Config``, ``subscribes``, ``publishes``."""

    @dataclass
    class Config:
        pass

    subscribes: ClassVar[dict[str, str]] = {}  # topic or 'prefix/' -> 'latest' | 'all'
    publishes: ClassVar[tuple[str, ...]] = ()
    # realtime: topics (or 'prefix/') whose arrival steps the node at once, between its
    # scheduled ticks (a camera frame for perception, a latent for the planner): the
    # message waits for no period, and such a node can keep a low rate for the rest
    wakes_on: ClassVar[tuple[str, ...]] = ()
    # realtime: the scheduling policy of the node's process when its graph entry says
    # ``sched: auto`` ("other": time-shared; "fifo": SCHED_FIFO, see set_scheduling)
    default_sched: ClassVar[str] = "other"

    def __init__(self, ctx: NodeContext, cfg: Any) -> None:
        self.ctx = ctx
        self.cfg = cfg

    @classmethod
    def preflight(cls, cfg: Any) -> None:
        """Check what the node will read at start (files), from its validated ``cfg``, before
        any process of the graph starts; raise a ReflexarcError naming the file and problem."""

    @abc.abstractmethod
    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        """The node's logic for one tick: read the inbox, return (topic, message) pairs."""

    def state(self) -> str:
        """Reported in heartbeats: running | holding | fault | done."""
        return "running"

    def summary(self) -> dict[str, Any]:
        """Node-specific figures for the run summary (written when the node stops)."""
        return {}

    def done(self) -> bool:
        """True when the node has finished its work (the launcher may end the run)."""
        return False

    def finish(self) -> None:
        """At the stop, before :meth:`summary`: end the work in flight (the recorder writes
        what it holds), so the summary counts it. Called once, on shutdown."""

    def close(self) -> None:
        """Release resources (called once, on shutdown, after :meth:`summary`)."""


# --------------------------------------------------------------------------------------
# Process entry
# --------------------------------------------------------------------------------------


@dataclass
class NodeSpec:
    """Everything a node process needs, passed by the launcher as JSON."""

    name: str
    target: str
    rate_hz: float
    args: dict[str, Any]
    seed: int
    clock: str
    bus: dict[str, Any]
    addresses: dict[str, str]
    heartbeat_hz: float = 10.0
    base_hz: float = 1000.0  # lockstep tick rate
    run_dir: str = ""
    parent_pid: int = 0
    spin_us: float = -1.0  # busy-wait before each deadline; <0: automatic
    cpus: list[int] = dataclasses.field(default_factory=list)  # CPU affinity; empty: any
    nice: int = 0  # added to the launcher's nice (Linux scheduling priority)
    sched: str = "auto"  # realtime: auto (the node class's default_sched) | other | fifo
    sched_priority: int = 10  # SCHED_FIFO priority (1-99)
    liveness_fd: int = -1  # write end of the launcher's liveness pipe; -1: none


def import_target(target: str) -> type[Node]:
    """Resolve ``package.module:Class`` to a Node subclass."""
    cls = import_object(target, NodeError, "node target")
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise NodeError(f"node target {target!r} is not a reflexarc.runtime.node.Node subclass")
    return cls


def node_class(target: str, args: dict[str, Any]) -> type[Node]:
    """The class that runs ``target`` with ``args``: the target's own, or the one its
    ``select_class(args)`` classmethod picks (the sim node picks the gym sim for backend=gym)."""
    cls = import_target(target)
    select = getattr(cls, "select_class", None)
    return select(args) if select is not None else cls


def build_node(spec: NodeSpec) -> Node:
    cls = node_class(spec.target, spec.args)
    cfg = from_mapping(cls.Config, spec.args, prefix=f"graph.nodes.{spec.name}.args.")
    ctx = NodeContext(
        name=spec.name,
        rate_hz=spec.rate_hz,
        seed=spec.seed,
        clock=spec.clock,
        run_dir=spec.run_dir,
        bus=dict(spec.bus),
        log=logging.getLogger(f"reflexarc.{spec.name}"),
    )
    return cls(ctx, cfg)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_queue_wait_s(skip_tid: int) -> float | None:
    """Seconds the threads of this process (but ``skip_tid``) have spent runnable and waiting
    for a core, in all (Linux ``/proc/self/task/*/schedstat``); None where it cannot be read."""
    total = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        if tid == str(skip_tid):
            continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def _thread_wait_s(tid: int) -> float | None:
    """Seconds thread ``tid`` of this process has spent runnable and waiting for a core."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


# completed steps longer than a liveness period are remembered this long: ``step_s`` in the
# records is the longest of them (the launcher scales its stall limit with it)
STEP_WINDOW_S = 60.0


def remove_ipc_file(address: str) -> None:
    """Remove the socket file of a bound ``ipc://`` address (ZeroMQ leaves it), and its
    directory once empty: a graph leaves no socket file behind, whoever ends it."""
    if not address.startswith("ipc://"):
        return
    path = Path(address[len("ipc://"):])
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()


# after the launcher is gone, the process ends within this, even from a stuck step
ORPHAN_EXIT_S = 0.3


class Liveness:
    """Tells the launcher, from a thread of its own, that the process lives and whether its
    loop moves (docs/liveness.md).

    The last record's state is ``closed``: the node has stopped and written its summary;
    ``node_state`` is the node's own ``state()`` then (``fault`` for a latched fault), or,
    when a peer's ``done`` heartbeat ended the run's work first, its state at that moment.

    Every ``period_s`` it writes one JSON line to the pipe the launcher made for this
    process: ``beat`` (the loop's progress counter, bumped by the loop), ``up`` (the loop
    has started), ``state`` (the node's), ``ticks`` and ``stall_s``: how long the loop has
    not moved, counted only while it could have: the wall time less the time the process's
    threads waited for a core (Linux schedstat), this thread's own included while it
    worked (it holds the GIL then, which the loop may be waiting for), and at least the
    CPU time the loop used. Asleep or spinning inside a step counts in full; a process the
    OS does not schedule counts nothing, so a node starved by a busy machine is not taken
    for a hung one. Before the loop starts (imports, construction) ``stall_s`` is how long
    the main thread has been asleep (neither on a core nor waiting for one) without a break.
    ``step_s`` is the longest step of the last ``STEP_WINDOW_S`` that spanned a record,
    counted the same way: what this node's steps take on this machine now.

    The pipe is the proof of identity: only this process holds its write end, so no other
    process can speak for the node. When the pipe breaks (the launcher died), the node is
    asked to stop, and after ``ORPHAN_EXIT_S`` it ends anyway, removing its ipc socket file.
    """

    def __init__(self, fd: int, period_s: float, on_orphan: Callable[[], None],
                 socket_path: str = "") -> None:
        self.fd = fd
        self.period_s = period_s
        self.on_orphan = on_orphan
        self.socket_path = socket_path
        self.beat = 0  # bumped by the loop at every pass
        self.up = False
        self.state = "starting"
        self.node_state = ""  # the node's own state() at its latest heartbeat, and at its stop
        self.done = False  # the node finished its work (the launcher ends the run)
        self.ticks = 0
        self.stall_s = 0.0
        self.steps: deque[tuple[float, float]] = deque()  # (when, stall) of long steps that ended
        self.step_s = 0.0  # the longest of them
        self._tid = threading.get_native_id()  # the loop runs on the thread that made us
        try:
            self._cpu_clock: int | None = time.pthread_getcpuclockid(threading.get_ident())
        except (AttributeError, OSError):
            self._cpu_clock = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        os.set_inheritable(fd, False)  # the node's own children cannot speak for it
        os.set_blocking(fd, False)  # a launcher that does not read never blocks the node
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
        self._thread.start()

    def _loop_cpu(self) -> float:
        return time.clock_gettime(self._cpu_clock) if self._cpu_clock is not None else 0.0

    def _run(self) -> None:
        me = threading.get_native_id()
        last_beat, last_t, last_cpu = -1, time.monotonic(), self._loop_cpu()
        last_wait = _run_queue_wait_s(me)
        held = 0.0  # this thread's wait for a core while it worked, since the last record
        while not self._stop.wait(self.period_s):
            mine = _thread_wait_s(me)  # from here to the record, it holds the GIL
            now, cpu, wait = time.monotonic(), self._loop_cpu(), _run_queue_wait_s(me)
            dt, dcpu = now - last_t, cpu - last_cpu
            # the time the scheduler let the process run: the wall time less what its
            # threads waited for a core (a thread waiting for the GIL that a starved thread
            # holds is starved too: this one's wait counts while it holds the GIL, not while
            # it sleeps); without schedstat, only the loop's own CPU time
            if wait is not None and last_wait is not None:
                dfree = dt - (wait - last_wait) - held
            else:
                dfree = dcpu
            if not self.up:  # building the node: time free but not on a core is asleep
                asleep = dfree - dcpu > 0.5 * dt
                self.stall_s = self.stall_s + dt if asleep else 0.0
            elif self.beat != last_beat:
                if self.stall_s > 0:  # a step longer than a period ended: how long it took
                    self.steps.append((now, self.stall_s))
                self.stall_s, last_beat = 0.0, self.beat
            else:
                self.stall_s += min(dt, max(dcpu, dfree))
            while self.steps and self.steps[0][0] < now - STEP_WINDOW_S:
                self.steps.popleft()
            self.step_s = max((s for _, s in self.steps), default=0.0)
            last_t, last_cpu, last_wait = now, cpu, wait
            if not self.send():
                self._orphaned()
                return
            after = _thread_wait_s(me)
            held = after - mine if after is not None and mine is not None else 0.0

    def send(self) -> bool:
        """Write one record; False when the launcher is gone."""
        rec = {"beat": self.beat, "up": self.up, "state": self.state, "ticks": self.ticks,
               "stall_s": round(self.stall_s, 3), "step_s": round(self.step_s, 3),
               "node_state": self.node_state, "done": self.done}
        try:
            os.write(self.fd, json.dumps(rec).encode() + b"\n")
        except BlockingIOError:  # the launcher is not reading (itself starved): skip one
            pass
        except OSError:  # EPIPE: no reader left
            return False
        return True

    def _orphaned(self) -> None:
        self.on_orphan()
        if not self._closed.wait(ORPHAN_EXIT_S):
            remove_ipc_file(self.socket_path)
            os._exit(1)

    def close(self) -> None:
        """Send the final record, end the thread, close the pipe (once)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self.state = "closed"  # the summary is written: what follows is the interpreter's exit
        self.send()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Stats:
    """Ring buffers of jitter and step time; figures computed at heartbeat time.

    A realtime tick's step time is split in three (:meth:`add_io`): taking in what arrived
    (receive and decode), the node's ``step``, and publishing what it returned (encode and
    send). The process's CPU time from the first tick on (:meth:`cpu`) is what the node
    costs the machine, its threads (ZeroMQ's I/O, liveness) included.
    """

    def __init__(self, n: int = 4096) -> None:
        self.jitter = np.zeros(n)
        self.steps = np.zeros(n)
        self.recv = np.zeros(n)  # realtime ticks: receive + decode, us
        self.publish = np.zeros(n)  # realtime ticks: encode + send, us
        self.n = 0
        self.ticks = 0
        self.misses = 0
        self.t_start = time.monotonic()
        self.cpu_start = time.process_time()
        self.window_ticks = 0
        self.window_t = self.t_start
        self.rate_hz = 0.0

    def add(self, jitter_us: float, step_us: float, missed: bool) -> None:
        i = self.n % len(self.jitter)
        self.jitter[i] = jitter_us
        self.steps[i] = step_us
        self.n += 1
        self.ticks += 1
        self.misses += missed

    def add_io(self, recv_us: float, publish_us: float) -> None:
        """The receive and publish parts of the tick :meth:`add` recorded last."""
        i = (self.n - 1) % len(self.recv)
        self.recv[i] = recv_us
        self.publish[i] = publish_us

    def start(self) -> None:
        """The loop begins: rate and CPU time count from here, not from start-up."""
        self.t_start = self.window_t = time.monotonic()
        self.cpu_start = time.process_time()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the process since :meth:`start`, and their share of the wall time
        (1.0: one core, all the time)."""
        cpu = time.process_time() - self.cpu_start
        wall = time.monotonic() - self.t_start
        return cpu, cpu / wall if wall > 0 else 0.0

    def _p50_p99(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
        """p50 and p99 of ``a``, then of ``b``, over the kept ticks (0 before any)."""
        k = min(self.n, len(a))
        if k == 0:
            return 0.0, 0.0, 0.0, 0.0
        pa = np.percentile(a[:k], [50, 99])
        pb = np.percentile(b[:k], [50, 99])
        return float(pa[0]), float(pa[1]), float(pb[0]), float(pb[1])

    def io_percentiles(self) -> tuple[float, float, float, float]:
        """recv p50, p99, publish p50, p99 (us) over the kept ticks."""
        return self._p50_p99(self.recv, self.publish)

    def window(self) -> None:
        now = time.monotonic()
        dt = now - self.window_t
        if dt > 0:
            self.rate_hz = (self.ticks - self.window_ticks) / dt
        self.window_ticks, self.window_t = self.ticks, now

    def percentiles(self) -> tuple[float, float, float, float]:
        """jitter p50, p99, step p50, p99 over the kept ticks."""
        return self._p50_p99(self.jitter, self.steps)


class Runtime:
    """Runs one node: sockets, loop, heartbeats, shutdown."""

    def __init__(self, spec: NodeSpec, node: Node, liveness: Liveness | None = None) -> None:
        self.spec = spec
        self.node = node
        self.name = spec.name
        self.stopping = False
        self.live = liveness
        ctx = getattr(node, "ctx", None)
        if isinstance(ctx, NodeContext):
            ctx.graph_up = lambda: self.ready
        cfg = from_mapping(busmod.BusConfig, spec.bus, prefix="bus.")
        self.zctx = busmod.context()
        self.security = busmod.Security(self.zctx, cfg)
        self.pub = busmod.Publisher(self.zctx, spec.addresses[spec.name], cfg, self.security)
        # what the node declared it publishes, matched as the bus matches subscriptions
        # (busmod.TopicMatch: a topic ending in "/" covers a family, "" every topic): the
        # launcher checked these (one publisher per topic); any other topic is published
        # still, but counted and warned about (summary ``undeclared_topics``)
        publishes_for = getattr(type(node), "publishes_for", None)
        self.declared = tuple(publishes_for(node.cfg) if publishes_for else node.publishes)
        self.declared_match = busmod.TopicMatch(self.declared)
        self.checked: set[str] = set()  # topics found declared
        self.undeclared: dict[str, int] = {}
        topics = list(node.subscribes)
        for infra in ("heartbeat", "tick") if spec.clock == "lockstep" else ("heartbeat",):
            if infra not in topics and "" not in topics:
                topics.append(infra)
        self.sub = busmod.Subscriber(
            self.zctx, list(spec.addresses.values()), topics, cfg, self.security, spec.name
        )
        self.inbox = Inbox()
        self.stats = _Stats()
        self.woken = 0  # realtime steps woken by a ``wakes_on`` message
        self.heard: set[str] = set()
        self.hb_period = 1.0 / spec.heartbeat_hz
        self.next_hb = 0.0
        self.seq_hb = 0
        self.sub_heartbeats = "heartbeat" in node.subscribes or "" in node.subscribes
        self.ready = False
        self.final_state = ""
        self.work_ended_by = ""  # the peer whose "done" heartbeat ended the run's work
        self.state_at_end = ""  # this node's state() when that heartbeat arrived
        self.ticks: deque[Tick] = deque()  # lockstep: ticks not yet handled
        self.held: list[tuple[str, Message, int]] = []  # lockstep: data not yet admitted
        self.sched = "other"  # the scheduling policy in force (set_scheduling)

    # -- messages ----------------------------------------------------------------------

    def _receive(self, got: tuple[str, Message, int]) -> None:
        topic, msg, recv_ns = got
        if topic == "heartbeat":
            self.heard.add(msg.node)  # type: ignore[attr-defined]
            if msg.state == "done" and msg.node != self.name and not self.work_ended_by:  # type: ignore[attr-defined]
                self._work_ended(msg.node)  # type: ignore[attr-defined]
            if not self.sub_heartbeats:
                return
        self.inbox.put(topic, msg, recv_ns)

    def _work_ended(self, peer: str) -> None:
        """A peer finished its work (the sim its episodes): the run ends now. The state this
        node reports as its end state is the one it is in now, before the silence of the
        finished peer can move it (a controller latches a fault when the joint states stop,
        as it must, but that is the end of the run, not a fault in it; docs/liveness.md)."""
        self.work_ended_by = peer
        self.state_at_end = self.node.state() if self.ready or self.stats.ticks else "starting"
        if self.live is not None:
            self.live.node_state = self.state_at_end

    def _publish(self, outputs: Outputs | None) -> None:
        if outputs is None:
            return
        for topic, msg in outputs:
            if topic not in self.checked:
                self._check_declared(topic)
            self.pub.publish(topic, msg)

    def _check_declared(self, topic: str) -> None:
        if self.declared_match(topic):
            self.checked.add(topic)
            return
        if topic not in self.undeclared:
            log.warning("%s: published %r, a topic it does not declare (publishes: %s); "
                        "counted in its summary (undeclared_topics)", self.name, topic,
                        ", ".join(self.declared) or "none")
        self.undeclared[topic] = self.undeclared.get(topic, 0) + 1

    def heartbeat(self, force: bool = False, state: str | None = None) -> None:
        """Publish a Heartbeat on the bus when one is due; every call is also loop progress
        for the launcher's liveness watch (each loop calls this at every pass)."""
        live = self.live
        if live is not None:
            live.beat += 1
        now = time.monotonic()
        if not force and now < self.next_hb:
            return
        self.next_hb = now + self.hb_period
        self.stats.window()
        j50, j99, s50, s99 = self.stats.percentiles()
        own = state is None and self.ready  # the node's own state, not the runtime's
        if state is None:
            state = self.node.state() if self.ready else "starting"
        hb = Heartbeat(
            stamp_ns=time.monotonic_ns(),
            node=self.name,
            pid=os.getpid(),
            state=state,
            ticks=self.stats.ticks,
            rate_hz=self.stats.rate_hz,
            misses=self.stats.misses,
            drops=self.sub.dropped,
            jitter_p50_us=j50,
            jitter_p99_us=j99,
            step_p50_us=s50,
            step_p99_us=s99,
        )
        self.pub.publish("heartbeat", hb)
        if live is not None:
            live.state, live.ticks = state, self.stats.ticks
            if own and not self.work_ended_by:
                live.node_state = state

    def _all_heard(self) -> bool:
        return self.heard >= set(self.spec.addresses) - {self.name}

    # -- loops ---------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.live is not None:
            self.live.up = True
        self.stats.start()
        try:
            custom = getattr(self.node, "loop", None)
            if custom is not None:
                custom(self)
            elif self.spec.clock == "lockstep":
                self._run_lockstep()
            else:
                self._run_realtime()
            if self.node.done():
                # at once, before the summary and the close (slow on a busy machine): the
                # peers learn that the work is over, not that this node fell silent, and the
                # launcher that the run ends (it does not wait for this process to exit)
                self.heartbeat(force=True, state="done")
                if self.live is not None:
                    self.live.done = True
                    self.live.send()
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _parent_alive(self) -> bool:
        return self.spec.parent_pid == 0 or os.getppid() == self.spec.parent_pid

    def _step(self, now_ns: int) -> None:
        if self.live is not None:
            self.live.beat += 1
        outputs = self.node.step(now_ns, self.inbox)
        self._publish(outputs)
        self.inbox.clear_new()

    @property
    def spin_us(self) -> float:
        """Microseconds busy-waited before each realtime deadline (the spec's, or automatic:
        150 at 200 Hz and faster, else 0; 0 under SCHED_FIFO, whose wake-ups are on time
        and whose spinning no time-shared process could interrupt); none in lockstep."""
        if self.spec.clock != "realtime":
            return 0.0
        if self.spec.spin_us >= 0:
            return self.spec.spin_us
        if self.sched == "fifo":
            return 0.0
        return AUTO_SPIN_US if self.spec.rate_hz >= 200 else 0.0

    def _run_realtime(self) -> None:
        """Tick at ``rate_hz`` on absolute deadlines (docs/liveness.md, "Scheduling").

        Between ticks the loop sleeps on its socket (messages arriving meanwhile are taken
        in) while a period or more is left, then sleeps to the deadline (less ``spin_us``)
        with an absolute ``clock_nanosleep`` -- a sleep cut short by the scheduler or a
        signal resumes toward the same deadline, never a fresh interval -- and busy-waits
        the rest. The timer slack is set to 1 us (``PR_SET_TIMERSLACK``): a time-shared
        process's wake-ups are otherwise rounded up to 50 us (SCHED_FIFO has none).
        """
        period_ns = int(1e9 / self.spec.rate_hz)
        spin_ns = int(self.spin_us * 1000)
        sub, inbox, node, stats = self.sub, self.inbox, self.node, self.stats
        wakes = busmod.TopicMatch(self.node.wakes_on)
        # a node woken by a topic sleeps on its socket to the end of each period; others
        # while a millisecond or more is left, then sleep: a kHz node would otherwise wake
        # for every message it is sent, not once a period
        min_wait_ns = 1 if self.node.wakes_on else 1_000_000
        set_timer_slack(1000)
        clock = time.monotonic_ns
        next_ns = clock()
        while not self.stopping:
            if not self.ready and self._all_heard():
                self.ready = True
            now = clock()
            wait_ns = next_ns - now
            # sleep on the socket: messages arriving meanwhile are taken in
            if wait_ns - spin_ns >= min_wait_ns and sub.wait((wait_ns - spin_ns) / 1e9):
                woken = False
                # a drain takes at most a period: a node starved while messages pour in
                # still steps and beats (the rest stays queued in its socket)
                for got in sub.drain(clock() + period_ns):
                    self._receive(got)
                    woken = woken or wakes(got[0])
                if woken and self.ready:  # not a tick: rate, jitter and misses stay the schedule's
                    self._step(clock())
                    self.woken += 1
                continue
            # spinning through the rest would take a whole core per kHz node: sleep
            if next_ns - now - spin_ns > 20_000:
                sleep_until_ns(next_ns - spin_ns)
            while clock() < next_ns:
                pass
            start = clock()
            for got in sub.drain(start + period_ns):
                self._receive(got)
            if self.live is not None:
                self.live.beat += 1
            taken = clock()
            outputs = node.step(start, inbox)
            stepped = clock()
            self._publish(outputs)
            inbox.clear_new()
            end = clock()
            jitter = start - next_ns
            missed = end > next_ns + period_ns
            stats.add(jitter / 1e3, (end - start) / 1e3, missed)
            stats.add_io((taken - start) / 1e3, (end - stepped) / 1e3)
            next_ns += period_ns
            if end > next_ns + period_ns:  # fell far behind: skip, do not burst
                next_ns = end + period_ns - (end - next_ns) % period_ns
            self.heartbeat()
            if node.done() or not self._parent_alive():
                break
        del inbox

    def _run_lockstep(self) -> None:
        """Step on due ticks only, with exactly the inputs the tick names as published."""
        period_ticks = max(1, round(self.spec.base_hz / self.spec.rate_hz))
        sub = self.sub
        while not self.stopping:
            if not self.ready and self._all_heard():
                self.ready = True
            self.heartbeat()
            if not self.ticks:
                if sub.wait(0.05):
                    for got in sub.drain():
                        self._receive_lockstep(got)
                elif not self._parent_alive():
                    break
                continue
            tick = self.ticks.popleft()
            if tick.final:
                break
            if tick.tick % period_ticks:
                continue
            start = time.monotonic_ns()
            self._await_required(tick)
            self._step(tick.stamp_ns)
            end = time.monotonic_ns()
            self.stats.add(0.0, (end - start) / 1e3, False)
            self.pub.publish(
                "ack",
                Ack(stamp_ns=tick.stamp_ns, node=self.name, tick=tick.tick,
                    published=dict(self.pub.seqs)),
            )
            if self.node.done():
                break

    def _receive_lockstep(self, got: tuple[str, Message, int]) -> None:
        """Ticks queue up; data is held back until a tick admits it (see _admit)."""
        topic, msg, recv_ns = got
        if topic == "tick":
            self.ticks.append(msg)  # type: ignore[arg-type]
        elif topic == "heartbeat":
            self._receive(got)
        else:
            self.held.append(got)

    def _admit(self, required: dict[str, int]) -> None:
        keep = []
        for got in self.held:
            topic, msg, recv_ns = got
            if msg.seq <= required.get(topic, -1):
                self.inbox.put(topic, msg, recv_ns)
            else:
                keep.append(got)
        self.held = keep

    def _await_required(self, tick: Tick, timeout_s: float = 30.0) -> None:
        """Receive until every seq the tick requires on our topics is in the inbox."""
        wanted = {
            t: s for t, s in tick.required.items()
            if t not in INFRA_TOPICS and self.sub.wanted(t)
        }
        deadline = time.monotonic() + timeout_s
        while True:
            if self.live is not None:  # waiting for inputs is the runtime's, not a stuck step
                self.live.beat += 1
            self._admit(tick.required)
            if all(self.inbox.seqs.get(t, -1) >= s for t, s in wanted.items()):
                return
            if time.monotonic() > deadline or self.stopping:
                log.error("%s: lockstep inputs did not arrive for tick %d", self.name, tick.tick)
                return
            if self.sub.wait(0.01):
                for got in self.sub.drain():
                    self._receive_lockstep(got)

    def _shutdown(self) -> None:
        self.final_state = "stopped"
        if self.live is not None:
            if not self.work_ended_by:
                with contextlib.suppress(Exception):  # the state the node ends in (a latched fault)
                    self.live.node_state = self.node.state()
            self.live.state = "stopped"
        try:
            self.node.finish()
            summary = self.node.summary()
        except Exception as e:  # a failing summary must not prevent a clean stop
            log.exception("%s: finish or summary failed", self.name)
            summary = {"summary_error": str(e)}
        try:
            self.node.close()
        finally:
            self.heartbeat(force=True, state="stopped")
            if self.spec.run_dir:
                self._write_summary(summary)
            time.sleep(0.05)  # let the last heartbeat leave
            self.sub.close()
            self.pub.close()
            remove_ipc_file(self.spec.addresses.get(self.name, ""))
            self.security.close()
            self.zctx.term()

    def _write_summary(self, summary: dict[str, Any]) -> None:
        j50, j99, s50, s99 = self.stats.percentiles()
        r50, r99, p50, p99 = self.stats.io_percentiles()
        cpu_s, cpu_share = self.stats.cpu()
        elapsed = time.monotonic() - self.stats.t_start
        figures = {
            "node": self.name,
            "ticks": self.stats.ticks,
            "rate_hz": self.stats.ticks / elapsed if elapsed > 0 else 0.0,
            "target_hz": self.spec.rate_hz,
            "misses": self.stats.misses,
            "miss_share": self.stats.misses / max(1, self.stats.ticks),
            "drops": self.sub.dropped,
            "drops_by_kind": dict(self.sub.drops),
            "jitter_p50_us": j50,
            "jitter_p99_us": j99,
            "step_p50_us": s50,
            "step_p99_us": s99,
            # realtime: the tick's receive (decode) and publish (encode, send) parts
            **({"recv_p50_us": r50, "recv_p99_us": r99, "publish_p50_us": p50,
                "publish_p99_us": p99} if self.spec.clock == "realtime" else {}),
            "cpu_s": cpu_s,  # the process's CPU time from its loop's start
            "cpu_share": cpu_share,  # of one core
            "woken_steps": self.woken,
            **({"undeclared_topics": dict(self.undeclared)} if self.undeclared else {}),
            # its state when a peer's finish ended the work (what the run's outcome reads)
            **({"work_ended_by": self.work_ended_by, "state_at_end": self.state_at_end}
               if self.work_ended_by else {}),
            "spin_us": self.spin_us,
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "sched": self.sched,
            **summary,
        }
        path = Path(self.spec.run_dir) / f"{self.name}.summary.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures, default=float))
        os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """A node process's work: build the node, run it, stop it; returns the exit status
    (the launcher's processes run it through :func:`process_main`)."""
    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    spec = NodeSpec(**json.loads(argv[0]))
    logging.basicConfig(
        level=logging.INFO, format=f"[{spec.name}] %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # its import notes, not the node's
    _stacks_on_signal(spec)
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    _set_nice(spec)  # first, so that every thread the node starts inherits it
    stop = threading.Event()
    live = None
    if spec.liveness_fd >= 0:  # from before the imports: a node slow to build is not silent
        live = Liveness(spec.liveness_fd, 1.0 / spec.heartbeat_hz, stop.set,
                        spec.addresses.get(spec.name, ""))
    try:
        node = build_node(spec)
        if stop.is_set():
            return 1
        rt = Runtime(spec, node, live)
        if stop.is_set():
            rt.stopping = True
        rt.sched = _set_sched(spec, node)  # built: start-up ran time-shared, the loop may not
        live_stop = rt._on_signal
        if live is not None:
            live.on_orphan = lambda: live_stop(signal.SIGTERM, None)
        return rt.run()
    finally:
        if live is not None:
            live.close()


def process_main(argv: list[str] | None = None) -> None:
    """The launcher's entry for a node process: :func:`main`, then the process ends at once.

    By then the node has written its summary, closed its files and sockets and sent its
    last liveness record: what is left is the interpreter's own teardown (collecting every
    module's objects), which on a busy machine, at ``nice 10``, took seconds of waiting for a
    core, past ``stop_timeout_s``. So after flushing the logs and the standard streams, it
    is skipped (``os._exit``).
    """
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(rc)


def _stacks_on_signal(spec: NodeSpec) -> None:
    """On SIGUSR1, write every thread's Python stack to ``<run_dir>/<name>.stacks.txt``: the
    launcher asks for it before it kills a node that did not stop (docs/liveness.md). The
    file stays open to the process's end, so a hang in the interpreter's exit is caught too;
    the launcher removes it when empty."""
    if not spec.run_dir:
        return
    try:
        f = open(Path(spec.run_dir) / f"{spec.name}.stacks.txt", "w")  # noqa: SIM115
    except OSError:
        return
    faulthandler.register(signal.SIGUSR1, file=f, all_threads=True)
    _KEEP.append(f)


_KEEP: list[Any] = []  # the stacks file, open for faulthandler until the process ends


def _set_nice(spec: NodeSpec) -> None:
    if spec.nice == 0:
        return
    try:
        os.nice(spec.nice)
    except PermissionError:
        log.warning("%s: nice %+d needs CAP_SYS_NICE (or root); running at nice %d",
                    spec.name, spec.nice, os.getpriority(os.PRIO_PROCESS, 0))


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


PR_SET_TIMERSLACK = 29


def set_timer_slack(ns: int) -> bool:
    """Set this thread's timer slack (Linux ``prctl(PR_SET_TIMERSLACK)``): how much later than
    asked the kernel may end its sleeps, to batch wake-ups (50 us by default). False where
    it cannot."""
    try:
        return _libc().prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_TIMER_ABSTIME = 1
_EINTR = 4


def sleep_until_ns(deadline_ns: int) -> None:
    """Sleep until ``time.monotonic_ns()`` reaches ``deadline_ns``: an absolute
    ``clock_nanosleep`` on CLOCK_MONOTONIC (the GIL released), resumed toward the same
    deadline after a signal; ``time.sleep`` where that call is missing."""
    try:
        fn = _libc().clock_nanosleep
    except (OSError, AttributeError):
        left = deadline_ns - time.monotonic_ns()
        if left > 0:
            time.sleep(left / 1e9)
        return
    ts = _Timespec(deadline_ns // 1_000_000_000, deadline_ns % 1_000_000_000)
    while fn(time.CLOCK_MONOTONIC, _TIMER_ABSTIME, ctypes.byref(ts), None) == _EINTR:
        pass  # a signal: its Python handler runs after the sleep; the deadline stands


def _time_shared_thread(tasks: str, tid: int) -> bool:
    """Whether thread ``tid`` stays time-shared under a SCHED_FIFO node: ZeroMQ's own
    background threads (I/O, reaper; named ``ZMQbg/...``)."""
    try:
        with open(f"{tasks}/{tid}/comm") as f:
            return f.read().startswith("ZMQbg")
    except OSError:
        return False


def set_scheduling(policy: str, priority: int, name: str, pid: int = 0) -> str:
    """Put the threads of process ``pid`` (0: this one) under ``policy`` ("fifo":
    SCHED_FIFO at ``priority``; "other": left as it is). Returns the policy in force:
    "fifo", or "other" when the OS refuses (it needs CAP_SYS_NICE or root), with one
    warning. Threads started later by a SCHED_FIFO thread inherit it (docs/liveness.md,
    "Scheduling").

    Every Python thread goes SCHED_FIFO (they share the interpreter's lock: a time-shared
    one preempted while holding it would stall the loop), but ZeroMQ's background threads
    stay time-shared at the process's nice: at realtime priority each message the node
    sends or receives (a joint state and a command every millisecond for the controller)
    preempted whatever ran on that core, and the planner beside a SCHED_FIFO controller
    solved markedly slower (docs/benchmarks.md, "Controller step and SCHED_FIFO")."""
    if policy != "fifo":
        return "other"
    tasks = f"/proc/{pid or 'self'}/task"
    try:
        tids = [int(t) for t in os.listdir(tasks)]
    except OSError:
        tids = [pid]
    param = os.sched_param(priority)
    done = 0
    for tid in tids:
        if _time_shared_thread(tasks, tid):
            continue
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, param)
            done += 1
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except (OSError, AttributeError) as e:
            log.warning("%s: SCHED_FIFO at priority %d needs CAP_SYS_NICE or root (%s); "
                        "running time-shared", name, priority, e)
            return "other"
    return "fifo" if done else "other"


def _set_sched(spec: NodeSpec, node: Node) -> str:
    """The node's scheduling policy (realtime only: a lockstep graph waits on its clock)."""
    if spec.clock != "realtime":
        return "other"
    policy = type(node).default_sched if spec.sched == "auto" else spec.sched
    return set_scheduling(policy, spec.sched_priority, spec.name)


def spec_json(spec: NodeSpec) -> str:
    return json.dumps(dataclasses.asdict(spec))


if __name__ == "__main__":
    sys.exit(main())
