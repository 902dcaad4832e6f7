"""Episode store: atomic commit, written once, local paths and fsspec URLs alike."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from reflexarc.policies.collect import collect
from reflexarc.policies.data import load_episode, load_episodes
from reflexarc.policies.store import EpisodeStore, is_url, local_root
from tests.policies.conftest import toy_collect_config

fsspec = pytest.importorskip("fsspec")


def _episode(tmp: Path, value: int) -> Path:
    d = tmp / f"src-{value}"
    d.mkdir()
    (d / "part-000000.h5").write_bytes(bytes([value]) * 16)
    return d


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_commit_is_once_per_name(kind: str, tmp_path: Path) -> None:
    root = str(tmp_path / "store") if kind == "local" else f"memory://store-{uuid.uuid4().hex}"
    store = EpisodeStore(root)
    assert is_url(root) == (kind == "memory")
    assert store.names() == [] and not store.has("ep-000000")
    first = store.staging("ep-000000")
    first.mkdir(parents=True, exist_ok=True)
    (first / "part-000000.h5").write_bytes(b"\x01" * 16)
    assert store.commit(first, "ep-000000")
    second = store.staging("ep-000000")
    second.mkdir(parents=True, exist_ok=True)
    (second / "part-000000.h5").write_bytes(b"\x02" * 16)
    assert not store.commit(second, "ep-000000")  # the second attempt is dropped
    assert not second.exists()
    assert store.names() == ["ep-000000"] and store.has("ep-000000")
    # a writer that died mid-episode left a staging directory: never listed, cleaned
    dead = store.staging("ep-000001")
    dead.mkdir(parents=True, exist_ok=True)
    (dead / "part-000000.h5").write_bytes(b"\x03")
    assert store.names() == ["ep-000000"]
    cached = local_root(root, tmp_path / "cache")
    assert (cached / "ep-000000" / "part-000000.h5").read_bytes() == b"\x01" * 16
    assert sorted(p.name for p in cached.iterdir() if not p.name.startswith(".")) == ["ep-000000"]
    # local staging lives in the store; a URL store's lives in a local temporary directory
    assert store.clean_staging() == (1 if kind == "local" else 0)
    assert store.names() == ["ep-000000"]
    shutil.rmtree(dead, ignore_errors=True)
    assert store.clean_staging() == 0


def test_collect_into_an_fsspec_url_equals_a_local_directory(
    toy_episodes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLEXARC_CACHE", str(tmp_path / "cache"))
    url = f"memory://collect-{uuid.uuid4().hex}/eps"
    cfg = toy_collect_config(Path("unused"), episodes=3)
    cfg.root = url
    summary = collect(cfg)
    assert summary["written"] == 3 and summary["skipped"] == 0
    assert EpisodeStore(url).names() == ["ep-000000", "ep-000001", "ep-000002"]
    assert collect(cfg)["written"] == 0  # resumable from the store
    data = load_episodes(url, image_size=32)  # read through the local cache
    assert data.names == ["ep-000000", "ep-000001", "ep-000002"]
    cache = local_root(url)
    for i in range(3):
        a = load_episode(cache / f"ep-{i:06d}", 32)
        b = load_episode(toy_episodes / f"ep-{i:06d}", 32)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
