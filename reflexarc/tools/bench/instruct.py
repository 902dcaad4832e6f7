"""``reflexarc bench instruct``: the fast path's latency, and the 1 kHz controller while an
LLM call hangs.

- **Fast path** (row ``fast_path``; also ``python -m reflexarc.tools.bench.instruct``): times
  :meth:`Instructor.quick` (parse + resolve + TaskSpec, memory disabled) over a set of
  instructions, each repeated, one call per sample (``time.perf_counter_ns``); its p50/p99
  go in the step columns.
- **Controller while the LLM hangs** (the other rows): the control graph of ``bench
  control`` (sim with joint commands at 1 kHz physics, no camera; the 1 kHz controller;
  the scripted expert's plans at 10 Hz; no recorder) in realtime. One run without an
  instruct node (``no_instruct``), and one run with an instruct node measured in three
  phases, so that the comparison that matters is made under the same background load:
  ``instruct_idle``; ``llm_hangs``, after an instruction that escalates was sent (``say``)
  and an OpenAI-compatible server on 127.0.0.1 holds the request without answering;
  ``after_answer``, once the server was released and the node published the spec. A probe
  on the bus measures each phase over a ``seconds`` window opened ``settle_s`` after the
  phase's condition holds: the controller's achieved rate, missed deadlines (share), jitter
  and step time p50/p99 (its heartbeats; the runtime's percentiles cover its last 4096
  ticks, so windows of 4 s or more are the phase's alone), joint commands received, the
  instruct node's heartbeats and ticks, task specs published in the window (none while the
  call hangs) and LLM requests outstanding. ``load1`` is the load at the window's start.
  Both with the controller time-shared and under SCHED_FIFO (:data:`SCHEDULING`; ``quick``:
  time-shared only). Compare as ratios within one run: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.planner.instruct.instructor import InstructConfig, Instructor
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.testing import ChatServer, reply
from reflexarc.runtime.progress import Progress

SAMPLE = (
    "push the red block to the left",
    "nudge the blue block a bit towards the robot",
    "put the red block on top of the blue block",
    "pick up the green block and put it in the back left corner",
    "move the gripper to the red block",
    "slide the crimson one 5 cm to the right",
    "push the red block next to the green block",
    "don't push the red block",
    "put the red block between the green and blue blocks",
    "go to the center of the table",
)


def bench_fast(
    texts: Sequence[str] = SAMPLE, scene: SceneInfo | None = None, repeats: int = 200
) -> dict[str, float | int | str]:
    """Latency of the fast path (no memory, no LLM) in microseconds: p50, p99, max."""
    scene = SceneInfo() if scene is None else scene
    inst = Instructor(InstructConfig(memory=False), llm=None, memory=None)
    for t in texts:  # warm up
        inst.quick(t, scene)
    samples = np.empty(len(texts) * repeats, dtype=np.int64)
    k = 0
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for t in texts:
            t0 = clock()
            inst.quick(t, scene)
            samples[k] = clock() - t0
            k += 1
    us = samples / 1e3
    return {
        "what": "instruct fast path",
        "n": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
    }


# --------------------------------------------------------------------------------------
# The controller while the LLM hangs
# --------------------------------------------------------------------------------------

HANGING = "wiggle the red block over to the near edge"
"""An instruction the fast path is not sure of (it escalates to the LLM)."""

def control_nodes(backend: str, instruct: dict[str, Any] | None, rt_priority: int = 0) -> dict[str, Any]:
    """The measured graph: ``bench control``'s (no camera, no recorder; the controller
    SCHED_FIFO at ``rt_priority`` if > 0), plus an instruct node with ``instruct`` as its
    arguments (None: none)."""
    from reflexarc.tools.bench.control import control_graph

    nodes = control_graph(backend, camera_hz=0.0, rt_priority=rt_priority)
    nodes.pop("recorder", None)
    if instruct is not None:
        nodes["instruct"] = {"target": "reflexarc.planner.instruct.node:InstructNode", "rate_hz": 20,
                             "args": {"listen": "", "memory": False, **instruct}}
    return nodes


@dataclass
class Phase:
    """One measured window: ``begin`` is called when the phase starts; the window opens
    ``settle_s`` after ``ready`` is set (None: at once) and lasts ``seconds``."""

    name: str
    seconds: float
    begin: Callable[[], None] | None = None
    ready: threading.Event | None = None


class _Probe(threading.Thread):
    """Listens to the graph (heartbeats, joint commands, task specs) and measures each
    :class:`Phase` in turn, once the controller reports ``running``; then asks the
    launcher to stop."""

    def __init__(self, launcher: Any, phases: Sequence[Phase], spec_seen: threading.Event,
                 rt: dict[str, int] | None = None, settle_s: float = 1.0,
                 phase_timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.rt = dict(rt or {})  # node -> SCHED_FIFO priority, set by pid once all are up
        self.pids: dict[str, int] = {}
        self.launcher, self.phases = launcher, list(phases)
        self.settle_s, self.phase_timeout_s = settle_s, phase_timeout_s
        self.results: dict[str, dict[str, Any]] = {}
        self.error = ""
        self.spec_seen = spec_seen  # set when a task_spec goes by
        self.stop_event = threading.Event()

    def run(self) -> None:
        from reflexarc.robot.controller import set_realtime

        with self.launcher.listen(["heartbeat", "joint_command", "task_spec"], "bench-probe") as sub:
            running = False
            seen: dict[str, str] = {}  # node -> its last heartbeat's state (for the error)
            i, phase = 0, self.phases[0]
            began = time.monotonic()
            opened: float | None = None
            load = 0.0
            hbs: dict[str, list[Any]] = {"controller": [], "instruct": []}
            counts = {"commands": 0, "specs": 0}
            try:
                while not self.stop_event.is_set():
                    now = time.monotonic()
                    if opened is None:
                        if now - began > self.phase_timeout_s:
                            states = ", ".join(f"{n}:{st}" for n, st in sorted(seen.items())) or "none"
                            what = "the controller never ran" if not running else "its condition did not hold"
                            self.error = f"phase {phase.name}: {what} (last states: {states})"
                            return
                        if running and (phase.ready is None or phase.ready.is_set()):
                            opened, load = now + self.settle_s, os.getloadavg()[0]
                    elif now - opened >= phase.seconds:
                        self.results[phase.name] = _window(hbs, counts, load, phase.seconds)
                        i += 1
                        if i == len(self.phases):
                            return
                        phase, opened, began = self.phases[i], None, time.monotonic()
                        hbs = {"controller": [], "instruct": []}
                        counts = {"commands": 0, "specs": 0}
                        if phase.begin is not None:
                            phase.begin()
                        continue
                    if not sub.wait(0.02):
                        continue
                    t = time.monotonic()
                    live = opened is not None and t >= opened
                    for topic, msg, _ in sub.drain():
                        if topic == "task_spec":
                            self.spec_seen.set()
                            counts["specs"] += live
                        elif topic == "joint_command":
                            counts["commands"] += live
                        else:  # a heartbeat
                            seen[msg.node] = msg.state
                            self.pids[msg.node] = msg.pid
                            if self.rt and set(self.pids) >= set(self.launcher.procs):
                                for node, prio in self.rt.items():  # start-up is over
                                    set_realtime(prio, node, pid=self.pids[node])
                                self.rt = {}
                            if msg.node == "controller" and msg.state == "running" and not running:
                                running = True
                                if phase.begin is not None:
                                    phase.begin()
                            elif live and msg.node in hbs:
                                hbs[msg.node].append((t, msg))
            finally:
                self.launcher.stop("bench windows done")


def _window(hbs: dict[str, list[Any]], counts: dict[str, int], load: float, seconds: float
            ) -> dict[str, Any]:
    """Loop figures of one ``seconds`` window from its heartbeats (counter differences over
    their stamps; percentiles of the last one) and message counts."""
    ctrl, ins = hbs["controller"], hbs["instruct"]
    if len(ctrl) < 2:
        return {"error": "fewer than 2 controller heartbeats in the window"}
    (_, h0), (_, h1) = ctrl[0], ctrl[-1]
    ticks = h1.ticks - h0.ticks
    span = (h1.stamp_ns - h0.stamp_ns) / 1e9  # the sender's clock: the probe's may lag
    return {
        "window_s": span,
        "rate_hz": ticks / span,
        "misses": h1.misses - h0.misses,
        "miss_share": (h1.misses - h0.misses) / max(1, ticks),
        "jitter_p50_us": h1.jitter_p50_us,
        "jitter_p99_us": h1.jitter_p99_us,
        "step_p50_us": h1.step_p50_us,
        "step_p99_us": h1.step_p99_us,
        "commands": counts["commands"],
        "commands_hz": counts["commands"] / seconds,
        "instruct_heartbeats": len(ins),
        "instruct_ticks": ins[-1][1].ticks - ins[0][1].ticks if len(ins) >= 2 else 0,
        "specs_in_window": counts["specs"],
        "load1": round(load, 2),
    }


def _run(nodes: dict[str, Any], phases: Sequence[Phase], run_dir: Path,
         spec_seen: threading.Event | None = None, rt_priority: int = 0
         ) -> tuple[dict[str, Any], _Probe]:
    """Run ``nodes`` in realtime in this process's launcher until ``phases`` are measured;
    with ``rt_priority`` the controller and the sim run SCHED_FIFO from when every node is
    up (set by pid, as ``chrt`` would): a real-time controller beside a sim starved by the
    other nodes' start-up trips its state watchdog (a latched fault)."""
    from reflexarc.runtime.config import from_mapping
    from reflexarc.runtime.launcher import Launcher, RunConfig

    cfg = from_mapping(RunConfig, {"graph": {"nodes": nodes}, "run_dir": str(run_dir),
                                   # a starved process on a loaded machine is not hung:
                                   # its stalls show in the figures, not as a kill
                                   "heartbeat_hz": 5.0, "silent_timeout_s": 10.0})
    launcher = Launcher(cfg)
    probe = _Probe(launcher, phases, spec_seen or threading.Event(),
                   rt={"sim": rt_priority, "controller": rt_priority} if rt_priority else None)
    probe.start()
    try:
        summary = launcher.run()
    finally:
        probe.stop_event.set()
        probe.join(timeout=5.0)
    return summary, probe


