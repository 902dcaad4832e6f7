"""The hand probe: a self-model from the robot's own frames and joint states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reflexarc.perception.hand import HandProbe, ProbeError, fit_hand_probe, ridge
from reflexarc.policies.checkpoint import CheckpointInfo, save_checkpoint
from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.episode import EpisodeWriter
from reflexarc.runtime.msgs import Image, JointState, empty


def test_ridge_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * rng.uniform(0.1, 3.0, 6)
    w = rng.normal(size=(6, 3))
    y = x @ w + np.array([0.4, 0.0, 0.3])
    mean, scale, weights = ridge(x, y, 1e-9)
    probe = HandProbe(mean, scale, weights, "", 0.0, 500)
    np.testing.assert_allclose(probe(x), y, atol=1e-5)
    assert probe(x[0]).shape == (3,)


def arm_episodes(root: Path, n: int = 4, frames: int = 25, size: int = 32) -> Path:
    """Episodes of the hand, pointing down, at random places of the workspace (where the
    world model's exploration data go), seen by the front camera."""
    from reflexarc.robot.kinematics import ArmKinematics
    from reflexarc.sim.scene import SceneConfig
    from reflexarc.sim.scenes import make_scene

    rng = np.random.default_rng(1)
    kin = ArmKinematics()
    with make_scene(SceneConfig(backend="mujoco")) as scene:
        for e in range(n):
            with EpisodeWriter(root / f"ep-{e:06d}") as w:
                for k in range(frames):
                    hand = rng.uniform([0.3, -0.3, 0.05], [0.7, 0.3, 0.3])
                    q = kin.solve(hand, q0=PANDA.home_q, iters=60).q
                    scene.set_joint_positions(q)
                    stamp = k * 100_000_000
                    z7 = np.zeros(7)
                    w.write("joint_state", JointState(seq=k, stamp_ns=stamp, position=q,
                                                      velocity=z7, effort=z7))
                    w.write("camera/front", Image(seq=k, stamp_ns=stamp, camera="front",
                                                  rgb=scene.render("front", size),
                                                  depth=empty("f4", 0, 0)))
    return root


@pytest.fixture
def wide_ckpt(tmp_path: Path) -> CheckpointInfo:
    torch.manual_seed(0)  # random conv features of 32 px frames, D = 32
    model = WorldModel(ModelConfig(image_size=32, channels=[8, 8], latent_dim=32,
                                   hidden_dim=64, predictor_layers=1))
    return save_checkpoint(tmp_path / "wide", model, 1)


def test_probe_fit_save_and_load(tmp_path: Path, wide_ckpt: CheckpointInfo) -> None:
    root = arm_episodes(tmp_path / "episodes")
    probe = fit_hand_probe(wide_ckpt.path, root, holdout=0.25)
    assert probe.frames == 100 and probe.checkpoint_sha256 == wide_ckpt.sha256
    assert probe.latent_dim == 32 and np.isfinite(probe.heldout_error_m)
    path = probe.save(tmp_path / "probe.npz")
    again = HandProbe.load(path)
    z = np.random.default_rng(2).normal(size=(5, 32))
    np.testing.assert_allclose(again(z), probe(z))
    assert again.heldout_error_m == probe.heldout_error_m
    with pytest.raises(ProbeError, match="32"):
        probe(np.zeros(8))
    with pytest.raises(ProbeError, match="cannot read"):
        HandProbe.load(tmp_path / "missing.npz")
    with pytest.raises(ProbeError, match="at least 2 episodes"):
        fit_hand_probe(wide_ckpt.path, tmp_path / "episodes", max_episodes=1)


SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "checkpoints" / "push-mujoco"


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped world-model checkpoint yet")
def test_probe_of_the_shipped_model_reads_the_hand(tmp_path: Path) -> None:
    root = arm_episodes(tmp_path / "episodes", n=5, frames=40, size=64)
    probe = fit_hand_probe(SHIPPED, root, holdout=0.2)
    # hands spread over the 40 x 60 x 25 cm box: reading nothing errs by ~20 cm
    assert probe.heldout_error_m < 0.06
