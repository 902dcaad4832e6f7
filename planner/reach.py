"""Planning problems with known models, to measure planners on: a stand-in world model of
the shipped size, a synthetic latent reach, and success against budget.

- :class:`MLPPredictor`: a latent model shaped as the shipped checkpoints' predictor
  (random weights: a solve's time does not depend on them), for timing.
- :func:`latent_reach_episode`: one closed-loop episode on a latent integrator with a
  known linear model (:func:`latent_reach_model`): the plant is the model, so success
  measures the search alone.
- :func:`success_vs_budget`: success rate of any episode function per planner setting.

``reflexarc bench plan`` reports these; the planner tests use them as known problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from reflexarc.planner.mpc import SamplingConfig
from reflexarc.planner.planners import PLANNERS
from reflexarc.planner.protocol import LinearLatentModel
from reflexarc.robot.panda import PANDA

EpisodeFn = Callable[[str, SamplingConfig, int], dict]
"""``episode(planner_name, planner_cfg, seed) -> {"success": bool, "steps": int, ...}``."""


class MLPPredictor(nn.Module):
    """World-model-sized stand-in: ``z' = z + MLP([z, a])``, D = 128, hidden 256 x 2.

    Implements the :class:`~reflexarc.planner.protocol.LatentModel` verbs; ``encode`` is a linear
    map from a (B, O) observation vector, enough for the bench.
    """

    def __init__(
        self, latent_dim: int = 128, hidden_dim: int = 256, layers: int = 2, action_dim: int = 4
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.action_dim = action_dim
        dims = [latent_dim + action_dim] + [hidden_dim] * layers
        mods: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU()]
        mods.append(nn.Linear(dims[-1], latent_dim))
        self.net = nn.Sequential(*mods)
        self.obs_proj = nn.Linear(latent_dim, latent_dim)

    def encode(self, obs: Tensor) -> Tensor:
        """(B, D) -> (B, D)."""
        return self.obs_proj(obs)

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """(B, D), (B, A) -> (B, D)."""
        return z + self.net(torch.cat([z, a], dim=-1))

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """(B, D), (B, H, A) -> (B, H, D)."""
        zs = z0.new_empty((z0.shape[0], actions.shape[1], z0.shape[-1]))
        z = z0
        for t in range(actions.shape[1]):
            z = self.predict(z, actions[:, t])
            zs[:, t] = z
        return zs


def success_vs_budget(
    episode: EpisodeFn,
    settings: Iterable[tuple[str, SamplingConfig]],
    episodes: int,
) -> list[dict]:
    """Success rate and mean steps to success of ``episode`` for each planner setting.

    The hook for the real tasks: pass an episode function that builds the world model,
    the scene and the planner from the given config and runs one closed-loop episode
    (``reflexarc/tools/evaluate.py`` owns those). Seeds are ``0 .. episodes - 1`` for every setting.
    """
    rows = []
    for name, pcfg in settings:
        results = [episode(name, pcfg, seed) for seed in range(episodes)]
        wins = [r for r in results if r["success"]]
        rows.append(
            {
                "planner": name,
                "samples": pcfg.samples,
                "horizon": pcfg.horizon,
                "iterations": pcfg.iterations,
                "episodes": episodes,
                "success": len(wins) / episodes,
                "steps": float(np.mean([r["steps"] for r in wins])) if wins else float("nan"),
            }
        )
    return rows


def latent_reach_model(latent_dim: int = 64, seed: int = 0) -> LinearLatentModel:
    """A latent integrator: ``z = E s`` for the state ``s = (x, y, z, gripper)`` and
    ``z' = z + E a`` (D x 4 random ``E``; metres weigh 10x a gripper unit)."""
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(latent_dim, 4, generator=g) / latent_dim**0.5
    E[:, :3] *= 10.0
    return LinearLatentModel(torch.eye(latent_dim), E)


WORKSPACE_LOW = (*PANDA.workspace_box[:, 0].tolist(), -1.0)  # the Panda's EE box, and the gripper
WORKSPACE_HIGH = (*PANDA.workspace_box[:, 1].tolist(), 1.0)


def latent_reach_episode(
    name: str,
    pcfg: SamplingConfig,
    seed: int,
    *,
    model: LinearLatentModel | None = None,
    max_steps: int = 30,
    tolerance_m: float = 0.01,
) -> dict:
    """One synthetic reach: from a random state in the workspace box to a random goal
    state given only as a latent; the plant is the model itself, clipped to the box.

    Success: end effector within ``tolerance_m`` of the goal and gripper within 0.2.
    """
    model = model or latent_reach_model()
    E = model.B  # (D, 4)
    lo = torch.tensor(WORKSPACE_LOW)
    hi = torch.tensor(WORKSPACE_HIGH)
    g = torch.Generator().manual_seed(seed)
    s = lo + (hi - lo) * torch.rand(4, generator=g)
    goal = lo + (hi - lo) * torch.rand(4, generator=g)
    s[3], goal[3] = 1.0, (-1.0 if seed % 2 else 1.0)
    planner = PLANNERS[name](model, dataclasses.replace(pcfg, device="cpu", seed=seed))
    planner.set_goal(E @ goal)
    for step in range(1, max_steps + 1):
        action = planner.plan(E @ s).actions[0]
        s = torch.minimum(torch.maximum(s + action, lo), hi)
        if (s[:3] - goal[:3]).norm() < tolerance_m and abs(float(s[3] - goal[3])) < 0.2:
            return {"success": True, "steps": step}
    return {"success": False, "steps": max_steps}
