"""Any gymnasium env through collect -> train -> eval (issue 28, first step): a stock
MuJoCo env the project does not ship (Reacher-v5: 2 joint torques in [-1, 1])."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from reflexarc.policies.checkpoint import load_checkpoint
from reflexarc.policies.collect import CollectConfig, ExploreConfig, RandomPlay, collect
from reflexarc.policies.data import DataError, EpisodeData, load_episodes
from reflexarc.policies.evaluate import ProbeConfig, evaluate_model
from reflexarc.policies.quantities import parse_quantities
from reflexarc.policies.train import OptimConfig, TrainConfig, train
from reflexarc.policies.world_model import ModelConfig, WorldModel, stack_frames
from reflexarc.runtime.episode import Episode, list_episodes
from reflexarc.runtime.errors import ConfigError

pytest.importorskip("mujoco")


@dataclasses.dataclass
class EvalCfg:
    model: str
    data: str
    out: str
    seed: int = 0


def test_random_play_stays_in_the_box_and_is_smooth() -> None:
    low, high = np.array([-1.0, 0.0, -3.0]), np.array([1.0, 2.0, 3.0])
    play = RandomPlay(ExploreConfig(), low, high, np.random.default_rng(0))
    a = np.stack([play.act() for _ in range(400)])
    assert a.shape == (400, 3) and a.dtype == np.float32
    assert (a >= low - 1e-6).all() and (a <= high + 1e-6).all()
    assert (a.std(0) > 0.1 * (high - low) / 2).all()  # it explores the range
    # correlated in time: consecutive actions closer than independent draws
    assert np.abs(np.diff(a, axis=0)).mean() < 0.7 * np.abs(a - a[rng_perm(len(a))]).mean()


def rng_perm(n: int) -> np.ndarray:
    return np.random.default_rng(1).permutation(n)


@pytest.mark.slow
def test_stock_env_collect_train_eval(tmp_path: Path) -> None:
    root = tmp_path / "reacher"
    s = collect(CollectConfig(env="Reacher-v5", image_size=32, root=str(root), episodes=3, steps=8,
                              num_envs=1, vector="sync", progress=False,
                              env_kwargs={"width": 64, "height": 64}))
    assert s["written"] == 3 and s["steps"] == 24 and s["backend"] == "gym"
    paths = list_episodes(root)
    ep = Episode(paths[0])
    meta = ep.meta
    assert meta["action_space"] == {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
    act = np.asarray(ep.read("ee_action")["action"])
    assert act.shape == (8, 2) and np.abs(act).max() <= 1.0 and act.std() > 0
    assert np.asarray(ep.read("joint_state")["position"]).shape == (9, 10)  # Reacher's observation
    rgb = np.asarray(ep.read("camera/front")["rgb"])
    assert rgb.shape == (9, 32, 32, 3) and rgb.std() > 1  # rendered frames, not blank
    # the same seed collects the same episodes
    again = tmp_path / "again"
    collect(CollectConfig(env="Reacher-v5", image_size=32, root=str(again), episodes=1, steps=8,
                          num_envs=1, vector="sync", progress=False,
                          env_kwargs={"width": 64, "height": 64}))
    np.testing.assert_array_equal(np.asarray(Episode(list_episodes(again)[0]).read("ee_action")["action"]), act)

    data = load_episodes(root, image_size=32, action_dim=0)
    assert data.actions.shape == (27, 2)
    np.testing.assert_allclose(data.actions[:8].numpy(), act)  # one action per frame, as taken
    with pytest.raises(DataError, match="2-d actions; expected 4"):
        load_episodes(root, image_size=32, action_dim=4)

    cfg = TrainConfig(
        data=str(root), run_dir=str(tmp_path / "run"),
        model=ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32, frames=2),
        optim=OptimConfig(horizon=3, batch_size=8, warmup=2), steps=6, eval_every=0,
        val_fraction=0.34, device="cpu", progress=False,
        probe=ProbeConfig(targets=["fingertip:obs[4:6]+obs[8:10]", "target:obs[4:6]"]))
    summary = train(cfg)
    model, info = load_checkpoint(tmp_path / "run")
    assert info.model.action_dim == 2 and info.model.action_scales == [1.0, 1.0]
    assert info.model.frames == 2 and model.encoder.conv[0].in_channels == 6
    assert len(summary["pred_error"]) == 3
    assert set(summary["probe_r2"]) == {"fingertip", "target"}
    assert all(np.isfinite(v) for v in summary["probe_r2"].values())
    with pytest.raises(ConfigError, match="selects no entry") as e:  # refused before training
        train(dataclasses.replace(cfg, run_dir=str(tmp_path / "bad"),
                                  probe=ProbeConfig(targets=["x:obs[12:14]"])))
    assert e.value.key == "probe.targets"
    result = evaluate_model(EvalCfg(str(tmp_path / "run"), str(root), str(tmp_path / "eval.json")))
    assert len(result["pred_error"]) == len(result["baseline_error"]) == 3
    assert set(result["probe_r2"]) == {"fingertip", "target"}  # the checkpoint's own probes
    assert all(np.isfinite(result["pred_error"])) and all(b > 0 for b in result["baseline_error"])
    assert (tmp_path / "eval.png").is_file()
    # a checkpoint of another action dimension cannot start training on these episodes
    panda = WorldModel(ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32))
    from reflexarc.policies.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "panda", panda, 1, {})
    with pytest.raises(ConfigError, match="4-d actions"):
        train(dataclasses.replace(cfg, run_dir=str(tmp_path / "run2"), init=str(tmp_path / "panda")))


def test_per_dimension_scales_divide_each_action() -> None:
    cfg = ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32,
                      action_dim=2, action_scales=[2.0, 0.5])
    model = WorldModel(cfg)
    torch.nn.init.normal_(model.predictor.net[-1].weight)
    z = torch.randn(5, 16)
    a = torch.randn(5, 2)
    plain = WorldModel(dataclasses.replace(cfg, action_scales=[1.0, 1.0]))
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.predictor(z, a), plain.predictor(z, a / torch.tensor([2.0, 0.5])))
    assert "predictor.action_scales" not in model.state_dict()  # old checkpoints load unchanged
    with pytest.raises(ConfigError, match="action_scales"):
        ModelConfig(action_dim=2, action_scales=[1.0]).validate()


# --- motion in the latent: a frame history ----------------------------------------------


def _two_episodes() -> EpisodeData:
    frames = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1).expand(7, 3, 4, 4).contiguous()
    return EpisodeData(
        frames=frames, actions=torch.zeros(7, 2), valid=torch.tensor([1, 1, 1, 0, 1, 1, 0], dtype=torch.bool),
        episode=torch.tensor([0, 0, 0, 0, 1, 1, 1]), ee_pos=torch.zeros(7, 3), block_pos=torch.zeros(7, 3),
        proprio=None, names=["a", "b"], obs=torch.arange(14, dtype=torch.float32).view(7, 2))


def test_frame_history_stacks_within_an_episode() -> None:
    data = _two_episodes()
    x = data.stacked(torch.tensor([0, 2, 4, 6]), frames=3)  # (4, 9, 4, 4), oldest first
    assert x.shape == (4, 9, 4, 4)
    firsts = x[:, ::3, 0, 0].tolist()  # the frame index of each stacked frame
    # an episode's start repeats its first frame; no frame of episode 0 leaks into episode 1
    assert firsts == [[0, 0, 0], [0, 1, 2], [4, 4, 4], [4, 5, 6]]
    images, _, _ = data.windows(torch.tensor([4]), 2, frames=2)
    assert images.shape == (1, 3, 6, 4, 4) and images[0, :, ::3, 0, 0].tolist() == [[4, 4], [4, 5], [5, 6]]
    sub = data.subset(["b"])
    assert sub.stacked(torch.tensor([0]), 2)[:, ::3, 0, 0].tolist() == [[4, 4]]
    assert sub.obs is not None and sub.obs[0].tolist() == [8.0, 9.0]
    # the planner's helper builds the same input from a live history
    hist = [data.frames[i].permute(1, 2, 0) for i in (4, 5)]  # (S, S, 3) as a camera gives
    torch.testing.assert_close(stack_frames(hist, 3), data.stacked(torch.tensor([5]), 3)[0])


def test_a_frame_history_model_sees_velocity() -> None:
    """With two frames, the encoder's latent differs for the same last frame reached from
    different directions; with one it cannot."""
    cfg = ModelConfig(image_size=16, channels=[8, 8], latent_dim=8, hidden_dim=16, action_dim=2,
                      action_scales=[1.0, 1.0], frames=2)
    model = WorldModel(cfg)
    a, b, c = (torch.full((3, 16, 16), v, dtype=torch.uint8) for v in (0, 100, 200))
    z = model.encode(torch.stack([torch.cat([a, b]), torch.cat([c, b])]))
    assert z.shape == (2, 8) and not torch.allclose(z[0], z[1])
    one = WorldModel(dataclasses.replace(cfg, frames=1))
    assert one.encoder.conv[0].in_channels == 3 and model.encoder.conv[0].in_channels == 6


# --- probes of named quantities -----------------------------------------------------------


def test_named_quantities_parse_and_read_the_observation() -> None:
    tip, target, one = parse_quantities(["tip:obs[4:6]+obs[8:10]", "target: obs[4:6]", "x:obs[-1]"])
    obs = torch.arange(20, dtype=torch.float32).view(2, 10)
    assert tip.values(obs).tolist() == [[12.0, 14.0], [32.0, 34.0]]
    assert target.values(obs).tolist() == [[4.0, 5.0], [14.0, 15.0]]
    assert one.values(obs).tolist() == [[9.0], [19.0]]
    diff = parse_quantities("d:obs[0:2]-obs[2:4]")[0]
    assert diff.values(obs).tolist() == [[-2.0, -2.0], [-2.0, -2.0]]
    for bad, why in [("tip", "allowed"), ("tip:info[0:2]", "unknown source 'info'"),
                     ("tip:obs[a:b]", "cannot read"), ("2tip:obs[0]", "allowed"),
                     ("tip:obs[]", "empty index")]:
        with pytest.raises(ConfigError, match=why) as e:
            parse_quantities([bad])
        assert e.value.key == "probe.targets"
    with pytest.raises(ConfigError, match="more than once"):
        parse_quantities(["a:obs[0]", "a:obs[1]"])
    with pytest.raises(ConfigError, match="one width"):
        parse_quantities(["a:obs[0:2]+obs[3]"])[0].values(obs)
    with pytest.raises(ConfigError, match="selects no entry"):
        parse_quantities(["a:obs[20:22]"])[0].values(obs)


# --- the curious explorer -----------------------------------------------------------------


def test_curious_play_takes_the_most_disputed_candidate() -> None:
    from reflexarc.policies.explore import Curiosity, CuriousPlay

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(image_size=16, channels=[8, 8], latent_dim=8, hidden_dim=16,
                                   action_dim=2, action_scales=[1.0, 1.0], frames=2))
    n = 40
    data = EpisodeData(frames=torch.randint(0, 255, (n, 3, 16, 16), dtype=torch.uint8),
                       actions=torch.rand(n, 2) * 2 - 1, valid=torch.ones(n, dtype=torch.bool),
                       episode=torch.zeros(n, dtype=torch.int64), ee_pos=torch.zeros(n, 3),
                       block_pos=torch.zeros(n, 3), proprio=None, names=["a"])
    data.valid[-1] = False
    cur = Curiosity(model, data, k=3, steps=30)
    assert cur.losses[-1] < cur.losses[0]  # the ensemble learns the latent transitions
    z = cur.encode([np.zeros((16, 16, 3), np.uint8)])
    far = torch.full((1, 3, 2), 50.0)  # far outside the data: the members disagree most there
    near = torch.zeros((1, 3, 2))
    assert float(cur.disagreement(z, far)[0]) > float(cur.disagreement(z, near)[0])
    low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    play = CuriousPlay(cur, ExploreConfig(candidates=16, horizon=3), low, high, np.random.default_rng(0))
    acts = np.stack([play.act(np.full((16, 16, 3), 9 * i, np.uint8)) for i in range(5)])
    assert acts.shape == (5, 2) and (np.abs(acts) <= 1.0 + 1e-6).all() and acts.std() > 0


def test_with_a_state_head_curiosity_ignores_the_robots_own_state() -> None:
    """The disagreement is measured beyond the state head's row space: members that
    disagree only along what the head reads (the robot) count as agreeing."""
    from reflexarc.policies.explore import Curiosity

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(image_size=16, channels=[8, 8], latent_dim=8, hidden_dim=16,
                                   action_dim=2, action_scales=[1.0, 1.0], state_dim=2))
    n = 20
    data = EpisodeData(frames=torch.randint(0, 255, (n, 3, 16, 16), dtype=torch.uint8),
                       actions=torch.rand(n, 2) * 2 - 1, valid=torch.ones(n, dtype=torch.bool),
                       episode=torch.zeros(n, dtype=torch.int64), ee_pos=torch.zeros(n, 3),
                       block_pos=torch.zeros(n, 3), proprio=None, names=["a"])
    data.valid[-1] = False
    cur = Curiosity(model, data, k=3, steps=5)
    assert cur.beyond is not None
    w = model.state_head.weight.detach()  # (2, 8)
    torch.testing.assert_close(w @ cur.beyond, torch.zeros(2, 8), atol=1e-5, rtol=0)
    # members apart only along the head's rows: no disagreement; apart elsewhere: some
    along = torch.stack([w[0] * t for t in (-1.0, 0.0, 1.0)])[:, None]  # (K, 1, D)
    other = torch.randn(8)
    other = other @ cur.beyond
    across = torch.stack([other * t for t in (-1.0, 0.0, 1.0)])[:, None]
    assert float((along @ cur.beyond).var(0).mean()) < 1e-10
    assert float((across @ cur.beyond).var(0).mean()) > 1e-3


@pytest.mark.slow
def test_curious_collect_on_a_stock_env(tmp_path: Path) -> None:
    from reflexarc.policies.explore import moved_share

    kw = dict(env="Reacher-v5", image_size=32, num_envs=1, vector="sync", progress=False,
              env_kwargs={"width": 32, "height": 32})
    collect(CollectConfig(root=str(tmp_path / "random"), episodes=3, steps=6, **kw))
    train(TrainConfig(data=str(tmp_path / "random"), run_dir=str(tmp_path / "run"),
                      model=ModelConfig(image_size=32, channels=[8, 8, 8], latent_dim=8, hidden_dim=16, frames=2),
                      optim=OptimConfig(horizon=2, batch_size=4, warmup=1), steps=2, eval_every=0,
                      final_eval=False, val_fraction=0.0, device="cpu", progress=False))
    with pytest.raises(ConfigError, match="explore.model") as e:
        collect(CollectConfig(root=str(tmp_path / "x"), episodes=1, steps=2,
                              explore=ExploreConfig(policy="curious"), **kw))
    assert e.value.key == "explore.policy"
    s = collect(CollectConfig(root=str(tmp_path / "curious"), episodes=2, steps=5,
                              explore=ExploreConfig(policy="curious", model=str(tmp_path / "run"),
                                                    candidates=8, horizon=2, ensemble=2), **kw))
    assert s["written"] == 2 and s["steps"] == 10
    ep = Episode(list_episodes(tmp_path / "curious")[0])
    assert ep.meta["policy"] == "explore-curious"
    act = np.asarray(ep.read("ee_action")["action"])
    assert act.shape == (5, 2) and np.abs(act).max() <= 1.0 and act.std() > 0
    share = moved_share(tmp_path / "curious", "fingertip:obs[4:6]+obs[8:10]", threshold=1e-4)
    assert share["episodes"] == 2 and share["moved_share"] == 1.0  # the arm moved in both
    assert moved_share(tmp_path / "curious", "target:obs[4:6]", 1e-4)["moved_share"] == 0.0
    # how close the fingertip came to the target: the smallest |obs[8:10]| of the episode
    near = moved_share(tmp_path / "curious", "target:obs[4:6]", 1e-4,
                       near="fingertip:obs[4:6]+obs[8:10]", episodes=1)
    obs = np.asarray(ep.read("joint_state")["position"])
    assert near["episodes"] == 1
    assert near["closest"][0] == pytest.approx(np.linalg.norm(obs[:, 8:10], axis=1).min(), abs=1e-4)


# --- proprioception into the latent: the state head -------------------------------------


def _moving_square(n_eps: int = 6, steps: int = 12, size: int = 32) -> EpisodeData:
    """A square whose position (the 'joint state', obs[0:2]) follows the actions, and a
    second, static entry (obs[2], a 'goal') the state does not name."""
    rng = np.random.default_rng(0)
    frames, actions, valid, episode, obs = [], [], [], [], []
    for e in range(n_eps):
        pos = rng.integers(3, size - 7, 2).astype(float)
        for t in range(steps):
            img = np.zeros((3, size, size), np.uint8)
            y, x = int(pos[0]), int(pos[1])
            img[:, y : y + 4, x : x + 4] = 255
            a = rng.uniform(-1, 1, 2)
            frames.append(img)
            obs.append([pos[0], pos[1], float(e)])
            actions.append(a)
            valid.append(t < steps - 1)
            episode.append(e)
            pos = np.clip(pos + np.round(3 * a), 1, size - 5)
    n = len(frames)
    return EpisodeData(
        frames=torch.from_numpy(np.stack(frames)), actions=torch.tensor(np.stack(actions), dtype=torch.float32),
        valid=torch.tensor(valid), episode=torch.tensor(episode), ee_pos=torch.zeros(n, 3),
        block_pos=torch.zeros(n, 3), proprio=None, names=[f"ep{e}" for e in range(n_eps)],
        action_space={"low": [-1.0, -1.0], "high": [1.0, 1.0]},
        obs=torch.tensor(obs, dtype=torch.float32))


@pytest.mark.slow
def test_the_state_head_puts_the_robots_state_into_the_latent(tmp_path: Path) -> None:
    """``state.parts`` names the robot's joints in the observation; a linear head reads
    them from the latent (and from the predictor's rollout) and trains with the JEPA loss.
    The encoder still takes images only, so a goal image encodes as before."""
    from reflexarc.policies.train import StateConfig

    data = _moving_square()
    cfg = TrainConfig(
        data="synthetic", run_dir=str(tmp_path / "run"),
        model=ModelConfig(image_size=32, channels=[8, 8, 8], latent_dim=8, hidden_dim=32),
        optim=OptimConfig(horizon=2, batch_size=16, warmup=2, lr=3e-3), steps=120, eval_every=0,
        val_fraction=0.0, device="cpu", progress=False, final_eval=False,
        state=StateConfig(parts=["pos:obs[0:2]"]))
    train(cfg, data=data)
    model, info = load_checkpoint(tmp_path / "run")
    assert info.model.state_dim == 2 and model.state_head is not None
    norm = info.config["state"]
    assert norm["parts"] == ["pos:obs[0:2]"] and len(norm["mean"]) == len(norm["std"]) == 2
    # the head decodes the state from image latents alone, far better than its mean
    with torch.no_grad():
        z = model.encode(data.frames)
        pred = model.decode_state(z) * torch.tensor(norm["std"]) + torch.tensor(norm["mean"])
    err = (pred - data.obs[:, :2]).pow(2).mean()
    assert float(err) < 0.3 * float(data.obs[:, :2].var(0).mean())
    # without state.parts: no head, and the checkpoint's keys are the ones saved before it
    plain = WorldModel(ModelConfig(image_size=32, channels=[8, 8, 8], latent_dim=8, hidden_dim=32))
    assert plain.state_head is None and not any(k.startswith("state_head") for k in plain.state_dict())
    with pytest.raises(ConfigError, match="selects no entry") as e:
        train(dataclasses.replace(cfg, run_dir=str(tmp_path / "bad"),
                                  state=StateConfig(parts=["q:obs[5:7]"])), data=data)
    assert e.value.key == "state.parts"
