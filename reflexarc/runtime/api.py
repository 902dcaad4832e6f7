"""The Python API for launch scripts (docs/python-api.md).

Three forms, all validated exactly as ``reflexarc run`` validates its command line (the
same overrides go through the same :func:`reflexarc.runtime.config.load`):

- :func:`run` runs a graph to its end and returns a typed :class:`RunResult`;
- :func:`start` starts a graph and returns a :class:`Running` handle (a context manager):
  the script publishes into the graph and subscribes to its topics while it runs, then
  stops it;
- :class:`Graph` and :func:`node` build a graph in Python from node specs, usable
  wherever a graph name or a graph file is.

``graph`` is a shipped graph's name (``configs/graph/``), a path to a YAML graph file, or
a :class:`Graph`. Every other keyword is a key of ``reflexarc run`` (``task``,
``backend``, ``episodes``, ``clock``, ``seed``, ``duration_s``, ``run_dir``...), and
``overrides`` takes the dotted keys a keyword cannot spell
(``{"graph.nodes.sim.args.camera_hz": 10}`` or ``["graph.nodes.sim.rate_hz=500"]``).

A node's target may live in any module on the Python path: the folder of the script that
was started (``python my_script.py``) and a graph file's folder are added to it, for the
launcher and for every node process.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import Message

#: the bus name a script's handle publishes under (it has an address, not a process)
SCRIPT_PEER = "script"


# ---- building graphs in Python ----------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    """One node of a :class:`Graph`: what ``graph.nodes.<name>`` holds in a YAML graph."""

    target: str  # "package.module:Class"
    rate_hz: float = 10.0
    args: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # on_death, cpus, nice, enabled...

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "rate_hz": self.rate_hz, "args": dict(self.args),
                **self.options}


def node(target: str | type, rate_hz: float = 10.0, *, options: Mapping[str, Any] | None = None,
         **args: Any) -> NodeSpec:
    """A node spec: ``target`` is ``"package.module:Class"`` or the Node class itself
    (defined in an importable module, not in the script being run); ``args`` are its
    Config's fields; ``options`` the entry's other keys (``on_death``, ``nice``...)."""
    if isinstance(target, type):
        if target.__module__ == "__main__":
            raise ConfigError(
                "target", f"{target.__qualname__} is defined in the script being run; node "
                "processes import their class, so define it in a module beside the script "
                "and import it from there")
        target = f"{target.__module__}:{target.__qualname__}"
    return NodeSpec(target=target, rate_hz=float(rate_hz), args=dict(args),
                    options=dict(options or {}))


@dataclass(frozen=True)
class Graph:
    """A graph built in Python: node name -> :class:`NodeSpec`, an optional report
    function (``"package.module:function"``) and folders for the Python path."""

    nodes: Mapping[str, NodeSpec]
    report: str = ""
    pythonpath: Sequence[str] = ()

    def overrides(self) -> list[str]:
        """The same graph as command-line overrides: the empty graph plus one
        ``+graph.nodes.NAME={...}`` per node (as ``reflexarc run`` would be given)."""
        out = ["graph=empty"]
        out += [f"+graph.nodes.{name}={_hydra_value(spec.as_dict())}"
                for name, spec in self.nodes.items()]
        if self.report:
            out.append(f"graph.report={_hydra_value(self.report)}")
        if self.pythonpath:
            out.append(f"graph.pythonpath={_hydra_value([str(p) for p in self.pythonpath])}")
        return out


# ---- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeResult:
    """One episode, as the node that ran it (the sim) reported it."""

    episode: int
    seed: int | None
    success: bool | None  # None where the scene has no success test (a gym env)
    duration_s: float | None
    figures: dict[str, Any]  # everything else the node reported (time to success, return...)


@dataclass(frozen=True)
class NodeFigures:
    """One node's loop figures and its own figures."""

    name: str
    target_hz: float
    rate_hz: float
    misses: int
    drops: int
    restarts: int
    jitter_p99_us: float
    step_p99_us: float
    exit_code: int | None
    figures: dict[str, Any]  # the node's own (physics_hz, encode_ms_p50, recorded...)


