"""Known planning problems (planner/reach.py) and `reflexarc bench plan` through its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reflexarc.planner.cem import CEMConfig
from reflexarc.planner.mppi import MPPIConfig
from reflexarc.planner.protocol import LatentModel
from reflexarc.planner.reach import MLPPredictor, latent_reach_episode, success_vs_budget
from tests.conftest import reflexarc

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_plan_verb_writes_rows_json_and_png(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = reflexarc("bench", "plan", "quick=true", f"out={out}")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    sweeps = {(r["sweep"], r["planner"]) for r in rows}
    for sweep in ("default", "threads", "samples", "horizon", "iterations"):
        assert (sweep, "cem") in sweeps
    assert ("default", "mppi") in sweeps and ("samples", "mppi") in sweeps
    for r in rows:
        assert r["device"] == "cpu" or r["device"].startswith("cuda")
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["solves"] >= 5
    cem_cpu = [r for r in rows if r["planner"] == "cem" and r["device"] == "cpu"]
    assert sorted(r["samples"] for r in cem_cpu if r["sweep"] == "samples") == [16, 32]
    assert sorted(r["iterations"] for r in cem_cpu if r["sweep"] == "iterations") == [1, 2]
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_stand_in_predictor_is_a_latent_model_of_our_size() -> None:
    shipped = json.loads((Path(__file__).parents[2] / "policies/checkpoints/push-mujoco/config.json").read_text())["model"]
    model = MLPPredictor()
    assert isinstance(model, LatentModel)
    assert (model.latent_dim, model.action_dim) == (shipped["latent_dim"], shipped["action_dim"])
    d = model.latent_dim
    z0, actions = torch.randn(3, d), torch.randn(3, 5, 4)
    with torch.no_grad():
        zs = model.rollout(z0, actions)
        assert zs.shape == (3, 5, d)
        torch.testing.assert_close(
            zs[:, 1], model.predict(model.predict(z0, actions[:, 0]), actions[:, 1])
        )


def test_success_vs_budget_hook_runs_episodes_per_setting() -> None:
    calls: list[tuple[str, int, int]] = []

    def episode(name: str, cfg: CEMConfig, seed: int) -> dict:
        calls.append((name, cfg.samples, seed))
        return {"success": seed == 0 or cfg.samples > 100, "steps": 10 + seed}

    settings = [("cem", CEMConfig()), ("mppi", MPPIConfig(samples=64))]
    rows = success_vs_budget(episode, settings, episodes=2)
    assert calls == [("cem", 128, 0), ("cem", 128, 1), ("mppi", 64, 0), ("mppi", 64, 1)]
    assert [(r["planner"], r["samples"]) for r in rows] == [("cem", 128), ("mppi", 64)]
    assert [r["success"] for r in rows] == [1.0, 0.5]
    assert [r["steps"] for r in rows] == [10.5, 10.0]  # mean over successful episodes


def test_a_one_sample_budget_fails_the_synthetic_reach() -> None:
    """The synthetic episode can fail: with no search it does not reach 1 cm."""
    cfg = CEMConfig(samples=2, elites=1, horizon=1, iterations=1, noise_std=1.0, min_std=1.0)
    results = [latent_reach_episode("cem", cfg, seed, max_steps=10) for seed in range(2)]
    assert not any(r["success"] for r in results)
