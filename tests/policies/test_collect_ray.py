"""Collection on Ray (a local instance, 2 CPUs): same episodes for a seed whatever the
number of workers, a killed worker's episode retried without loss or duplicate."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from reflexarc.policies.collect import CollectConfig, RayConfig, collect
from reflexarc.policies.data import load_episode
from reflexarc.runtime.episode import Episode, list_episodes
from tests.policies.conftest import toy_collect_config

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def ray_config(root: Path, workers: int, episodes: int = 4, **kw: object) -> CollectConfig:
    cfg = toy_collect_config(root, episodes=episodes)
    return dataclasses.replace(cfg, executor="ray", ray=RayConfig(num_workers=workers, **kw))


def same_episodes(a: Path, b: Path, n: int) -> None:
    for i in range(n):
        x = load_episode(a / f"ep-{i:06d}", 32)
        y = load_episode(b / f"ep-{i:06d}", 32)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"ep-{i:06d} {k}")


def test_same_episodes_for_a_seed_whatever_the_workers(
    local_ray: None, toy_episodes: Path, tmp_path: Path
) -> None:
    one = collect(ray_config(tmp_path / "one", 1))
    two = collect(ray_config(tmp_path / "two", 2))
    assert (one["written"], two["written"]) == (4, 4)
    assert (one["num_workers"], two["num_workers"], two["failures"]) == (1, 2, [])
    assert one["steps"] == two["steps"] > 0
    same_episodes(tmp_path / "one", tmp_path / "two", 4)
    same_episodes(tmp_path / "two", toy_episodes, 4)  # and as executor=local made them
    assert collect(ray_config(tmp_path / "two", 2))["written"] == 0  # resumes


def test_a_killed_worker_loses_and_duplicates_nothing(
    local_ray: None, toy_episodes: Path, tmp_path: Path
) -> None:
    root = tmp_path / "killed"
    s = collect(ray_config(root, 2, episodes=6, kill_after=1))
    assert s["killed"] == 1 and s["retried"] >= 1
    assert s["failures"][0]["kind"] == "worker died"
    assert s["written"] == 6
    names = [p.name for p in list_episodes(root)]
    assert names == [f"ep-{i:06d}" for i in range(6)]
    assert not (root / ".staging").exists()
    for p in list_episodes(root):  # one complete part each, nothing half-written
        assert [q.name for q in p.iterdir()] == ["part-000000.h5"]
        assert Episode(p).meta["index"] == int(p.name[3:])
    same_episodes(root, toy_episodes, 6)
