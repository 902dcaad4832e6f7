"""The sim node: a simulated robot scene (``robot``: panda, xarm6) in the graph (docs/architecture.md, "The nodes").

Every tick (the node's rate, 500-1000 Hz, is the physics rate: one tick advances the
physics by ``1 / rate_hz`` s) it applies the newest command, steps the scene and
publishes ``joint_state``; at their own rates it renders ``camera/<name>`` frames and
publishes the privileged ``scene_state``; at each episode reset it publishes a ``goal``
(republished every ``goal_period_s`` for late joiners): the task, the block's name and
the target, as a person would state them. With ``goal_images`` (the reference graphs
only: privileged, docs/senses.md) the goal also carries the image the scene renders of the
goal state.

Commands (``command``):

- ``joint``: ``joint_command`` (JointCommand) from a controller, applied as the message
  says: ``torque`` (raw torques; the controller compensates gravity) or ``position``
  (the scene's joint PD with gravity compensation, velocity as feedforward). When no
  valid command has arrived for ``command_timeout_s`` (10 ms), the arm holds the position
  it had then (safe hold; ``state()`` says "holding") until commands come back. Like a
  real arm's controller box, the sim checks every command against the joint limits
  (:class:`reflexarc.robot.guard.CommandGuard`: torques clipped, damped near the position
  limits; position targets clipped and rate limited) and holds for ``overspeed_hold_s``
  when a joint moves faster than 90 % of its limit. Every published joint state past a
  limit is counted (``beyond_limits``, ``max_speed_share`` in the summary).
- ``ee_action``: ``ee_action`` (EEAction, 4 values) from a policy, tracked by the
  gymnasium envs' built-in joint controller (:class:`reflexarc.sim.ee_control.EETracker`): each
  action's joint ramp runs over ``1 / action_hz`` s, then its end is held. Actions
  computed before the current episode began (older stamps) are dropped.

Instructions (``follow_spec``): the episode's task, block and target are not the reset's
sample but those of the newest accepted ``task_spec`` stamped in the episode (the instruct
node's, resolved against this episode's ``scene_state``). The episode waits for one; once
adopted, the sim publishes it as the episode's ``goal`` (source "instruction", with the
imagined goal image when ``publish_goal``), which the policy follows. A refusal, or no
spec within ``spec_timeout_s``, ends the episode unsuccessfully with the reason. Success
then also needs the other blocks to have moved at most ``others_tolerance``; each episode
result says which block moved from where to where. The sim says ``instruction`` on topic
``instruction`` at each episode's start (``instructions``: episode i says the i-th, in turn,
so that one run evaluates a set of instructions); the result carries the text said.

Episodes: episode ``i`` is reset with seed ``ctx.seed + i`` (the same initial state as
``env.reset(seed=ctx.seed + i)``). Its physics stays frozen, and its clock stopped,
until the first valid command arrives (or ``start_timeout_s`` passes), so the graph's
start-up and the policy's first reaction do not eat into it. It ends at the task's
first success, or after ``episode_s``. After ``episodes`` episodes :meth:`done` is
true and the launcher ends the run. Episode times are taken on the graph's clock
(``now_ns``: wall time in realtime, simulated time in lockstep).

In realtime, a tick that comes late (a camera frame took longer than the tick period)
is followed by up to ``catch_up_steps`` extra physics steps, so simulated time keeps up
with the wall clock; what cannot be caught up is counted (``steps_dropped``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.robot.guard import CommandGuard, GuardConfig, LimitCounter, joint_limits
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, NodeError
from reflexarc.runtime.msgs import (
    EEAction,
    Goal,
    Image,
    Instruction,
    JointCommand,
    JointState,
    SceneState,
    TaskSpec,
    empty,
)
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring
from reflexarc.sim.assets import CAMERAS, SceneError, has_display

DEFAULT_EPISODE_STEPS_HZ = 10.0  # tasks' max_steps are counted at the envs' 10 Hz


@dataclass
class SimConfig:
    """Arguments of :class:`SimNode` (``graph.nodes.<sim>.args``)."""

    task: str = choice("push", "reach", "push", "pick_place")
    backend: str = choice("mujoco", "mujoco", "pybullet")
    robot: str = "panda"  # the arm (reflexarc.robot.description; docs/robots.md)
    objects: list[str] = field(default_factory=lambda: ["red"])  # block colours; first = task's
    command: str = choice("ee_action", "ee_action", "joint")
    episodes: int = bounded(1, 0, None)  # then done(); 0: until stopped
    episode_s: float = bounded(0.0, 0.0, None)  # time limit; 0: the task's (max_steps at 10 Hz)
    start_timeout_s: float = bounded(10.0, 0.0, None)  # start an episode without a command after
    cameras: list[str] = field(default_factory=lambda: ["front"])
    camera_hz: float = bounded(30.0, 0.0, 1000.0)  # 0: no frames
    image_size: int = bounded(64, 16, 512)
    depth: bool = False  # frames carry depth (H, W) float32 m
    # scene_state; 0: only at episode ends. Every tick by default: a policy acting at 10 Hz
    # then sees the hand where its last action's ramp ends, as in the envs (an older view
    # makes displacement actions overshoot)
    state_hz: float = bounded(1000.0, 0.0, 1000.0)
    # a scene_state at the stamp of every camera frame as well (sim/evaluator.py)
    frame_state: bool = False
    publish_goal: bool = True
    # the goal carries the image the scene renders of the goal state: privileged, for the
    # reference graphs and datasets (docs/senses.md). False: the goal says only the task,
    # the block's name and the target, as a person would
    goal_images: bool = True
    goal_camera: str = "front"
    goal_period_s: float = bounded(1.0, 0.0, None)  # republish the episode's goal; 0: once
    action_hz: float = bounded(10.0, 0.1, 1000.0)  # ee_action: rate of the action stream
    max_delta: float = bounded(0.05, 1e-4, 0.2)  # ee_action: largest displacement per action, m
    # joint: hold the position after this long without a valid command, as a real arm's
    # communication watchdog does: a lost controller may not leave the arm under its last
    # torque for longer
    command_timeout_s: float = bounded(0.01, 0.001, None)
    overspeed_hold_s: float = bounded(0.2, 0.0, 10.0)  # joint: commands ignored after an overspeed
    catch_up_steps: int = bounded(4, 0, 100)  # realtime: extra physics steps after a late tick
    viewer: bool = False  # MuJoCo's passive viewer / PyBullet's GUI (needs a display)
    viewer_hz: float = bounded(30.0, 1.0, 240.0)
    # instructions: task, block and target from the instruct node's task_spec (see above)
    follow_spec: bool = False
    spec_timeout_s: float = bounded(60.0, 0.1, None)  # follow_spec: wait this long for one
    others_tolerance: float = bounded(0.02, 0.0, 1.0)  # follow_spec: other blocks may move, m
    # follow_spec: the instructed block's success radius, m; 0: the task's (push 4 cm), which
    # is as long as a short instructed move ("5 cm to the right")
    spec_tolerance: float = bounded(0.0, 0.0, 0.1)
    # said on topic "instruction" at the start of every episode, as a person would tell the
    # robot its task (the instruct node understands it against what perception sees); ""
    # says nothing
    instruction: str = ""
    # one instruction per episode, in turn (episode i says instructions[i % n]): a set of
    # instructions evaluated in one run; instead of ``instruction``
    instructions: list[str] = field(default_factory=list)

    def validate(self) -> None:
        from reflexarc.robot.description import robot_description

        robot_description(self.robot)  # a ConfigError on "robot" naming the known ones
        for cam in self.cameras:
            if cam not in CAMERAS:
                raise ConfigError("cameras", f"got {cam!r}; allowed: {', '.join(CAMERAS)}")
        if self.publish_goal and self.goal_images and self.goal_camera not in self.cameras:
            raise ConfigError(
                "goal_camera", f"{self.goal_camera!r} is not in cameras {self.cameras}"
            )
        if self.instruction and self.instructions:
            raise ConfigError("instructions", f"got {len(self.instructions)} together with "
                              f"instruction={self.instruction!r}; give one or the other")
        if any(not str(t).strip() for t in self.instructions):
            raise ConfigError("instructions", f"got {self.instructions!r}; an empty "
                              "instruction says nothing: every item must be a text")
        if self.viewer and not has_display():
            raise ConfigError(
                "viewer",
                "viewer=true opens a window and needs a display (DISPLAY/WAYLAND_DISPLAY is "
                "not set); run headless with viewer=false",
            )


def _calibration(camera: str, backend: str, size: int) -> dict[str, Any]:
    """A camera's calibration (sim/calibration.py); one riding on a link: its field of view."""
    from reflexarc.sim.calibration import camera_calibration

    spec = CAMERAS[camera]
    if spec.body is None:
        return camera_calibration(camera, backend, size)
    return {"camera": camera, "width": size, "height": size, "fovy_deg": spec.fovy,
            "parent": spec.body}


