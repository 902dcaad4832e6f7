"""A scripted planner: Plans of a step, a circle or a reach from the measured EE pose.

:class:`ScriptedPlanner` publishes Plans of a scripted end-effector trajectory starting
where the hand is (joint state + the arm's kinematics); no world model, no camera. Used
by ``reflexarc bench control``, the tests (a planner to SIGKILL) and the shipped graphs
that exercise the controller alone (configs/graph/bridge.yaml, control_scripted.yaml,
control_learner.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import JointState, Plan
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs


@dataclass
class TrajectoryConfig:
    """An EE trajectory from the start pose ``p0`` (time t from its start, s)."""

    kind: str = choice("step", "step", "circle", "reach")
    offset: list[float] = field(default_factory=lambda: [0.05, 0.1, -0.1])  # step/reach, m
    radius: float = bounded(0.08, 0.0, 0.3)  # circle, m (in the y-z plane, starting at p0)
    period_s: float = bounded(2.0, 0.2, 60.0)  # circle: one lap
    speed: float = bounded(0.2, 0.01, 1.0)  # reach: peak speed, m/s (minimum-jerk profile)

    def validate(self) -> None:
        if len(self.offset) != 3:
            raise ConfigError("offset", f"needs 3 values (x, y, z), got {self.offset}")


def trajectory(cfg: TrajectoryConfig, p0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """EE positions (N, 3) at times ``t`` (N,) s from the start (before it: ``p0``)."""
    t = np.asarray(t, dtype=float)
    off = np.asarray(cfg.offset, dtype=float)
    out = np.repeat(np.asarray(p0, float)[None], len(t), axis=0)
    live = t >= 0
    if cfg.kind == "step":
        out[live] += off
    elif cfg.kind == "circle":
        w = 2.0 * np.pi / cfg.period_s
        tl = t[live]
        out[live, 1] += cfg.radius * np.sin(w * tl)
        out[live, 2] += cfg.radius * (1.0 - np.cos(w * tl))
    else:  # reach: minimum-jerk from p0 to p0 + offset; peak speed 1.875 d / T
        dist = float(np.linalg.norm(off))
        dur = max(1.875 * dist / cfg.speed, 1e-3)
        s = np.clip(t[live] / dur, 0.0, 1.0)
        out[live] += (10 * s**3 - 15 * s**4 + 6 * s**5)[:, None] * off
    return out


class ScriptedPlanner(Node):
    """Publishes Plans of a scripted EE trajectory, starting from the measured EE pose.

    Waits ``start_delay_s`` after its first joint state, takes the EE position there as
    ``p0``, then at its rate publishes the trajectory over the next ``horizon_s`` in
    steps of ``plan_dt_s``, stamped with the joint state it was computed from. Done
    after ``duration_s`` (0: never), which ends a launcher run.
    """

    @dataclass
    class Config:
        trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
        start_delay_s: float = bounded(0.5, 0.0, 60.0)
        horizon_s: float = bounded(0.3, 0.0, 10.0)
        plan_dt_s: float = bounded(0.02, 0.001, 1.0)
        duration_s: float = bounded(0.0, 0.0, None)
        gripper: float = bounded(1.0, -1.0, 1.0)
        robot: str = "panda"  # the arm (reflexarc.robot.description) whose hand moves

        def validate(self) -> None:
            robot_description(self.robot)

    subscribes = {"joint_state": "latest"}
    publishes = ("plan",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.arm = ArmKinematics(robot_description(cfg.robot))
        self.first_ns: int | None = None
        self.start_ns: int | None = None
        self.p0: np.ndarray | None = None
        self.quat = np.array([1.0, 0.0, 0.0, 0.0])
        self.last_seq = -1
        self.sent = 0
        self.finished = False
        n = int(round(cfg.horizon_s / cfg.plan_dt_s)) + 1
        self.offsets = np.arange(n) * cfg.plan_dt_s  # (T,) s

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        js: JointState | None = inbox.latest("joint_state")
        if js is None or js.position.shape != (self.arm.n,):
            return ()
        if self.first_ns is None:
            self.first_ns = now_ns
        if self.start_ns is None:
            if now_ns - self.first_ns < self.cfg.start_delay_s * 1e9:
                return ()
            self.p0, _ = self.arm.pose(js.position)
            self.start_ns = now_ns
        t = (now_ns - self.start_ns) / 1e9
        if self.cfg.duration_s and t > self.cfg.duration_s:
            self.finished = True
            return ()
        pos = trajectory(self.cfg.trajectory, self.p0, t + self.offsets)  # type: ignore[arg-type]
        self.sent += 1
        plan = Plan(
            stamp_ns=js.stamp_ns, t0_ns=now_ns, dt_ns=int(self.cfg.plan_dt_s * 1e9),
            ee_pos=pos, ee_quat=np.zeros((0, 4)),
            gripper=np.full(len(pos), self.cfg.gripper, np.float32),
        )
        return [("plan", plan)]

    def done(self) -> bool:
        return self.finished

    def summary(self) -> dict[str, Any]:
        return {"plans_sent": self.sent, "p0": None if self.p0 is None else self.p0.tolist()}
