"""The joint-limit figures of every run, kept where a test session can read them.

A plant node's summary (the sim, the bridge, the pretend arm behind it with an ``arm_``
prefix) carries ``beyond_limits`` (samples past a limit, per kind) and ``max_speed_share``
(docs/safety.md). When the environment names a file in :data:`ENV`, the launcher appends
one JSON line per such summary at the end of every run, so that a test session (whose
graphs run in-process or as ``reflexarc`` subprocesses, which inherit the environment)
can add them up (tests/limits_plugin.py). :data:`LABEL`, if set, names what ran the
graph (a test's id) in each line.
"""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "REFLEXARC_LIMITS_LOG"
LABEL = "REFLEXARC_LIMITS_LABEL"
KEYS = ("beyond_limits", "max_speed_share", "max_accel_share", "limit_samples")


def limit_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per plant in a run summary: ``node`` (``bridge/arm`` for the arm behind a
    bridge), ``run_dir`` and the :data:`KEYS` it has."""
    rows = []
    for node, figures in (summary.get("node_figures") or {}).items():
        for prefix, name in (("", node), ("arm_", f"{node}/arm")):
            if isinstance(figures.get(f"{prefix}beyond_limits"), dict):
                rows.append({"node": name, "run_dir": summary.get("run_dir", ""),
                             **{k: figures[prefix + k] for k in KEYS if prefix + k in figures}})
    return rows


def note_limits(summary: dict[str, Any]) -> None:
    """Append the run's limit rows to the file named by :data:`ENV` (nothing if unset)."""
    path = os.environ.get(ENV)
    if not path:
        return
    label = os.environ.get(LABEL, "")
    lines = "".join(json.dumps({"label": label, **r}, default=str) + "\n"
                    for r in limit_rows(summary))
    if lines:
        with open(path, "a", encoding="utf-8") as f:  # one write per run: runs may end together
            f.write(lines)