@dataclass
class EpisodeResult:
    """How one episode went."""

    episode: int
    seed: int
    success: bool
    time_to_success_s: float | None  # graph clock, from the episode's start
    duration_s: float  # graph clock
    physics_s: float  # simulated time stepped
    final_distance_m: float  # task error at the end
    # follow_spec only (None otherwise): the instructed block, where it went, the others
    object: str | None = None
    object_from: list[float] | None = None  # (3,) at the episode's start
    object_to: list[float] | None = None  # (3,) at its end
    target: list[float] | None = None  # (3,)
    others_moved_m: float | None = None  # largest xy displacement of another block
    tolerance_m: float | None = None  # the success radius the block was held to
    task_success: bool | None = None  # the task's own test (success also needs the others still)
    refusal: str | None = None  # why the episode had no task (refused instruction, no spec)
    instruction: str | None = None  # what the sim said at the episode's start (if anything)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (the follow_spec fields only when set)."""
        return {k: v for k, v in self.__dict__.items() if v is not None or k not in _FOLLOW_KEYS}


_FOLLOW_KEYS = ("object", "object_from", "object_to", "target", "others_moved_m", "tolerance_m",
                "task_success", "refusal", "instruction")


class SimNode(Node):
    """Steps a MuJoCo or PyBullet Panda scene and publishes what its sensors see."""

    Config = SimConfig
    subscribes = {"joint_command": "latest", "ee_action": "all"}
    publishes = ("joint_state", "scene_state", "goal", "camera/", "instruction")

    @classmethod
    def select_class(cls, args: dict[str, Any]) -> type[Node]:
        """``backend: gym`` runs a gymnasium env instead (:mod:`reflexarc.sim.gym_node`)."""
        if args.get("backend") == "gym":
            from reflexarc.sim.gym_node import GymSimNode

            return GymSimNode
        return cls

    @classmethod
    def subscribes_for(cls, cfg: SimConfig) -> dict[str, str]:
        """Topics subscribed to with ``cfg``."""
        return {**cls.subscribes, "task_spec": "all"} if cfg.follow_spec else dict(cls.subscribes)

    @classmethod
    def privileged_for(cls, cfg: SimConfig) -> tuple[str, ...]:
        """Topics that carry the simulator's truth with ``cfg`` (reflexarc.tools.senses):
        ``scene_state``, and ``goal`` when the scene imagines its images."""
        goal = cfg.publish_goal and cfg.goal_images
        return ("scene_state", "goal") if goal else ("scene_state",)

    @classmethod
    def publishes_for(cls, cfg: SimConfig) -> tuple[str, ...]:
        """Topics published with ``cfg`` (the launcher's one-publisher-per-topic check)."""
        optional = {"goal": cfg.publish_goal, "instruction": bool(cfg.instruction or cfg.instructions)}
        return tuple(t for t in cls.publishes if optional.get(t, True))

    def __init__(self, ctx: NodeContext, cfg: SimConfig) -> None:
        super().__init__(ctx, cfg)
        self.started_wall = time.monotonic()  # for the episode lines' ETA
        from reflexarc.robot.description import robot_description
        from reflexarc.robot.kinematics import ArmKinematics
        from reflexarc.sim.ee_control import EETracker
        from reflexarc.sim.scene import SceneConfig
        from reflexarc.sim.scenes import make_scene
        from reflexarc.sim.tasks import make_task

        physics_hz = round(ctx.rate_hz)
        if abs(ctx.rate_hz - physics_hz) > 1e-9 or not 500 <= physics_hz <= 1000:
            raise ConfigError(
                f"graph.nodes.{ctx.name}.rate_hz",
                f"got {ctx.rate_hz}; the sim's rate is its physics rate: an integer in [500, 1000]",
            )
        if cfg.command == "ee_action" and physics_hz % cfg.action_hz:
            raise ConfigError(
                f"graph.nodes.{ctx.name}.args.action_hz",
                f"the physics rate ({physics_hz} Hz) must be a multiple of action_hz ({cfg.action_hz})",
            )
        self.log = ctx.log
        self.dt_ns = 1_000_000_000 // physics_hz
        if self.dt_ns * physics_hz != 1_000_000_000:
            raise ConfigError(
                f"graph.nodes.{ctx.name}.rate_hz", f"{physics_hz} Hz is not a whole number of ns"
            )
        self.scene = make_scene(
            SceneConfig(
                backend=cfg.backend,
                robot=cfg.robot,
                objects=list(cfg.objects),
                cameras=list(cfg.cameras),
                physics_hz=physics_hz,
                gui=cfg.viewer,
            )
        )
        if ctx.run_dir:  # the cameras' calibration, for the recorder's episode metadata
            Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
            (Path(ctx.run_dir) / "cameras.json").write_text(json.dumps(
                {c: _calibration(c, cfg.backend, cfg.image_size) for c in cfg.cameras}, indent=1))
        self.kin = ArmKinematics(robot_description(cfg.robot))
        self.task = make_task(cfg.task, self.kin)
        self.ramp_steps = round(physics_hz / cfg.action_hz)
        self.tracker = EETracker(self.kin, cfg.max_delta, self.ramp_steps * self.scene.dt)
        self.episode_ns = int(
            1e9 * (cfg.episode_s or self.task.max_steps / DEFAULT_EPISODE_STEPS_HZ)
        )
        self.lockstep = ctx.clock == "lockstep"
        self.subscribes = self.subscribes_for(cfg)
        self.spec: TaskSpec | None = None  # follow_spec: the episode's adopted task spec
        self.start_objects = np.zeros((0, 3))  # (k, 3) block positions at the episode's start
        self.specs_stale = 0

        # episode
        self.phase = "reset"  # reset | waiting | running | done
        self.episode = 0
        self.reset_ns = 0  # when the current episode was reset (its goal's stamp)
        self.valid_from_ns = 0  # stamp of the episode's first scene_state: older actions are stale
        self.start_ns = 0  # when its physics started
        self.ep_steps = 0
        self.results: list[EpisodeResult] = []
        self.goal: Goal | None = None
        self.goal_image: np.ndarray | None = None
        # commands
        self.ramp_k = self.ramp_steps + 1  # ee_action: physics steps into the current ramp
        self.last_cmd_ns: int | None = None  # joint: when the newest valid command was seen
        self.holding = False
        self.holds = 0
        self.hold_logged_episode = -1  # the episode whose first hold was logged
        self.hold_steps = 0
        limits = joint_limits(self.kin.robot)
        # the arm's own check of joint commands; the torque rate is the controller's to shape
        self.guard = CommandGuard(limits, GuardConfig(torque_rate=False))
        self.beyond = LimitCounter(limits)
        self.overspeed_until_ns = 0
        self.overspeed_holds = 0
        self.rejected: dict[str, int] = {}
        self.stale_actions = 0
        # timing
        self.prev_ns: int | None = None
        self.anchor_ns = 0
        self.anchor_steps = 0
        self.next_frame_ns = 0
        self.next_state_ns = 0
        self.next_goal_ns = 0
        self.next_view_ns = 0
        self.physics_steps = 0
        self.dropped_steps = 0
        self.frames = 0
        self.render_ms = Ring()  # wall time of one camera's frame
        self.run_wall_s = 0.0
        self._wall_t: float | None = None
        # the slow parts of the first tick happen here, before the heartbeats start:
        # the first reset (IK, goal image) and the renderers' creation
        self._reset()
        for cam in cfg.cameras if cfg.camera_hz else ():
            self.scene.render(cam, cfg.image_size, depth=cfg.depth)

    # ---- the tick ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        if self.phase == "done":
            return out
        self._check_tick(now_ns)
        if self.phase == "reset":
            self._begin(now_ns, out)
            self.valid_from_ns = now_ns  # this tick's states are the episode's first
        ended = self._follow(now_ns, inbox, out) if self.cfg.follow_spec else False
        commanded = self._take_commands(now_ns, inbox)
        has_task = self.spec is not None or not self.cfg.follow_spec
        # realtime: not before every node of the graph is up (the recorder too), so that no
        # episode starts unrecorded or unwatched on a busy machine (docs/liveness.md)
        graph_up = self.lockstep or self.ctx.graph_up()
        if self.phase == "waiting" and not ended and has_task and graph_up and (
            commanded or now_ns - self.reset_ns >= int(1e9 * self.cfg.start_timeout_s)
        ):
            self.phase = "running"
            self.start_ns = self.anchor_ns = now_ns
            self.anchor_steps = 0
        if self.phase == "running":
            self._physics(now_ns)
            ended = self._episode_over(now_ns)
        out.append(("joint_state", self._joint_state(now_ns)))
        frame_due = bool(self.cfg.camera_hz) and now_ns >= self.next_frame_ns
        state_due = bool(self.cfg.state_hz) and now_ns >= self.next_state_ns
        if state_due:
            self.next_state_ns = _next_due(self.next_state_ns, now_ns, self.cfg.state_hz)
        # with frame_state, the truth at each frame's stamp too (the evaluator scores
        # perception's view of that frame against it)
        if ended or state_due or (frame_due and self.cfg.frame_state):
            out.append(("scene_state", self._scene_state(now_ns)))
        if frame_due:
            self.next_frame_ns = _next_due(self.next_frame_ns, now_ns, self.cfg.camera_hz)
            out.extend(self._frames(now_ns))
        if self.goal is not None and self.cfg.goal_period_s and now_ns >= self.next_goal_ns:
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", replace(self.goal)))
        if self.cfg.viewer and now_ns >= self.next_view_ns:
            self.next_view_ns = _next_due(self.next_view_ns, now_ns, self.cfg.viewer_hz)
            self.scene.human_render()
        if ended:
            if self.cfg.episodes and self.episode + 1 >= self.cfg.episodes:
                self.phase = "done"
            else:
                self.episode += 1
                self._reset()
                self._begin(now_ns, out)
                self.valid_from_ns = now_ns + 1  # this tick's states were the last episode's
        return out

    def _check_tick(self, now_ns: int) -> None:
        """Lockstep: every tick must advance simulated time by exactly one physics step."""
        if self.lockstep and self.prev_ns is not None and now_ns - self.prev_ns != self.dt_ns:
            raise NodeError(
                f"{self.ctx.name}: lockstep ticks {now_ns - self.prev_ns} ns apart, physics "
                f"step {self.dt_ns} ns: base_hz must be a multiple of the sim's rate_hz"
            )
        self.prev_ns = now_ns

    # ---- episodes ------------------------------------------------------------------------

    def _reset(self) -> None:
        """Reset the scene for episode ``self.episode`` (seeded) and imagine its goal."""
        seed = self.ctx.seed + self.episode
        self.task.reset(self.scene, np.random.default_rng(seed))  # as env.reset(seed=seed)
        self.tracker.reset(self.task.init_q)
        self.beyond.restart()  # the arm was placed, not moved: no acceleration across it
        self.ramp_k = self.ramp_steps + 1
        self.ep_steps = 0
        self.spec = None
        self.goal = None  # follow_spec: no goal until a spec is adopted (none republished)
        self.goal_image = (
            self._goal_image() if self.cfg.publish_goal and not self.cfg.follow_spec else None
        )
        self.log.info("episode %d (seed %d): target %s", self.episode, seed,
                      np.round(self.task.target, 3).tolist())

    def _goal_image(self) -> np.ndarray:
        """The episode's goal image (H, W, 3) with ``goal_images``, else an empty one."""
        if not self.cfg.goal_images:
            return empty("u1", 0, 0, 3)
        return self.task.goal_image(self.scene, self.cfg.goal_camera, self.cfg.image_size)

    def _begin(self, now_ns: int, out: list[tuple[str, Any]]) -> None:
        """Start the (reset) episode's clock-dependent part: stamps, goal, waiting."""
        self.phase = "waiting"
        self.reset_ns = now_ns
        self.next_state_ns = now_ns  # the episode's first state goes out at once
        self.start_objects = self.scene.object_poses()[:, :3].copy()
        self._publish_goal(now_ns, out)
        text = self._said()
        if text:
            # the evaluator's voice: a person telling the robot its task for this episode
            out.append(("instruction", Instruction(stamp_ns=now_ns, text=text)))

    def _said(self) -> str:
        """The instruction said at this episode's start ('' none)."""
        said = self.cfg.instructions
        return said[self.episode % len(said)] if said else self.cfg.instruction

    def _publish_goal(self, now_ns: int, out: list[tuple[str, Any]]) -> None:
        """Publish the episode's goal stamped ``now_ns``."""
        if self.goal_image is not None:
            names = self.scene.object_names
            self.goal = Goal(
                stamp_ns=now_ns,
                task=self.cfg.task,
                object=names[0] if names and self.task.needs_object else "",
                target=self.task.target.copy(),
                image=self.goal_image,
                z=empty("f4", 0),
                source="imagined" if self.goal_image.size else "task",
            )
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", self.goal))

    def _episode_over(self, now_ns: int) -> bool:
        ee, _ = self.scene.ee_pose()
        pos = self.scene.object_poses()[:, :3]
        success = self.task.success(ee, pos)
        elapsed = now_ns - self.start_ns
        if not success and elapsed < self.episode_ns:
            return False
        follow: dict[str, Any] = {}
        if self.cfg.follow_spec and self.spec is not None:
            others = np.arange(len(pos)) != self.task.obj
            moved = np.linalg.norm(pos[:, :2] - self.start_objects[:, :2], axis=1)
            others_moved = float(moved[others].max()) if others.any() else 0.0
            follow = {
                "object": self.spec.object,
                "object_from": self.start_objects[self.task.obj].round(4).tolist() if len(pos) else None,
                "object_to": pos[self.task.obj].round(4).tolist() if len(pos) else None,
                "target": self.task.target.round(4).tolist(),
                "others_moved_m": others_moved,
                "tolerance_m": self.task.tolerance,
                "task_success": bool(success),
            }
            success = success and others_moved <= self.cfg.others_tolerance
        r = EpisodeResult(
            episode=self.episode,
            seed=self.ctx.seed + self.episode,
            success=bool(success),
            time_to_success_s=elapsed / 1e9 if success else None,
            duration_s=elapsed / 1e9,
            physics_s=self.ep_steps * self.scene.dt,
            final_distance_m=self.task.distance(ee, pos),
            instruction=self._said() or None,
            **follow,
        )
        self.results.append(r)
        self.log.info("episode %d: %s after %.2f s%s", r.episode,
                      "success" if r.success else "time limit", r.duration_s, self._progress())
        return True

    def _progress(self) -> str:
        """`` (2/5 episodes, 14.2 s, ETA 21 s)`` in wall time since the node started."""
        from reflexarc.runtime.progress import eta_text

        if not self.cfg.episodes:
            return ""
        done, total = len(self.results), self.cfg.episodes
        elapsed = time.monotonic() - self.started_wall
        eta = eta_text(done, total, elapsed)
        return f" ({done}/{total} episodes, {elapsed:.1f} s{', ' + eta if eta else ''})"

    def _follow(self, now_ns: int, inbox: Inbox, out: list[tuple[str, Any]]) -> bool:
        """follow_spec: adopt the newest task spec of this episode (as its goal); True when
        the episode ends here without a task (a refusal, or no spec in time)."""
        for spec in inbox.new("task_spec"):
            if spec.stamp_ns < self.valid_from_ns:
                self.specs_stale += 1  # resolved against an earlier episode's scene
                continue
            problem = spec.refusal or self._adopt(now_ns, spec, out)
            if not problem:
                continue
            if self.phase == "waiting" and self.spec is None:
                return self._no_task(now_ns, problem)
            self.log.info("%s: keeps its task; ignoring a task spec: %s", self.ctx.name, problem)
        if self.phase == "waiting" and self.spec is None and (
            now_ns - self.reset_ns >= int(1e9 * self.cfg.spec_timeout_s)
        ):
            return self._no_task(now_ns, f"no task spec within {self.cfg.spec_timeout_s:g} s")
        return False

    def _adopt(self, now_ns: int, spec: TaskSpec, out: list[tuple[str, Any]]) -> str:
        """Retarget the episode to ``spec`` and publish it as the goal; '' or the problem."""
        from reflexarc.sim.tasks import TASKS, make_task

        names = list(self.scene.object_names)
        target = np.asarray(spec.target_pos, dtype=float)
        if spec.task not in TASKS:
            return f"task {spec.task!r} is not one of {', '.join(TASKS)}"
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            return f"target_pos must be 3 finite numbers, got {target.tolist()}"
        if spec.task != "reach" and spec.object not in names:
            return f"no block {spec.object!r} in the scene (blocks: {', '.join(names) or 'none'})"
        if spec.task != self.task.name:
            init_q = self.task.init_q
            self.task = make_task(spec.task, self.kin)
            self.task.init_q = init_q
            self.episode_ns = int(
                1e9 * (self.cfg.episode_s or self.task.max_steps / DEFAULT_EPISODE_STEPS_HZ)
            )
        self.task.retarget(names.index(spec.object) if spec.object in names else 0, target,
                           self.cfg.spec_tolerance)
        self.spec = spec
        image = (
            self.task.goal_image(self.scene, self.cfg.goal_camera, self.cfg.image_size)
            if self.cfg.publish_goal and self.cfg.goal_images else np.zeros((0, 0, 3), np.uint8)
        )
        if self.cfg.publish_goal:  # else the instruct node gives the planner its goal
            self.goal = Goal(stamp_ns=now_ns, task=spec.task, object=spec.object,
                             target=self.task.target.copy(), image=image, z=empty("f4", 0),
                             source="instruction")
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", self.goal))
        self.log.info("episode %d: %s %s to %s (instruction)", self.episode, spec.task,
                      spec.object, np.round(target, 3).tolist())
        return ""

    def _no_task(self, now_ns: int, reason: str) -> bool:
        """End the waiting episode unsuccessfully: the instruction gave it no task."""
        self.results.append(EpisodeResult(
            episode=self.episode, seed=self.ctx.seed + self.episode, success=False,
            time_to_success_s=None, duration_s=0.0, physics_s=0.0, final_distance_m=float("nan"),
            refusal=reason, instruction=self._said() or None,
        ))
        self.log.warning("episode %d: no task: %s", self.episode, reason)
        return True

    # ---- commands ------------------------------------------------------------------------

    def _reject(self, kind: str, err: Exception) -> None:
        if kind not in self.rejected:
            self.log.warning("%s: rejected a %s: %s", self.ctx.name, kind, err)
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def _take_commands(self, now_ns: int, inbox: Inbox) -> bool:
        """Apply the newest valid command; True when one arrived this tick."""
        if self.cfg.command == "ee_action":
            return self._take_action(inbox.new("ee_action"))
        got = False
        for cmd in reversed(inbox.new("joint_command")):
            if now_ns < self.overspeed_until_ns:
                break  # the overspeed reflex holds
            if self._apply_joint(cmd, now_ns):
                got = True
                self.last_cmd_ns = now_ns
                break
        if got:
            self.holding = False
        elif not self.holding and self.last_cmd_ns is not None and (
            now_ns - self.last_cmd_ns > int(1e9 * self.cfg.command_timeout_s)
        ):
            self.holding = True
            self.holds += 1
            self.guard.reset()
            self.scene.command_position(self.scene.joint_state().q)  # safe hold, gripper kept
            # the safe hold is the designed reaction, counted in the summary (holds, hold_s):
            # news, not a warning (a loaded machine delays a controller's tick now and then),
            # and told once an episode, not at every gap
            if self.hold_logged_episode != self.episode:
                self.hold_logged_episode = self.episode
                self.log.info("%s: no joint_command for %.3f s: holding position (later holds "
                              "this episode are counted in the summary, not logged)",
                              self.ctx.name, self.cfg.command_timeout_s)
        return got

    def _apply_joint(self, cmd: JointCommand, now_ns: int) -> bool:
        try:
            position, effort, velocity = cmd.position, cmd.effort, cmd.velocity
            js = self.scene.joint_state()  # malformed values pass to the scene, which rejects them
            n = (self.scene.n_joints,)
            if cmd.mode == "torque" and effort.shape == n and np.all(np.isfinite(effort)):
                effort = self.guard.torque(effort, js.q, js.dq, now_ns)
            elif cmd.mode == "position" and position.shape == n and np.all(np.isfinite(position)):
                position = self.guard.position(position, js.q, now_ns)
                if velocity.shape == n:
                    velocity = self.guard.velocity(velocity)
            self.scene.apply(cmd.mode, position, effort, cmd.gripper, velocity)
        except (SceneError, ValueError, TypeError) as e:
            self._reject("joint_command", e)
            return False
        return True

    def _take_action(self, actions: list[EEAction]) -> bool:
        for msg in reversed(actions):
            if msg.stamp_ns < self.valid_from_ns:
                self.stale_actions += 1  # computed from the previous episode's state
                continue
            ee, _ = self.scene.ee_pose()
            q_now, v_now = self.tracker.setpoint(self.ramp_k / self.ramp_steps)
            try:
                self.tracker.act(msg.action, ee, q_from=q_now, v_from=v_now)
            except SceneError as e:
                self._reject("ee_action", e)
                continue
            self.ramp_k = 0
            return True
        return False

    # ---- physics -------------------------------------------------------------------------

    def _physics(self, now_ns: int) -> None:
        n = 1
        if not self.lockstep:  # realtime: keep simulated time with the wall clock
            due = (now_ns - self.anchor_ns) // self.dt_ns + 1 - self.anchor_steps
            n = max(1, min(due, 1 + self.cfg.catch_up_steps))
            if due > n:  # too far behind: let it go
                self.dropped_steps += due - n
                self.anchor_ns += (due - n) * self.dt_ns
        wall = time.monotonic()
        if self._wall_t is not None and self.anchor_steps:
            self.run_wall_s += wall - self._wall_t
        self._wall_t = wall
        ee_mode = self.cfg.command == "ee_action"
        for _ in range(n):
            if ee_mode:
                self.ramp_k += 1
                q, dq = self.tracker.setpoint(self.ramp_k / self.ramp_steps)
                self.scene.command_position(q, self.tracker.gripper, dq)
            self.scene.step(1)
        self.anchor_steps += n
        self.ep_steps += n
        self.physics_steps += n
        if self.holding:
            self.hold_steps += n

    # ---- messages ------------------------------------------------------------------------

    def _joint_state(self, now_ns: int) -> JointState:
        """The measured joint state, counted against the limits; a joint faster than the
        guard's ``stop_share`` of its limit makes the arm hold (joint commands)."""
        js = self.scene.joint_state()
        self.beyond.add(js.q, js.dq, js.tau, self.physics_steps * self.scene.dt)
        if self.cfg.command == "joint" and self.guard.overspeed(js.dq):
            if now_ns >= self.overspeed_until_ns:
                self.overspeed_holds += 1
                share = np.abs(js.dq) / self.guard.lim.dq_max
                self.log.warning("%s: joint %d at %.0f %% of its speed limit (%s): holding position",
                                 self.ctx.name, int(np.argmax(share)) + 1, 100 * share.max(),
                                 "holding" if self.holding else "commanded")
            self.overspeed_until_ns = now_ns + int(1e9 * self.cfg.overspeed_hold_s)
            self.guard.reset()
            self.scene.command_position(js.q)
        return JointState(stamp_ns=now_ns, position=js.q, velocity=js.dq, effort=js.tau,
                          gripper=js.gripper)

    def _scene_state(self, now_ns: int) -> SceneState:
        ee, quat = self.scene.ee_pose()
        objects = self.scene.object_poses()
        success = self.task.success(ee, objects[:, :3]) if self.phase != "waiting" else False
        return SceneState(
            stamp_ns=now_ns,
            ee_pos=ee,
            ee_quat=quat,
            objects=objects,
            names=",".join(self.scene.object_names),
            target=self.task.target.copy(),
            success=bool(success),
            episode=self.episode,
        )

    def _frames(self, now_ns: int) -> list[tuple[str, Image]]:
        out = []
        realtime = self.ctx.clock == "realtime"
        for cam in self.cfg.cameras:
            t0 = time.perf_counter_ns()
            if self.cfg.depth:
                rgb, depth = self.scene.render(cam, self.cfg.image_size, depth=True)
            else:
                rgb, depth = self.scene.render(cam, self.cfg.image_size), empty("f4", 0, 0)
            # the stamp is the state's time; in realtime the frame is ready this much
            # later (in lockstep rendering takes no graph time)
            took_us = (time.perf_counter_ns() - t0) / 1e3
            self.render_ms.add(took_us / 1e3)
            out.append((f"camera/{cam}", Image(stamp_ns=now_ns, camera=cam, rgb=rgb, depth=depth,
                                               render_us=took_us if realtime else 0.0)))
        self.frames += 1
        return out

    # ---- node interface ------------------------------------------------------------------

    def state(self) -> str:
        if self.phase == "done":
            return "done"
        joint_idle = self.cfg.command == "joint" and self.last_cmd_ns is None
        if self.holding or joint_idle or self.phase in ("reset", "waiting"):
            return "holding"
        return "running"

    def done(self) -> bool:
        return self.phase == "done"

    def summary(self) -> dict[str, Any]:
        """Task figures under "run" (merged into the run summary's top level by the
        launcher), loop and physics figures beside them."""
        successes = [r.time_to_success_s for r in self.results if r.success]
        n = len(self.results)
        physics_hz = self.physics_steps / self.run_wall_s if self.run_wall_s > 0 else 0.0
        render = self.render_ms.percentiles([50, 99])
        return {
            "run": {
                "task": self.task.name,  # follow_spec: the last episode's (the spec's)
                "backend": self.cfg.backend,
                "episodes": n,
                "success_rate": len(successes) / n if n else 0.0,
                "mean_time_to_success_s": float(np.mean(successes)) if successes else None,
                "episode_results": [r.as_dict() for r in self.results],
            },
            "physics_hz": physics_hz,  # physics steps per wall second while running
            "realtime_factor": physics_hz * self.scene.dt,
            "steps_dropped": self.dropped_steps,
            "frames": self.frames,
            "render_ms_p50": render[0],
            "render_ms_p99": render[1],
            "holds": self.holds,
            "hold_s": self.hold_steps * self.scene.dt,
            "overspeed_holds": self.overspeed_holds,
            "guard": dict(self.guard.counts),
            **self.beyond.summary(),
            "stale_actions": self.stale_actions,
            "rejected": sum(self.rejected.values()),
        }

    def close(self) -> None:
        self.scene.close()


def _next_due(due_ns: int, now_ns: int, hz: float) -> int:
    """The next time of a ``hz`` schedule after ``now_ns`` (late: skip, do not burst)."""
    period = int(1e9 / hz)
    due_ns += period
    return due_ns if due_ns > now_ns else now_ns + period

