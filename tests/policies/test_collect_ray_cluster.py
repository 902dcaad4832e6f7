"""Collection on an existing Ray cluster, joined by its address.

The cluster is a real head node started by ``ray start --head --block`` in a process group
of its own (stopped by killing that group, so a Ray instance of another test is untouched),
with token authentication on, as Ray enables it for clusters it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from reflexarc.policies.collect import RayConfig, collect
from reflexarc.policies.data import load_episode
from reflexarc.runtime.errors import ConfigError
from tests.policies.conftest import toy_collect_config

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_head(address: str, env: dict[str, str], timeout_s: float = 120.0) -> None:
    """Until ``ray status`` answers at ``address`` (a head's start-up takes seconds)."""
    ray_cli = Path(sys.executable).with_name("ray")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = subprocess.run([str(ray_cli), "status", "--address", address], env=env,
                           capture_output=True, timeout=60)
        if r.returncode == 0:
            return
        time.sleep(1.0)
    raise TimeoutError(f"no Ray head answered at {address} within {timeout_s} s")


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Ray's daemons leave the head's session)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def stop_processes(pids_of: Callable[[], list[int]], grace_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_of():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while pids_of() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids_of():
            return


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A one-node Ray cluster with token authentication: (its address, the env that joins it).

    Its own temp dir (short: Ray's unix socket paths must fit 107 bytes) names every process
    of the cluster, so the teardown stops exactly those.
    """
    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rxray-", dir="/tmp")
    # `ray start` names its cluster in /tmp/ray/ray_current_cluster, where a later
    # ray.init() without an address would look for it: put back what was there
    current = Path("/tmp/ray/ray_current_cluster")
    before = current.read_bytes() if current.exists() else None
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_for_head(address, env)
        yield address, env
    finally:
        stop_processes(lambda: [p for p in [head.pid] if head.poll() is None]
                       + processes_mentioning(temp))
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            current.unlink(missing_ok=True)
        else:
            current.write_bytes(before)
        assert not processes_mentioning(temp), "Ray processes outlived the test's cluster"


def test_collection_joins_a_running_cluster_by_its_address(
    ray_cluster: tuple[str, dict[str, str]], toy_episodes: Path, tmp_path: Path,
) -> None:
    # a user's shell: the cluster's token in the environment, `reflexarc collect` joining it
    address, env = ray_cluster
    root = tmp_path / "cluster"
    r = subprocess.run(
        [sys.executable, "-m", "reflexarc.runtime.cli", "collect", "env=reflexarc/ToyPush-v0",
         "backend=toy", "image_size=32", f"root={root}", "episodes=4", "steps=12", "num_envs=2",
         "expert_ratio=0", "progress=false", "executor=ray", f"ray.address={address}",
         "ray.num_workers=2"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("ep-")) == [
        f"ep-{i:06d}" for i in range(4)]
    for i in range(4):  # the same episodes as one machine's executor=local makes
        x = load_episode(root / f"ep-{i:06d}", 32)
        y = load_episode(toy_episodes / f"ep-{i:06d}", 32)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"ep-{i:06d} {k}")


def test_a_cluster_that_does_not_answer_is_one_config_error(tmp_path: Path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    cfg = dataclasses.replace(toy_collect_config(tmp_path / "none", episodes=1), executor="ray",
                              ray=RayConfig(address=f"127.0.0.1:{free_port()}", num_workers=1))
    with pytest.raises(ConfigError, match=r"ray\.address.*no Ray cluster answered"):
        collect(cfg)