@dataclass(frozen=True)
class RunResult:
    """What a finished run gives back: the figures ``reflexarc run`` prints, typed."""

    ok: bool
    ended_by: str
    seconds: float
    clock: str
    run_dir: Path
    task: str | None
    backend: str | None
    success_rate: float | None
    episodes: list[EpisodeResult]
    nodes: dict[str, NodeFigures]
    latencies_ms: dict[str, float]  # frame_to_command_ms_p99, echo_latency_p99_ms...
    video: Path | None
    plot: Path | None
    episode_dir: Path | None  # the recorder's episode files (read with reflexarc.Episode)
    events: list[dict[str, Any]]
    summary: dict[str, Any]  # the raw summary, as ``reflexarc run out=...`` writes it

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> RunResult:
        figures = summary.get("node_figures", {})
        nodes = {
            r["node"]: NodeFigures(
                name=r["node"], target_hz=float(r.get("target_hz", 0.0)),
                rate_hz=float(r.get("rate_hz", 0.0)), misses=int(r.get("misses", 0)),
                drops=int(r.get("drops", 0)), restarts=int(r.get("restarts", 0)),
                jitter_p99_us=float(r.get("jitter_p99_us", 0.0)),
                step_p99_us=float(r.get("step_p99_us", 0.0)), exit_code=r.get("exit"),
                figures=dict(figures.get(r["node"], {})),
            )
            for r in summary.get("nodes", [])
        }
        episodes = []
        for i, e in enumerate(summary.get("episode_results") or []):
            e = dict(e)
            episodes.append(EpisodeResult(
                episode=int(e.pop("episode", i)), seed=e.pop("seed", None),
                success=e.pop("success", None), duration_s=e.pop("duration_s", None),
                figures=e,
            ))
        recorded = next((n.figures["episode"] for n in nodes.values()
                         if isinstance(n.figures.get("episode"), str)), None)
        default = Path(summary.get("run_dir", ".")) / "episode"
        if recorded is None and any(default.glob("part-*.h5")):
            recorded = str(default)  # a recorder stopped before it could write its summary
        rate = summary.get("success_rate")
        return cls(
            ok=bool(summary.get("ok", False)), ended_by=str(summary.get("ended_by", "")),
            seconds=float(summary.get("seconds", 0.0)), clock=str(summary.get("clock", "")),
            run_dir=Path(summary.get("run_dir", ".")), task=summary.get("task"),
            backend=summary.get("backend"),
            success_rate=None if rate is None else float(rate),
            episodes=episodes, nodes=nodes, latencies_ms=_latencies_ms(summary, nodes),
            video=_path(summary.get("video")), plot=_path(summary.get("plot")),
            episode_dir=_path(recorded), events=list(summary.get("events", [])),
            summary=summary,
        )


def _path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def _latencies_ms(summary: dict[str, Any], nodes: dict[str, NodeFigures]) -> dict[str, float]:
    """Every latency figure of the run in ms: the summary's ``*_ms_p50/p99`` keys and the
    nodes' ``*latency*`` figures (``node.key``, converted from us where so named)."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and "_ms_p" in k:
            out[k] = float(v)
    for n in nodes.values():
        for k, v in n.figures.items():
            if "latency" not in k or not isinstance(v, int | float) or isinstance(v, bool):
                continue
            if "_us" in k:
                out[f"{n.name}.{k.replace('_us', '_ms')}"] = float(v) / 1e3
            else:
                out[f"{n.name}.{k}"] = float(v)
    return out


# ---- configuring, running --------------------------------------------------------------


def configure(graph: str | os.PathLike[str] | Graph = "pixels", *,
              overrides: Mapping[str, Any] | Sequence[str] = (), **keys: Any) -> Any:
    """The validated :class:`~reflexarc.runtime.launcher.RunConfig` of a run, built exactly
    as ``reflexarc run graph=... KEY=VALUE ...`` builds it; raises ConfigError naming the
    key and what is allowed."""
    from reflexarc.runtime import config
    from reflexarc.runtime import launcher as _launcher  # registers run_schema

    del _launcher
    args = list(graph.overrides()) if isinstance(graph, Graph) else [
        f"graph={_hydra_value(os.fspath(graph))}"]
    args += [as_override(f"{k}={_hydra_value(v)}") for k, v in keys.items()]
    if isinstance(overrides, Mapping):
        args += [as_override(f"{k}={_hydra_value(v)}") for k, v in overrides.items()]
    else:
        args += [as_override(o) for o in overrides]
    cfg = config.load("run", args)
    script = _script_dir()
    if script is not None and script not in cfg.graph.pythonpath:
        cfg.graph.pythonpath.append(script)
    return cfg


def as_override(arg: str) -> str:
    """A ``key=value`` argument as the hydra override ``reflexarc run`` makes of it: node
    arguments are open maps checked by the node's own Config, so they add or override."""
    if arg.startswith(("+", "~")) or "=" not in arg:
        return arg
    return f"++{arg}" if ".args." in arg.split("=", 1)[0] else arg


