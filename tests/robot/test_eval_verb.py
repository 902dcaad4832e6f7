"""`reflexarc eval`: policy success on the scenes, JSON summary, world-model delegation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflexarc.runtime.cli import main
from reflexarc.runtime.config import load
from reflexarc.runtime.errors import ConfigError
from reflexarc.tools.evaluate import EvalConfig, eval_verb


def test_expert_eval_through_the_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            "policy=expert",
            "task=reach",
            "backend=pybullet",
            "episodes=3",
            "image_size=16",
            f"out={out}",
        ]
    )
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["task"] == "reach" and summary["backend"] == "pybullet"
    assert summary["episodes"] == 3 and summary["success_rate"] == 1.0
    assert 0 < summary["mean_steps_to_success"] <= 50


def test_all_tasks_and_backends_give_one_row_each() -> None:
    import reflexarc.tools.evaluate  # noqa: F401  (registers eval_schema)

    cfg = load(
        "eval",
        ["policy=random", "task=all", "backend=all", "episodes=1", "image_size=16", "max_steps=3"],
    )
    rows = eval_verb(cfg)
    assert isinstance(rows, list) and len(rows) == 6
    assert {(r["task"], r["backend"]) for r in rows} == {
        (t, b) for t in ("reach", "push", "pick_place") for b in ("mujoco", "pybullet")
    }
    assert all(r["success_rate"] == 0.0 and r["mean_steps_to_success"] is None for r in rows)


def test_a_model_is_evaluated_by_policies_evaluate(monkeypatch: pytest.MonkeyPatch) -> None:
    import reflexarc.policies.evaluate

    seen = {}

    def fake(cfg: EvalConfig) -> dict:
        seen["model"] = cfg.model
        return {"ok": True}

    monkeypatch.setattr(reflexarc.policies.evaluate, "evaluate_model", fake)
    assert eval_verb(EvalConfig(model="runs/wm.safetensors")) == {"ok": True}
    assert seen["model"] == "runs/wm.safetensors"


def test_bad_values_are_config_errors() -> None:
    import reflexarc.tools.evaluate  # noqa: F401

    with pytest.raises(ConfigError, match="policy"):
        load("eval", ["policy=planner"])
    with pytest.raises(ConfigError, match="episodes"):
        load("eval", ["episodes=0"])
