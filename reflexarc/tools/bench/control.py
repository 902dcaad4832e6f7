"""``reflexarc bench control``: the 1 kHz controller measured, and its tracking plotted.

Two parts:

- **Realtime graph** (rows ``part=graph``): the whole graph runs in realtime -- sim
  (``command: joint``, physics 1 kHz, push task), controller (1 kHz), recorder, and the
  scripted expert publishing Plans (``reflexarc.sim.policy_node`` with ``output: plan``, 10 Hz).
  A probe listening to the heartbeats opens a window once the controller runs and
  closes it ``seconds`` later; over it: achieved rate, share of missed deadlines,
  jitter and step time p50/p99 (the runtime's figures); from the controller's summary:
  its own compute time, frame-to-command latency, state age, safety events. Variants
  (:data:`VARIANTS`): time-shared scheduling with the sim rendering its camera, the same
  without rendering, and the controller and sim under SCHED_FIFO. ``load1`` is the
  machine's load before each run (other users included).
- **Tracking** (rows ``part=tracking``): a step and a circle of EE setpoints tracked by
  the controller in closed loop with each backend's scene, in process and deterministic
  (commands applied two ticks late, as over the bus): step rise time, overshoot,
  settling time and final error; circle RMS and max error. A PNG per backend is written
  beside ``out`` (``<out stem>_tracking_<backend>.png``).

The scripted trajectories come from :class:`reflexarc.planner.scripted.ScriptedPlanner`,
the node the shipped graphs use too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.planner.tracking import (
    CIRCLE,
    STEP,
    TrackLog,
    circle_metrics,
    closed_loop,
    step_metrics,
)
from reflexarc.robot.controller import set_realtime
from reflexarc.runtime.progress import Progress

log = logging.getLogger(__name__)


def tracking(backend: str, quick: bool = False, png: str | Path | None = None) -> list[dict[str, Any]]:
    """Step and circle tracking rows for ``backend`` (and their plot in ``png``)."""
    step = closed_loop(backend, STEP, 1.5 if quick else 2.5)
    circle = closed_loop(backend, CIRCLE, 2.7 if quick else 4.7)
    rows = [
        {"part": "tracking", "backend": backend, "trajectory": "step", **step_metrics(step, STEP)},
        {"part": "tracking", "backend": backend, "trajectory": "circle",
         **circle_metrics(circle, CIRCLE)},
    ]
    if png:
        plot_tracking(backend, step, circle, png)
        for r in rows:
            r["png"] = str(png)
    return rows


def plot_tracking(backend: str, step: TrackLog, circle: TrackLog, path: str | Path) -> None:
    """Step response per axis and the circle in the y-z plane, with their errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    for i, name in enumerate("xyz"):
        ax[0, 0].plot(step.t, 1e3 * (step.desired[:, i] - step.desired[0, i]), "k--", lw=0.8)
        ax[0, 0].plot(step.t, 1e3 * (step.ee[:, i] - step.desired[0, i]), label=f"EE {name}")
    ax[0, 0].set(title=f"step ({backend})", xlabel="t [s]", ylabel="displacement [mm]")
    ax[0, 0].legend(loc="lower right")
    err = 1e3 * np.linalg.norm(step.ee - step.desired, axis=1)
    ax[1, 0].semilogy(step.t, np.maximum(err, 1e-3))
    ax[1, 0].axhline(1.0, color="r", lw=0.6)
    ax[1, 0].set(title="step: |EE - target|", xlabel="t [s]", ylabel="mm")
    ax[0, 1].plot(circle.desired[:, 1], circle.desired[:, 2], "k--", lw=0.8, label="plan")
    ax[0, 1].plot(circle.ee[:, 1], circle.ee[:, 2], lw=1.0, label="EE")
    ax[0, 1].set(title=f"circle ({backend})", xlabel="y [m]", ylabel="z [m]", aspect="equal")
    ax[0, 1].legend(loc="upper right")
    cerr = 1e3 * np.linalg.norm(circle.ee - circle.desired, axis=1)
    ax[1, 1].plot(circle.t, cerr)
    ax[1, 1].set(title="circle: |EE - plan|", xlabel="t [s]", ylabel="mm")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# The realtime graph
# --------------------------------------------------------------------------------------