def run(graph: str | os.PathLike[str] | Graph = "pixels", *,
        overrides: Mapping[str, Any] | Sequence[str] = (), **keys: Any) -> RunResult:
    """Run a graph to its end (its episodes, ``duration_s``, or Ctrl-C) and return its
    result."""
    from reflexarc.runtime.launcher import Launcher

    cfg = configure(graph, overrides=overrides, **keys)
    _default_logging()
    launcher = Launcher(cfg)
    summary = launcher.run()
    return RunResult.from_summary(summary)


def start(graph: str | os.PathLike[str] | Graph = "pixels", *,
          overrides: Mapping[str, Any] | Sequence[str] = (), **keys: Any) -> Running:
    """Start a graph and return its :class:`Running` handle (use it in a ``with``)."""
    return Running(configure(graph, overrides=overrides, **keys))


class Subscription:
    """Messages of some topics, received while the graph runs (see :meth:`Running.subscribe`).

    Use it from one thread. ``latest(topic)`` is the newest message taken in so far;
    :meth:`recv` and :meth:`drain` take in what has arrived.
    """

    def __init__(self, sub: Any) -> None:
        self._sub = sub
        self._latest: dict[str, Message] = {}
        self.closed = False

    def recv(self, timeout_s: float | None = None) -> tuple[str, Message] | None:
        """The next message as ``(topic, message)``; None if none came within ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            got = self._sub.recv(_NOBLOCK)
            if got is not None:
                topic, msg, _ = got
                self._latest[topic] = msg
                return topic, msg
            left = 0.05 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            self._sub.wait(min(left, 0.05))

    def drain(self) -> list[tuple[str, Message]]:
        """Every message waiting now, oldest first (never blocks)."""
        out = [(t, m) for t, m, _ in self._sub.drain()]
        for t, m in out:
            self._latest[t] = m
        return out

    def latest(self, topic: str) -> Any:
        """The newest message on ``topic`` taken in so far (after a drain), or None."""
        self.drain()
        return self._latest.get(topic)

    def __iter__(self) -> Iterator[tuple[str, Message]]:
        while not self.closed:
            got = self.recv(0.1)
            if got is not None:
                yield got

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sub.close()


_NOBLOCK = 1  # zmq.NOBLOCK, without importing zmq here


class Running:
    """A graph running in the background of the script (from :func:`start`).

    The launcher runs in a thread of this process; the nodes in their own processes, as
    with ``reflexarc run``. The script is a peer of the graph's bus under the name
    ``script``: :meth:`publish` sends a typed message on a topic (an instruction, a goal,
    joint commands), :meth:`subscribe` receives topics (joint states, plans, frames).
    :meth:`stop` (or leaving the ``with`` block) ends the run and returns its
    :class:`RunResult`; :meth:`wait` waits for it to end by itself.

    In lockstep the clock admits only the graph's own nodes' messages, so :meth:`publish`
    needs ``clock=realtime`` (subscribing works with either).
    """

    def __init__(self, cfg: Any) -> None:
        from reflexarc.runtime import bus as busmod
        from reflexarc.runtime.launcher import Launcher

        self.cfg = cfg
        self.launcher = Launcher(cfg, peers=(SCRIPT_PEER,))
        self.run_dir = self.launcher.run_dir
        self._bus = busmod
        self._zctx = busmod.context()
        self._security = busmod.Security(self._zctx, cfg.bus)
        self._pub = busmod.Publisher(self._zctx, self.launcher.addresses[SCRIPT_PEER], cfg.bus,
                                     self._security)
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._summary: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self.result: RunResult | None = None  # set when the ``with`` block ends
        _default_logging()
        self._thread = threading.Thread(target=self._run, name="reflexarc-launcher", daemon=True)
        self._beat = threading.Thread(target=self._heartbeats, name="reflexarc-script", daemon=True)
        self._thread.start()
        self._beat.start()

    # ---- the run ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._summary = self.launcher.run()
        except BaseException as e:  # handed to the script's thread by wait()/stop()
            self._error = e

    def _heartbeats(self) -> None:
        """Every node waits to hear from every peer of its bus: the script says it is up."""
        from reflexarc.runtime.msgs import Heartbeat

        period = 1.0 / self.cfg.heartbeat_hz
        while self._thread.is_alive() and not self._closed:
            with self._lock:
                if self._closed:
                    return
                self._pub.publish("heartbeat", Heartbeat(
                    stamp_ns=time.monotonic_ns(), node=SCRIPT_PEER, pid=os.getpid()))
            time.sleep(period)

    @property
    def running(self) -> bool:
        """True until the run has ended (stopped, or a node finished or died)."""
        return self._thread.is_alive()

    def ready(self) -> bool:
        """True once every node's process has sent its first heartbeat."""
        return all(p.last_hb for p in self.launcher.procs.values())

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until :meth:`ready`; raises ReflexarcError if the run ends first or
        ``timeout_s`` (default: the config's ``startup_timeout_s``) passes."""
        limit = self.cfg.startup_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while not self.ready():
            if not self.running:
                raise ReflexarcError(f"the graph ended before it was up: {self._ended_by()}")
            if time.monotonic() > deadline:
                raise ReflexarcError(f"the graph's nodes were not all up within {limit} s")
            time.sleep(0.02)

    def _ended_by(self) -> str:
        if self._error is not None:
            return f"{type(self._error).__name__}: {self._error}"
        return self.launcher.reason or "unknown"

    # ---- the bus -------------------------------------------------------------------

    def publish(self, topic: str, msg: Message) -> int:
        """Send ``msg`` on ``topic`` into the graph; returns its seq. The topic's type is
        checked as every node's are (``reflexarc.runtime.msgs.TOPICS``)."""
        from reflexarc.runtime.msgs import topic_type

        if self.cfg.clock == "lockstep":
            raise ReflexarcError(
                "a script cannot publish into a lockstep graph (the clock admits only its "
                "nodes' messages); start it with clock='realtime'")
        expected = topic_type(topic)
        if expected is None or not isinstance(msg, expected):
            want = expected.__name__ if expected else "a known topic (msgs.TOPICS)"
            raise ReflexarcError(f"topic {topic!r} carries {want}, got {type(msg).__name__}")
        if msg.stamp_ns == 0:
            object.__setattr__(msg, "stamp_ns", time.monotonic_ns())
        with self._lock:
            if self._closed:
                raise ReflexarcError("the graph's handle is closed")
            return self._pub.publish(topic, msg)

    def subscribe(self, *topics: str) -> Subscription:
        """A subscription to ``topics`` (exact names, ``'camera/'`` for a family) on every
        node of the graph; closed with the handle. Messages published before it was
        made are not received, so subscribe before waiting for what you want to see."""
        sub = self._bus.Subscriber(self._zctx, list(self.launcher.addresses.values()),
                                   list(topics), self.cfg.bus, self._security, SCRIPT_PEER)
        s = Subscription(sub)
        self._subs.append(s)
        return s

    # ---- the end -------------------------------------------------------------------

    def wait(self, timeout_s: float | None = None) -> RunResult | None:
        """Wait for the run to end by itself; its result, or None if ``timeout_s`` passed."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return None
        return self._result()

    def stop(self, reason: str = "stopped by the script") -> RunResult:
        """End the run (every node is stopped as on Ctrl-C) and return its result."""
        if self._thread.is_alive():
            self.launcher.stop(reason)
            self._thread.join()
        return self._result()

    def _result(self) -> RunResult:
        self._close()
        if self._error is not None:
            raise self._error
        if self._summary is None:  # cannot happen: the thread ended without error
            raise ReflexarcError(f"the run left no summary: {self._ended_by()}")
        return RunResult.from_summary(self._summary)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._beat.join()
        for s in self._subs:
            s.close()
        self._pub.close()
        self._security.close()
        self._zctx.term()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.result = self.stop()


# ---- helpers ---------------------------------------------------------------------------


def _hydra_value(v: Any) -> str:
    """A Python value in hydra's override grammar (strings quoted)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | os.PathLike):
        s = os.fspath(v).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{s}'"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_hydra_value(x) for x in v) + "]"
    raise ConfigError("?", f"cannot pass a {type(v).__name__} as a config value; allowed: "
                      "None, bool, int, float, str, path, list, dict")


def _script_dir() -> str | None:
    """The folder of the script being run (``python my_script.py``), if there is one."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return str(Path(path).resolve().parent) if path else None


def _default_logging() -> None:
    """The launcher's news at INFO, its warnings as the CLI shows them."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[launcher] %(levelname)s %(message)s")
        logging.getLogger("OpenGL").setLevel(logging.WARNING)
