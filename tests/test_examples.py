"""The scripts in examples/ run as a user runs them (``python examples/X.py``), kept short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str, *args: str, cwd: Path, timeout: float = 300) -> str:
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not warnings(res.stderr), res.stderr
    return res.stdout


def warnings(stderr: str) -> list[str]:
    """WARNING lines, but for the launcher's liveness events (a node silent past its
    timeout on a loaded machine, then killed or restarted: the run says so itself)."""
    liveness = re.compile(r"^\[launcher\] WARNING \w+: (silent|died|restart)")
    return [ln for ln in stderr.splitlines() if "WARNING" in ln and not liveness.match(ln)]


@pytest.mark.slow
def test_gym_env_then_read_episode(tmp_path: Path) -> None:
    out = example("gym_env.py", "--episodes", "1", "--steps", "30", "--runs", "runs", cwd=tmp_path)
    assert re.search(r"^balance\s+0\s+30\s+30\.0\s+time limit$", out, re.M), out
    assert re.search(r"^random\s+0\s+\d+\s+[\d.]+\s+terminated$", out, re.M), out
    episode = tmp_path / "runs" / "balance" / "episode"
    assert f"recorded: {episode}" in out

    out = example("read_episode.py", str(episode), cwd=tmp_path)
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:] if ln.strip()}
    assert rows["camera/front"][1] == "Image" and int(rows["camera/front"][2]) >= 30
    assert rows["joint_command"][1] == "JointCommand"
    assert (tmp_path / "runs" / "balance" / "episode.png").stat().st_size > 10_000


@pytest.mark.slow
def test_custom_node(tmp_path: Path) -> None:
    out = example("custom_node.py", "--runs", "runs", cwd=tmp_path)
    m = re.search(r"success (\d+)%, (\d+) joint states watched, fastest joint ([\d.]+) rad/s", out)
    assert m is not None, out
    assert int(m[1]) == 100 and int(m[2]) > 50 and float(m[3]) > 0.1


@pytest.mark.slow
def test_script_policy(tmp_path: Path) -> None:
    out = example("script_policy.py", "--seconds", "2", "--runs", "runs", cwd=tmp_path)
    m = re.search(r"(\d+) states answered .* commands applied (\d+); pole angle max \|([\d.]+)\| "
                  r"rad; falls (\d+)", out)
    assert m is not None, out
    assert int(m[1]) > 10 and int(m[2]) > 10 and float(m[3]) < 0.2 and m[4] == "0"


@pytest.mark.slow
def test_sweep(tmp_path: Path) -> None:
    out = example("sweep.py", "--seeds", "0", "--runs", "runs", cwd=tmp_path)
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("mujoco", "pybullet"))]
    assert [r[0] for r in rows] == ["mujoco", "pybullet"]
    assert all(r[2] == "100%" for r in rows), out
