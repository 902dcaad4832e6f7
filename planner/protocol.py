"""The world-model verbs a planner depends on, and a known linear model that implements them.

Planners call only these verbs, so any latent world model can drive them (the learned
JEPA encoder + predictor in ``policies/``, or :class:`LinearLatentModel` in tests):

    encode(obs)          -> z    (B, D)     observation batch to latents
    predict(z, a)        -> z'   (B, D)     one step: latents (B, D), actions (B, A)
    rollout(z0, actions) -> zs   (B, H, D)  zs[:, t] is the latent after actions[:, :t + 1]

``rollout`` must equal ``predict`` applied ``H`` times; a model that subclasses
:class:`LatentModel` inherits that loop and may override it with something faster.
Actions are end-effector displacements and gripper, ``(dx, dy, dz, gripper)``, in the
env's units (metres per control step, gripper in [-1 close, 1 open]).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


def loop_rollout(model: Any, z0: Tensor, actions: Tensor) -> Tensor:
    """Roll ``model.predict`` over a batch of action sequences.

    Args:
        model: anything with ``predict(z (B, D), a (B, A)) -> (B, D)``.
        z0: (B, D) start latents (a stride-0 ``expand`` of one latent is fine).
        actions: (B, H, A) action sequences.

    Returns:
        (B, H, D) predicted latents; ``[:, t]`` follows ``actions[:, : t + 1]``.
    """
    horizon = actions.shape[1]
    zs = z0.new_empty((z0.shape[0], horizon, z0.shape[-1]))
    z = z0
    for t in range(horizon):
        z = model.predict(z, actions[:, t])
        zs[:, t] = z
    return zs


@runtime_checkable
class LatentModel(Protocol):
    """The verbs of a latent world model, batched. Tensors live on the model's device.

    ``latent_dim`` (D) and ``action_dim`` (A) let a planner check its configuration
    against the model once, at construction.
    """

    latent_dim: int
    action_dim: int

    def encode(self, obs: Any) -> Tensor:
        """Observations (a batch, in the model's own input format) -> latents (B, D)."""
        ...

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """Latents (B, D) and actions (B, A) -> next latents (B, D)."""
        ...

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """Start latents (B, D) and action sequences (B, H, A) -> latents (B, H, D)."""
        return loop_rollout(self, z0, actions)


class LinearLatentModel(LatentModel):
    """A known linear latent model, ``z' = A z + B a``, with a linear encoder ``z = E obs``.

    Used to test planners against closed-form optima. ``rollout`` is the inherited loop,
    so tests exercise the same code path a learned model without its own rollout takes.
    """

    def __init__(self, A: Tensor, B: Tensor, E: Tensor | None = None) -> None:
        """Args:
        A: (D, D) latent transition.
        B: (D, A) action input.
        E: (D, O) encoder matrix; identity (O = D) when omitted.
        """
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square (D, D), got {tuple(A.shape)}")
        if B.ndim != 2 or B.shape[0] != A.shape[0]:
            raise ValueError(f"B must be (D, A) with D = {A.shape[0]}, got {tuple(B.shape)}")
        self.A = A
        self.B = B
        self.E = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) if E is None else E
        self.latent_dim = int(A.shape[0])
        self.action_dim = int(B.shape[1])

    @classmethod
    def random(
        cls,
        latent_dim: int,
        action_dim: int = 4,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> LinearLatentModel:
        """A stable, controllable random model: ``A`` has spectral radius 0.9."""
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(
            torch.randn(latent_dim, latent_dim, generator=g, dtype=torch.float64)
        )
        A = 0.9 * q
        B = torch.randn(latent_dim, action_dim, generator=g, dtype=torch.float64)
        return cls(A.to(dtype=dtype, device=device), B.to(dtype=dtype, device=device))

    def to(self, device: str | torch.device) -> LinearLatentModel:
        return LinearLatentModel(self.A.to(device), self.B.to(device), self.E.to(device))

    def encode(self, obs: Tensor) -> Tensor:
        """(B, O) -> (B, D)."""
        return obs @ self.E.T

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """(B, D), (B, A) -> (B, D)."""
        return torch.addmm(a @ self.B.T, z, self.A.T)
