"""Learned models: the self-supervised latent world model, its data, training and learner.

    from reflexarc.policies import load_checkpoint
    model, info = load_checkpoint("policies/checkpoints/push-mujoco")  # dir or .safetensors
    z = model.encode(images)                 # (B, 64, 64, 3) uint8 -> (B, D)
    zs = model.rollout(z, actions)           # (B, H, 4) -> (B, H, D)

Modules: world_model (model, losses), data (episodes -> tensors), checkpoint (safetensors +
config + version, atomic writes), collect / train / evaluate (the ``reflexarc`` verbs),
learner (the online learner node), toy (a tiny procedural scene for tests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reflexarc.policies.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
    from reflexarc.policies.world_model import ModelConfig, WorldModel

__all__ = ["CheckpointInfo", "ModelConfig", "WorldModel", "load_checkpoint", "save_checkpoint"]

# The names above are imported when first used, not with the package: a module of the
# package run as a program (``python -m reflexarc.policies.checkpoint``) must not be in
# sys.modules before runpy executes it, and importing the package stays free of torch.
_HOME = {
    "CheckpointInfo": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "ModelConfig": "world_model", "WorldModel": "world_model",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