def control_graph(
    backend: str, task: str = "push", camera_hz: float = 30.0, sim_hz: int = 1000,
    rt_priority: int = 0,
) -> dict[str, Any]:
    """Nodes of the measured graph: sim (joint commands), controller, expert planner
    (plans), recorder -- as in configs/graph/control.yaml. The controller runs SCHED_FIFO
    at ``rt_priority`` if > 0, else time-shared (``sched: other``, not its default)."""
    sched = ({"sched": "fifo", "sched_priority": rt_priority} if rt_priority > 0
             else {"sched": "other"})
    return {
        "sim": {"target": "reflexarc.sim.node:SimNode", "rate_hz": sim_hz,
                "args": {"backend": backend, "command": "joint",
                         "camera_hz": camera_hz, "cameras": ["front"], "state_hz": 100.0}},
        "evaluator": {"target": "reflexarc.sim.evaluator:EvaluatorNode", "rate_hz": 50,
                      "args": {"task": task, "backend": backend, "episodes": 0,
                               "publish_goal": camera_hz > 0}},
        "controller": {"target": "reflexarc.robot.controller:ControllerNode", "rate_hz": 1000,
                       **sched},
        "expert": {"target": "reflexarc.sim.policy_node:PolicyNode", "rate_hz": 10,
                   "args": {"task": task, "output": "plan"}},
        "recorder": {"target": "reflexarc.runtime.recorder:Recorder", "rate_hz": 100},
    }


class _Probe(threading.Thread):
    """Listens to the graph's heartbeats; measures the controller over a steady window.

    The window opens ``settle_s`` after the controller first reports ``running`` (the
    graph is up and plans flow) and closes ``seconds`` later; the launcher is then
    asked to stop. Loop figures over the window come from the differences of the
    heartbeat counters (ticks, misses); jitter and step-time percentiles from the last
    heartbeat (the runtime keeps the last 4096 ticks: the window's end).
    """

    def __init__(self, launcher: Any, seconds: float, settle_s: float = 1.0,
                 startup_timeout_s: float = 90.0, rt: dict[str, int] | None = None) -> None:
        super().__init__(daemon=True)
        self.rt = dict(rt or {})  # node -> SCHED_FIFO priority, set once the node is up
        self.launcher = launcher
        self.seconds = seconds
        self.settle_s = settle_s
        self.startup_timeout_s = startup_timeout_s
        self.result: dict[str, Any] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        with self.launcher.listen(["heartbeat"], "bench-probe") as sub:
            t_begin = time.monotonic()
            opened: float | None = None
            first: tuple[float, Any] | None = None
            last: tuple[float, Any] | None = None
            sims: list[tuple[float, Any]] = []
            try:
                while not self.stop_event.is_set():
                    now = time.monotonic()
                    if opened is None and now - t_begin > self.startup_timeout_s:
                        self.result = {"error": "the controller never reported running"}
                        return
                    if opened is not None and now - opened >= self.seconds:
                        break
                    if not sub.wait(0.05):
                        continue
                    for _, hb, _ in sub.drain():
                        t = time.monotonic()
                        if hb.node in self.rt:
                            set_realtime(self.rt.pop(hb.node), hb.node, pid=hb.pid)
                        if opened is None:
                            if hb.node == "controller" and hb.state == "running":
                                opened = t + self.settle_s
                            continue
                        if t < opened:
                            continue
                        if hb.node == "sim":
                            sims.append((t, hb))
                        elif hb.node == "controller":
                            first = first or (t, hb)
                            last = (t, hb)
                if first is None or last is None or last[0] <= first[0]:
                    self.result = {"error": "no controller heartbeats in the window"}
                    return
                (t0, h0), (t1, h1) = first, last
                ticks = h1.ticks - h0.ticks
                self.result = {
                    "window_s": t1 - t0,
                    "rate_hz": ticks / (t1 - t0),
                    "miss_share": (h1.misses - h0.misses) / max(1, ticks),
                    "misses": h1.misses - h0.misses,
                    "jitter_p50_us": h1.jitter_p50_us,
                    "jitter_p99_us": h1.jitter_p99_us,
                    "step_p50_us": h1.step_p50_us,
                    "step_p99_us": h1.step_p99_us,
                    "load1": os.getloadavg()[0],
                }
                if len(sims) >= 2:
                    (s0, g0), (s1, g1) = sims[0], sims[-1]
                    self.result["sim_rate_hz"] = (g1.ticks - g0.ticks) / (s1 - s0)
                    self.result["sim_step_p99_us"] = g1.step_p99_us
            finally:
                self.launcher.stop("bench window done")


