"""The wheel, installed as a user would: only ``reflexarc`` is importable, and the shipped
configs and checkpoints are found from any directory (docs/architecture.md, "Packaging").

The wheel is built from a copy of the checkout (nothing is written into it), installed
into a fresh virtual environment that sees this machine's site-packages for the heavy
dependencies (torch, mujoco, ...), and run from a directory outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a copy of the checkout leaves out: history, caches, local runs and data
SKIP = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".ruff_cache",
    ".import_linter_cache", "runs", "outputs", "data", "tests", ".whl", ".gl",
)


def _can_build_wheels() -> bool:
    """Whether this environment's setuptools builds wheels by itself (70.1+, or ``wheel``)."""
    try:
        import setuptools

        if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1):
            return True
        import wheel  # noqa: F401
    except (ImportError, ValueError):
        return False
    return True


def _run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a minute on a quiet 2-core machine; far more when loaded
def test_the_wheel_installs_reflexarc_alone_and_runs_the_default_job(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    wheels = tmp_path / "wheels"
    # build with this environment's setuptools when it can make wheels (nothing to fetch),
    # else in pip's isolated build environment
    isolation = ["--no-build-isolation"] if _can_build_wheels() else []
    r = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", *isolation,
              "-q", "-w", str(wheels)], tmp_path, 300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = wheels.glob("reflexarc-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # the machine may have reflexarc installed (editable, from a checkout): --force-reinstall
    # puts the wheel's copy into this environment, ahead of it on sys.path
    r = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
              "--force-reinstall", "-q", str(wheel)], tmp_path, 300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    work = tmp_path / "elsewhere"  # outside the checkout and outside its copy
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MUJOCO_GL", "egl")

    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                work, 60, env).stdout.strip()
    r = _run([str(py), "-c", "import reflexarc, reflexarc.robot.panda as p; "
              "print(reflexarc.__file__); print(p.__file__)"], work, 120, env)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in r.stdout.split():
        assert line.startswith(site), (line, site)  # the wheel's copy, not a checkout's
    for name in ("robot", "sim", "planner", "policies", "perception", "configs"):
        r = _run([str(py), "-c", f"import {name}"], work, 60, env)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (name, r.stderr[-500:])

    cli = str(env_dir / "bin" / "reflexarc")
    r = _run([cli, "run", "--help"], work, 120, env)
    assert r.returncode == 0 and "graph" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]

    # the default job (configs, the shipped world model and hand probe, all from the wheel)
    out = work / "run.json"
    r = _run([cli, "run", "clock=lockstep", "episodes=1", f"run_dir={work / 'run'}",
              f"out={out}"], work, 600, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["ok"] and summary["episodes"] == 1, summary.get("reasons")
    assert not (work / "configs").exists() and not (work / "policies").exists()
