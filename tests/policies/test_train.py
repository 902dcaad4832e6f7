"""Training end to end on toy episodes: determinism, artefacts, evaluation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from reflexarc.policies.checkpoint import load_checkpoint
from reflexarc.policies.evaluate import evaluate_model, probe_r2, r2_score, ridge_fit, ridge_predict
from reflexarc.policies.train import OptimConfig, TrainConfig, train
from reflexarc.policies.world_model import ModelConfig
from reflexarc.runtime.errors import ConfigError


def tiny_config(data: Path, run_dir: Path, **kw: object) -> TrainConfig:
    return TrainConfig(
        data=str(data), run_dir=str(run_dir),
        model=ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32),
        optim=OptimConfig(horizon=3, batch_size=8, warmup=2),
        steps=6, eval_every=3, val_fraction=0.34, device="cpu", progress=False, **kw,
    )


def test_train_is_deterministic_and_writes_artefacts(toy_episodes: Path, tmp_path: Path) -> None:
    s1 = train(tiny_config(toy_episodes, tmp_path / "a"))
    s2 = train(tiny_config(toy_episodes, tmp_path / "b"))
    m1, i1 = load_checkpoint(tmp_path / "a")
    m2, i2 = load_checkpoint(tmp_path / "b")
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert s1["final_loss"] == s2["final_loss"]
    assert i1.version == 1
    for name in ("config.json", "loss.png", "eval.png", "eval.json", "history.json"):
        assert (tmp_path / "a" / name).is_file(), name
    assert i1.config["train"]["steps"] == 6
    assert set(i1.config["split"]["val"]) and not set(i1.config["split"]["val"]) & set(i1.config["split"]["train"])
    assert len(s1["pred_error"]) == len(s1["baseline_error"]) == 3
    # a different seed gives different weights
    train(dataclasses.replace(tiny_config(toy_episodes, tmp_path / "c"), seed=1))
    m3, _ = load_checkpoint(tmp_path / "c")
    assert not torch.equal(m3.predictor.net[0].weight, m1.predictor.net[0].weight)
    # training again into the same run directory bumps the version
    train(tiny_config(toy_episodes, tmp_path / "a"))
    assert load_checkpoint(tmp_path / "a")[1].version == 2

    @dataclasses.dataclass
    class EvalCfg:
        model: str
        data: str
        out: str
        seed: int = 0

    out = tmp_path / "eval" / "wm.json"
    result = evaluate_model(EvalCfg(str(tmp_path / "b"), str(toy_episodes), str(out)))
    assert result["test_episodes"] == len(i2.config["split"]["val"])
    assert result["horizon"] == 3 and len(result["pred_error"]) == 3  # the checkpoint's H
    assert Path(result["figure"]).is_file()
    for key in ("pred_error", "baseline_error", "probe_r2_ee", "probe_r2_block", "min_latent_std"):
        assert key in result
    json.dumps(result)
    # the same episode names in another directory are not the training episodes: all of
    # them are held out, the probe is fitted on the training episodes where they live
    import shutil

    shutil.copytree(toy_episodes, tmp_path / "fresh")
    fresh = evaluate_model(EvalCfg(str(tmp_path / "b"), str(tmp_path / "fresh"), str(tmp_path / "f.json")))
    assert fresh["test_episodes"] == 6
    assert fresh["fit_episodes"] == len(i2.config["split"]["train"])
    assert fresh["probe_fit"].startswith("probe fitted on the checkpoint's training episodes (under")
    # without the training directory at hand: half of the episodes fit the probe
    shutil.move(str(toy_episodes), str(tmp_path / "moved"))
    try:
        alone = evaluate_model(EvalCfg(str(tmp_path / "b"), str(tmp_path / "fresh"), str(tmp_path / "g.json")))
    finally:
        shutil.move(str(tmp_path / "moved"), str(toy_episodes))
    assert alone["test_episodes"] + alone["fit_episodes"] == 6
    assert alone["probe_fit"].startswith("no training episodes")


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no episodes"):
        train(tiny_config(tmp_path, tmp_path / "run"))
    cfg = dataclasses.replace(tiny_config(tmp_path, tmp_path / "run"), device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            train(cfg)


def test_ridge_probe_recovers_a_linear_map() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 10, generator=g)
    w = torch.randn(10, 3, generator=g)
    y = x @ w + 0.5
    probe = ridge_fit(x[:400], y[:400], lam=1e-6)
    assert r2_score(y[400:], ridge_predict(probe, x[400:])) > 0.999
    assert probe_r2(x[:400], y[:400], x[400:], torch.randn(100, 3, generator=g)) < 0.1
