"""``reflexarc bench liveness``: its rows read from a real run's summary."""

from __future__ import annotations

from pathlib import Path

from reflexarc.tools.bench.liveness import COLUMNS, _row, markdown
from tests.conftest import reflexarc


def test_a_row_says_what_the_run_did_and_what_happened_at_its_stop(tmp_path: Path) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "run.json"
    res = reflexarc("run", "graph=counter_rec", "duration_s=1", f"run_dir={run_dir}", f"out={out}")
    row = _row(out, run_dir, res.returncode, 12.3, asked=3)
    assert row["ok"] is True and row["exit"] == 0 and row["wall_s"] == 12.3
    assert row["episodes"] == "0/3" and row["pushes"] == "0/0" and row["videos"] == 0
    assert row["f2c_ms_p50_p99"] == "-" and row["first_reason"] == "" and row["at_stop"] == ""
    assert isinstance(row["load_max"], float)
    table = markdown([{"run": "1", **row}]).splitlines()
    assert table[0] == "| " + " | ".join(COLUMNS) + " |" and len(table) == 3
    assert table[2].startswith("| 1 | True | 0/3 | 0/0 | - |")
