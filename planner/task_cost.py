"""The latent planner's cost toward a task's stage: the hand the world model predicts.

A task goal (the task, the block's name and its target, as a person says it) has no goal
image and no goal latent. The task layer (:mod:`reflexarc.planner.tasks`) turns it into a
hand target for the current stage from perceived positions; the latent planner then
searches actions whose *predicted* latents show the hand at that target. The hand is
read from a predicted latent by the hand probe (:mod:`reflexarc.perception.hand`, fitted
on the robot's own joint states: proprioception, not simulator labels), relative to the
measured hand so that the probe's offset cancels::

    hand_k = hand_now + probe(z_k(actions)) - probe(z_k(still))
    cost   = weight * sum_k |hand_k - target|^2

``z_k(still)`` is the rollout of the same start latent with the hand held still (the
stage's gripper command), so what the world model predicts without any motion (its
drift) does not move the hand. The probe is linear, so the difference is one
matrix product: ``(z_k(actions) - z_k(still)) @ W`` with ``W`` (D, 3).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reflexarc.perception.hand import HandProbe
from reflexarc.planner.mpc import PlannerError


class HandTargetCost:
    """``cost(zs (B, H, D)) -> (B,)``: predicted hand against the stage's target (module
    docstring). Call :meth:`prepare` before each solve."""

    def __init__(self, probe: HandProbe, weight: float, device: torch.device) -> None:
        self.weight = float(weight)
        w = probe.weights[:-1] / probe.scale[:, None]  # (D, 3) latent change -> hand change
        self.w = torch.as_tensor(w, dtype=torch.float32, device=device)
        self.base = torch.zeros(3, device=device)  # (3,) the measured hand
        self.target = torch.zeros(3, device=device)  # (3,) the stage's hand target
        self.still: Tensor | None = None  # (1, H, D) the rollout with the hand still

    def prepare(self, model: object, z0: np.ndarray, base: np.ndarray, target: np.ndarray,
                horizon: int, gripper: float) -> None:
        """Before a solve from latent ``z0`` (D,) with the hand at ``base`` (3,): aim at
        ``target`` (3,); roll the hand-still sequence (``horizon`` steps) out once."""
        dev = self.w.device
        self.base = torch.as_tensor(base, dtype=torch.float32, device=dev)
        self.target = torch.as_tensor(target, dtype=torch.float32, device=dev)
        still = torch.zeros(1, horizon, 4, device=dev)
        still[..., 3] = gripper
        z = torch.as_tensor(z0, dtype=torch.float32, device=dev).reshape(1, -1)
        with torch.no_grad():
            self.still = model.rollout(z, still)  # type: ignore[attr-defined]

    def hands(self, zs: Tensor) -> Tensor:
        """Predicted hand positions (B, H, 3) of predicted latents ``zs`` (B, H, D)."""
        if self.still is None:
            raise PlannerError("HandTargetCost.prepare() was not called before the solve")
        return self.base + (zs - self.still) @ self.w

    def __call__(self, zs: Tensor) -> Tensor:
        err = self.hands(zs) - self.target  # (B, H, 3)
        return self.weight * err.square().sum((1, 2))
