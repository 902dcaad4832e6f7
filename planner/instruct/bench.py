"""``reflexarc bench instruct``: the fast path's latency, and the 1 kHz controller while an
LLM call hangs.

- **Fast path** (row ``part=fast_path``; also ``python -m planner.instruct.bench``): times
  :meth:`Instructor.quick` (parse + resolve + TaskSpec, memory disabled) over a set of
  instructions, each repeated, one call per sample (``time.perf_counter_ns``).
- **Controller while the LLM hangs** (rows ``part=graph``): the control graph of ``bench
  control`` (sim with joint commands at 1 kHz physics, no camera; the 1 kHz controller;
  the scripted expert's plans at 10 Hz; no recorder) runs in realtime in three variants:
  ``no_instruct``; ``instruct_idle`` (an instruct node, nothing to understand);
  ``llm_hangs`` (an instruct node whose instruction escalates to an OpenAI-compatible
  server on 127.0.0.1 that accepts the request and never answers while measured). A probe
  on the bus opens a window ``settle_s`` after the controller runs (and, in ``llm_hangs``,
  the server holds the request) and closes it ``seconds`` later. Over the window: the
  controller's achieved rate, missed deadlines, jitter and step time p50/p99 (its
  heartbeats), joint commands received, the instruct node's heartbeats and ticks, and task
  specs published (none while the call hangs). ``load1`` is the load before each run.
  Compare the variants as ratios within one run: the machine is shared and noisy.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from planner.instruct.instructor import InstructConfig, Instructor
from planner.instruct.scene import SceneInfo
from planner.instruct.testing import ChatServer, reply

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

VARIANTS = ("no_instruct", "instruct_idle", "llm_hangs")


def control_nodes(backend: str, instruct: dict[str, Any] | None) -> dict[str, Any]:
    """The measured graph: ``bench control``'s (no camera, no recorder), plus an instruct
    node with ``instruct`` as its arguments (None: none)."""
    from robot.bench_control import control_graph

    nodes = control_graph(backend, camera_hz=0.0)
    nodes.pop("recorder", None)
    if instruct is not None:
        nodes["instruct"] = {"target": "planner.instruct.node:InstructNode", "rate_hz": 20,
                             "args": {"listen": "", "memory": False, **instruct}}
    return nodes


class _Probe(threading.Thread):
    """Counts on the bus: controller and instruct heartbeats, joint commands, task specs.

    The window opens ``settle_s`` after the controller first reports ``running`` and, when
    ``armed`` is given, the LLM server holds a request; it closes ``seconds`` later and the
    launcher is asked to stop.
    """

    def __init__(self, launcher: Any, seconds: float, armed: threading.Event | None,
                 settle_s: float = 1.0, startup_timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.launcher, self.seconds, self.armed = launcher, seconds, armed
        self.settle_s, self.startup_timeout_s = settle_s, startup_timeout_s
        self.result: dict[str, Any] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        from robot import bus as busmod

        cfg = self.launcher.cfg.bus
        zctx = busmod.context()
        security = busmod.Security(zctx, cfg)
        sub = busmod.Subscriber(zctx, list(self.launcher.addresses.values()),
                                ["heartbeat", "joint_command", "task_spec"], cfg, security,
                                "bench-probe")
        t_begin = time.monotonic()
        opened: float | None = None
        hbs: dict[str, list[tuple[float, Any]]] = {"controller": [], "instruct": []}
        commands = specs = specs_before = 0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if opened is None and now - t_begin > self.startup_timeout_s:
                    self.result = {"error": "the controller never ran (or the LLM got no request)"}
                    return
                if opened is not None and now - opened >= self.seconds:
                    break
                if not sub.wait(0.05):
                    continue
                for topic, msg, _ in sub.drain():
                    t = time.monotonic()
                    if opened is None:
                        if topic == "task_spec":
                            specs_before += 1
                        if (topic == "heartbeat" and msg.node == "controller" and msg.state == "running"
                                and (self.armed is None or self.armed.is_set())):
                            opened = t + self.settle_s
                        continue
                    if t < opened:
                        continue
                    if topic == "joint_command":
                        commands += 1
                    elif topic == "task_spec":
                        specs += 1
                    elif msg.node in hbs:
                        hbs[msg.node].append((t, msg))
            ctrl = hbs["controller"]
            if len(ctrl) < 2:
                self.result = {"error": "no controller heartbeats in the window"}
                return
            (t0, h0), (t1, h1) = ctrl[0], ctrl[-1]
            ticks = h1.ticks - h0.ticks
            ins = hbs["instruct"]
            self.result = {
                "window_s": t1 - t0,
                "rate_hz": ticks / (t1 - t0),
                "misses": h1.misses - h0.misses,
                "miss_share": (h1.misses - h0.misses) / max(1, ticks),
                "jitter_p50_us": h1.jitter_p50_us,
                "jitter_p99_us": h1.jitter_p99_us,
                "step_p50_us": h1.step_p50_us,
                "step_p99_us": h1.step_p99_us,
                "commands": commands,
                "commands_hz": commands / (t1 - t0),
                "instruct_heartbeats": len(ins),
                "instruct_ticks": ins[-1][1].ticks - ins[0][1].ticks if len(ins) >= 2 else 0,
                "instruct_step_p99_us": ins[-1][1].step_p99_us if ins else None,
                "specs_in_window": specs,
                "specs_before": specs_before,
            }
        finally:
            sub.close()
            security.close()
            zctx.term()
            self.launcher.reason = self.launcher.reason or "bench window done"
            self.launcher.stopping = True


def measure(variant: str, backend: str = "mujoco", seconds: float = 10.0,
            run_dir: str | Path | None = None) -> dict[str, Any]:
    """One row: the control graph in realtime with ``variant`` (:data:`VARIANTS`) of the
    instruct node, measured over a ``seconds`` window (see the module docstring)."""
    from robot.config import from_mapping
    from robot.errors import ConfigError
    from robot.launcher import Launcher, RunConfig

    if variant not in VARIANTS:
        raise ConfigError("variant", f"got {variant!r}; allowed: {', '.join(VARIANTS)}")
    release = threading.Event()
    server = None
    instruct: dict[str, Any] | None = None
    if variant == "instruct_idle":
        instruct = {}
    elif variant == "llm_hangs":
        answer: Any = reply(refusal="the bench released the hanging call")
        for _ in range(math.ceil((seconds + 120.0) / 30.0)):  # the server holds 30 s per link
            answer = ("hold", release, answer)
        server = ChatServer([answer])
        timeout_s = 60.0
        instruct = {"instruction": HANGING, "llm": {
            "base_url": server.url, "model": "bench-hangs", "timeout_s": timeout_s,
            "retries": min(5, math.ceil((seconds + 30.0) / timeout_s) - 1)}}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-instruct-") as tmp:
        cfg = from_mapping(RunConfig, {
            "graph": {"nodes": control_nodes(backend, instruct)},
            "run_dir": str(run_dir or Path(tmp) / variant), "heartbeat_hz": 5.0,
            "silent_timeout_s": 2.0})
        launcher = Launcher(cfg)
        probe = _Probe(launcher, seconds, server.received if server else None)
        probe.start()
        t0 = time.monotonic()
        try:
            summary = launcher.run()
        finally:
            probe.stop_event.set()
            probe.join(timeout=5.0)
            requests = len(server.requests) if server else 0
            release.set()
            if server is not None:
                server.close()
    w = probe.result
    silent = [e for e in summary["events"] if e["event"] in ("silent", "died")]
    return {
        "part": "graph", "variant": variant, "backend": backend,
        "ok": bool(summary["ok"] and "error" not in w and not silent),
        **{k: w.get(k) for k in ("window_s", "rate_hz", "misses", "miss_share", "jitter_p50_us",
                                 "jitter_p99_us", "step_p50_us", "step_p99_us", "commands_hz",
                                 "commands", "instruct_heartbeats", "instruct_ticks",
                                 "instruct_step_p99_us", "specs_in_window")},
        "llm_requests": requests,
        "events": " ".join(f"{e['node']}:{e['event']}" for e in silent),
        "load1": round(load, 2),
        "cores": os.cpu_count(),
        "wall_s": round(time.monotonic() - t0, 2),
        "error": w.get("error", ""),
    }


def bench_instruct(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench instruct``: the fast path's row, then the graph variants in
    interleaved rounds (one with ``quick``, else two), one compact row per run. The fast
    path's per-call times go in the step columns."""
    seconds = min(cfg.seconds, 3.0) if cfg.quick else cfg.seconds
    fast = bench_fast(repeats=50 if cfg.quick else 200)
    rows: list[dict[str, Any]] = [{"variant": "fast_path", "round": 0, "ok": True,
                                   "step50_us": fast["p50_us"], "step99_us": fast["p99_us"]}]
    for k in range(1 if cfg.quick else 2):
        for v in VARIANTS:
            r = measure(v, cfg.backend, seconds)
            rows.append({
                "variant": v, "round": k, "ok": r["ok"], "rate_hz": r["rate_hz"],
                "miss_share": r["miss_share"], "jit50_us": r["jitter_p50_us"],
                "jit99_us": r["jitter_p99_us"], "step50_us": r["step_p50_us"],
                "step99_us": r["step_p99_us"], "cmd_hz": r["commands_hz"],
                "ins_hb": r["instruct_heartbeats"], "llm_req": r["llm_requests"],
                "specs": r["specs_in_window"], "load1": r["load1"],
                **({"error": f"{r['error']} {r['events']}".strip()} if not r["ok"] else {}),
            })
    return rows


def main(argv: Sequence[str] = ()) -> int:
    repeats = int(argv[0]) if argv else 200
    print(json.dumps(bench_fast(repeats=repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
