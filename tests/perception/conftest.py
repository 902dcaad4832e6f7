"""Tiny world-model checkpoints written on the fly (no trained weights needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reflexarc.policies.checkpoint import CheckpointInfo, save_checkpoint
from reflexarc.policies.world_model import ModelConfig, WorldModel

TINY = {"image_size": 32, "channels": [8, 8], "latent_dim": 8, "hidden_dim": 16,
        "predictor_layers": 1}


def tiny_checkpoint(path: Path, version: int = 1, seed: int = 0) -> CheckpointInfo:
    """A randomly initialised world model (32 px, D = 8) saved as checkpoint ``version``."""
    torch.manual_seed(seed)
    model = WorldModel(ModelConfig(**TINY))
    for p in model.predictor.parameters():  # the predictor starts as the identity: perturb it
        torch.nn.init.normal_(p, std=0.1)
    return save_checkpoint(path, model, version)


@pytest.fixture
def ckpt_v1(tmp_path: Path) -> CheckpointInfo:
    return tiny_checkpoint(tmp_path / "v1", version=1, seed=1)


@pytest.fixture
def ckpt_v2(tmp_path: Path) -> CheckpointInfo:
    return tiny_checkpoint(tmp_path / "v2", version=2, seed=2)
