"""The controller tracking a scripted trajectory in closed loop with a scene, in process.

:func:`closed_loop` runs the controller (:mod:`reflexarc.robot.controller`) against a
simulated scene at 1 kHz simulated time, fed by the scripted planner
(:mod:`reflexarc.planner.scripted`), each command applied ``delay_ticks`` ticks late as
over the bus; deterministic. :func:`step_metrics` and :func:`circle_metrics` measure how
well it tracked. ``reflexarc bench control`` reports these figures (its tracking rows);
the tracking tests hold them to tolerances.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np

from reflexarc.planner.scripted import ScriptedPlanner, TrajectoryConfig, trajectory
from reflexarc.robot.controller import ControllerNode
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import JointState
from reflexarc.runtime.node import Inbox, NodeContext


class TrackLog(NamedTuple):
    """One closed-loop run, one row per controller tick."""

    t: np.ndarray  # (N,) s since the trajectory started (negative before)
    ee: np.ndarray  # (N, 3) measured EE position
    desired: np.ndarray  # (N, 3) trajectory (what the planner asked for)
    setpoint: np.ndarray  # (N, 3) shaped setpoint the controller tracked
    tau: np.ndarray  # (N, dof) commanded torques
    summary: dict[str, Any]  # the controller's summary


def closed_loop(
    backend: str,
    traj: TrajectoryConfig,
    seconds: float,
    *,
    delay_ticks: int = 2,
    physics_hz: int = 1000,
    controller_args: dict[str, Any] | None = None,
    planner_hz: float = 50.0,
    start_s: float = 0.2,
) -> TrackLog:
    """Run the controller against a scene, in process, at 1 kHz simulated time.

    Each tick: the scene's joint state goes to the scripted planner (at ``planner_hz``)
    and the controller; the controller's command is applied ``delay_ticks`` ticks later
    (as it would be over the bus); the physics steps ``physics_hz / 1000`` times.
    """
    from reflexarc.runtime.config import from_mapping
    from reflexarc.sim.scenes import make_scene

    if physics_hz not in (500, 1000):
        raise ConfigError("physics_hz", f"got {physics_hz}; allowed: 500, 1000")
    ctrl = ControllerNode(
        NodeContext(name="controller", rate_hz=1000.0),
        from_mapping(ControllerNode.Config, controller_args or {}),
    )
    pcfg = ScriptedPlanner.Config(trajectory=traj, start_delay_s=start_s)
    planner = ScriptedPlanner(NodeContext(name="planner", rate_hz=planner_hz), pcfg)
    scene = make_scene(backend=backend, objects=[], cameras=[], physics_hz=physics_hz)
    c_in, p_in = Inbox(), Inbox()
    queue: collections.deque[Any] = collections.deque()
    every = int(round(1000 / planner_hz))
    n = int(seconds * 1000)
    ee = np.zeros((n, 3))
    sp = np.zeros((n, 3))
    tau = np.zeros((n, ctrl.n))
    try:
        for k in range(n):
            now = k * 1_000_000
            s = scene.joint_state()
            js = JointState(seq=k, stamp_ns=now, position=s.q, velocity=s.dq, effort=s.tau,
                            gripper=s.gripper)
            c_in.put("joint_state", js, now)
            p_in.put("joint_state", js, now)
            if k % every == 0:
                for topic, msg in planner.step(now, p_in):
                    c_in.put(topic, msg, now)
                p_in.clear_new()
            for topic, msg in ctrl.step(now, c_in):
                if topic == "joint_command":
                    queue.append(msg)
                    tau[k] = msg.effort
            c_in.clear_new()
            while len(queue) > delay_ticks:
                c = queue.popleft()
                scene.apply(c.mode, c.position, c.effort, c.gripper, c.velocity)
            if physics_hz == 1000 or k % 2:
                scene.step(1)
            ee[k] = scene.ee_pose()[0]
            sp[k] = ctrl.last_sp.pos if ctrl.last_sp is not None else ee[k]
    finally:
        scene.close()
    t = np.arange(n) / 1000.0 - start_s
    p0 = planner.p0 if planner.p0 is not None else ee[0]
    desired = trajectory(traj, p0, t)
    return TrackLog(t, ee, desired, sp, tau, ctrl.summary())


def step_metrics(run: TrackLog, traj: TrajectoryConfig) -> dict[str, float]:
    """Rise time (10-90 %), overshoot, settling time (to 1 mm) and final error of a step."""
    off = np.asarray(traj.offset, float)
    dist = float(np.linalg.norm(off))
    u = off / dist
    live = run.t >= 0
    t, ee = run.t[live], run.ee[live]
    p0 = run.desired[0]
    along = (ee - p0) @ u  # (N,) progress along the step, m
    err = np.linalg.norm(ee - (p0 + off), axis=1)
    t10 = t[np.argmax(along >= 0.1 * dist)]
    t90 = t[np.argmax(along >= 0.9 * dist)]
    outside = np.flatnonzero(err > 1e-3)
    settle = t[outside[-1] + 1] if len(outside) and outside[-1] + 1 < len(t) else float("nan")
    if not len(outside):
        settle = 0.0
    return {
        "step_mm": 1e3 * dist,
        "rise_s": float(t90 - t10),
        "overshoot_mm": 1e3 * max(0.0, float(along.max()) - dist),
        "settle_1mm_s": float(settle),
        "final_err_mm": 1e3 * float(err[-1]),
    }


def circle_metrics(run: TrackLog, traj: TrajectoryConfig, skip_s: float = 0.5) -> dict[str, float]:
    """RMS and max EE error against the circle, after its first ``skip_s`` (the start from rest)."""
    live = run.t >= skip_s
    err = np.linalg.norm(run.ee[live] - run.desired[live], axis=1)
    return {
        "radius_mm": 1e3 * traj.radius,
        "speed_m_s": 2 * np.pi * traj.radius / traj.period_s,
        "rms_err_mm": 1e3 * float(np.sqrt(np.mean(err**2))),
        "max_err_mm": 1e3 * float(err.max()),
    }


STEP = TrajectoryConfig(kind="step", offset=[0.05, 0.1, -0.1])
CIRCLE = TrajectoryConfig(kind="circle", radius=0.08, period_s=2.0)
