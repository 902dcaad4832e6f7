"""Latent MPC toward a goal image in any gymnasium env (planner/gym_goal.py): bounds from
the env's action space, the goal held still over the frame history, the graph's node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflexarc.planner.gym_goal import GoalPlanConfig, GoalReacher, GymGoalConfig, load_goal_image
from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.runtime.errors import ConfigError


def _model(frames: int = 2) -> WorldModel:
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=16, channels=[8, 8], latent_dim=8, hidden_dim=16, action_dim=3,
                      action_scales=[2.0, 1.0, 0.5], frames=frames)
    model = WorldModel(cfg)
    torch.nn.init.normal_(model.predictor.net[-1].weight, std=0.3)
    return model.eval()


def test_plans_stay_in_the_env_bounds_and_move_toward_the_goal() -> None:
    model = _model()
    low, high = np.array([-2.0, 0.0, -0.5]), np.array([2.0, 1.0, 0.5])
    reacher = GoalReacher(model, low, high, GoalPlanConfig(samples=64, iterations=2), horizon=3)
    assert reacher.planner.cfg.horizon == 3 and reacher.frames == 2
    rng = np.random.default_rng(0)
    goal = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    reacher.set_goal(goal)
    # the goal latent is the goal image held still over the whole history
    from reflexarc.policies.world_model import stack_frames

    g = torch.from_numpy(goal)
    torch.testing.assert_close(reacher.goal, model.encode(stack_frames([g, g], 2).unsqueeze(0))[0])
    frames = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    acts = np.stack([reacher.act(f) for f in frames])
    assert acts.shape == (4, 3) and (acts >= low - 1e-6).all() and (acts <= high + 1e-6).all()
    # the plan scores better, by the planner's own cost, than holding the middle of the box
    reacher.reset(seed=0)
    z = reacher.encode([frames[0]])
    sol = reacher.planner.plan(z, evaluate=True)
    h = reacher.planner.cfg.horizon
    mid = torch.tensor((low + high) / 2, dtype=torch.float32).expand(1, h, 3)
    with torch.no_grad():
        d = (model.rollout(z[None], mid)[0] - reacher.goal).abs().mean(-1)  # (H,)
    assert float(sol.cost) < float(d @ reacher.planner._weights)


def test_a_state_head_adds_the_robots_state_to_the_goal_cost() -> None:
    """plan.state_weight: the distance of the robot's state read from the predicted latents
    to the goal's, added to the latent distance per step, weighted like it."""
    import dataclasses

    torch.manual_seed(0)
    base = _model()
    model = WorldModel(dataclasses.replace(base.cfg, state_dim=3)).eval()
    model.load_state_dict(base.state_dict(), strict=False)
    low, high = -np.ones(3), np.ones(3)
    cfg = GoalPlanConfig(samples=32, iterations=1, state_weight=2.0)
    reacher = GoalReacher(model, low, high, cfg, horizon=3)
    goal = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    reacher.set_goal(goal)
    zs = torch.randn(5, 3, 8)
    with torch.no_grad():
        want = ((zs - reacher.goal).abs().mean(-1)
                + 2.0 * (model.decode_state(zs) - model.decode_state(reacher.goal)).abs().mean(-1))
        got = reacher.planner.latent_cost(zs)
    torch.testing.assert_close(got, want @ torch.tensor([0.25, 0.25, 1.0]))
    a = reacher.act(goal)
    assert a.shape == (3,) and (np.abs(a) <= 1 + 1e-6).all()
    with pytest.raises(ConfigError, match="no state head") as e:
        GoalReacher(base, low, high, cfg, horizon=3)
    assert e.value.key == "plan.state_weight"


def test_bad_inputs_name_their_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match="3-d actions") as e:
        GoalReacher(_model(), np.zeros(2) - 1, np.ones(2), GoalPlanConfig(), 3)
    assert e.value.key == "checkpoint"
    with pytest.raises(ConfigError, match="cannot read an image") as e:
        load_goal_image(tmp_path / "nope.png", 16)
    assert e.value.key == "goal_image"
    with pytest.raises(ConfigError, match="needs a world model"):
        GymGoalConfig(env_id="Reacher-v5", goal_image="g.png").validate()
    import cv2

    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((40, 60, 3), np.uint8) + [0, 0, 255])  # BGR red
    img = load_goal_image(tmp_path / "g.png", 16)
    assert img.shape == (16, 16, 3) and img[0, 0].tolist() == [255, 0, 0]  # RGB, square


@pytest.mark.slow
def test_the_gym_graph_plans_toward_a_goal_image(tmp_path) -> None:
    """reflexarc run graph=gym env_id=Reacher-v5 goal_image=FILE world_model=CKPT: the policy
    node plans from the sim's frames and every command is within the env's Box."""
    pytest.importorskip("mujoco")
    import cv2

    import reflexarc
    from reflexarc.policies.checkpoint import save_checkpoint

    model = WorldModel(ModelConfig(image_size=32, channels=[8, 8, 8], latent_dim=8, hidden_dim=16,
                                   action_dim=2, action_scales=[1.0, 1.0], frames=2))
    save_checkpoint(tmp_path / "wm", model, 1, {"train": {"optim": {"horizon": 3}}})
    cv2.imwrite(str(tmp_path / "goal.png"), np.full((48, 64, 3), 90, np.uint8))
    result = reflexarc.run(
        "gym", clock="lockstep", episodes=1, env_id="Reacher-v5", image_size=32,
        goal_image=str(tmp_path / "goal.png"), world_model=str(tmp_path / "wm"),
        run_dir=str(tmp_path / "run"),
        overrides={"graph.nodes.sim.rate_hz": 50,
                   "graph.nodes.sim.args.env_kwargs": {"width": 32, "height": 32, "max_episode_steps": 12},
                   "graph.nodes.policy.args.plan.samples": 16})
    assert result.ok and result.episodes[0].figures["steps"] == 12
    policy = result.nodes["policy"].figures
    assert policy["plans"] >= 12 and policy["commands"] >= 12  # a plan per frame
    lo, hi = np.array(policy["action_min"]), np.array(policy["action_max"])
    assert lo.shape == (2,) and (lo >= -1.0).all() and (hi <= 1.0).all() and (hi > lo).all()
