"""Model predictive path integral control (MPPI) over action sequences, TD-MPC style.

Each iteration takes the ``elites`` lowest-cost samples and weights them by
``softmax(-c_norm / temperature)``, where ``c_norm`` is the elite cost rescaled to
[0, 1] (best 0, worst 1), so ``temperature`` is unit-free: 0.1 gives the best elite
e^10 times the weight of the worst. The new mean is the weighted mean; the new std the
weighted std, clamped to ``[min_std, noise_std]`` (``min_std == noise_std`` is classic
MPPI with fixed exploration noise). See :mod:`reflexarc.planner.mpc` for the cost, bounds, warm
start and goals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reflexarc.planner.mpc import SamplingConfig, SamplingPlanner
from reflexarc.runtime.config import bounded, register


@dataclass
class MPPIConfig(SamplingConfig):
    """MPPI settings: the shared fields plus the softmax ``temperature``."""

    elites: int = bounded(32, 1, 1 << 20)
    temperature: float = bounded(0.1, 1e-4, 100.0)  # on elite costs rescaled to [0, 1]


class MPPIPlanner(SamplingPlanner):
    """MPPI planner. ``MPPIPlanner(model, MPPIConfig(...))``; ``set_goal(z_goal)``;
    ``plan(z) -> Solution``; ``reset()`` between episodes."""

    Config = MPPIConfig
    cfg: MPPIConfig

    def _refit(self, u: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> None:
        c, idx = torch.topk(costs, self.cfg.elites, largest=False, sorted=False)  # (k,)
        elite = u.index_select(0, idx)  # (k, H, A)
        lo, hi = torch.aminmax(c)
        c_norm = (c - lo) / (hi - lo).clamp_min(1e-12)  # (k,) in [0, 1]
        w = torch.softmax(-c_norm / self.cfg.temperature, dim=0)[:, None, None]  # (k, 1, 1)
        new_mean = (w * elite).sum(0)  # (H, A)
        new_std = (w * (elite - new_mean).square()).sum(0).sqrt()  # (H, A)
        self._blend(mean, std, new_mean, new_std)


register("mppi_planner", MPPIConfig, group="planner")
