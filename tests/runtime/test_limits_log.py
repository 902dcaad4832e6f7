"""The limit figures of every run reach the test session (reflexarc/runtime/limits_log.py,
tests/limits_plugin.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflexarc.runtime.limits_log import ENV, LABEL, limit_rows, note_limits

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[2]

SUMMARY = {
    "run_dir": "/tmp/run-1",
    "node_figures": {
        "sim": {"beyond_limits": {"position": 0, "velocity": 2}, "max_speed_share": 1.1,
                "max_accel_share": 0.5, "limit_samples": 10, "holds": 3},
        "bridge": {"beyond_limits": {"position": 0}, "max_speed_share": 0.2,
                   "arm_beyond_limits": {"torque": 1}, "arm_max_speed_share": 0.3},
        "controller": {"plans": 4},
    },
}


def test_one_row_per_plant_and_the_arm_behind_the_bridge() -> None:
    rows = {r["node"]: r for r in limit_rows(SUMMARY)}
    assert sorted(rows) == ["bridge", "bridge/arm", "sim"]
    assert rows["sim"] == {"node": "sim", "run_dir": "/tmp/run-1",
                           "beyond_limits": {"position": 0, "velocity": 2},
                           "max_speed_share": 1.1, "max_accel_share": 0.5, "limit_samples": 10}
    assert rows["bridge/arm"]["beyond_limits"] == {"torque": 1}
    assert rows["bridge/arm"]["max_speed_share"] == 0.3


def test_rows_are_appended_only_where_the_environment_says(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    note_limits(SUMMARY)  # nowhere to write: nothing happens
    log = tmp_path / "limits.jsonl"
    monkeypatch.setenv(ENV, str(log))
    monkeypatch.setenv(LABEL, "tests/x.py::test_y")
    note_limits(SUMMARY)
    note_limits({"run_dir": "/tmp/run-2", "node_figures": {}})  # no plant: no line
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 3 and {x["label"] for x in lines} == {"tests/x.py::test_y"}


INNER = '''
import pytest
from reflexarc.runtime.limits_log import note_limits

def run(share, velocity):
    note_limits({"run_dir": f"/tmp/r-{share}", "node_figures": {"sim": {
        "beyond_limits": {"position": 0, "velocity": velocity, "acceleration": 3, "torque": 0},
        "max_speed_share": share, "max_accel_share": 1.5}}})

def test_within():
    run(0.8, 0)

MARK
def test_past():
    run(1.2, 4)
'''


@pytest.mark.slow
@pytest.mark.parametrize("exempt", [False, True])
def test_a_run_past_a_limit_fails_the_session_unless_exempt(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, exempt: bool) -> None:
    monkeypatch.delenv(ENV, raising=False)  # the inner session names its own file
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_inner=INNER.replace("MARK", "@pytest.mark.limits_exempt" if exempt else ""))
    result = pytester.runpytest_subprocess("-p", "tests.limits_plugin", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "2 passed" in out
    result.stdout.fnmatch_lines([
        "joint limits over 2 graph runs (2 plant summaries): samples past the limits: "
        "position 0, velocity 4, acceleration 6, torque 0; max speed share 1.200, "
        "max acceleration share 1.50",
        "*test_inner.py::test_past*: sim: 4 samples past the velocity limit; max speed share 1.200*",
    ])
    assert result.ret == (0 if exempt else 1)
