"""Collection: episode format, resumability, determinism; data loading and windows."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from reflexarc.policies.collect import ExploreConfig, Explorer, collect
from reflexarc.policies.data import load_episode, load_episodes, split_names
from reflexarc.runtime.episode import Episode, EpisodeWriter, list_episodes
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EEAction, Image
from tests.policies.conftest import toy_collect_config


def test_episode_topics_and_alignment(toy_episodes: Path) -> None:
    eps = list_episodes(toy_episodes)
    assert [p.name for p in eps] == [f"ep-{i:06d}" for i in range(6)]
    ep = Episode(eps[0])
    assert set(ep.topics()) == {"camera/front", "joint_state", "ee_action", "scene_state"}
    meta = ep.meta  # what a recorded episode says about itself (docs/data.md)
    assert meta["version"] and meta["config"]["env"] == "reflexarc/ToyPush-v0"
    assert meta["topics"]["joint_state"]["hz"] == meta["control_hz"]
    n_img = len(ep.read("camera/front")["seq"])
    n_act = len(ep.read("ee_action")["seq"])
    assert n_act == n_img - 1  # the last frame has no action after it
    d = load_episode(eps[0], image_size=32)
    assert d["rgb"].shape == (n_img, 32, 32, 3)
    assert d["valid"].sum() == n_act and not d["valid"][-1]
    assert np.isfinite(d["ee_pos"]).all() and np.isfinite(d["block_pos"]).all()
    # the recorded action moved the end effector by that displacement (toy: exact, unclipped)
    a = d["actions"][:-1, :3]
    moved = np.diff(d["ee_pos"], axis=0)
    inside = (d["ee_pos"][1:, 2] > 0.011) & (np.abs(moved) < 0.0499).all(1)
    np.testing.assert_allclose(moved[inside, :2], a[inside, :2], atol=1e-5)


def test_collect_resumes_and_is_deterministic(toy_episodes: Path, tmp_path: Path) -> None:
    root = tmp_path / "eps"
    shutil.copytree(toy_episodes / "ep-000000", root / "ep-000000")
    shutil.copytree(toy_episodes / "ep-000001", root / "ep-000001")
    summary = collect(toy_collect_config(root, episodes=4))
    assert (summary["written"], summary["skipped"]) == (2, 2)
    assert not (root / ".staging").exists()
    # episode 3 collected here in a different batch equals the session fixture's episode 3
    a = load_episode(root / "ep-000003", 32)
    b = load_episode(toy_episodes / "ep-000003", 32)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert collect(toy_collect_config(root, episodes=4))["written"] == 0


def test_explorer_is_smooth_and_reaches_the_block() -> None:
    cfg = ExploreConfig(push_prob=1.0, ou_sigma=0.0)
    ex = Explorer(cfg, 0.05, np.random.default_rng(0))
    ee, block = np.array([0.5, 0.2, 0.2]), np.array([0.5, 0.0, 0.025])
    closest = 1.0
    for _ in range(40):
        a = ex.act(ee, block)
        assert np.all(np.abs(a[:3]) <= 0.05 + 1e-9)
        ee = ee + a[:3]
        closest = min(closest, float(np.linalg.norm(ee[:2] - block[:2])))
    assert closest < 0.05


def test_action_alignment_sums_displacements_within_a_frame(tmp_path: Path) -> None:
    """Recorder episodes may hold several actions per frame: they add up, gripper = last."""
    with EpisodeWriter(tmp_path / "ep") as w:
        for j in range(3):
            w.write("camera/front", Image(stamp_ns=j * 100, camera="front",
                                          rgb=np.full((8, 8, 3), j, np.uint8), depth=np.zeros((0, 0), np.float32)))
        for s, a in [(0, [0.01, 0, 0, 1]), (50, [0.02, 0, 0, -1]), (150, [0, 0.03, 0, 1])]:
            w.write("ee_action", EEAction(stamp_ns=s, action=np.array(a, np.float32)))
    d = load_episode(tmp_path / "ep", image_size=8)
    np.testing.assert_allclose(d["actions"][0], [0.03, 0, 0, -1])
    np.testing.assert_allclose(d["actions"][1], [0, 0.03, 0, 1])
    assert d["valid"].tolist() == [True, True, False]


def test_windows_stay_inside_episodes(toy_episodes: Path) -> None:
    data = load_episodes(toy_episodes, image_size=32)
    starts = data.window_starts(4)
    assert len(starts) > 0
    idx = starts[:, None] + torch.arange(5)
    assert (data.episode[idx] == data.episode[idx[:, :1]]).all()
    assert data.valid[idx[:, :-1]].all()
    images, actions, proprio = data.windows(starts[:3], 4)
    assert images.shape == (3, 5, 3, 32, 32) and images.dtype == torch.uint8
    assert actions.shape == (3, 4, 4) and proprio is None
    sub = data.subset(data.names[:2])
    assert sub.names == data.names[:2] and int(sub.episode.max()) == 1


def test_split_is_stable_when_episodes_are_added() -> None:
    names = [f"ep-{i:06d}" for i in range(50)]
    train, val = split_names(names, 0.2)
    train2, val2 = split_names(names + [f"ep-{i:06d}" for i in range(50, 80)], 0.2)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    assert 3 <= len(val) <= 20 and not set(train) & set(val)


def test_executor_ray_without_ray_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name: str, *a: object, **k: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"reflexarc\[ray\]"):
        collect(dataclasses.replace(toy_collect_config(tmp_path / "x"), executor="ray"))
