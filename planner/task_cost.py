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

**The block term** (``block_head``: a head trained on perception's own detections,
:mod:`reflexarc.perception.block_head`): in the stages that move the block (push), the
block the world model predicts is scored against the task's target as well::

    block_k = block_seen + head(z_k(actions)) - head(z_k(still))
    cost   += block_weight * sum_k |block_k - target_xy|^2

``block_seen`` is where perception last saw the block; only the change the actions make
counts, as for the hand. The head is a small MLP run on all samples' latents at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from reflexarc.perception.block_head import BlockHeadModule
from reflexarc.perception.hand import HandProbe
from reflexarc.planner.mpc import PlannerError


class HandTargetCost:
    """``cost(zs (B, H, D)) -> (B,)``: predicted hand against the stage's target (module
    docstring). Call :meth:`prepare` before each solve."""

    def __init__(self, probe: HandProbe, weight: float, device: torch.device,
                 head: BlockHeadModule | None = None, block_weight: float = 0.0) -> None:
        self.weight = float(weight)
        self.head = head
        self.block_weight = float(block_weight)
        self.block_index = -1  # the head's row of the block scored; -1: no block term
        self.block_base = torch.zeros(2, device=device)  # (2,) the block as last seen
        self.block_target = torch.zeros(2, device=device)  # (2,) where it should go
        self.block_still: Tensor | None = None  # (1, H, 2) head(z_k(still))
        w = probe.weights[:-1] / probe.scale[:, None]  # (D, 3) latent change -> hand change
        self.w = torch.as_tensor(w, dtype=torch.float32, device=device)
        self.base = torch.zeros(3, device=device)  # (3,) the measured hand
        self.target = torch.zeros(3, device=device)  # (3,) the stage's hand target
        self.still: Tensor | None = None  # (1, H, D) the rollout with the hand still

    def prepare(self, model: object, z0: np.ndarray, base: np.ndarray, target: np.ndarray,
                horizon: int, gripper: float, block: tuple[int, np.ndarray, np.ndarray] | None
                = None) -> None:
        """Before a solve from latent ``z0`` (D,) with the hand at ``base`` (3,): aim at
        ``target`` (3,); roll the hand-still sequence (``horizon`` steps) out once.
        ``block``: (the head's row of the block, where it was seen (2+,), its target
        (2+,)) switches the block term on for this solve (None: off)."""
        dev = self.w.device
        self.base = torch.as_tensor(base, dtype=torch.float32, device=dev)
        self.target = torch.as_tensor(target, dtype=torch.float32, device=dev)
        still = torch.zeros(1, horizon, 4, device=dev)
        still[..., 3] = gripper
        z = torch.as_tensor(z0, dtype=torch.float32, device=dev).reshape(1, -1)
        with torch.no_grad():
            self.still = model.rollout(z, still)  # type: ignore[attr-defined]
        self.block_index = -1
        if block is not None and self.head is not None and self.block_weight > 0:
            index, seen, goal = block
            self.block_index = int(index)
            self.block_base = torch.as_tensor(np.asarray(seen, dtype=float)[:2],
                                              dtype=torch.float32, device=dev)
            self.block_target = torch.as_tensor(np.asarray(goal, dtype=float)[:2],
                                                dtype=torch.float32, device=dev)
            with torch.no_grad():
                self.block_still = self.head(self.still)[..., self.block_index, :]

    def hands(self, zs: Tensor) -> Tensor:
        """Predicted hand positions (B, H, 3) of predicted latents ``zs`` (B, H, D)."""
        if self.still is None:
            raise PlannerError("HandTargetCost.prepare() was not called before the solve")
        return self.base + (zs - self.still) @ self.w

    def blocks(self, zs: Tensor) -> Tensor:
        """Predicted positions (B, H, 2) of the scored block under latents ``zs``."""
        if self.head is None or self.block_index < 0 or self.block_still is None:
            raise PlannerError("no block term in this solve (prepare() without a block)")
        return self.block_base + self.head(zs)[..., self.block_index, :] - self.block_still

    def __call__(self, zs: Tensor) -> Tensor:
        err = self.hands(zs) - self.target  # (B, H, 3)
        cost = self.weight * err.square().sum((1, 2))
        if self.block_index >= 0:
            berr = self.blocks(zs) - self.block_target  # (B, H, 2)
            cost = cost + self.block_weight * berr.square().sum((1, 2))
        return cost
