"""A graph split over two launchers (host=robot / host=brain) on loopback TCP with CURVE:
messages cross between the launchers both ways; bad placements are refused up front."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.config import load
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.launcher import Launcher

SPLIT = ["graph.nodes.source.host=robot", "graph.nodes.sink.host=robot", "graph.nodes.echo.host=brain"]


def free_base_port(n: int = 3) -> int:
    """A base port with ``n`` free ports after it."""
    for _ in range(50):
        base = random.randint(20000, 40000)
        try:
            for i in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


@pytest.mark.slow
def test_two_launchers_run_one_graph_over_curve(tmp_path: Path) -> None:
    keys = busmod.make_keys(tmp_path / "keys")
    common = ["graph=counter", "duration_s=10", "bus.transport=tcp", "bus.curve=true",
              f"bus.keys_dir={keys}", f"bus.base_port={free_base_port()}", "startup_timeout_s=60",
              "+bus.hosts.robot=127.0.0.1", "+bus.hosts.brain=127.0.0.1", *SPLIT]
    procs = {}
    for host in ("brain", "robot"):  # stderr to files: a full pipe would stall a launcher
        with open(tmp_path / f"{host}.log", "w") as log:
            procs[host] = subprocess.Popen(
                [sys.executable, "-m", "reflexarc.runtime.cli", "run", *common, f"host={host}",
                 f"run_dir={tmp_path / host}", f"out={tmp_path / host}.json"],
                stdout=subprocess.DEVNULL, stderr=log)
    try:
        for host, p in procs.items():
            rc = p.wait(timeout=240)  # a loaded machine starts the processes slowly
            assert rc == 0, f"{host}: {(tmp_path / f'{host}.log').read_text()[-3000:]}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    robot = json.loads((tmp_path / "robot.json").read_text())
    brain = json.loads((tmp_path / "brain.json").read_text())
    # each launcher started only its own nodes
    assert sorted(r["node"] for r in robot["nodes"]) == ["sink", "source"]
    assert [r["node"] for r in brain["nodes"]] == ["echo"]
    # source (robot) -> echo (brain) -> sink (robot): both directions crossed
    received = robot["node_figures"]["sink"]["received"]
    assert received["joint_state"] > 10 and received["joint_command"] > 10
    assert brain["node_figures"]["echo"]["echo_latency_p50_us"] > 0


def test_a_split_graph_is_checked_before_anything_starts(tmp_path: Path) -> None:
    base = ["graph=counter", "bus.transport=tcp", f"run_dir={tmp_path}",
            "+bus.hosts.robot=10.0.0.1", "+bus.hosts.brain=10.0.0.2"]
    with pytest.raises(ConfigError, match="graph.nodes.source.host"):  # a node not placed
        Launcher(load("run", [*base, "host=robot", "graph.nodes.echo.host=brain"]))
    with pytest.raises(ConfigError, match="not a name of bus.hosts"):
        load("run", [*base, "host=moon", *SPLIT])
    with pytest.raises(ConfigError, match="needs tcp"):
        load("run", ["graph=counter", "bus.transport=ipc", "+bus.hosts.robot=10.0.0.1", "host=robot"])
    with pytest.raises(ConfigError, match="realtime"):
        load("run", [*base, "host=robot", "clock=lockstep", *SPLIT])
    launcher = Launcher(load("run", [*base, "host=robot", *SPLIT]))
    assert sorted(launcher.procs) == ["sink", "source"] and launcher.remote == ["echo"]
    assert launcher.addresses["echo"].startswith("tcp://10.0.0.2:")
    assert launcher.addresses["source"].startswith("tcp://10.0.0.1:")
    # without host=, the same graph runs whole on one launcher
    whole = Launcher(load("run", [*base, *SPLIT]))
    assert sorted(whole.procs) == ["echo", "sink", "source"]
    assert all(a.startswith("tcp://127.0.0.1:") for a in whole.addresses.values())