def _rows(summary: dict[str, Any], probe: _Probe, backend: str, extra: dict[str, dict[str, Any]]
          ) -> list[dict[str, Any]]:
    trouble = " ".join(f"{e['node']}:{e['event']}" for e in summary["events"]
                       if e["event"] in ("silent", "died"))
    rows = []
    for ph in probe.phases:
        w = probe.results.get(ph.name, {"error": probe.error or "not measured"})
        error = " ".join(x for x in (w.get("error", ""), trouble) if x)
        rows.append({"variant": ph.name, "backend": backend, "ok": bool(summary["ok"] and not error),
                     **{k: v for k, v in w.items() if k != "error"}, **extra.get(ph.name, {}),
                     "error": error})
    return rows


def measure_no_instruct(backend: str = "mujoco", seconds: float = 10.0,
                        run_dir: str | Path | None = None, rt_priority: int = 0) -> list[dict[str, Any]]:
    """The control graph without an instruct node: one row (``no_instruct``)."""
    with tempfile.TemporaryDirectory(prefix="bench-instruct-") as tmp:
        summary, probe = _run(control_nodes(backend, None), [Phase("no_instruct", seconds)],
                              Path(run_dir or Path(tmp) / "no_instruct"), rt_priority=rt_priority)
    return _rows(summary, probe, backend, {})


