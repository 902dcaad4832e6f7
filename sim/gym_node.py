"""Any gymnasium env with Box spaces as the graph's sim node (docs/python-api.md, "Your own
scene: a gymnasium env").

Selected by ``backend: gym`` in the sim node's arguments (``reflexarc.sim.node:SimNode``
hands such a node to :class:`GymSimNode`)::

    graph.nodes.sim.args.backend=gym graph.nodes.sim.args.env_id=InvertedPendulum-v5

The env is made with ``gymnasium.make(env_id, render_mode="rgb_array", **env_kwargs)`` and
run through :class:`reflexarc.sim.gym_scene.GymScene`. Every tick takes one env step (so
``rate_hz`` is the env's step rate: ``1 / env.dt`` runs it at real speed) and publishes

- ``joint_state``: ``position`` is the observation (flattened), ``effort`` the action
  applied, ``velocity`` zeros;
- ``camera/<camera>``: ``env.render()`` as a square RGB frame of ``image_size``, at
  ``camera_hz``.

The acting node publishes ``joint_command`` with the env's own action in ``effort`` (its
action space's shape, flattened; clipped to the space's bounds); the newest is held. An
episode's steps wait for the first command (or ``start_timeout_s``), so start-up does not
eat into it; an episode that terminates or truncates is reset with the next seed (the
first is the graph's ``seed``), and after ``episodes`` of them the node is done. Episode
results (return, steps, terminated) go to the run summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Image, JointCommand, JointState, empty
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.progress import eta_text
from reflexarc.sim.assets import SceneError


def plain_render(env: Any) -> bool:
    """Turn off shadows and reflections of a MuJoCo env's offscreen renderer (after its
    first ``render()``); True if it is one. Software GL draws Pusher-v5's shadow maps in
    about 0.7 s a frame, 10 ms without (docs/world-model.md, "Any scene"); collect and the
    sim node both do it, so a world model sees in the graph the frames it learnt from."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return False
    try:
        import mujoco

        viewer = renderer._get_viewer(env.unwrapped.render_mode)
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    except (AttributeError, ImportError, TypeError):  # another renderer: leave it as it is
        return False
    return True


@dataclass
class GymSimConfig:
    """Arguments of :class:`GymSimNode` (``graph.nodes.<sim>.args`` with ``backend: gym``)."""

    backend: str = choice("gym", "gym")
    env_id: str = ""  # a registered gymnasium id, e.g. InvertedPendulum-v5, or "module:Id"
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    episodes: int = bounded(1, 0, None)  # then done(); 0: until stopped
    camera: str = "front"  # frames go out on camera/<camera>
    camera_hz: float = bounded(30.0, 0.0, 1000.0)  # 0: no frames
    image_size: int = bounded(64, 16, 512)
    start_timeout_s: float = bounded(10.0, 0.0, None)  # step without a command after this

    def validate(self) -> None:
        if not self.env_id:
            raise ConfigError("env_id", "a gymnasium env id is needed (e.g. InvertedPendulum-v5)")
        import gymnasium as gym

        try:  # checked before any process starts; "module:Id" imports the module first
            gym.spec(self.env_id)
        except gym.error.Error as e:
            raise ConfigError("env_id", f"got {self.env_id!r}: {e}; allowed: a registered "
                              "gymnasium id, or 'module:Id' with a module that registers it") from None


@dataclass
class GymEpisode:
    """How one episode of the env went."""

    episode: int
    seed: int
    steps: int
    episode_return: float
    terminated: bool  # False: truncated (the env's time limit)
    duration_s: float  # graph clock

    def as_dict(self) -> dict[str, Any]:
        return {"episode": self.episode, "seed": self.seed, "success": None,
                "duration_s": self.duration_s, "steps": self.steps,
                "return": self.episode_return, "terminated": self.terminated}


