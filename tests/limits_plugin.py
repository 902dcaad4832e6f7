"""Joint limits over every graph run of the test session (docs/safety.md, "Limits in the
test suite").

Every run's launcher appends its plants' limit figures to the file named by
``REFLEXARC_LIMITS_LOG`` (reflexarc/runtime/limits_log.py); this plugin names that file
for the session, labels each run with the test that started it, and at the end prints
one line with the totals. The session fails when a run had a sample past a position,
velocity or torque limit, or a joint faster than its limit (``max_speed_share`` > 1),
unless the test is marked ``limits_exempt`` (it drives the arm past a limit on
purpose). Measured accelerations past the limits are counted and printed, not failed on:
contacts (a push, a grasp) give the arm accelerations no controller commanded.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from reflexarc.runtime.limits_log import ENV, LABEL

FAIL_KINDS = ("position", "velocity", "torque")
MAX_SPEED_SHARE = 1.0
EXEMPT = "limits_exempt"

_state: dict[str, Any] = {"path": None, "own": False, "exempt": set(), "bad": []}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{EXEMPT}: the test drives the arm past a joint limit on purpose "
        "(its runs are reported, not failed on)")
    if os.environ.get(ENV):  # the caller collects them itself
        _state["path"] = Path(os.environ[ENV])
        return
    fd, path = tempfile.mkstemp(prefix="reflexarc-limits-", suffix=".jsonl")
    os.close(fd)
    os.environ[ENV] = path
    _state["path"], _state["own"] = Path(path), True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    os.environ[LABEL] = item.nodeid  # runs started by this test (subprocesses inherit it)
    if item.get_closest_marker(EXEMPT) is not None:
        _state["exempt"].add(item.nodeid)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    os.environ.pop(LABEL, None)


def _rows() -> list[dict[str, Any]]:
    path = _state["path"]
    if path is None or not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a run that was killed while writing
    return rows


def _past(row: dict[str, Any]) -> list[str]:
    """What this plant's run exceeded (empty: nothing that fails the session)."""
    beyond = row.get("beyond_limits") or {}
    out = [f"{beyond[k]} samples past the {k} limit" for k in FAIL_KINDS if beyond.get(k, 0) > 0]
    share = float(row.get("max_speed_share") or 0.0)
    if share > MAX_SPEED_SHARE:
        out.append(f"max speed share {share:.3f}")
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    rows = _rows()
    bad = [(r, why) for r in rows if (why := _past(r))]
    _state["bad"] = bad
    failing = [b for b in bad if b[0].get("label") not in _state["exempt"]]
    if failing and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _state["own"] and _state["path"] is not None:
        _state["path"].unlink(missing_ok=True)
    _state["rows"] = rows


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = _state.get("rows")
    if rows is None:
        return
    runs = len({r.get("run_dir") for r in rows})
    total = dict.fromkeys(("position", "velocity", "acceleration", "torque"), 0)
    for r in rows:
        for k, v in (r.get("beyond_limits") or {}).items():
            total[k] = total.get(k, 0) + int(v)
    top = max(rows, key=lambda r: float(r.get("max_speed_share") or 0.0), default={})
    speed = float(top.get("max_speed_share") or 0.0)
    accel = max((float(r.get("max_accel_share") or 0.0) for r in rows), default=0.0)
    past = ", ".join(f"{k} {v}" for k, v in total.items())
    terminalreporter.write_line(
        f"joint limits over {runs} graph runs ({len(rows)} plant summaries): samples past "
        f"the limits: {past}; max speed share {speed:.3f}, max acceleration share {accel:.2f}")
    if top:  # the run closest to the speed limit, to find it again
        terminalreporter.write_line(
            f"  max speed share from {top.get('label') or '?'}: {top.get('node', '?')} "
            f"({top.get('run_dir', '')})")
    for row, why in _state["bad"]:
        exempt = " (limits_exempt)" if row.get("label") in _state["exempt"] else ""
        terminalreporter.write_line(
            f"  {row.get('label') or '?'}{exempt}: {row['node']}: {'; '.join(why)} "
            f"({row.get('run_dir', '')})", red=not exempt)
