"""Cross-entropy method (CEM) over action sequences in a latent world model.

Each iteration keeps the ``elites`` lowest-cost samples and refits the sampling
Gaussian to them (per step and action dimension): mean = elite mean, std = elite std,
clamped to ``[min_std, noise_std]``. The current mean is always one of the samples, so
the best cost seen never gets worse across iterations. See :mod:`reflexarc.planner.mpc` for the
cost, bounds, warm start and goals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reflexarc.planner.mpc import SamplingConfig, SamplingPlanner
from reflexarc.runtime.config import register


@dataclass
class CEMConfig(SamplingConfig):
    """CEM settings: the shared :class:`~reflexarc.planner.mpc.SamplingConfig` fields."""


class CEMPlanner(SamplingPlanner):
    """CEM planner. ``CEMPlanner(model, CEMConfig(...))``; ``set_goal(z_goal)``;
    ``plan(z) -> Solution``; ``reset()`` between episodes."""

    Config = CEMConfig

    def _refit(self, u: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> None:
        idx = torch.topk(costs, self.cfg.elites, largest=False, sorted=False).indices  # (k,)
        elite = u.index_select(0, idx)  # (k, H, A)
        new_std, new_mean = torch.std_mean(elite, dim=0, correction=0)  # (H, A) each
        self._blend(mean, std, new_mean, new_std)


register("cem_planner", CEMConfig, group="planner")
