"""The world-model protocol the planners depend on, and the known linear model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reflexarc.planner.protocol import LatentModel, LinearLatentModel, loop_rollout


def test_linear_model_matches_its_formula_and_satisfies_the_protocol() -> None:
    model = LinearLatentModel.random(6, 4, seed=3)
    assert isinstance(model, LatentModel)
    assert (model.latent_dim, model.action_dim) == (6, 4)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 6, generator=g)
    a = torch.randn(5, 4, generator=g)
    torch.testing.assert_close(model.predict(z, a), z @ model.A.T + a @ model.B.T)
    torch.testing.assert_close(model.encode(z), z)  # identity encoder by default
    # stable: spectral radius 0.9
    assert torch.allclose(
        torch.linalg.eigvals(model.A.double()).abs(), torch.tensor(0.9, dtype=torch.float64)
    )


def test_default_rollout_is_predict_applied_h_times() -> None:
    model = LinearLatentModel.random(5, 4, seed=1)
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(3, 5, generator=g)
    actions = torch.randn(3, 7, 4, generator=g)
    zs = model.rollout(z0, actions)
    assert zs.shape == (3, 7, 5)
    z = z0
    for t in range(7):
        z = z @ model.A.T + actions[:, t] @ model.B.T
        torch.testing.assert_close(zs[:, t], z)
    # a stride-0 batch (one latent expanded to N samples) is a valid input
    zs1 = model.rollout(z0[:1].expand(3, -1), actions)
    torch.testing.assert_close(zs1[0], model.rollout(z0[:1], actions[:1])[0])


class _TorchModel(nn.Module, LatentModel):
    """A torch world model that gets ``rollout`` from the protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.action_dim = 3, 4
        self.lin = nn.Linear(7, 3)

    def encode(self, obs: Tensor) -> Tensor:
        return obs

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        return torch.tanh(self.lin(torch.cat([z, a], -1)))


def test_an_nn_module_inherits_the_loop_rollout() -> None:
    model = _TorchModel()
    z0, actions = torch.randn(2, 3), torch.randn(2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.rollout(z0, actions), loop_rollout(model, z0, actions))
    assert isinstance(model, LatentModel)
    assert not isinstance(object(), LatentModel)
