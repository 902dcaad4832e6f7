"""The latent planner's cost toward a task's stage: the predicted hand (and block) against
the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflexarc.perception.block_head import BlockHead
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


# -- the block term ---------------------------------------------------------------------------

DB = 7  # z[:3] the hand, z[3:5] the block (x, y), z[5:] nothing


def push_model() -> LinearLatentModel:
    """The hand moves with the action; the block moves with the hand's x, y (a push)."""
    b = torch.zeros(DB, 4)
    b[:3, :3] = torch.eye(3)
    b[3:5, :2] = torch.eye(2)
    return LinearLatentModel(torch.eye(DB), b)


def block_head(offset: tuple[float, float] = (0.0, 0.0)) -> BlockHead:
    """An MLP that reads z[3:5] as the red block (ReLU(x) - ReLU(-x)), ``offset`` off."""
    w1 = np.zeros((DB, 4), np.float32)
    w1[3, 0], w1[3, 1], w1[4, 2], w1[4, 3] = 1, -1, 1, -1
    w3 = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
    arrays = {"mean": np.zeros(DB), "scale": np.ones(DB), "w1": w1, "b1": np.zeros(4),
              "w2": np.eye(4), "b2": np.zeros(4), "w3": w3, "b3": np.zeros(2),
              "y_mean": np.array([offset])}
    return BlockHead(arrays={k: np.asarray(v, np.float32) for k, v in arrays.items()},
                     names=("red",), y_scale=1.0, checkpoint_sha256="x" * 64)


def hand_probe_b() -> HandProbe:
    w = np.zeros((DB + 1, 3))
    w[:3] = np.eye(3)
    return HandProbe(np.zeros(DB), np.ones(DB), w, "x" * 64, 0.0, 1)


def test_the_block_term_prefers_actions_that_bring_the_block_to_its_target() -> None:
    head = block_head(offset=(0.3, -0.1))  # its offset cancels, as the hand probe's
    cost = HandTargetCost(hand_probe_b(), 1.0, torch.device("cpu"), head.module(), 1.0)
    model = push_model()
    z0 = np.zeros(DB, np.float32)
    hand = np.array([0.45, 0.0, 0.015])
    block_seen, block_target = np.array([0.5, 0.0, 0.025]), np.array([0.6, 0.0, 0.025])
    toward, away = torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)
    toward[0, :, 0], away[0, :, 0] = 0.01, -0.01
    zs = model.rollout(torch.as_tensor(z0)[None].expand(2, -1), torch.cat([toward, away]))
    # hand term alone: the stage's hand target is where the hand is (no preference)
    cost.prepare(model, z0, hand, hand, horizon=3, gripper=-1.0)
    hand_only = cost(zs)
    np.testing.assert_allclose(hand_only[0].item(), hand_only[1].item(), rtol=1e-6)
    cost.prepare(model, z0, hand, hand, horizon=3, gripper=-1.0,
                 block=(0, block_seen, block_target))
    blocks = cost.blocks(zs)  # seen + predicted motion, the head's offset cancelled
    np.testing.assert_allclose(blocks[0].numpy(), [[0.51, 0.0], [0.52, 0.0], [0.53, 0.0]],
                               atol=1e-6)
    both = cost(zs)
    assert both[0] < hand_only[0] + 0.1 ** 2 * 3  # toward: less than (10 cm)^2 for 3 steps
    assert both[0] < both[1]  # the term moves the cost in the block's favour
    # (0.09^2 + 0.08^2 + 0.07^2) against (0.11^2 + 0.12^2 + 0.13^2)
    np.testing.assert_allclose((both - hand_only).numpy(), [0.0194, 0.0434], atol=1e-5)
    # switched off (no block in this solve): the hand term alone again
    cost.prepare(model, z0, hand, hand, horizon=3, gripper=-1.0, block=None)
    np.testing.assert_allclose(cost(zs).numpy(), hand_only.numpy(), atol=1e-7)
    with pytest.raises(PlannerError, match="no block term"):
        cost.blocks(zs)


def test_mppi_pushes_the_predicted_block_toward_its_target() -> None:
    model = push_model()
    cfg = MPPIConfig(samples=256, horizon=5, iterations=6, elites=32)
    planner = MPPIPlanner(model, cfg)
    cost = HandTargetCost(hand_probe_b(), 0.0, planner.device, block_head().module(), 100.0)
    planner.latent_cost = cost
    planner.set_bounds([-0.02, -0.02, -0.02, -1.0], [0.02, 0.02, 0.02, -0.99])
    z0 = np.zeros(DB, np.float32)
    hand = np.array([0.45, 0.0, 0.015])
    seen, target = np.array([0.5, 0.0]), np.array([0.55, 0.04])
    cost.prepare(model, z0, hand, hand, cfg.horizon, gripper=-1.0, block=(0, seen, target))
    steps = planner.plan(z0).actions.numpy()
    moved = steps[:, :2].sum(0)  # the block moves with the hand in this model
    assert np.linalg.norm(seen + moved - target) < 0.01, moved
