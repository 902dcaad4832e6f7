"""H.264 video that browsers play: MP4, yuv420p, the index at the start of the file.

Written with PyAV (FFmpeg's libx264). OpenCV's default ``mp4v`` codec is MPEG-4 Part 2,
which no browser plays; H.264 in yuv420p is what every browser and LeRobot's video
readers decode. yuv420p needs even sides, so odd frames are padded by one black
row or column.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from reflexarc.runtime.errors import ReflexarcError

CODEC = "libx264"


class VideoError(ReflexarcError):
    """A video could not be written or read (bad frames, missing codec)."""


def _even(n: int) -> int:
    return n + (n & 1)


class H264Writer:
    """Append RGB frames (H, W, 3) uint8 of one size to an H.264 MP4.

    ``crf``: libx264's constant quality (0 lossless, 23 its default, 51 worst). ``gop``:
    frames between key frames (0: the encoder's choice); a small one makes seeking to any
    frame cheap, as dataset readers do. No B-frames: each frame decodes from earlier ones
    only, so a reader can cut the stream at any key frame without re-encoding.
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 20, gop: int = 0) -> None:
        import av

        if not fps > 0:
            raise VideoError(f"{path}: fps must be > 0, got {fps}")
        if not 0 <= crf <= 51:
            raise VideoError(f"{path}: crf must be in [0, 51], got {crf}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.gop = gop
        self.container: Any = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        self.stream: Any = None
        self.size: tuple[int, int] | None = None  # (H, W) of the frames given
        self.frames = 0

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _open_stream(self, h: int, w: int) -> None:
        self.stream = self.container.add_stream(CODEC, rate=self.fps)
        self.stream.width, self.stream.height = _even(w), _even(h)
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(self.crf), "bf": "0",
                               **({"g": str(self.gop)} if self.gop > 0 else {})}
        self.size = (h, w)

    def write(self, rgb: np.ndarray) -> None:
        import av

        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise VideoError(
                f"{self.path}: frames must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if self.stream is None:
            self._open_stream(h, w)
        elif (h, w) != self.size:
            raise VideoError(f"{self.path}: frame {self.frames} is {h}x{w}, "
                             f"the first was {self.size[0]}x{self.size[1]}")
        if (h, w) != (self.stream.height, self.stream.width):
            padded = np.zeros((self.stream.height, self.stream.width, 3), np.uint8)
            padded[:h, :w] = rgb
            rgb = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        try:
            if self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None


def write_h264(path: str | Path, frames: Iterable[np.ndarray], fps: float,
               crf: int = 20, gop: int = 0) -> Path:
    """Write RGB ``frames`` (H, W, 3) uint8 as an H.264 MP4 at ``fps``; returns the path."""
    with H264Writer(path, fps, crf, gop) as writer:
        for rgb in frames:
            writer.write(rgb)
        if writer.frames == 0:
            raise VideoError(f"{path}: no frames to write")
    return Path(path)


def read_video(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Every frame of a video as (N, H, W, 3) uint8, and its codec, size and rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "profile": stream.codec_context.profile,
                "b_frames": stream.codec_context.has_b_frames,
                "width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(stream.average_rate or 0)}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return (np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)), info