def measure_hang(backend: str = "mujoco", seconds: float = 10.0,
                 run_dir: str | Path | None = None, rt_priority: int = 0) -> list[dict[str, Any]]:
    """The control graph with an instruct node: rows ``instruct_idle``, ``llm_hangs``
    (an escalating instruction sent, the LLM server holding the request) and
    ``after_answer`` (the server released, the node's spec published)."""
    from reflexarc.planner.instruct.node import ask

    release = threading.Event()
    answer: Any = reply(refusal="the bench released the held call")
    for _ in range(math.ceil((seconds + 120.0) / 30.0)):  # the server holds 30 s per link
        answer = ("hold", release, answer)
    said: list[Any] = []
    requests: dict[str, dict[str, Any]] = {}  # phase -> LLM requests made when its window closed
    spec_seen = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-instruct-") as tmp, ChatServer([answer]) as server:
        listen = f"ipc://{tmp}/say.sock"
        instruct = {"listen": listen, "llm": {"base_url": server.url, "model": "bench-hangs",
                                              "timeout_s": 60.0, "retries": 3}}

        def closed(name: str, then: Callable[[], None]) -> Callable[[], None]:
            def begin() -> None:
                requests[name] = {"llm_requests": len(server.requests)}
                then()
            return begin

        def say() -> None:  # as `reflexarc say` does, waiting for the answer in a thread
            threading.Thread(target=lambda: said.append(ask(listen, HANGING, 300.0)),
                             daemon=True).start()

        phases = [
            Phase("instruct_idle", seconds),
            Phase("llm_hangs", seconds, closed("instruct_idle", say), server.received),
            Phase("after_answer", seconds, closed("llm_hangs", release.set), spec_seen),
        ]
        summary, probe = _run(control_nodes(backend, instruct), phases,
                              Path(run_dir or Path(tmp) / "llm_hangs"), spec_seen, rt_priority)
        release.set()
        requests["after_answer"] = {"llm_requests": len(server.requests)}
    rows = _rows(summary, probe, backend, requests)
    answered = said[0] if said else None
    rows[-1]["spec"] = "" if answered is None else (answered.refusal or answered.target)
    return rows


