"""``reflexarc bench plan model=CKPT``: success against budget on real episodes from pixels
(gym env + world model), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import reflexarc
from tests.perception.conftest import tiny_checkpoint


@pytest.mark.slow
def test_pixel_episodes_per_planner_setting(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny")  # a 32 px model: the env renders at its size
    out = tmp_path / "plan.json"
    r = reflexarc("bench", "plan", "quick=true", f"model={ckpt.path}", f"out={out}", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [row for row in json.loads(out.read_text()) if row.get("sweep") == "success"]
    assert [(row["task"], row["planner"], row["samples"]) for row in rows] == [("reach", "mppi", 16)]
    row = rows[0]
    assert row["episodes"] == 1 and 0.0 <= row["success"] <= 1.0
    # ran to success (steps counted) or to the step limit (no successful episode: nan)
    assert row["success"] == 0.0 or 1 <= row["steps"] <= 50
    assert (tmp_path / "plan-success.png").stat().st_size > 5000
