"""Latent MPC toward a goal image in any gymnasium env (docs/anyscene.md).

A world model trained on the env's own play (``reflexarc collect env=<id>`` ->
``reflexarc train``) encodes the goal image and, every step, the last F frames (the
checkpoint's frame history); a sampling planner (CEM or MPPI,
:mod:`reflexarc.planner.planners`) searches action sequences within the env's Box action
space whose predicted latents reach the goal's.

Stopping at the goal rather than swinging past it: the goal latent is the goal image
repeated F times, a scene *at rest* there, and with a frame history the latent carries
velocity, so a plan that arrives fast is scored short of the goal; the cost weighs the
horizon's last step most (``terminal_weight``), so the plan is judged by where it ends.

- :class:`GoalReacher`: the logic (frame history, goal, plan) for a script or a node.
- :class:`GymGoalNode`: the graph's policy node (``configs/graph/gym_goal.yaml``):
  ``camera/<camera>`` in, ``joint_command`` (the env's action in ``effort``) out.
- ``python -m reflexarc.planner.gym_goal ENV_ID CHECKPOINT``: seeded episodes toward a goal
  image against random actions on the env's own distance (:func:`goal_benchmark`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflexarc.planner.mpc import NoGoalError
from reflexarc.planner.planners import make_planner
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import JointCommand
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs


@dataclass
class GoalPlanConfig:
    """The planner's settings for goal images in any env (the same for every env)."""

    planner: str = choice("mppi", "cem", "mppi")
    samples: int = bounded(256, 2, 1 << 16)
    horizon: int = bounded(0, 0, 256)  # 0: the checkpoint's training horizon
    iterations: int = bounded(3, 1, 100)
    noise_std: float = bounded(0.6, 0.0, 10.0)
    running_weight: float = bounded(0.25, 0.0, None)  # each step before the last
    terminal_weight: float = bounded(1.0, 0.0, None)  # the horizon's last step
    # with a model that has a state head (train's state.parts): weight of the distance
    # between the robot's state read from the predicted latents and from the goal's (its
    # velocities at rest there), added to the latent distance at each step. For a goal that
    # is a pose of the robot; 0 for a goal about an object (the goal image's arm is then
    # not where the arm should end)
    state_weight: float = bounded(0.0, 0.0, None)
    seed: int = 0


def load_goal_image(path: str | Path, size: int, key: str = "goal_image") -> np.ndarray:
    """An image file -> (size, size, 3) uint8 RGB (centre square, area-resized), as
    collect sees the env's frames."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(key, f"cannot read an image from {str(path)!r} (PNG, JPEG...)")
    return square(bgr[:, :, ::-1], size)


def square(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3) uint8: centre square, area-resized."""
    import cv2

    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = np.ascontiguousarray(frame[top : top + s, left : left + s, :3])
    if s != size:
        sq = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)
    return sq.astype(np.uint8, copy=False)


