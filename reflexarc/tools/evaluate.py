"""``reflexarc eval``: success rate of a policy on a task, or a world model on episodes.

    reflexarc eval policy=expert task=pick_place backend=pybullet episodes=50 out=eval.json
    reflexarc eval policy=random task=all backend=all episodes=20
    reflexarc eval model=runs/wm/latest.safetensors        # reflexarc.policies.evaluate:evaluate_model

A policy run plays ``episodes`` seeded episodes (seeds ``seed``, ``seed + 1``, ...) of
each selected task and backend, each until its first success or its step limit, and
reports one row per (task, backend): success rate, mean steps to success, mean final
task distance. ``expert`` is the task's scripted expert (privileged state, see
reflexarc.sim.experts); ``random`` samples the action space, as a reference row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc.policies.evaluate import ProbeConfig
from reflexarc.runtime.config import bounded, choice, register
from reflexarc.runtime.progress import Progress

TASK_NAMES = ("reach", "push", "pick_place")
BACKENDS = ("mujoco", "pybullet")


@dataclass
class EvalConfig:
    policy: str = choice("expert", "random")
    task: str = choice("push", "reach", "pick_place", "all")
    backend: str = choice("mujoco", "pybullet", "all")
    episodes: int = bounded(50, 1, 100_000)
    seed: int = 0  # seed of the first episode
    image_size: int = bounded(64, 16, 512)
    max_steps: int = bounded(0, 0, 100_000)  # step limit per episode; 0 = the task's default
    out: str = ""  # JSON file of the summary
    model: str = ""  # a world-model checkpoint: evaluate it instead (reflexarc.policies.evaluate)
    data: str = ""  # model: episode folder (default: the checkpoint's training data)
    horizon: int = bounded(0, 0, 1000)  # model: prediction horizon (0: the checkpoint's)
    # model: probes of named observation entries (0: the checkpoint's training ones);
    # reflexarc.policies.quantities
    probe: ProbeConfig = field(default_factory=ProbeConfig)


register("eval_schema", EvalConfig)


def evaluate_policy(
    task: str,
    backend: str,
    policy: str = "expert",
    episodes: int = 50,
    seed: int = 0,
    image_size: int = 64,
    max_steps: int = 0,
    progress: bool = False,
    objects: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Play ``episodes`` seeded episodes of ``policy`` on one task and backend.

    ``progress``: a progress line with an ETA on stderr (reflexarc.runtime.progress).
    ``objects``: the scene's block colours, the task's first (default: the env's).

    Returns a row: task, backend, policy, episodes, success_rate, mean_steps_to_success
    (None when nothing succeeded), mean_final_distance (m), seconds.
    """
    import gymnasium as gym

    from reflexarc import sim
    from reflexarc.sim.experts import make_expert

    kwargs: dict[str, Any] = {"backend": backend, "image_size": image_size}
    if max_steps:
        kwargs["max_episode_steps"] = max_steps
    if objects:
        kwargs["objects"] = list(objects)
    env = gym.make(sim.ENV_IDS[task], **kwargs)
    expert = make_expert(task, max_delta=env.unwrapped.max_delta) if policy == "expert" else None
    env.action_space.seed(seed)
    successes: list[int] = []  # steps to success of the successful episodes
    distances: list[float] = []
    t0 = time.perf_counter()
    bar = Progress(f"eval {policy} {task} {backend}", episodes) if progress else None
    try:
        for episode in range(episodes):
            _, info = env.reset(seed=seed + episode)
            if expert is not None:
                expert.reset(info)
            steps, done = 0, False
            while not done:
                action = expert.act(info) if expert is not None else env.action_space.sample()
                _, _, terminated, truncated, info = env.step(action)
                steps += 1
                if info["is_success"]:
                    successes.append(steps)
                    break
                done = terminated or truncated
            distances.append(float(info["distance"]))
            if bar is not None:
                bar.update(episode + 1, f"success {len(successes)}/{episode + 1}")
    finally:
        env.close()
    return {
        "task": task,
        "backend": backend,
        "policy": policy,
        "episodes": episodes,
        "success_rate": len(successes) / episodes,
        "mean_steps_to_success": float(np.mean(successes)) if successes else None,
        "mean_final_distance": float(np.mean(distances)),
        "seconds": time.perf_counter() - t0,
    }


def eval_verb(cfg: EvalConfig) -> dict[str, Any] | list[dict[str, Any]]:
    """Evaluate ``cfg.model`` (a world model) when set, else ``cfg.policy`` on the tasks."""
    if cfg.model:
        from reflexarc.policies.evaluate import evaluate_model

        return evaluate_model(cfg)
    tasks = TASK_NAMES if cfg.task == "all" else (cfg.task,)
    backends = BACKENDS if cfg.backend == "all" else (cfg.backend,)
    rows = [
        evaluate_policy(t, b, cfg.policy, cfg.episodes, cfg.seed, cfg.image_size, cfg.max_steps,
                        progress=True)
        for t in tasks
        for b in backends
    ]
    return rows[0] if len(rows) == 1 else rows