class GymSimNode(Node):
    """Steps a gymnasium env and publishes its observations and frames (module docstring)."""

    Config = GymSimConfig
    subscribes = {"joint_command": "latest"}
    publishes = ("joint_state", "camera/")

    def __init__(self, ctx: NodeContext, cfg: GymSimConfig) -> None:
        super().__init__(ctx, cfg)
        self.started_wall = time.monotonic()  # for the episode lines' ETA
        import gymnasium as gym

        from reflexarc.sim.gym_scene import GymScene

        key = f"graph.nodes.{ctx.name}.args"
        try:
            env = gym.make(cfg.env_id, render_mode="rgb_array", **cfg.env_kwargs)
        except gym.error.Error as e:
            raise ConfigError(f"{key}.env_id", f"gymnasium cannot make {cfg.env_id!r}: {e}") from None
        except TypeError as e:  # an env_kwargs key the env does not take
            raise ConfigError(f"{key}.env_kwargs", f"{cfg.env_id}: {e}") from None
        try:
            self.scene = GymScene(env, seed=ctx.seed, camera=cfg.camera)
        except SceneError as e:
            env.close()
            raise ConfigError(f"{key}.env_id", str(e)) from None
        if cfg.camera_hz > 0:  # the renderer's first frame sets up its GL context: here,
            self.scene.render(cfg.camera, cfg.image_size)  # not in a heartbeat-watched tick
            plain_render(env)  # as collect renders (no shadows, no reflections)
        self.log = ctx.log
        self.results: list[GymEpisode] = []
        self.started = False
        self.reset_ns: int | None = None
        self.episode_start_ns = 0
        self.episode_return = 0.0
        self.episode_steps = 0
        self.next_frame_ns = 0
        self.frames = 0
        self.env_steps = 0
        self.commands = 0
        self.rejected = 0
        self.render_ms: list[float] = []

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        if self.done():
            return out
        if self.reset_ns is None:
            self.reset_ns = now_ns
        cmd: JointCommand | None = inbox.latest("joint_command")
        if inbox.new("joint_command"):
            try:
                self.scene.command_torque(np.asarray(cmd.effort))  # type: ignore[union-attr]
                self.commands += 1
            except SceneError as e:  # a bad command is counted, never fatal
                self.rejected += 1
                if self.rejected == 1:
                    self.log.error("joint_command rejected (logged once): %s", e)
        if not self.started:
            waited = now_ns - self.reset_ns >= int(1e9 * self.cfg.start_timeout_s)
            if self.commands or waited:
                self.started = True
                self.episode_start_ns = now_ns
        if self.started:
            before = self.scene.episodes
            self.scene.step(1)
            self.env_steps += 1
            self.episode_return += self.scene.last_reward
            self.episode_steps += 1
            if self.scene.episodes > before:
                self._end_episode(now_ns, terminated=self.scene.last_terminated)
        js = self.scene.joint_state()
        out.append(("joint_state", JointState(stamp_ns=now_ns, position=js.q, velocity=js.dq,
                                              effort=js.tau)))
        if self.cfg.camera_hz > 0 and now_ns >= self.next_frame_ns:
            t0 = time.perf_counter_ns()
            rgb = self.scene.render(self.cfg.camera, self.cfg.image_size)
            took_us = (time.perf_counter_ns() - t0) / 1e3
            self.render_ms.append(took_us / 1e3)
            out.append((f"camera/{self.cfg.camera}", Image(
                stamp_ns=now_ns, camera=self.cfg.camera, rgb=rgb, depth=empty("f4", 0, 0),
                render_us=took_us if self.ctx.clock == "realtime" else 0.0)))
            self.frames += 1
            period = int(1e9 / self.cfg.camera_hz)
            self.next_frame_ns = max(self.next_frame_ns + period, now_ns)
        return out

    def _end_episode(self, now_ns: int, terminated: bool) -> None:
        k = len(self.results)
        result = GymEpisode(
            episode=k, seed=self.ctx.seed + k, steps=self.episode_steps,
            episode_return=float(self.episode_return), terminated=terminated,
            duration_s=(now_ns - self.episode_start_ns) / 1e9,
        )
        self.results.append(result)
        progress = ""
        if self.cfg.episodes:
            elapsed = time.monotonic() - self.started_wall
            eta = eta_text(k + 1, self.cfg.episodes, elapsed)
            progress = f", {k + 1}/{self.cfg.episodes} episodes, {elapsed:.1f} s{', ' + eta if eta else ''}"
        self.log.info("episode %d (seed %d): return %.3g in %d steps (%s%s)", k, result.seed,
                      result.episode_return, result.steps,
                      "terminated" if terminated else "truncated", progress)
        self.episode_return, self.episode_steps = 0.0, 0
        self.episode_start_ns = now_ns

    def done(self) -> bool:
        return self.cfg.episodes > 0 and len(self.results) >= self.cfg.episodes

    def summary(self) -> dict[str, Any]:
        """Episode results under "run" (the run summary's top level), figures beside."""
        returns = [r.episode_return for r in self.results]
        render = np.percentile(self.render_ms, [50, 99]) if self.render_ms else [0.0, 0.0]
        return {
            "run": {
                "task": self.cfg.env_id,
                "backend": "gym",
                "episodes": len(self.results),
                "mean_return": float(np.mean(returns)) if returns else None,
                "mean_steps": float(np.mean([r.steps for r in self.results])) if returns else None,
                "episode_results": [r.as_dict() for r in self.results],
            },
            "env_steps": self.env_steps,
            "frames": self.frames,
            "commands": self.commands,
            "rejected": self.rejected,
            "render_ms_p50": float(render[0]),
            "render_ms_p99": float(render[1]),
        }

    def close(self) -> None:
        self.scene.close()


@dataclass
class RandomActionsConfig:
    env_id: str = ""  # whose action space to sample (the sim's env_id)
    scale: float = bounded(1.0, 0.0, 1.0)  # fraction of the space's half-width


class RandomActions(Node):
    """Uniform random actions in a gymnasium env's action space, as ``joint_command``
    (a reference policy, and the default of ``configs/graph/gym.yaml``)."""

    Config = RandomActionsConfig
    publishes = ("joint_command",)

    def __init__(self, ctx: NodeContext, cfg: RandomActionsConfig) -> None:
        super().__init__(ctx, cfg)
        import gymnasium as gym

        try:
            env = gym.make(cfg.env_id)
        except gym.error.Error as e:
            raise ConfigError(f"graph.nodes.{ctx.name}.args.env_id",
                              f"gymnasium cannot make {cfg.env_id!r}: {e}") from None
        space = env.action_space
        env.close()
        low = np.asarray(space.low, np.float64).reshape(-1)
        high = np.asarray(space.high, np.float64).reshape(-1)
        mid, half = (low + high) / 2, (high - low) / 2 * cfg.scale
        self.low, self.high = mid - half, mid + half
        self.rng = ctx.rng

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        a = self.rng.uniform(self.low, self.high)
        zeros = np.zeros_like(a)
        return [("joint_command", JointCommand(stamp_ns=now_ns, mode="torque", position=zeros,
                                               velocity=zeros, effort=a))]
