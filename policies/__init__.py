"""Learned models: the self-supervised latent world model, its data, training and learner.

    from reflexarc.policies import load_checkpoint
    model, info = load_checkpoint("policies/checkpoints/push-mujoco")  # dir or .safetensors
    z = model.encode(images)                 # (B, 64, 64, 3) uint8 -> (B, D)
    zs = model.rollout(z, actions)           # (B, H, 4) -> (B, H, D)

Modules: world_model (model, losses), data (episodes -> tensors), checkpoint (safetensors +
config + version, atomic writes), collect / train / evaluate (the ``reflexarc`` verbs),
learner (the online learner node), toy (a tiny procedural scene for tests).
"""

from reflexarc.policies.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from reflexarc.policies.world_model import ModelConfig, WorldModel

__all__ = ["CheckpointInfo", "ModelConfig", "WorldModel", "load_checkpoint", "save_checkpoint"]
