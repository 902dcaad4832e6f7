"""The task planner node: plans from perceived positions toward a task's target.

Inputs: ``goal`` (:class:`~reflexarc.runtime.msgs.Goal`: the task, the block's name and the
target; an image it may carry is not used here), ``objects/<camera>`` (the blocks
perception placed in the base frame, one message per frame), ``joint_state`` (the hand by
forward kinematics, the finger opening). Output: ``plan``, end-effector setpoints for the
controller, stamped with the frame the decision came from.

Each new ``objects`` message (a frame) is one step of the task layer
(:mod:`reflexarc.planner.tasks`): it updates the block's perceived place and returns the
stage's hand target; the plan moves the hand from where the previous plan has it now
(within ``windup`` of the measured hand) toward that target at the stage's speed, one
setpoint per ``control_dt_s`` over ``horizon`` steps, clipped to the workspace, the hand
pointing down. A goal with a new stamp (a new episode, or a new instruction) starts the
task layer over.

Nothing here reads privileged simulator state (docs/senses.md): the goal is what a person
says, the positions are perception's, the hand is proprioception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc.planner.tasks import Stage, TaskError, TaskLayer, TaskLayerConfig
from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.plan import sample_plan
from reflexarc.runtime.config import bounded
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Goal, JointState, Objects, Plan, frame_ready_ns
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring


@dataclass
class TaskPlannerConfig:
    """Arguments of :class:`TaskPlannerNode` (``graph.nodes.<planner>.args``)."""

    robot: str = "panda"  # the arm (reflexarc.robot.description): hand FK, workspace, hand down
    camera: str = "front"  # plans on objects/<camera>
    control_dt_s: float = bounded(0.1, 1e-3, 10.0)  # time between setpoints
    horizon: int = bounded(5, 1, 100)  # setpoints after the first
    windup: float = bounded(0.03, 0.0, 1.0)  # m the plan's start may lead the measured hand
    max_objects_age_s: float = bounded(0.5, 0.0, None)  # no plan from older frames; 0: off
    keepalive_s: float = bounded(0.2, 0.0, None)  # resend the newest plan after this; 0: never
    layer: TaskLayerConfig = field(default_factory=TaskLayerConfig)
    # the plans' box, m (x, y, z); empty: the robot's workspace
    workspace_lo: list[float] = field(default_factory=list)
    workspace_hi: list[float] = field(default_factory=list)

    def validate(self) -> None:
        robot_description(self.robot)
        if not (self.workspace_lo or self.workspace_hi):
            return
        for key in ("workspace_lo", "workspace_hi"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(key, f"needs 3 values (x, y, z), got {getattr(self, key)}")
        if any(a >= b for a, b in zip(self.workspace_lo, self.workspace_hi, strict=True)):
            raise ConfigError("workspace_hi", f"got {self.workspace_hi}; every value must "
                                              f"exceed workspace_lo {self.workspace_lo}")


def stage_setpoints(base: np.ndarray, stage: Stage, dt_s: float, steps: int,
                    lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Setpoints (steps + 1, 3) from ``base`` (3,) toward ``stage.hand`` at ``stage.speed``,
    ``dt_s`` apart, each clipped into [lo, hi]; they stay at the target once there."""
    d = stage.hand - base
    dist = float(np.linalg.norm(d))
    step = stage.speed * dt_s
    k = np.arange(steps + 1, dtype=float)
    along = np.minimum(k * step, dist)  # (steps + 1,)
    u = d / dist if dist > 1e-9 else np.zeros(3)
    return np.clip(base + along[:, None] * u, lo, hi)


