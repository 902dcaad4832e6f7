"""Node argument names read from the nodes' sources agree with their imported Configs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import yaml

from reflexarc.runtime.argkeys import argument_names
from reflexarc.runtime.node import node_class

ROOT = Path(__file__).resolve().parents[2]


def _graph_targets() -> set[str]:
    targets = {"reflexarc.runtime.testnodes:WakingEcho", "reflexarc.runtime.clock:LockstepClock"}
    for path in (ROOT / "configs" / "graph").glob("*.yaml"):
        for entry in (yaml.safe_load(path.read_text()).get("nodes") or {}).values():
            if isinstance(entry, dict) and "target" in entry:
                targets.add(entry["target"])
    return targets


def test_the_names_read_from_source_are_the_config_fields() -> None:
    checked = 0
    for target in sorted(_graph_targets()):
        names = argument_names(target)
        if names is None:  # not said plainly (select_class): checked after the import only
            continue
        cls = node_class(target, {})
        assert names == {f.name for f in dataclasses.fields(cls.Config)}, target
        checked += 1
    assert checked >= 15
    assert argument_names("reflexarc.sim.node:SimNode") is None  # its class depends on backend
    assert argument_names("no.such.module:Node") is None
    assert argument_names("reflexarc.runtime.testnodes:NoSuchNode") is None


def test_reading_them_imports_no_node_module() -> None:
    code = ("import sys; from reflexarc.runtime.argkeys import argument_names; "
            "assert 'realtime_samples' in argument_names('reflexarc.planner.node:PlannerNode'); "
            "print(sorted(m for m in ('torch', 'mujoco', 'reflexarc.planner.node') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