# --------------------------------------------------------------------------------------
# The instruction set, carried out by the planner from pixels
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One instruction of the set: what the spec must say and how it is understood.

    ``path``: ``fast`` (the fast parser is sure of it) or ``llm`` (it is not: it goes to
    the LLM, here the scripted local server answering ``reply``, as a model that understood
    it would). ``object`` None: the block depends on the scene ("the leftmost block").
    """

    text: str
    path: str
    task: str
    object: str | None
    target: str  # the spec's target, e.g. "direction:left:0.100"
    # the scripted LLM's answer (asked for every text with path=llm), or a function of the
    # request body giving it
    reply: dict[str, Any] | Callable[[Any], dict[str, Any]]


def _leftmost(body: Any) -> str:
    """The leftmost (largest y) object the prompt's scene lists: what a model reading it
    would answer to "the leftmost block"."""
    import re

    system = body["messages"][0]["content"]
    found = re.findall(r"(\w+) \([^)]*cube\) at \(([-\d.]+), ([-\d.]+), ([-\d.]+)\)", system)
    return max(found, key=lambda f: float(f[2]))[0] if found else ""


def _case(text: str, path: str, task: str, obj: str | None, target: str, **answer: Any) -> Case:
    return Case(text, path, task, obj, target, reply(task=task, **answer))


INSTRUCTION_SET: tuple[Case, ...] = (
    # push: the named block among three, 10 cm or to a place
    _case("push the red block to the left", "fast", "push", "red", "direction:left:0.100",
          object="red", target_type="direction", direction="left"),
    _case("push the green block 10 cm forward", "fast", "push", "green", "direction:forward:0.100",
          object="green", target_type="direction", direction="forward", distance_m=0.1),
    _case("move the blue block to the right", "fast", "push", "blue", "direction:right:0.100",
          object="blue", target_type="direction", direction="right"),
    Case("push the leftmost block forward", "fast", "push", None, "direction:forward:0.100",
         lambda body: reply(task="push", object=_leftmost(body), target_type="direction",
                            direction="forward")),
    _case("wiggle the red block over to the near edge", "llm", "push", "red", "place:front",
          object="red", target_type="place", place="front"),
    _case("scooch the blue cube away from the robot", "llm", "push", "blue", "direction:forward:0.100",
          object="blue", target_type="direction", direction="forward"),
    # pick_place
    _case("put the green block in the middle of the table", "fast", "pick_place", "green",
          "place:center", object="green", target_type="place", place="center"),
    _case("pick up the blue block and place it 10 cm to the left", "fast", "pick_place", "blue",
          "direction:left:0.100", object="blue", target_type="direction", direction="left",
          distance_m=0.1),
    _case("place the red block next to the green one", "fast", "pick_place", "red", "next_to:green",
          object="red", target_type="relation", relation="next_to", reference="green"),
    _case("take the blue cube and drop it off near the red one", "llm", "pick_place", "blue",
          "next_to:red", object="blue", target_type="relation", relation="next_to", reference="red"),
    _case("carry the green cube over to the right side and let go", "llm", "pick_place", "green",
          "place:right", object="green", target_type="place", place="right"),
    # reach
    _case("reach above the red block", "fast", "reach", "red", "at:red",
          object="red", target_type="relation", relation="at", reference="red"),
    _case("move the hand to the center", "fast", "reach", "", "place:center",
          target_type="place", place="center"),
    _case("park the gripper above the blue cube", "llm", "reach", "blue", "at:blue",
          object="blue", target_type="relation", relation="at", reference="blue"),
)
"""Instructions across reach, push and pick_place (fast path and LLM path) that the
``instruction`` graph carries out from pixels: ``reflexarc bench instruct texts=N`` and
tests/planner/instruct/test_instruct_texts.py."""


def run_texts(backend: str = "mujoco", cases: Sequence[Case] = INSTRUCTION_SET, seeds: int = 1,
              seed: int = 0, path: str = "auto", run_dir: str | Path | None = None,
              overrides: Sequence[str] = (), in_process: bool = False,
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``graph=instruction`` (lockstep) once for the whole set: episode ``i`` (seed
    ``seed + i``) is told ``cases[i % len(cases)].text``, ``seeds`` episodes per text. The
    instruct node asks a scripted chat-completions server on 127.0.0.1 for what its fast
    parser is unsure of (``path="llm"``: for every text). One row per episode: the case,
    its spec, the episode's result; and the run's summary. ``in_process``: the same graph's
    nodes stepped in this process (reflexarc/tools/inprocess.py) instead of the launcher's
    processes: the same episodes for about a quarter of the CPU time."""
    from reflexarc.planner.instruct.testing import by_instruction
    from reflexarc.runtime.api import configure, run

    if path not in ("auto", "llm"):
        raise ValueError(f"path {path!r}: allowed auto, llm")
    texts = [c.text for c in cases]
    with tempfile.TemporaryDirectory(prefix="bench-instruct-texts-") as tmp, \
            ChatServer([by_instruction({c.text: c.reply for c in cases})]) as server:
        keys = {"task": "instruction", "backend": backend, "clock": "lockstep",
                "episodes": len(cases) * seeds, "seed": seed}
        args: dict[str, Any] | list[str] = {
            "graph.nodes.evaluator.args.instructions": texts,
            "graph.nodes.instruct.args.listen": "",
            "graph.nodes.instruct.args.memory": False,
            "graph.nodes.instruct.args.fast": path == "auto",
            "graph.nodes.instruct.args.llm.base_url": server.url,
            "graph.nodes.instruct.args.llm.model": "scripted",
            "graph.nodes.instruct.args.llm.api_key": "local",
            "graph.nodes.instruct.args.llm.timeout_s": 10.0,
        } if not overrides else list(overrides) + [
            f"graph.nodes.instruct.args.llm.base_url={server.url}"]
        if in_process:
            from reflexarc.tools.inprocess import config_episodes

            summary = config_episodes(configure("instruction", overrides=args, **keys))
            # the instruct node's run figures (its specs), merged as the launcher merges them
            summary.update(summary["node_figures"].get("instruct", {}).get("run", {}))
        else:
            summary = run(
                "instruction", run_dir=str(run_dir or Path(tmp) / "run"),
                # a process starved for CPU on a shared machine is not hung
                heartbeat_hz=2, silent_timeout_s=20, hung_timeout_s=30, overrides=args, **keys,
            ).summary
        llm_requests = len(server.requests)
    specs = list(summary.get("specs") or [])
    rows = []
    for i, ep in enumerate(summary.get("episode_results") or []):
        case = cases[i % len(cases)]
        spec = next((s for s in specs if s.get("instruction") == case.text
                     and s.get("_episode_row") is None), None)
        if spec is not None:
            spec["_episode_row"] = i  # each spec answers one episode, in order
        rows.append({"backend": backend, "path_asked": path, "case": case, "text": case.text,
                     "spec": {k: v for k, v in (spec or {}).items() if k != "_episode_row"},
                     "episode": ep})
    summary["llm_requests"] = llm_requests
    return rows, summary