class TaskPlannerNode(Node):
    """Plans the task layer's stages from perceived positions (module docstring)."""

    Config = TaskPlannerConfig
    subscribes = {"objects/": "latest", "goal": "latest", "joint_state": "latest"}
    wakes_on = ("objects/",)  # realtime: plan the moment a frame's objects arrive
    publishes = ("plan",)

    def __init__(self, ctx: NodeContext, cfg: TaskPlannerConfig) -> None:
        super().__init__(ctx, cfg)
        self.robot = robot_description(cfg.robot)
        self.kin = ArmKinematics(self.robot)
        self.topic = f"objects/{cfg.camera}"
        box = self.robot.workspace_box
        self.lo = np.asarray(cfg.workspace_lo or box[:, 0], dtype=float)
        self.hi = np.asarray(cfg.workspace_hi or box[:, 1], dtype=float)
        self.quat_down = np.asarray(self.robot.ee_down_quat, dtype=float)
        self.dt_ns = int(round(cfg.control_dt_s * 1e9))
        self.layer: TaskLayer | None = None
        self.goal_stamp = -1
        self.last_objects_seq = -1
        self.last_plan: Plan | None = None
        self.last_sent_ns = 0
        self.mode = "no_goal"
        # figures
        self.goals = 0
        self.goal_errors = 0
        self.plans = 0
        self.republished = 0
        self.plan_ms = Ring()  # one step of the layer and the setpoints
        self.frame_to_plan_ms = Ring()
        self.stages: dict[str, int] = {}  # plans per stage
        self.replans = 0
        self.regrasps = 0
        self.misses = 0
        self.last_error = ""

    # -- the step ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self._take_goal(inbox)
        out: list[tuple[str, Plan]] = []
        self.mode = self._plan(now_ns, inbox, out)
        keepalive = int(self.cfg.keepalive_s * 1e9)
        if out:
            self.last_sent_ns = now_ns
        elif (keepalive and self.last_plan is not None and self.mode == "running"
              and now_ns - self.last_sent_ns >= keepalive):
            out.append(("plan", self.last_plan))
            self.last_sent_ns = now_ns
            self.republished += 1
        return out

    def _take_goal(self, inbox: Inbox) -> None:
        goal: Goal | None = inbox.latest("goal")
        if goal is None or goal.stamp_ns == self.goal_stamp:
            return
        self.goal_stamp = goal.stamp_ns
        self._retire_layer()
        try:
            self.layer = TaskLayer(goal.task, np.asarray(goal.target, dtype=float), goal.object,
                                   self.cfg.layer)
        except TaskError as e:
            self.layer = None
            self.goal_errors += 1
            self.last_error = str(e)
            self.ctx.log.warning("%s: cannot pursue the goal: %s", self.ctx.name, e)
            return
        self.goals += 1
        self.last_plan = None

    def _retire_layer(self) -> None:
        if self.layer is not None:
            self.replans += self.layer.replans
            self.regrasps += self.layer.regrasps
            self.misses += self.layer.block.misses

    def _plan(self, now_ns: int, inbox: Inbox, out: list[tuple[str, Plan]]) -> str:
        if self.layer is None:
            return "no_goal"
        objs: Objects | None = inbox.latest(self.topic)
        if objs is None or objs.stamp_ns < self.goal_stamp:
            return "no_objects"  # none yet, or only frames from before the goal
        max_age = self.cfg.max_objects_age_s
        if max_age and now_ns - objs.stamp_ns > max_age * 1e9:
            self.last_plan = None
            return "no_objects"
        if objs.seq == self.last_objects_seq:
            return "running"
        js: JointState | None = inbox.latest("joint_state")
        if js is None or np.shape(js.position) != (7,):
            return "no_state"
        self.last_objects_seq = objs.seq
        t0 = time.perf_counter_ns()
        hand = self.kin.fk(np.asarray(js.position, dtype=float))[0]
        self.layer.see(objs.as_dict(), objs.stamp_ns)
        stage = self.layer.stage(hand, float(js.gripper), now_ns)
        if stage is None:
            return "not_seen"  # the task's block has not been found yet
        base = self._base(hand, now_ns)
        pos = stage_setpoints(base, stage, self.cfg.control_dt_s, self.cfg.horizon,
                              self.lo, self.hi)
        n = pos.shape[0]
        took_us = (time.perf_counter_ns() - t0) / 1e3
        plan = Plan(stamp_ns=objs.stamp_ns, t0_ns=now_ns, dt_ns=self.dt_ns, ee_pos=pos,
                    ee_quat=np.tile(self.quat_down, (n, 1)),
                    gripper=np.full(n, stage.gripper, dtype=np.float32),
                    solve_us=took_us, cost=float(np.linalg.norm(stage.hand - hand)),
                    render_us=objs.render_us)
        self.plan_ms.add(took_us / 1e3)
        late_ms = (now_ns - frame_ready_ns(objs)) / 1e6
        if self.ctx.clock != "lockstep":
            late_ms += took_us / 1e3
        self.frame_to_plan_ms.add(late_ms)
        self.stages[stage.name] = self.stages.get(stage.name, 0) + 1
        self.plans += 1
        self.last_plan = plan
        out.append(("plan", plan))
        return "running"

    def _base(self, hand: np.ndarray, now_ns: int) -> np.ndarray:
        """Where the new plan starts: the previous plan's position now, within ``windup``."""
        if self.last_plan is None:
            return hand.copy()
        lead = sample_plan(self.last_plan, now_ns) - hand
        dist = float(np.linalg.norm(lead))
        if dist <= self.cfg.windup:
            return hand + lead
        return hand + lead * (self.cfg.windup / dist)

    # -- reporting -----------------------------------------------------------------------

    def state(self) -> str:
        return self.mode

    def summary(self) -> dict[str, Any]:
        layer = self.layer
        p50, p99 = self.plan_ms.percentiles([50, 99])
        f50, f99 = self.frame_to_plan_ms.percentiles([50, 99])
        return {
            "run": {"plan_ms_p50": p50, "plan_ms_p99": p99},
            "plans": self.plans,
            "republished": self.republished,
            "frame_to_plan_ms_p50": f50,
            "frame_to_plan_ms_p99": f99,
            "goals": self.goals,
            "goal_errors": self.goal_errors,
            "last_error": self.last_error,
            "stages": dict(self.stages),
            "replans": self.replans + (layer.replans if layer else 0),
            "regrasps": self.regrasps + (layer.regrasps if layer else 0),
            "block_misses": self.misses + (layer.block.misses if layer else 0),
            "final_mode": self.mode,
        }