def run_graph(
    nodes: dict[str, Any], seconds: float, run_dir: str | Path, window: bool = True,
    rt: dict[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``nodes`` in realtime in this process's launcher: with ``window``, until the
    controller has run ``seconds`` past its start-up (its window figures are returned
    too); else for ``seconds`` from launch. ``rt`` puts nodes under SCHED_FIFO (by pid,
    when their first heartbeat comes)."""
    from reflexarc.runtime.config import from_mapping
    from reflexarc.runtime.launcher import Launcher, RunConfig

    cfg = from_mapping(RunConfig, {"graph": {"nodes": nodes}, "run_dir": str(run_dir),
                                   "duration_s": 0.0 if window else seconds})
    launcher = Launcher(cfg)
    probe = _Probe(launcher, seconds, rt=rt) if window else None
    if probe is not None:
        probe.start()
    try:
        summary = launcher.run()
    finally:
        if probe is not None:
            probe.stop_event.set()
            probe.join(timeout=5.0)
    return summary, (probe.result if probe is not None else {})


def graph_row(
    summary: dict[str, Any], window: dict[str, Any], label: str, load_before: float
) -> dict[str, Any]:
    """The controller's figures (flat): loop figures over the steady window, the rest
    from its summary (the whole run)."""
    path = Path(summary["run_dir"]) / "controller.summary.json"
    figs = json.loads(path.read_text()) if path.exists() else {}
    ticks = figs.get("mode_ticks", {})
    events = figs.get("safety_events", {})
    return {
        "part": "graph",
        "variant": label,
        "ok": bool(summary["ok"] and "error" not in window),
        "window_s": window.get("window_s"),
        "rate_hz": window.get("rate_hz", 0.0),
        "miss_share": window.get("miss_share", 1.0),
        "jitter_p50_us": window.get("jitter_p50_us"),
        "jitter_p99_us": window.get("jitter_p99_us"),
        "step_p50_us": window.get("step_p50_us"),
        "step_p99_us": window.get("step_p99_us"),
        "compute_p50_us": figs.get("compute_p50_us"),  # the controller's own step() only
        "compute_p99_us": figs.get("compute_p99_us"),
        "plan_age_p50_ms": figs.get("plan_age_p50_ms"),  # age of the plan being tracked
        "plan_age_p99_ms": figs.get("plan_age_p99_ms"),
        "state_age_p99_ms": figs.get("state_age_p99_ms"),
        "track_err_p99_mm": figs.get("track_err_p99_mm"),
        "running_share": ticks.get("running", 0) / max(1, sum(ticks.values())),
        "safety_events": " ".join(f"{k}:{v}" for k, v in sorted(events.items())),
        "sim_rate_hz": window.get("sim_rate_hz"),
        "success_rate": summary.get("success_rate"),
        "episodes": summary.get("episodes"),
        "sched": figs.get("sched"),
        "load1": load_before,
        "cores": os.cpu_count(),
        "error": window.get("error", ""),
    }


# --------------------------------------------------------------------------------------
# The default job (graph pixels) with the controller SCHED_FIFO and time-shared
# --------------------------------------------------------------------------------------

# name: the controller's scheduling, CPU-bound background processes (``load=``)
PIXELS_VARIANTS: dict[str, dict[str, Any]] = {
    "fifo": {"sched": "fifo", "load": 0},
    "timeshared": {"sched": "other", "load": 0},
    "fifo_load4": {"sched": "fifo", "load": 4},
    "timeshared_load4": {"sched": "other", "load": 4},
}


def pixels_run(sched: str, load: int, seconds: float, run_dir: Path,
               extra: list[str] | None = None) -> dict[str, Any]:
    """One run of the default job (``reflexarc run``: graph pixels, MuJoCo push) for
    ``seconds`` with the controller under ``sched`` beside ``load`` CPU-bound processes;
    the run's summary. The controller's state timeout is 5 s (not the graph's 0.5 s): on a
    loaded machine a starved sim's pause would latch its fault, and a faulted controller
    computes nothing to measure."""
    from reflexarc.runtime.config import load as load_config
    from reflexarc.runtime.launcher import Launcher

    cfg = load_config("run", [
        f"duration_s={seconds}", "episodes=1000", f"run_dir={run_dir}", f"load={load}",
        f"graph.nodes.controller.sched={sched}",
        "++graph.nodes.controller.args.safety.state_timeout_s=5", *(extra or [])])
    cfg.graph.report = ""  # no video or plot: the figures only
    return Launcher(cfg).run()


def pixels_row(summary: dict[str, Any], label: str, load_before: float) -> dict[str, Any]:
    """The controller's figures and the planner's beside them, from their summaries."""
    run_dir = Path(summary["run_dir"])

    def figs(node: str) -> dict[str, Any]:
        path = run_dir / f"{node}.summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    c, p, sim = figs("controller"), figs("planner"), figs("sim")
    planner_s = p.get("ticks", 0) / p["rate_hz"] if p.get("rate_hz") else 0.0
    return {
        "part": "pixels",
        "variant": label,
        "ok": bool(summary.get("ok")),
        "why_not_ok": "; ".join(summary.get("reasons", [])),
        "sched": c.get("sched"),
        "load_procs": PIXELS_VARIANTS.get(label, {}).get("load"),
        "rate_hz": c.get("rate_hz"),
        "miss_share": c.get("miss_share"),
        # the controller's step() on the ticks that tracked (the kernel ran)
        "step_p50_us": c.get("compute_tracking_p50_us"),
        "step_p99_us": c.get("compute_tracking_p99_us"),
        # the runtime's whole tick: receive + step + publish
        "tick_p50_us": c.get("step_p50_us"),
        "tick_p99_us": c.get("step_p99_us"),
        "recv_p50_us": c.get("recv_p50_us"),
        "publish_p50_us": c.get("publish_p50_us"),
        "jitter_p99_us": c.get("jitter_p99_us"),
        "ctrl_cpu_share": c.get("cpu_share"),  # of one core, its threads included
        # the plant beside it: its loop's rate, and how old the joint state the controller
        # used was (a starved sim shows in both)
        "sim_rate_hz": sim.get("rate_hz"),
        "state_age_p50_ms": c.get("state_age_p50_ms"),
        "planner_solves_per_s": p.get("solves", 0) / planner_s if planner_s else 0.0,
        "plan_ms_p50": summary.get("plan_ms_p50"),
        "plan_ms_p99": summary.get("plan_ms_p99"),
        "frame_to_plan_ms_p50": p.get("frame_to_plan_ms_p50"),
        "planner_cpu_share": p.get("cpu_share"),
        "successes": summary.get("successes", summary.get("success_rate")),
        "load1": load_before,
        "loadavg_max": summary.get("loadavg_max"),
        "cores": os.cpu_count(),
    }


def bench_pixels(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench control graphs=[pixels]``: the default job with the controller
    SCHED_FIFO and time-shared, quiet and beside 4 CPU-bound processes (one run each,
    ``seconds`` long, in :data:`PIXELS_VARIANTS` order)."""
    names = ["fifo"] if cfg.quick else list(PIXELS_VARIANTS)
    seconds = min(cfg.seconds, 5.0) if cfg.quick else cfg.seconds
    rows = []
    progress = Progress("bench control pixels", len(names), "runs", every_s=0.0)
    with tempfile.TemporaryDirectory(prefix="bench-pixels-") as tmp:
        for i, name in enumerate(names):
            v = PIXELS_VARIANTS[name]
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            summary = pixels_run(v["sched"], v["load"], seconds, Path(tmp) / name,
                                 [f"backend={cfg.backend}"])
            row = pixels_row(summary, name, load)
            row["wall_s"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            progress.update(i + 1, f"pixels {name}")
    return rows


VARIANTS: dict[str, dict[str, Any]] = {
    # name: camera rate of the sim, SCHED_FIFO priority of controller and sim (0: none)
    "timeshared": {"camera_hz": 30.0, "rt": 0},
    "timeshared_no_render": {"camera_hz": 0.0, "rt": 0},
    "sched_fifo": {"camera_hz": 30.0, "rt": 50},
}


def bench_control(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench control``: rows of the realtime graph and of tracking.

    Graph variants (:data:`VARIANTS`): the controller time-shared (``sched: other``; its
    default is SCHED_FIFO) with the sim rendering its camera at 30 Hz, the same without
    rendering, and the controller and the sim under SCHED_FIFO at priority 50 (the
    controller's by its graph entry; the sim's set by pid here, as ``chrt`` would), each
    measured over ``seconds`` after start-up.
    """
    if "pixels" in cfg.graphs:
        return bench_pixels(cfg)
    seconds = min(cfg.seconds, 3.0) if cfg.quick else cfg.seconds
    rows: list[dict[str, Any]] = []
    out = Path(cfg.out) if cfg.out else None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    names = ["timeshared"] if cfg.quick else list(VARIANTS)
    backends = [cfg.backend] if cfg.quick else ["mujoco", "pybullet"]
    progress = Progress("bench control", len(names) + len(backends), "cases", every_s=0.0)
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        for name in names:
            v = VARIANTS[name]
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            summary, window = run_graph(
                control_graph(cfg.backend, camera_hz=v["camera_hz"], rt_priority=v["rt"]),
                seconds, Path(tmp) / name, rt={"sim": v["rt"]} if v["rt"] else None,
            )
            row = graph_row(summary, window, name, load)
            row["wall_s"] = round(time.monotonic() - t0, 2)
            rows.append(row)
            progress.update(names.index(name) + 1, f"graph {name}")
    for i, backend in enumerate(backends):
        png = out.with_name(f"{out.stem}_tracking_{backend}.png") if out else None
        rows.extend(tracking(backend, quick=cfg.quick, png=png))
        progress.update(len(names) + i + 1, f"tracking {backend}")
    return rows