def case_problems(case: Case, spec: dict[str, Any], ep: dict[str, Any], path: str = "auto",
                  others_m: float = 0.02) -> list[str]:
    """Why an episode of ``case`` does not count as carried out ([] when it does): its
    spec says what the case says, by the expected path; the episode succeeded; the named
    block ended within its tolerance of the target; the other blocks moved at most
    ``others_m``."""
    problems = []
    if ep.get("instruction") != case.text:
        problems.append(f"the episode was told {ep.get('instruction')!r}")
    if not spec:
        problems.append("no spec")
        return problems
    if spec.get("refusal"):
        problems.append(f"refused: {spec['refusal']}")
        return problems
    want_source = "llm" if path == "llm" else case.path
    got = (spec.get("task"), spec.get("target"), spec.get("source"))
    if got != (case.task, case.target, want_source):
        problems.append(f"spec {got} != {(case.task, case.target, want_source)}")
    if case.object is not None and spec.get("object") != case.object:
        problems.append(f"spec object {spec.get('object')!r} != {case.object!r}")
    if ep.get("refusal"):
        problems.append(f"episode without a task: {ep['refusal']}")
        return problems
    tol = ep.get("tolerance_m") or 0.02
    if case.task != "reach":
        end, target = np.asarray(ep["object_to"]), np.asarray(ep["target"])
        if ep.get("object") != spec.get("object"):
            problems.append(f"the sim scored {ep.get('object')!r}")
        # the sim's own distance, unrounded (the summary rounds places to 0.1 mm)
        miss = float(ep.get("final_distance_m", np.linalg.norm(end[:2] - target[:2])))
        if not miss < tol or float(np.linalg.norm(end[:2] - target[:2])) > tol + 5e-4:
            problems.append(f"{spec.get('object')} ended {100 * miss:.1f} cm from its target")
    elif not ep.get("task_success"):
        problems.append(f"the hand ended {100 * ep.get('final_distance_m', float('nan')):.1f} cm "
                        "from its target")
    if (ep.get("others_moved_m") or 0.0) > others_m:
        problems.append(f"another block moved {100 * ep['others_moved_m']:.1f} cm")
    if not ep.get("success") and not problems:
        problems.append("not a success")
    return problems