class GoalReacher:
    """Frame history -> action toward a goal image, within ``low``..``high`` (A,) each."""

    def __init__(self, model: Any, low: np.ndarray, high: np.ndarray, cfg: GoalPlanConfig,
                 horizon: int) -> None:
        low = np.asarray(low, np.float64).reshape(-1)
        high = np.asarray(high, np.float64).reshape(-1)
        if len(low) != model.action_dim:
            raise ConfigError("checkpoint", f"the world model takes {model.action_dim}-d actions; "
                              f"the env's action space has {len(low)}")
        # an unbounded dimension: plan within what the model learnt (its action scale)
        scales = np.asarray(model.cfg.action_scales or [1.0] * len(low), np.float64)
        low = np.where(np.isfinite(low), low, -scales)
        high = np.where(np.isfinite(high), high, scales)
        self.model = model
        self.frames = int(model.cfg.frames)
        self.planner = make_planner(cfg.planner, model, {
            "samples": cfg.samples, "horizon": cfg.horizon or horizon,
            "iterations": cfg.iterations, "elites": max(1, min(32, cfg.samples // 8)),
            "noise_std": cfg.noise_std, "min_std": min(0.05, cfg.noise_std),
            "running_weight": cfg.running_weight, "terminal_weight": cfg.terminal_weight,
            "action_low": low.tolist(), "action_high": high.tolist(), "seed": cfg.seed})
        self.history: deque[torch.Tensor] = deque(maxlen=self.frames)
        self.goal: torch.Tensor | None = None
        self.goal_state: torch.Tensor | None = None
        self.state_weight = float(cfg.state_weight)
        h = self.planner.cfg.horizon
        self.step_weights = torch.full((h,), float(cfg.running_weight))
        self.step_weights[-1] = float(cfg.terminal_weight)
        if self.state_weight > 0 and getattr(model, "state_head", None) is None:
            raise ConfigError("plan.state_weight", "the world model has no state head (train it "
                              "with state.parts, docs/anyscene.md); set plan.state_weight=0")
        self.steps = 0

    @torch.no_grad()
    def encode(self, frames: list[np.ndarray]) -> torch.Tensor:
        from reflexarc.policies.world_model import stack_frames

        x = stack_frames([torch.from_numpy(np.ascontiguousarray(f)) for f in frames], self.frames)
        return self.model.encode(x.unsqueeze(0))[0]

    def set_goal(self, image: np.ndarray) -> None:
        """The goal: ``image`` (S, S, 3) uint8 held still for F frames."""
        self.goal = self.encode([image] * self.frames)
        self.planner.set_goal(self.goal)
        if self.state_weight > 0:
            with torch.no_grad():
                self.goal_state = self.model.decode_state(self.goal)
            self.planner.latent_cost = self._cost

    def _cost(self, zs: torch.Tensor) -> torch.Tensor:
        """Predicted latents (B, H, D) -> cost (B,): the latent distance to the goal plus
        ``state_weight`` x the distance of the robot's state read from them, per step,
        weighted as the planner weighs steps (running, terminal)."""
        goal, goal_state = self.goal, self.goal_state
        if goal is None or goal_state is None:
            raise NoGoalError("plan toward a goal image: call set_goal first")
        def dist(x: torch.Tensor) -> torch.Tensor:  # the planner's own metric, over the last dim
            return x.abs().mean(-1) if self.planner.cfg.cost == "l1" else x.square().mean(-1)

        d = dist(zs - goal) + self.state_weight * dist(self.model.decode_state(zs) - goal_state)
        return d @ self.step_weights.to(d)

    def reset(self, seed: int | None = None) -> None:
        """A new episode: forget the frames and the warm start (the goal stays)."""
        self.history.clear()
        self.planner.reset(seed=seed)
        if self.goal is not None:
            self.planner.set_goal(self.goal)
        self.steps = 0

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        """The next action (A,) from the newest frame (S, S, 3) uint8."""
        self.history.append(torch.from_numpy(np.ascontiguousarray(frame)))
        from reflexarc.policies.world_model import stack_frames

        z = self.model.encode(stack_frames(list(self.history), self.frames).unsqueeze(0))[0]
        sol = self.planner.plan(z, shift=1 if self.steps else 0, evaluate=False)
        self.steps += 1
        return sol.actions[0].cpu().numpy().astype(np.float64)


def _space_of(env_id: str, env_kwargs: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium as gym

    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.Error as e:
        raise ConfigError(key, f"gymnasium cannot make {env_id!r}: {e}") from None
    space = env.action_space
    env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(key, f"{env_id}: action space {space} is not a Box")
    return np.asarray(space.low).reshape(-1), np.asarray(space.high).reshape(-1)


@dataclass
class GymGoalConfig:
    """Arguments of :class:`GymGoalNode`."""

    env_id: str = ""  # whose action space bounds the plans (the sim's env_id)
    checkpoint: str = ""  # a world model of this env (reflexarc train)
    goal_image: str = ""  # the image to reach (PNG...); "" : random actions
    camera: str = "front"
    plan: GoalPlanConfig = field(default_factory=GoalPlanConfig)

    def validate(self) -> None:
        if self.goal_image and not self.checkpoint:
            raise ConfigError("checkpoint", "a goal image needs a world model of the env "
                              "(reflexarc train; docs/anyscene.md)")


class GymGoalNode(Node):
    """Plans toward ``goal_image`` from the camera's frames; the env's action on
    ``joint_command.effort``. Without a goal image it sends uniform random actions (the
    reference row)."""

    Config = GymGoalConfig
    subscribes = {"camera/": "latest"}
    publishes = ("joint_command",)

    def __init__(self, ctx: NodeContext, cfg: GymGoalConfig) -> None:
        super().__init__(ctx, cfg)
        key = f"graph.nodes.{ctx.name}.args"
        self.low, self.high = _space_of(cfg.env_id, {}, f"{key}.env_id")
        self.rng = ctx.rng
        self.reacher: GoalReacher | None = None
        self.plans = 0
        self.plan_ms: list[float] = []
        self.sent = 0
        self.lowest = np.full(len(self.low), np.inf)  # per dimension, over the commands sent
        self.highest = np.full(len(self.low), -np.inf)
        if cfg.goal_image:
            from reflexarc.policies.checkpoint import CheckpointError, load_checkpoint

            torch.set_num_threads(1)
            try:
                model, info = load_checkpoint(cfg.checkpoint)
            except (CheckpointError, FileNotFoundError) as e:
                raise ConfigError(f"{key}.checkpoint", str(e)) from None
            horizon = int(info.config.get("train", {}).get("optim", {}).get("horizon", 5))
            self.reacher = GoalReacher(model, self.low, self.high, cfg.plan, horizon)
            self.reacher.set_goal(load_goal_image(cfg.goal_image, model.cfg.image_size,
                                                  f"{key}.goal_image"))
        self.topic = f"camera/{cfg.camera}"

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        if self.reacher is None:
            a = self.rng.uniform(np.nan_to_num(self.low, neginf=-1.0), np.nan_to_num(self.high, posinf=1.0))
        else:
            if not inbox.new(self.topic):
                return []
            img = inbox.latest(self.topic)
            t0 = time.perf_counter()
            a = self.reacher.act(square(np.asarray(img.rgb), self.reacher.model.cfg.image_size))
            self.plan_ms.append(1e3 * (time.perf_counter() - t0))
            self.plans += 1
        self.sent += 1
        self.lowest, self.highest = np.minimum(self.lowest, a), np.maximum(self.highest, a)
        zeros = np.zeros_like(a)
        return [("joint_command", JointCommand(stamp_ns=now_ns, mode="torque", position=zeros,
                                               velocity=zeros, effort=np.asarray(a, np.float64)))]

    def summary(self) -> dict[str, Any]:
        ms = np.percentile(self.plan_ms, [50, 99]).tolist() if self.plan_ms else [0.0, 0.0]
        return {"plans": self.plans, "plan_ms_p50": ms[0], "plan_ms_p99": ms[1],
                "commands": self.sent, "action_min": self.lowest.tolist(),
                "action_max": self.highest.tolist()}


# --------------------------------------------------------------------------------------
# The benchmark: planned episodes vs random actions on the env's own distance
# --------------------------------------------------------------------------------------


def _reacher_goal(env: Any) -> None:
    """Reacher-v5: the arm's joints set so the fingertip is on the target."""
    import mujoco

    u = env.unwrapped
    target = u.data.qpos[2:4].copy()
    r = float(np.linalg.norm(target))
    l1, l2 = 0.1, 0.11  # the two links (reacher.xml), the fingertip at the end of the second
    c2 = np.clip((r**2 - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)
    q2 = float(np.arccos(c2))
    q1 = float(np.arctan2(target[1], target[0]) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2)))
    u.data.qpos[:2] = [q1, q2]
    u.data.qvel[:] = 0.0
    mujoco.mj_forward(u.model, u.data)


def _pusher_goal(env: Any) -> None:
    """Pusher-v5: the object on the goal, the arm where it is."""
    import mujoco

    u = env.unwrapped
    m, d = u.model, u.data
    delta = d.xpos[m.body("goal").id][:2] - d.xpos[m.body("object").id][:2]
    d.qpos[m.jnt_qposadr[m.joint("obj_slidex").id]] += delta[0]
    d.qpos[m.jnt_qposadr[m.joint("obj_slidey").id]] += delta[1]
    d.qvel[:] = 0.0
    mujoco.mj_forward(m, d)


# how the benchmark renders each env's goal image (the scene placed at its goal), the
# env's own distance to the goal (-info["reward_dist"] in both), and the tolerance under
# which an episode counts as a success (these envs define none; the 2 cm, 5 cm)
GOALS: dict[str, tuple[Any, float]] = {"Reacher-v5": (_reacher_goal, 0.02),
                                       "Pusher-v5": (_pusher_goal, 0.05)}


def goal_image_of(env: Any, setter: Any) -> np.ndarray:
    """Render the env placed at its goal by ``setter``, then put its state back."""
    u = env.unwrapped
    qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
    setter(env)
    img = env.unwrapped.render()
    import mujoco

    u.data.qpos[:], u.data.qvel[:] = qpos, qvel
    mujoco.mj_forward(u.model, u.data)
    return np.asarray(img)


def goal_benchmark(env_id: str, checkpoint: str, episodes: int = 20, seed: int = 1000,
                   steps: int = 0, cfg: GoalPlanConfig | None = None,
                   policies: tuple[str, ...] = ("plan", "random", "zero"),
                   goal_dir: str = "", env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``episodes`` seeded episodes per policy: the env's distance at the end, the share
    within its tolerance, the share that came within it at some step, and the wall time.
    ``env_kwargs``: what ``collect`` made the env with (``width``/``height`` 64 unless
    given, a camera's ``default_camera_config``...)."""
    import gymnasium as gym

    from reflexarc.policies.checkpoint import load_checkpoint
    from reflexarc.policies.collect import GymFrames

    if env_id not in GOALS:
        raise ConfigError("env_id", f"no goal maker for {env_id!r}; allowed: {', '.join(GOALS)}")
    setter, tol = GOALS[env_id]
    model, info = load_checkpoint(checkpoint)
    size = model.cfg.image_size
    horizon = int(info.config.get("train", {}).get("optim", {}).get("horizon", 5))
    kwargs = {"width": 64, "height": 64, **(env_kwargs or {})}
    env = GymFrames(gym.make(env_id, render_mode="rgb_array", **kwargs), size)
    low, high = env.action_space.low.reshape(-1), env.action_space.high.reshape(-1)
    reacher = GoalReacher(model, low, high, cfg or GoalPlanConfig(), horizon)
    out: dict[str, Any] = {"env": env_id, "checkpoint": str(info.path), "episodes": episodes,
                           "seed": seed, "tolerance": tol, "horizon": reacher.planner.cfg.horizon}
    for policy in policies:
        final, best, wall = [], [], time.perf_counter()
        for ep in range(episodes):
            obs, info0 = env.reset(seed=seed + ep)
            goal = square(goal_image_of(env, setter), size)
            if goal_dir and policy == policies[0]:
                import cv2

                Path(goal_dir).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(Path(goal_dir) / f"goal-{seed + ep}.png"), goal[:, :, ::-1])
            rng = np.random.default_rng(seed + ep)
            if policy == "plan":
                reacher.set_goal(goal)
                reacher.reset(seed=seed + ep)
            dists = []
            n = steps or (env.spec.max_episode_steps if env.spec else 50) or 50
            for _ in range(n):
                if policy == "plan":
                    a = reacher.act(obs["image"])
                elif policy == "random":
                    a = rng.uniform(low, high)
                else:
                    a = np.zeros_like(low)
                obs, _, term, trunc, inf = env.step(a.astype(np.float32))
                dists.append(-float(inf["reward_dist"]))
                if term:
                    break
            final.append(dists[-1])
            best.append(min(dists))
        f = np.asarray(final)
        out[policy] = {"final_dist_mean": float(f.mean()), "final_dist_median": float(np.median(f)),
                       "success": float((f < tol).mean()), "reached_at_some_step": float((np.asarray(best) < tol).mean()),
                       "final_dist": f.round(4).tolist(), "wall_s": round(time.perf_counter() - wall, 1)}
        print(f"{env_id} {policy}: final distance {f.mean():.3f} (median {np.median(f):.3f}), "
              f"success {(f < tol).mean():.2f}, reached at some step {(np.asarray(best) < tol).mean():.2f}",
              file=sys.stderr)
    env.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=goal_benchmark.__doc__)
    p.add_argument("env_id")
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--state-weight", type=float, default=0.0,
                   help="plan.state_weight (a model trained with state.parts)")
    p.add_argument("--goal-dir", default="")
    p.add_argument("--env-kwargs", default="{}",
                   help="JSON: the env_kwargs collect was given (camera, size)")
    p.add_argument("--policies", default="plan,random,zero",
                   help="comma-separated, of plan, random, zero")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    policies = tuple(x.strip() for x in a.policies.split(",") if x.strip())
    if not policies or set(policies) - {"plan", "random", "zero"}:
        raise ConfigError("--policies", f"got {a.policies!r}; allowed: plan, random, zero")
    try:
        env_kwargs = json.loads(a.env_kwargs)
    except json.JSONDecodeError as e:
        raise ConfigError("--env-kwargs", f"not JSON ({e}): {a.env_kwargs!r}") from None
    if not isinstance(env_kwargs, dict):
        raise ConfigError("--env-kwargs", f"need a JSON object, got {a.env_kwargs!r}")
    torch.set_num_threads(1)
    res = goal_benchmark(a.env_id, a.checkpoint, a.episodes, a.seed, a.steps,
                         GoalPlanConfig(samples=a.samples, state_weight=a.state_weight),
                         policies=policies, goal_dir=a.goal_dir, env_kwargs=env_kwargs)
    text = json.dumps(res, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
