"""World model: verbs, loss, EMA target, collapse check."""

from __future__ import annotations

import pytest
import torch

from reflexarc.planner.protocol import LatentModel
from reflexarc.policies.data import load_episodes
from reflexarc.policies.train import OptimConfig, Trainer
from reflexarc.policies.world_model import (
    ModelConfig,
    WorldModel,
    covariance_loss,
    is_collapsed,
    preprocess,
    variance_loss,
)


def tiny(seed: int = 0, **kw: object) -> WorldModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32, **kw)
    return WorldModel(cfg)


def test_verbs_shapes_and_protocol() -> None:
    m = tiny()
    assert isinstance(m, LatentModel)
    assert (m.latent_dim, m.action_dim) == (16, 4)
    img = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    z = m.encode(img)
    assert z.shape == (5, 16)
    # channels-first input gives the same latents as channels-last
    torch.testing.assert_close(m.encode(img.permute(0, 3, 1, 2)), z)
    a = torch.randn(5, 7, 4) * 0.03
    zs = m.rollout(z, a)
    assert zs.shape == (5, 7, 16)
    zk = z
    for k in range(7):
        zk = m.predict(zk, a[:, k])
        torch.testing.assert_close(zs[:, k], zk)


def test_preprocess_range() -> None:
    x = preprocess(torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8))  # (1, 1, 1, 3)
    assert x.shape == (1, 3, 1, 1)
    assert x.min() == -0.5 and x.max() == 0.5


def test_proprio_encoder_needs_proprio() -> None:
    m = tiny(proprio_dim=4)
    img = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    assert m.encode({"image": img, "proprio": torch.zeros(2, 4)}).shape == (2, 16)
    with pytest.raises(ValueError, match="proprio"):
        m.encode(img)


def test_training_step_lowers_loss_on_fixed_batch(toy_episodes) -> None:
    data = load_episodes(toy_episodes, image_size=32)
    starts = data.window_starts(3)[:16]
    images, actions, _ = data.windows(starts, 3)
    m = tiny()
    trainer = Trainer(m, OptimConfig(horizon=3, batch_size=16, lr=3e-3, warmup=0))
    first = trainer.step(images, actions)[0].item()
    for _ in range(25):
        last = trainer.step(images, actions)[0].item()
    assert last < 0.7 * first


@pytest.mark.parametrize("tau", [0.0, 0.05, 1.0])
def test_ema_target_moves_by_tau(tau: float) -> None:
    m = tiny()
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(torch.randn_like(p))
    online = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    before = {k: v.clone() for k, v in m.target_encoder.state_dict().items()}
    m.update_target(tau)
    for k, v in m.target_encoder.state_dict().items():
        torch.testing.assert_close(v, (1 - tau) * before[k] + tau * online[k])
    assert not any(p.requires_grad for p in m.target_encoder.parameters())
    with pytest.raises(ValueError, match="tau"):
        m.update_target(1.5)


def test_collapse_is_detected() -> None:
    m = tiny()
    img = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        z = m.encode(img)
    assert not is_collapsed(z)
    with torch.no_grad():  # a collapsed encoder: constant output whatever the image
        m.encoder.head[-1].weight.zero_()
        m.encoder.head[-1].bias.fill_(0.3)
        z = m.encode(img)
    assert is_collapsed(z)
    assert variance_loss(z) > 0.95  # the VICReg hinge pushes it back out
    partly = torch.randn(64, 16)
    partly[:, 3] = 1.0  # one dead dimension is a collapse too
    assert is_collapsed(partly)
    assert is_collapsed(torch.full((8, 4), float("nan")))


def test_covariance_loss_zero_for_decorrelated() -> None:
    z = torch.linalg.qr(torch.randn(256, 8))[0] * 16.0  # orthogonal columns
    z = z - z.mean(0)
    assert covariance_loss(z) < 1e-3
    corr = torch.randn(256, 1).repeat(1, 8)
    assert covariance_loss(corr) > 1.0