def bench_texts(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench instruct texts=N``: the instruction set, N seeds per text, on
    ``backend`` through ``path``; one row per text (successes over its seeds, the path its
    specs took, why episodes failed) and a total row."""
    rows, summary = run_texts(cfg.backend, seeds=cfg.texts, path=cfg.path)
    out: list[dict[str, Any]] = []
    for case in INSTRUCTION_SET:
        mine = [r for r in rows if r["case"] is case]
        fails = [case_problems(case, r["spec"], r["episode"], cfg.path) for r in mine]
        sources = sorted({r["spec"].get("source", "") for r in mine} - {""})
        secs = [r["episode"]["time_to_success_s"] for r, f in zip(mine, fails, strict=True)
                if not f and r["episode"].get("time_to_success_s") is not None]
        # refused: the instruction cannot be done in that seed's scene (its target outside
        # the area, or where another block stands): a refusal with the reason, not a guess
        refused = sum(bool(r["spec"].get("refusal")) for r in mine)
        out.append({
            "text": case.text, "task": case.task, "backend": cfg.backend, "path": "/".join(sources),
            "ok": sum(not f for f in fails), "n": len(mine), "refused": refused,
            "s_to_success": round(float(np.mean(secs)), 2) if secs else None,
            "seeds": ",".join(str(r["episode"].get("seed")) for r in mine),
            "failed": "; ".join(f"seed {r['episode'].get('seed')}: {', '.join(f)}"
                                for r, f in zip(mine, fails, strict=True) if f),
        })
    ok, n = sum(r["ok"] for r in out), sum(r["n"] for r in out)
    refused = sum(r["refused"] for r in out)
    out.append({"text": "all", "task": "", "backend": cfg.backend, "path": cfg.path, "ok": ok, "n": n,
                "refused": refused, "share": round(ok / max(n, 1), 3),
                "share_of_feasible": round(ok / max(n - refused, 1), 3),
                "run_s": round(summary.get("seconds", 0.0), 1),
                "llm_requests": summary["llm_requests"]})
    return out


SCHEDULING = {"timeshared": 0, "sched_fifo": 50}
"""Graph variants: controller and sim time-shared, or both SCHED_FIFO at this priority (as
``bench control``; needs CAP_SYS_NICE, else it is logged and they run time-shared)."""


def bench_instruct(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench instruct``: the fast path's row, then the graph rows for each
    :data:`SCHEDULING` (``quick``: time-shared only), compact; with ``texts=N`` the
    instruction set instead (:func:`bench_texts`)."""
    if cfg.texts:
        return bench_texts(cfg)
    seconds = min(cfg.seconds, 3.0) if cfg.quick else cfg.seconds
    fast = bench_fast(repeats=50 if cfg.quick else 200)
    rows: list[dict[str, Any]] = [{"variant": "fast_path", "sched": "", "ok": True,
                                   "step50_us": fast["p50_us"], "step99_us": fast["p99_us"]}]
    scheds = ["timeshared"] if cfg.quick else list(SCHEDULING)
    progress = Progress("bench instruct", len(scheds), "schedulings", every_s=0.0)
    progress.update(0, "fast path done")
    for done, sched in enumerate(scheds):
        rt = SCHEDULING[sched]
        measured = (measure_no_instruct(cfg.backend, seconds, rt_priority=rt)
                    + measure_hang(cfg.backend, seconds, rt_priority=rt))
        progress.update(done + 1, sched)
        for r in measured:
            rows.append({
                "variant": r["variant"], "sched": sched, "ok": r["ok"], "rate_hz": r.get("rate_hz"),
                "miss_share": r.get("miss_share"), "jit50_us": r.get("jitter_p50_us"),
                "jit99_us": r.get("jitter_p99_us"), "step50_us": r.get("step_p50_us"),
                "step99_us": r.get("step_p99_us"), "cmd_hz": r.get("commands_hz"),
                "ins_hb": r.get("instruct_heartbeats"), "llm_req": r.get("llm_requests", 0),
                "specs": r.get("specs_in_window"), "load1": r.get("load1"),
                **({"error": r["error"]} if r["error"] else {}),
            })
    return rows


def main(argv: Sequence[str] = ()) -> int:
    repeats = int(argv[0]) if argv else 200
    print(json.dumps(bench_fast(repeats=repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
