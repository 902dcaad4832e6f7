"""The Python API (reflexarc.run / start / Graph): real node processes, real sockets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import reflexarc
from reflexarc import ConfigError, Graph, JointState, node
from reflexarc.runtime.launcher import Launcher
from tests.conftest import reflexarc as reflexarc_cli
from tests.test_examples import warnings

ECHO = "reflexarc.runtime.testnodes:Echo"
SOURCE = "reflexarc.runtime.testnodes:Source"
LOADED = 10.0  # silent_/stop_timeout_s: a shared CI machine may stall a node for seconds


def test_import_is_light() -> None:
    """``import reflexarc`` pulls in no model, simulator or episode-file library."""
    code = ("import sys, reflexarc; heavy = {'torch', 'mujoco', 'pybullet', 'h5py', 'gymnasium'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_a_graph_built_in_python_returns_typed_figures(tmp_path: Path) -> None:
    graph = Graph({"source": node(SOURCE, 200, dof=3), "echo": node(ECHO, 200, gain=2.0),
                   "recorder": node("reflexarc.runtime.recorder:Recorder", 100)})
    result = reflexarc.run(graph, clock="lockstep", duration_s=0.2, run_dir=str(tmp_path / "r"),
                           silent_timeout_s=LOADED, stop_timeout_s=LOADED)
    assert result.ok
    assert set(result.nodes) == {"source", "echo", "recorder", "clock"}
    echo = result.nodes["echo"]
    assert echo.target_hz == 200.0 and echo.drops == 0 and echo.restarts == 0
    assert all(n.exit_code == 0 for n in result.nodes.values()), {k: n.exit_code for k, n in result.nodes.items()}
    # lockstep: the echo sees each state one tick (5 ms at 200 Hz) after it was made
    assert result.latencies_ms["echo.echo_latency_p50_ms"] == pytest.approx(5.0)
    assert result.episode_dir == tmp_path / "r" / "episode"
    ep = reflexarc.Episode(result.episode_dir)
    states, commands = ep.read("joint_state"), ep.read("joint_command")
    assert states["position"].shape[1] == 3
    # the echo's gain reached the node: each command is twice the state it answers
    by_stamp = dict(zip(states["stamp_ns"].tolist(), states["position"], strict=True))
    pairs = [(by_stamp[s], q) for s, q in zip(commands["stamp_ns"].tolist(),
                                               commands["position"], strict=True)]
    assert len(pairs) > 10
    assert all(np.allclose(2.0 * a, b) for a, b in pairs)


def test_bad_values_fail_as_on_the_command_line(tmp_path: Path) -> None:
    """The same key and message as ``reflexarc run``, before any process starts."""
    with pytest.raises(ConfigError) as api_err:
        reflexarc.configure("counter", clock="sometimes")
    cli = reflexarc_cli("run", "graph=counter", "clock=sometimes")
    assert cli.returncode == 2 and str(api_err.value) in cli.stderr

    cfg = reflexarc.configure("counter", overrides={"graph.nodes.echo.args.gain": 1000.0},
                              run_dir=str(tmp_path / "never"))
    with pytest.raises(ConfigError) as node_err:
        Launcher(cfg)
    assert node_err.value.key == "graph.nodes.echo.args.gain"
    assert "[-100.0, 100.0]" in str(node_err.value)
    assert not (tmp_path / "never").exists()

    with pytest.raises(ConfigError) as missing:
        reflexarc.configure(tmp_path / "nowhere.yaml")
    assert missing.value.key == "graph" and "counter" in missing.value.problem


def test_a_node_class_from_the_script_itself_is_refused() -> None:
    class Local(reflexarc.Node):
        def step(self, now_ns, inbox):  # type: ignore[no-untyped-def]
            return ()

    Local.__module__ = "__main__"
    with pytest.raises(ConfigError, match="module beside the script"):
        node(Local)


USER_NODE = '''
from dataclasses import dataclass
import numpy as np
from reflexarc import JointState, Node


class Ramp(Node):
    @dataclass
    class Config:
        slope: float = 1.0

    publishes = ("joint_state",)

    def __init__(self, ctx, cfg):
        super().__init__(ctx, cfg)
        self.n = 0

    def step(self, now_ns, inbox):
        self.n += 1
        q = np.array([self.n * self.cfg.slope])
        return [("joint_state", JointState(stamp_ns=now_ns, position=q, velocity=0 * q, effort=0 * q))]
'''

USER_GRAPH = '''
# a graph of the user's own, outside the repository
nodes:
  ramp:
    target: user_nodes:Ramp
    rate_hz: 100
    args: {slope: 2.0}
  recorder:
    target: reflexarc.runtime.recorder:Recorder
    rate_hz: 50
    args: {path: ./out/episode}  # relative to this file
'''


def test_a_graph_file_outside_the_repo_with_its_own_node_module(tmp_path: Path) -> None:
    """``reflexarc run graph=FILE``: targets from the file's folder, paths relative to it,
    run from another working directory."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_nodes.py").write_text(textwrap.dedent(USER_NODE))
    (user / "graph.yaml").write_text(USER_GRAPH)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = reflexarc_cli("run", f"graph={user / 'graph.yaml'}", "clock=lockstep", "duration_s=0.2",
                        f"run_dir={tmp_path / 'run'}", f"silent_timeout_s={LOADED}", f"stop_timeout_s={LOADED}",
                        cwd=elsewhere)
    assert res.returncode == 0, res.stdout + res.stderr
    ep = reflexarc.Episode(user / "out" / "episode")
    q = ep.read("joint_state")["position"][:, 0]
    assert len(q) >= 15 and np.allclose(q, 2.0 * np.arange(1, len(q) + 1))
    assert not warnings(res.stderr), res.stderr


def test_a_script_publishes_into_a_running_graph_and_subscribes_to_it(tmp_path: Path) -> None:
    """The handle form: the script's joint states reach the echo node, its commands come back."""
    graph = Graph({"echo": node(ECHO, 100, gain=-3.0)})
    with reflexarc.start(graph, run_dir=str(tmp_path / "h"), silent_timeout_s=LOADED,
                         stop_timeout_s=LOADED) as running:
        commands = running.subscribe("joint_command")
        running.wait_ready(60)
        got = None
        for i in range(100):  # the first messages may go before the sockets have joined
            q = np.array([0.1 * (i + 1), -0.5])
            running.publish("joint_state", JointState(position=q, velocity=0 * q, effort=0 * q))
            got = commands.recv(0.2)
            if got is not None:
                break
        assert got is not None, "no joint_command came back"
        topic, msg = got
        assert topic == "joint_command"
        assert np.allclose(msg.position, -3.0 * np.array([0.1 * (i + 1), -0.5]))
        with pytest.raises(reflexarc.ReflexarcError, match="carries JointState"):
            running.publish("joint_state", msg)
    result = running.result
    assert result is not None and result.ok and result.ended_by == "stopped by the script"
    assert result.nodes["echo"].exit_code == 0


def test_run_help_describes_every_key_and_lists_the_graphs() -> None:
    res = reflexarc_cli("run", "graph=counter", "--help")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    keys = text.split("keys (key=value):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    for line in keys:  # key, value, then what it is (or what is allowed)
        if not line.split()[0].startswith("bus."):
            assert len(line.split(None, 2)) == 3, line
    graphs = text.split("graphs (", 1)[1].split("\n\n", 1)[0]
    for name in ("pixels", "expert", "gym", "counter", "empty"):
        assert f"\n  {name} " in graphs
    assert "graph.nodes.echo.args.gain" in text and "source: reflexarc.runtime.testnodes:Source" in text
