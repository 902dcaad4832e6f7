"""The per-frame table, episode metadata and compression of episode files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from reflexarc.runtime.episode import Episode, write_meta
from reflexarc.runtime.frames import EpisodeDataError, at_or_after, frame_table, nearest
from tests.runtime.episodes import FRAME_MS, JOINTS, write_episode


def test_nearest_picks_the_closer_neighbour() -> None:
    stamps = np.array([0, 10, 20, 30])
    assert nearest(stamps, np.array([-5, 4, 6, 15, 29, 99])).tolist() == [0, 0, 1, 1, 3, 3]
    assert nearest(np.array([7]), np.array([0, 100])).tolist() == [0, 0]
    assert at_or_after(stamps, np.array([0, 1, 30, 31])).tolist() == [0, 1, 3, 3]


def test_frame_table_aligns_state_action_episode_and_success(tmp_path: Path) -> None:
    table = frame_table(write_episode(tmp_path / "ep"))
    assert len(table) == 20 and table.camera == "front"
    assert table.fps == pytest.approx(1000 / FRAME_MS)
    k = np.arange(20)
    # the joint state at the frame's own stamp (position = t in s), then the gripper
    np.testing.assert_allclose(table.state[:, 0], k * FRAME_MS / 1000, atol=1e-6)
    np.testing.assert_allclose(table.state[:, JOINTS], 0.5)
    # the command made from each frame (it carries the frame's stamp; position = k)
    np.testing.assert_array_equal(table.action[:, 0], k)
    np.testing.assert_array_equal(table.action[:, JOINTS], -1.0)
    assert table.episode_index.tolist() == [0] * 10 + [1] * 10
    assert table.success.tolist() == [False] * 19 + [True]
    assert [len(rows) for rows in table.episodes()] == [10, 10]
    assert table.state_names[-1] == "gripper" and len(table.action_names) == JOINTS + 1


def test_frame_table_names_what_is_missing(tmp_path: Path) -> None:
    ep = write_episode(tmp_path / "ep")
    with pytest.raises(EpisodeDataError, match="camera 'wrist' was not recorded; recorded: front"):
        frame_table(ep, "wrist")


def test_episode_files_compress_frames_and_merge_closing_meta(tmp_path: Path) -> None:
    ep_dir = write_episode(tmp_path / "ep", meta={"task": "push", "backend": "mujoco"})
    ep = Episode(ep_dir)
    assert len(ep.parts) > 1  # rotated: the metadata lives in part 0 only
    with h5py.File(ep.parts[0]) as f:
        rgb = f["topics/camera|front/rgb"]
        assert rgb.compression == "gzip"
        # uncompressed, the part would hold a whole 1 MiB chunk for these 3 frames
        assert rgb.id.get_storage_size() < rgb.size * rgb.dtype.itemsize
    np.testing.assert_array_equal(ep.read("camera/front")["rgb"][3][0, -1], [30, 128, 0])
    assert ep.meta["task"] == "push"
    write_meta(ep_dir, {"topics": {"joint_state": {"messages": 800, "hz": 1000.0}}})
    assert ep.meta["task"] == "push" and ep.meta["topics"]["joint_state"]["hz"] == 1000.0
