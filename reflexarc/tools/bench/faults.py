"""``reflexarc bench faults``: faults injected into running graphs, and what the arm did.

Each case runs one graph in realtime (``control``: sim + controller + scripted expert;
``pixels``: sim + perception + planner + controller + recorder; ``bridge``: the pretend
arm behind the bridge + controller + a scripted planner drawing circles, graph
``bridge_scripted``), waits until the
controller has tracked plans for ``settle_s``, injects one fault, watches the arm for
``observe_s`` and stops the graph. Faults:

- ``kill:<node>`` (SIGKILL) and ``stop:<node>`` (SIGSTOP) of each node in turn; nodes
  other than the plant restart on death (``on_death: restart``), so the graph goes on
  and what the others do is seen.
- injected by a node added to the graph (:class:`Injector`, as any node of the graph
  could): ``nan_plan`` and ``huge_plan`` (plans of NaN, of 1e9 m), ``huge_torque`` (joint
  commands of 1e6 N m, 1e9 rad, for 0.2 s), ``estop_release`` (an e-stop, then an unsigned
  release 0.3 s later), ``forged_heartbeat`` (heartbeats naming the controller with its
  real pid while the controller is SIGSTOPped).
- ``bad_frames`` (bridge): frames that are not msgpack, a msgpack int and list, a map
  without type and a command of 1e6 N m, sent to the arm over the driver's own socket.

One row per case (docs/benchmarks.md, "Safety and faults"):

- ``detected_ms``: from the fault to the first sign of a reaction: a safety event of the
  controller (:data:`REACTIONS`), a heartbeat of the plant or controller saying ``holding``/``fault``/
  ``estop``, or a launcher event about the faulty node (heartbeats at 100 Hz here, so
  10 ms resolution); empty when nothing reacted.
- ``policy``: what reacted, from the run's summaries (plant hold, controller hold,
  e-stop kept, refused, clipped, restart, graph stopped...).
- ``drift_mm``: how far the end effector moved from where it was at the fault -- for the
  loss of a plan source (expert, planner, perception) from when the controller's plan
  watchdog fired, as the arm rightly runs on along its last plan until then; for
  ``estop_release`` from the refused release (the arm, stopped by the e-stop, must not
  move on; the e-stop's own braking is in ``drift_from_fault_mm``) -- while the
  fault lasted (until the faulty node's output flows again -- for ``forged_heartbeat``
  the SIGSTOPped controller's commands, once it was found and restarted -- at most the
  window, or an episode reset that teleports the arm: ``episode_reset_s``; the measured joint states
  through the arm's kinematics); ``drift_from_fault_mm`` always from the fault itself. Only for faults whose policy is
  to stop the arm (kills, stops, e-stop, forged heartbeats): with bad messages injected
  the graph goes on tracking its plans, and ``max_speed_share`` is what counts.
- ``max_speed_share``: the largest joint speed over the window as a share of its limit.
- ``data_lost_s``: the longest gap in the joint-state stream (and, for a node killed or
  stopped, in its own output) over the window.
- ``left_over``: processes of the run (nodes, the pretend arm) still alive after it.
- ``ctrl_compute_p50_us``/``_p99_us``: the controller's own step over the run (of its last
  process, when it was restarted).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.robot.guard import panda_limits
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.msgs import EStop, Heartbeat, JointCommand, Plan
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.progress import Progress
from reflexarc.sim.pretend_arm import PretendDriver

log = logging.getLogger(__name__)

TRIGGER = "inject.now"  # written in the run directory by the bench when the fault is due

#: node -> the topic its loss silences (data lost is measured on it)
OUTPUT = {"sim": "joint_state", "bridge": "joint_state", "controller": "joint_command",
          "expert": "plan", "planner": "plan", "perception": "latent", "recorder": ""}

GRAPHS: dict[str, list[str]] = {
    "control": ["sim", "controller", "expert"],
    "pixels": ["sim", "perception", "planner", "controller", "recorder"],
    "bridge": ["bridge", "controller", "planner"],
}
INJECTIONS: dict[str, list[str]] = {
    "control": ["nan_plan", "huge_plan", "huge_torque", "estop_release", "forged_heartbeat"],
    "pixels": ["nan_plan", "estop_release"],
    "bridge": ["huge_torque", "estop_release", "bad_frames", "forged_heartbeat"],
}
#: a joint state this far (rad) from the one before: a teleport (an episode reset), not motion
JUMP_RAD = 0.1
#: safety events that are reactions to a fault (limits clip in normal runs too)
REACTIONS = ("plan_timeout", "state_timeout", "estop", "release_refused", "invalid_plan",
             "workspace", "reset")
QUICK = [("control", "kill:controller"), ("control", "estop_release"), ("bridge", "bad_frames")]


# --------------------------------------------------------------------------------------
# What the added node injects
# --------------------------------------------------------------------------------------


class Injector(Node):
    """A node added to the graph that misbehaves once ``run_dir/inject.now`` exists.

    It declares only ``estop`` but publishes whatever its ``kind`` needs, as a faulty or
    hostile node could.
    """

    @dataclass
    class Config:
        kind: str = choice("nan_plan", "nan_plan", "huge_plan", "huge_torque", "estop_release",
                           "forged_heartbeat", "none")
        run_dir: str = ""
        release_after_s: float = bounded(0.3, 0.0, 10.0)  # estop_release
        burst_s: float = bounded(0.2, 0.0, 10.0)  # huge_torque, plans

    subscribes = {"joint_state": "latest"}
    publishes = ("estop",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.trigger = Path(cfg.run_dir) / TRIGGER
        self.start_ns: int | None = None
        self.released = False
        self.controller_pid = 0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        if self.start_ns is None:
            if not self.trigger.exists():
                return ()
            self.start_ns = now_ns
            if self.cfg.kind == "estop_release":
                return [("estop", EStop(stamp_ns=now_ns, engage=True, reason="bench faults"))]
            if self.cfg.kind == "forged_heartbeat":
                pids = json.loads((Path(self.cfg.run_dir) / "pids.json").read_text())
                self.controller_pid = int(pids.get("controller", 0))
        t = (now_ns - self.start_ns) / 1e9
        kind = self.cfg.kind
        if kind == "estop_release":
            if not self.released and t >= self.cfg.release_after_s:
                self.released = True
                return [("estop", EStop(stamp_ns=now_ns, engage=False, reason="anyone"))]
            return ()
        if kind == "forged_heartbeat":
            return [("heartbeat", Heartbeat(stamp_ns=now_ns, node="controller",
                                            pid=self.controller_pid, state="running",
                                            ticks=int(t * 1000), rate_hz=1000.0))]
        if t > self.cfg.burst_s:
            return ()
        if kind in ("nan_plan", "huge_plan"):
            value = np.nan if kind == "nan_plan" else 1e9
            return [("plan", Plan(stamp_ns=now_ns, t0_ns=now_ns, dt_ns=20_000_000,
                                  ee_pos=np.full((5, 3), value), ee_quat=np.zeros((0, 4)),
                                  gripper=np.zeros(0, np.float32)))]
        if kind == "huge_torque":
            return [("joint_command", JointCommand(
                stamp_ns=now_ns, mode="torque" if int(t * 100) % 2 == 0 else "position",
                position=np.full(7, 1e9), velocity=np.zeros(7), effort=np.full(7, 1e6),
                gripper=1.0))]
        return ()


class BadFramesDriver(PretendDriver):
    """The pretend arm's driver, which also sends malformed frames to the arm once
    ``run_dir/inject.now`` exists."""

    def __init__(self, run_dir: str = "", **kw: Any) -> None:
        super().__init__(**kw)
        self.trigger = Path(run_dir) / TRIGGER
        self.sent_bad = False

    def write_command(self, cmd: JointCommand) -> None:
        super().write_command(cmd)
        if not self.sent_bad and self.trigger.exists():
            import msgpack

            self.sent_bad = True
            sock = self._socket()
            huge = {"t": "cmd", "mode": "torque", "q": b"", "dq": b"",
                    "tau": np.full(7, 1e6).tobytes(), "g": 1.0}
            for frame in (b"\xc1\xff not msgpack", msgpack.packb(7), msgpack.packb([1, 2, 3]),
                          msgpack.packb({"no": "type"}), msgpack.packb(huge)):
                sock.send(frame)


# --------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------


def _graph(graph: str, backend: str, run_dir: Path, case: str) -> Any:
    """The RunConfig of one case: the graph, restarts on death, the injector."""
    from reflexarc.runtime.config import load

    name = {"control": "control", "pixels": "pixels", "bridge": "bridge_scripted"}[graph]
    cfg = load("run", [f"graph={name}", f"backend={backend}", "task=push", "episodes=1000",
                       f"run_dir={run_dir}", "heartbeat_hz=100"])
    nodes = cfg.graph.nodes
    for n, e in nodes.items():
        if n not in ("sim", "bridge"):
            e.on_death = "restart"
    if graph == "bridge":
        planner = nodes["planner"].args
        planner["trajectory"] = {"kind": "circle", "radius": 0.06, "period_s": 3.0}
        planner["duration_s"] = 0.0
        if case == "bad_frames":
            nodes["bridge"].args["driver"] = "reflexarc.tools.bench.faults:BadFramesDriver"
            nodes["bridge"].args["driver_args"] = {**nodes["bridge"].args["driver_args"],
                                                   "run_dir": str(run_dir)}
    if "evaluator" in nodes:  # the episodes are the evaluator's
        nodes["evaluator"].args["episode_s"] = 60.0
    if case in INJECTIONS[graph] and case != "bad_frames":
        from reflexarc.runtime.launcher import NodeEntry

        nodes["injector"] = NodeEntry(
            target="reflexarc.tools.bench.faults:Injector", rate_hz=200.0,
            args={"kind": case, "run_dir": str(run_dir)})
    cfg.graph.report = ""
    return cfg


# --------------------------------------------------------------------------------------
# Watching a run
# --------------------------------------------------------------------------------------


class _Watch(threading.Thread):
    """Records joint states, safety events and heartbeats; fires the fault on time."""

    def __init__(self, launcher: Any, case: str, settle_s: float, observe_s: float,
                 startup_timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.launcher = launcher
        self.case = case
        self.settle_s = settle_s
        self.observe_s = observe_s
        self.startup_timeout_s = startup_timeout_s
        self.states: list[tuple[float, np.ndarray, np.ndarray]] = []  # (t, q, dq)
        self.outputs: dict[str, list[float]] = {}
        self.signs: list[tuple[float, str]] = []  # (t, what): reactions seen
        self.fault_t: float | None = None
        self.error = ""
        self.stop_event = threading.Event()

    def _fire(self) -> None:
        verb, _, node = self.case.partition(":")
        run_dir = self.launcher.run_dir
        if verb in ("kill", "stop"):
            pid = self.launcher.pids()[node]
            os.kill(pid, signal.SIGKILL if verb == "kill" else signal.SIGSTOP)
        elif self.case == "forged_heartbeat":
            (run_dir / TRIGGER).write_text("now")
            time.sleep(0.05)  # the forger runs first
            os.kill(self.launcher.pids()["controller"], signal.SIGSTOP)
        else:
            (run_dir / TRIGGER).write_text("now")
        self.fault_t = time.monotonic()

    def run(self) -> None:
        topics = ["joint_state", "safety", "heartbeat", "plan", "joint_command", "latent"]
        with self.launcher.listen(topics, "bench-faults") as sub:
            t0 = time.monotonic()
            running_since: float | None = None
            try:
                while not self.stop_event.is_set():
                    now = time.monotonic()
                    if self.fault_t is None:
                        if running_since is None and now - t0 > self.startup_timeout_s:
                            self.error = "the controller never tracked a plan"
                            return
                        if running_since is not None and now - running_since >= self.settle_s:
                            self._fire()
                    elif now - self.fault_t >= self.observe_s:
                        return
                    if not sub.wait(0.005):
                        continue
                    for topic, msg, _ in sub.drain():
                        t = time.monotonic()
                        if topic == "joint_state":
                            self.states.append((t, msg.position.copy(), msg.velocity.copy()))
                        elif topic == "heartbeat":
                            if msg.node == "controller" and msg.state == "running" and running_since is None:
                                running_since = t
                            if self.fault_t is not None and msg.node in ("sim", "bridge", "controller") \
                                    and msg.state in ("holding", "fault", "estop"):
                                self.signs.append((t, f"{msg.node} {msg.state}"))
                        elif topic == "safety" and msg.kind in REACTIONS:
                            self.signs.append((t, f"{msg.node} {msg.kind}"))
                        if topic in ("joint_state", "plan", "joint_command", "latent"):
                            self.outputs.setdefault(topic, []).append(t)
            finally:
                self.launcher.stop("bench faults: window done")


def _left_over(run_dir: Path, bridge: dict[str, Any]) -> int:
    """Processes of the run still alive (pids.json and the pretend arm)."""
    import psutil

    pids: list[int] = []
    path = run_dir / "pids.json"
    if path.exists():
        pids = [v for k, v in json.loads(path.read_text()).items()
                if k not in ("launcher", "up") and isinstance(v, int)]
    if bridge.get("arm_pid"):
        pids.append(int(bridge["arm_pid"]))
    alive = 0
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive += 1
        except psutil.NoSuchProcess:
            pass
    return alive


def _figures(run_dir: Path, name: str) -> dict[str, Any]:
    p = run_dir / f"{name}.summary.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _policy(case: str, run_dir: Path, summary: dict[str, Any]) -> str:
    """What reacted, from the run's summaries and the launcher's events."""
    sim, ctrl, bridge = (_figures(run_dir, n) for n in ("sim", "controller", "bridge"))
    out = []
    if sim.get("holds"):
        out.append(f"sim hold x{sim['holds']}")
    if sim.get("overspeed_holds"):
        out.append(f"sim overspeed hold x{sim['overspeed_holds']}")
    if bridge.get("silent_stops"):
        out.append(f"bridge stop x{bridge['silent_stops']}")
    if bridge.get("arm_holds"):
        out.append(f"arm hold x{bridge['arm_holds']}")
    if bridge.get("arm_bad_frames"):
        out.append(f"arm dropped {bridge['arm_bad_frames']} bad frames")
    events = ctrl.get("safety_events", {})
    for kind in ("plan_timeout", "state_timeout", "invalid_plan", "workspace", "estop",
                 "release_refused", "reset"):
        if events.get(kind):
            out.append(f"controller {kind} x{events[kind]}")
    if bridge.get("releases_refused"):
        out.append(f"bridge refused {bridge['releases_refused']} release")
    for who, figs in (("sim", sim.get("guard", {})), ("bridge", bridge.get("guard", {})),
                      ("arm", bridge.get("arm_guard", {}))):
        clipped = sum(v for k, v in figs.items() if k.endswith("clipped"))
        if clipped and case in ("huge_torque", "bad_frames"):
            out.append(f"{who} clipped {clipped}")
    for ev in summary.get("events", []):
        if ev["event"] in ("silent", "died", "restart"):
            out.append(f"{ev['node']} {ev['event']}")
    if not summary.get("ok", True):
        out.append("graph stopped")
    return "; ".join(dict.fromkeys(out))


#: nodes whose loss stops the plans: the controller's plan watchdog is the reaction
PLAN_SOURCES = ("expert", "planner", "perception")


def _drift_from(case: str, node: str, ft: float, signs: list[tuple[float, str]]) -> float:
    """When drift starts to count: the fault itself, except

    - for the loss of a plan source, where the arm rightly runs on along its last plan
      until the controller's plan watchdog fires (then from that: the first ``controller
      plan_timeout``, or the controller holding or faulting for another reason; the fault
      if neither came);
    - for ``estop_release``, where the fault is the unsigned release: the arm, braking
      from the e-stop before it, must not move on after it (from the controller's
      ``release_refused``; the e-stop's own braking is ``drift_from_fault_mm``)."""
    if case == "estop_release":
        refused = sorted(t for t, what in signs if t >= ft and what == "controller release_refused")
        return refused[0] if refused else ft + Injector.Config.release_after_s
    if node not in PLAN_SOURCES:
        return ft
    mine = sorted(t for t, what in signs if t >= ft and what in (
        "controller plan_timeout", "controller holding", "controller fault",
        "controller state_timeout"))
    return mine[0] if mine else ft


def _row(graph: str, case: str, watch: _Watch, summary: dict[str, Any], arm: ArmKinematics,
         wall_s: float) -> dict[str, Any]:
    run_dir = Path(summary["run_dir"])
    lim = panda_limits()
    row: dict[str, Any] = {"graph": graph, "case": case}
    ft = watch.fault_t
    if ft is None:
        return row | {"error": watch.error or "the fault was never injected", "wall_s": wall_s}
    events_t = [(ev["t"] + watch.launcher.t0, f"{ev['node']} {ev['event']}")
                for ev in summary.get("events", []) if ev["event"] in ("silent", "died")]
    signs = sorted(s for s in watch.signs + events_t if s[0] >= ft)
    detected = signs[0][0] if signs else None
    row["detected_ms"] = None if detected is None else round(1e3 * (detected - ft), 1)
    row["first_sign"] = signs[0][1] if signs else ""
    row["policy"] = _policy(case, run_dir, summary)
    end = ft + watch.observe_s
    verb, _, node = case.partition(":")
    if case == "forged_heartbeat":  # the controller is the node stopped (its heartbeats forged)
        node = "controller"
    # the fault lasts until the faulty node's output flows again (the end of its longest
    # gap); injected messages last the whole window
    until = end
    lost = 0.0
    for topic in ["joint_state"] + ([OUTPUT[node]] if OUTPUT.get(node) else []):
        ts = np.array([ft, *[t for t in watch.outputs.get(topic, []) if t >= ft], end])
        gaps = np.diff(ts)
        k = int(np.argmax(gaps))
        lost = max(lost, float(gaps[k]))
        if topic != "joint_state":
            until = float(ts[k + 1])
    row["data_lost_s"] = round(lost, 3)
    after = [(t, q, dq) for t, q, dq in watch.states if ft <= t <= until]
    for k in range(1, len(after)):  # the sim reset an episode (teleported the arm): stop there
        if float(np.abs(after[k][1] - after[k - 1][1]).max()) > JUMP_RAD:
            row["episode_reset_s"] = round(after[k][0] - ft, 3)
            after = after[:k]
            break
    before = [q for t, q, _ in watch.states if t < ft]
    # the recorder's loss leaves the arm to its plans: no stop to measure
    holds = (verb in ("kill", "stop") and node != "recorder") or case in ("estop_release",
                                                                           "forged_heartbeat")
    row |= {"drift_mm": None, "drift_from_fault_mm": None, "max_speed_share": None}
    if after:
        dq = np.array([d for t, _, d in watch.states if ft <= t <= end])
        row["max_speed_share"] = round(float(np.max(np.abs(dq) / lim.dq_max)), 3)
    if after and holds:  # the arm should stop: how far did it go
        ref_t = _drift_from(case, node, ft, watch.signs)
        at_fault = arm.pose(before[-1] if before else after[0][1])[0]
        ees = np.array([arm.pose(q)[0] for _, q, _ in after])
        ts = np.array([t for t, _, _ in after])
        late = ees[ts >= ref_t]
        if len(late):
            row["drift_mm"] = round(1e3 * float(np.max(np.linalg.norm(late - late[0], axis=1))), 2)
        row["drift_from_fault_mm"] = round(1e3 * float(np.max(np.linalg.norm(ees - at_fault, axis=1))), 2)
        row["fault_lasted_s"] = round(until - ft, 3)
    bridge = _figures(run_dir, "bridge")
    row["left_over"] = _left_over(run_dir, bridge)
    ctrl = _figures(run_dir, "controller")
    row["refused"] = (ctrl.get("safety_events", {}).get("release_refused", 0)
                      + bridge.get("releases_refused", 0)) if case == "estop_release" else None
    row["ctrl_compute_p50_us"] = ctrl.get("compute_p50_us")  # the controller's step, whole run
    row["ctrl_compute_p99_us"] = ctrl.get("compute_p99_us")
    row["ended_by"] = summary.get("ended_by", "")
    row["wall_s"] = round(wall_s, 1)
    return row


def run_case(graph: str, case: str, backend: str, settle_s: float, observe_s: float,
             tmp: Path, arm: ArmKinematics) -> dict[str, Any]:
    """One graph, one fault: its row."""
    from reflexarc.runtime.launcher import Launcher

    run_dir = tmp / f"{graph}-{case.replace(':', '-')}"
    cfg = _graph(graph, backend, run_dir, case)
    launcher = Launcher(cfg)
    watch = _Watch(launcher, case, settle_s, observe_s)
    t0 = time.monotonic()
    watch.start()
    try:
        summary = launcher.run()
    finally:
        watch.stop_event.set()
        watch.join(timeout=10.0)
    return _row(graph, case, watch, summary, arm, time.monotonic() - t0)


def cases(graphs: list[str], quick: bool) -> list[tuple[str, str]]:
    if quick:
        return [c for c in QUICK if c[0] in graphs]
    out = []
    for g in graphs:
        for node in GRAPHS[g]:
            out += [(g, f"kill:{node}"), (g, f"stop:{node}")]
        out += [(g, c) for c in INJECTIONS[g]]
    return out


def bench_faults(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench faults``: one row per (graph, fault) (module docstring)."""
    graphs = list(cfg.graphs) or list(GRAPHS)
    only = set(cfg.cases)
    arm = ArmKinematics()
    rows = []
    todo = [(g, c) for g, c in cases(graphs, cfg.quick) if not only or c in only]
    progress = Progress("bench faults", len(todo), "cases", every_s=0.0)
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        for graph, case in todo:
            progress.update(len(rows), f"next: {graph} / {case}")
            rows.append(run_case(graph, case, cfg.backend, 1.0 if cfg.quick else 2.0,
                                 1.5 if cfg.quick else 2.5, Path(tmp), arm))
            if cfg.out:  # the rows so far, in case a later case cannot finish
                Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
                Path(cfg.out).write_text(json.dumps(rows, indent=1, default=str))
        progress.update(len(rows))
    return rows
