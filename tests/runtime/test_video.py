"""H.264 video: what browsers play, frames that come back, bad frames refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reflexarc.runtime.video import H264Writer, VideoError, read_video, write_h264
from tests.runtime.episodes import frame


def test_h264_round_trip_is_browser_playable_and_close(tmp_path: Path) -> None:
    frames = [frame(k) for k in range(12)]
    path = write_h264(tmp_path / "v.mp4", frames, fps=25, gop=2)
    video, info = read_video(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert not info["b_frames"] and info["fps"] == pytest.approx(25)
    assert video.shape == (12, 32, 48, 3)
    assert np.abs(video.astype(int) - np.stack(frames).astype(int)).mean() < 3.0
    assert path.read_bytes()[4:8] == b"ftyp"  # MP4; +faststart puts the index up front
    assert path.read_bytes().find(b"moov") < path.read_bytes().find(b"mdat")


def test_odd_sides_are_padded_to_even(tmp_path: Path) -> None:
    rgb = np.full((15, 21, 3), 200, np.uint8)
    video, info = read_video(write_h264(tmp_path / "odd.mp4", [rgb, rgb], fps=10))
    assert (info["height"], info["width"]) == (16, 22)
    assert np.abs(video[:, :15, :21].astype(int) - 200).max() < 6


def test_bad_frames_are_refused_with_the_reason(tmp_path: Path) -> None:
    with H264Writer(tmp_path / "bad.mp4", fps=10) as w:
        w.write(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(VideoError, match="frame 1 is 4x4, the first was 8x8"):
            w.write(np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(VideoError, match=r"\(H, W, 3\) uint8"):
            w.write(np.zeros((8, 8), np.float32))
    with pytest.raises(VideoError, match="fps must be > 0"):
        H264Writer(tmp_path / "x.mp4", fps=0)
