"""The latent planner's cost toward a task's stage: the predicted hand against the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflexarc.perception.hand import HandProbe
from reflexarc.planner.mpc import PlannerError
from reflexarc.planner.mppi import MPPIConfig, MPPIPlanner
from reflexarc.planner.protocol import LinearLatentModel
from reflexarc.planner.task_cost import HandTargetCost

D = 5


def hand_model(drift: float = 0.0) -> LinearLatentModel:
    """z[:3] is the hand; an action's (dx, dy, dz) moves it; z[3] drifts by ``drift`` a step."""
    a = torch.eye(D)
    b = torch.zeros(D, 4)
    b[:3, :3] = torch.eye(3)
    model = LinearLatentModel(a, b)
    if drift:
        base = model.predict

        def predict(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            out = base(z, u).clone()
            out[:, 0] += drift  # the model believes the hand drifts in x when held still
            return out

        model.predict = predict  # type: ignore[method-assign]
    return model


def probe(offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> HandProbe:
    """Reads z[:3] as the hand, ``offset`` off (as a probe's own error)."""
    w = np.zeros((D + 1, 3))
    w[:3] = np.eye(3)
    w[-1] = offset
    return HandProbe(np.zeros(D), np.ones(D), w, "x" * 64, 0.0, 1)


def test_the_hand_is_read_relative_to_the_measured_hand() -> None:
    cost = HandTargetCost(probe((0.1, -0.2, 0.3)), 1.0, torch.device("cpu"))
    model = hand_model()
    z0 = np.array([0.4, 0.0, 0.3, 0.0, 0.0], np.float32)
    cost.prepare(model, z0, base=np.array([0.5, 0.1, 0.2]), target=np.zeros(3), horizon=3,
                 gripper=1.0)
    a = torch.zeros(1, 3, 4)
    a[0, :, 0] = 0.01  # +1 cm in x a step
    hands = cost.hands(model.rollout(torch.as_tensor(z0)[None], a))
    # the probe's offset cancels: the measured hand plus the predicted motion
    np.testing.assert_allclose(hands[0].numpy(), [[0.51, 0.1, 0.2], [0.52, 0.1, 0.2],
                                                  [0.53, 0.1, 0.2]], atol=1e-6)


def test_what_the_model_predicts_without_motion_does_not_move_the_hand() -> None:
    cost = HandTargetCost(probe(), 1.0, torch.device("cpu"))
    model = hand_model(drift=0.02)
    z0 = np.zeros(D, np.float32)
    cost.prepare(model, z0, base=np.array([0.5, 0.0, 0.2]), target=np.zeros(3), horizon=4,
                 gripper=-1.0)
    still = torch.zeros(1, 4, 4)
    still[..., 3] = -1.0
    hands = cost.hands(model.rollout(torch.as_tensor(z0)[None], still))
    np.testing.assert_allclose(hands[0].numpy(), np.tile([0.5, 0.0, 0.2], (4, 1)), atol=1e-6)


def test_mppi_with_the_cost_reaches_the_target_within_the_step_bound() -> None:
    model = hand_model()
    cfg = MPPIConfig(samples=256, horizon=5, iterations=6, elites=32)
    planner = MPPIPlanner(model, cfg)
    cost = HandTargetCost(probe((0.05, 0.05, 0.05)), 100.0, planner.device)
    planner.latent_cost = cost
    planner.set_bounds([-0.02, -0.02, -0.02, 0.99], [0.02, 0.02, 0.02, 1.0])
    z0 = np.zeros(D, np.float32)
    base, target = np.array([0.4, 0.0, 0.2]), np.array([0.45, -0.03, 0.15])
    cost.prepare(model, z0, base, target, cfg.horizon, gripper=1.0)
    sol = planner.plan(z0)  # no goal latent needed
    steps = sol.actions.numpy()
    assert np.all(np.abs(steps[:, :3]) <= 0.02 + 1e-6) and np.all(steps[:, 3] >= 0.99)
    end = base + steps[:, :3].sum(0)
    assert np.linalg.norm(end - target) < 0.01  # 7.8 cm away, 5 steps of at most 2 cm each
    assert np.linalg.norm(base + steps[0, :3] - target) < np.linalg.norm(base - target) - 0.015


def test_a_solve_needs_prepare() -> None:
    cost = HandTargetCost(probe(), 1.0, torch.device("cpu"))
    with pytest.raises(PlannerError, match="prepare"):
        cost(torch.zeros(2, 3, D))
