"""The sim node: the plant, a simulated robot scene (``robot``: panda, xarm6) in the graph
(docs/architecture.md, "The nodes").

It does what a real arm and its cameras do, and no more: every tick (the node's rate,
500-1000 Hz, is the physics rate: one tick advances the physics by ``1 / rate_hz`` s) it
applies the newest command, steps the scene and publishes ``joint_state``; at their own
rates it renders ``camera/<name>`` frames (stamped with the state's time, with their
render time; their calibration is written to ``cameras.json`` in the run directory) and
publishes the privileged ``scene_state`` (the truth, for the evaluator, the recorder and
the reference experts only: docs/senses.md).

Episodes are not the plant's: the evaluator (:mod:`reflexarc.sim.evaluator`) samples each
episode's layout, asks the plant to lay it out with a ``reset`` message (on a real arm a
person does), states the task, and scores it from ``scene_state``. The plant performs each
reset it is asked for (a newer ``episode`` than the one it holds): the arm at rest at the
layout's joints, the blocks where the layout puts them. After a reset its physics stays
frozen, and its clock stopped, until the first valid command arrives (or
``start_timeout_s`` passes; in realtime not before the whole graph is up), so the graph's
start-up and the policy's first reaction do not eat into the episode; ``scene_state``
says when it reset (``reset_ns``), when it started (``started_ns``) and the time simulated
since (``sim_time_s``). Before its first reset the plant publishes nothing.

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
  computed before the current reset (older stamps) are dropped. The overspeed reflex holds
  here too: the tracker's setpoint is set where the arm is, and actions wait.

In realtime, a tick that comes late (a camera frame took longer than the tick period)
is followed by up to ``catch_up_steps`` extra physics steps, so simulated time keeps up
with the wall clock; what cannot be caught up is counted (``steps_dropped``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.robot.guard import CommandGuard, GuardConfig, LimitCounter, joint_limits
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, NodeError
from reflexarc.runtime.msgs import (
    EEAction,
    Image,
    JointCommand,
    JointState,
    Reset,
    SceneState,
    empty,
)
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring
from reflexarc.sim.assets import CAMERAS, SceneError, has_display


@dataclass
class SimConfig:
    """Arguments of :class:`SimNode` (``graph.nodes.<sim>.args``)."""

    backend: str = choice("mujoco", "mujoco", "pybullet")
    robot: str = "panda"  # the arm (reflexarc.robot.description; docs/robots.md)
    objects: list[str] = field(default_factory=lambda: ["red"])  # block colours
    command: str = choice("ee_action", "ee_action", "joint")
    start_timeout_s: float = bounded(10.0, 0.0, None)  # start after a reset without a command after
    cameras: list[str] = field(default_factory=lambda: ["front"])
    camera_hz: float = bounded(30.0, 0.0, 1000.0)  # 0: no frames
    image_size: int = bounded(64, 16, 512)
    depth: bool = False  # frames carry depth (H, W) float32 m
    # scene_state; 0: only after a reset and at the start. Every tick by default: a policy
    # acting at 10 Hz then sees the hand where its last action's ramp ends, as in the envs
    # (an older view makes displacement actions overshoot)
    state_hz: float = bounded(1000.0, 0.0, 1000.0)
    # a scene_state at the stamp of every camera frame as well (sim/evaluator.py)
    frame_state: bool = False
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

    def validate(self) -> None:
        from reflexarc.robot.description import robot_description

        robot_description(self.robot)  # a ConfigError on "robot" naming the known ones
        for cam in self.cameras:
            if cam not in CAMERAS:
                raise ConfigError("cameras", f"got {cam!r}; allowed: {', '.join(CAMERAS)}")
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


class SimNode(Node):
    """Steps a MuJoCo or PyBullet scene, performs the resets it is asked for and publishes
    what its sensors see (module docstring)."""

    Config = SimConfig
    subscribes = {"joint_command": "latest", "ee_action": "all", "reset": "all"}
    publishes = ("joint_state", "scene_state", "camera/")

    @classmethod
    def select_class(cls, args: dict[str, Any]) -> type[Node]:
        """``backend: gym`` runs a gymnasium env instead (:mod:`reflexarc.sim.gym_node`)."""
        if args.get("backend") == "gym":
            from reflexarc.sim.gym_node import GymSimNode

            return GymSimNode
        return cls

    @classmethod
    def privileged_for(cls, cfg: SimConfig) -> tuple[str, ...]:
        """Topics that carry the simulator's truth (reflexarc.tools.senses)."""
        return ("scene_state",)

    def __init__(self, ctx: NodeContext, cfg: SimConfig) -> None:
        super().__init__(ctx, cfg)
        from reflexarc.robot.description import robot_description
        from reflexarc.robot.kinematics import ArmKinematics
        from reflexarc.sim.ee_control import EETracker
        from reflexarc.sim.scene import SceneConfig
        from reflexarc.sim.scenes import make_scene

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
        self.ramp_steps = round(physics_hz / cfg.action_hz)
        self.tracker = EETracker(self.kin, cfg.max_delta, self.ramp_steps * self.scene.dt)
        self.lockstep = ctx.clock == "lockstep"

        # resets (the evaluator's requests)
        self.phase = "unset"  # unset (no reset yet) | waiting (reset, frozen) | running
        self.episode = -1  # the newest reset performed
        self.target = np.zeros(3)  # its layout's target (echoed in scene_state)
        self.reset_ns = 0  # when it was performed
        self.valid_from_ns = 0  # stamp of the reset's first scene_state: older actions are stale
        self.start_ns = -1  # when its physics started
        self.ep_steps = 0
        self.resets = 0
        self.bad_resets = 0
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
        self.next_view_ns = 0
        self.physics_steps = 0
        self.dropped_steps = 0
        self.frames = 0
        self.render_ms = Ring()  # wall time of one camera's frame
        self.run_wall_s = 0.0
        self._wall_t: float | None = None
        # the slow parts of the first tick happen here, before the heartbeats start:
        # the renderers' creation
        for cam in cfg.cameras if cfg.camera_hz else ():
            self.scene.render(cam, cfg.image_size, depth=cfg.depth)

    # ---- the tick ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        self._check_tick(now_ns)
        reset = self._take_reset(now_ns, inbox)
        if self.phase == "unset":
            return out
        commanded = self._take_commands(now_ns, inbox)
        # realtime: not before every node of the graph is up (the recorder too), so that no
        # episode starts unrecorded or unwatched on a busy machine (docs/liveness.md)
        graph_up = self.lockstep or self.ctx.graph_up()
        started = False
        if self.phase == "waiting" and graph_up and (
            commanded or now_ns - self.reset_ns >= int(1e9 * self.cfg.start_timeout_s)
        ):
            self.phase = "running"
            self.start_ns = self.anchor_ns = now_ns
            self.anchor_steps = 0
            started = True
        if self.phase == "running":
            self._physics(now_ns)
        out.append(("joint_state", self._joint_state(now_ns)))
        frame_due = bool(self.cfg.camera_hz) and now_ns >= self.next_frame_ns
        state_due = bool(self.cfg.state_hz) and now_ns >= self.next_state_ns
        if state_due:
            self.next_state_ns = _next_due(self.next_state_ns, now_ns, self.cfg.state_hz)
        # the truth at once after a reset and at the start (the evaluator times the episode
        # from them); with frame_state, at each frame's stamp too (the evaluator scores
        # perception's view of that frame against it)
        if reset or started or state_due or (frame_due and self.cfg.frame_state):
            out.append(("scene_state", self._scene_state(now_ns)))
        if frame_due:
            self.next_frame_ns = _next_due(self.next_frame_ns, now_ns, self.cfg.camera_hz)
            out.extend(self._frames(now_ns))
        if self.cfg.viewer and now_ns >= self.next_view_ns:
            self.next_view_ns = _next_due(self.next_view_ns, now_ns, self.cfg.viewer_hz)
            self.scene.human_render()
        return out

    def _check_tick(self, now_ns: int) -> None:
        """Lockstep: every tick must advance simulated time by exactly one physics step."""
        if self.lockstep and self.prev_ns is not None and now_ns - self.prev_ns != self.dt_ns:
            raise NodeError(
                f"{self.ctx.name}: lockstep ticks {now_ns - self.prev_ns} ns apart, physics "
                f"step {self.dt_ns} ns: base_hz must be a multiple of the sim's rate_hz"
            )
        self.prev_ns = now_ns

    # ---- resets --------------------------------------------------------------------------

    def _take_reset(self, now_ns: int, inbox: Inbox) -> bool:
        """Perform the newest reset asked for with a newer episode than the one held (the
        evaluator repeats its request until it sees it done); True when one was."""
        asked = [r for r in inbox.new("reset") if r.episode > self.episode]
        for msg in reversed(asked):
            try:
                self._reset(msg)
            except (SceneError, ValueError, TypeError) as e:
                self.bad_resets += 1
                self.log.warning("%s: cannot lay out episode %d: %s", self.ctx.name, msg.episode, e)
                continue
            self.phase = "waiting"
            self.reset_ns = self.valid_from_ns = now_ns
            self.start_ns = -1
            self.next_state_ns = now_ns
            return True
        return False

    def _reset(self, msg: Reset) -> None:
        """Lay the scene out as ``msg`` says (the arm at rest, the blocks placed)."""
        q = np.asarray(msg.q, np.float64)
        objects = np.asarray(msg.objects, np.float64)
        k = len(self.scene.object_names)
        if q.shape != (self.scene.n_joints,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q must be {self.scene.n_joints} finite joint positions, got "
                             f"shape {q.shape}")
        if objects.shape != (k, 7) or not np.all(np.isfinite(objects)):
            raise ValueError(f"objects must be {k} x 7 finite poses ({', '.join(self.scene.object_names)}),"
                             f" got shape {objects.shape}")
        self.scene.reset(q, gripper=float(msg.gripper), object_poses=objects)
        self.tracker.reset(q)
        self.beyond.restart()  # the arm was placed, not moved: no acceleration across it
        self.ramp_k = self.ramp_steps + 1
        self.ep_steps = 0
        self.episode = int(msg.episode)
        target = np.asarray(msg.target, np.float64)
        self.target = target.copy() if target.shape == (3,) else np.zeros(3)
        self.resets += 1
        self.log.info("reset for episode %d (seed %d)", msg.episode, msg.seed)

    # ---- commands ------------------------------------------------------------------------

    def _reject(self, kind: str, err: Exception) -> None:
        if kind not in self.rejected:
            self.log.warning("%s: rejected a %s: %s", self.ctx.name, kind, err)
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def _take_commands(self, now_ns: int, inbox: Inbox) -> bool:
        """Apply the newest valid command; True when one arrived this tick."""
        if self.cfg.command == "ee_action":
            actions = inbox.new("ee_action")
            if now_ns < self.overspeed_until_ns:
                return False  # the overspeed reflex holds
            return self._take_action(actions)
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
        guard's ``stop_share`` of its limit makes the arm hold, whichever the command (in
        ``ee_action`` the tracker's setpoint is set where the arm is and actions are ignored
        for ``overspeed_hold_s``)."""
        js = self.scene.joint_state()
        self.beyond.add(js.q, js.dq, js.tau, self.physics_steps * self.scene.dt)
        if self.guard.overspeed(js.dq):
            if now_ns >= self.overspeed_until_ns:
                self.overspeed_holds += 1
                share = np.abs(js.dq) / self.guard.lim.dq_max
                self.log.warning("%s: joint %d at %.0f %% of its speed limit (%s): holding position",
                                 self.ctx.name, int(np.argmax(share)) + 1, 100 * share.max(),
                                 "holding" if self.holding else "commanded")
            self.overspeed_until_ns = now_ns + int(1e9 * self.cfg.overspeed_hold_s)
            self.guard.reset()
            if self.cfg.command == "ee_action":  # the tracker's setpoint: here, at rest
                self.tracker.reset(js.q, self.tracker.gripper)
                self.ramp_k = self.ramp_steps + 1
            self.scene.command_position(js.q)
        return JointState(stamp_ns=now_ns, position=js.q, velocity=js.dq, effort=js.tau,
                          gripper=js.gripper)

    def _scene_state(self, now_ns: int) -> SceneState:
        ee, quat = self.scene.ee_pose()
        return SceneState(
            stamp_ns=now_ns,
            ee_pos=ee,
            ee_quat=quat,
            objects=self.scene.object_poses(),
            names=",".join(self.scene.object_names),
            target=self.target.copy(),
            episode=self.episode,
            reset_ns=self.reset_ns,
            started_ns=self.start_ns,
            sim_time_s=self.ep_steps * self.scene.dt,
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
        joint_idle = self.cfg.command == "joint" and self.last_cmd_ns is None
        if self.holding or joint_idle or self.phase != "running":
            return "holding"
        return "running"

    def summary(self) -> dict[str, Any]:
        """Loop and physics figures (the episodes' figures are the evaluator's)."""
        physics_hz = self.physics_steps / self.run_wall_s if self.run_wall_s > 0 else 0.0
        render = self.render_ms.percentiles([50, 99])
        return {
            "resets": self.resets,
            "bad_resets": self.bad_resets,
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

