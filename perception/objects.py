"""Objects found in a camera frame: the coloured blocks, placed in the robot's base frame.

A real camera's view of the table, with OpenCV: each block colour is a band of hue at high
saturation (the table, the arm and the floor are unsaturated), so one threshold per colour
finds its pixels; the largest connected blob of a colour is that block. Its place:

- **without depth**, the ray through the blob's centroid meets the plane of a resting
  block's centre (``z = size / 2`` above the table). The silhouette of a cube is centred on
  its centre's image up to perspective, and that small shift is predicted from the cube's
  corners at the first estimate and taken off (one fixed-point step);
- **with depth**, the blob's pixels are back-projected to surface points; the centre lies
  half a block behind the visible surface along the viewing rays, which also places a block
  that is lifted or stacked.

Intrinsics and pose come from the camera's calibration file
(:mod:`reflexarc.perception.calibration`), never from the simulator.

The confidence of a detection is the blob's area against the area a whole block would
cover at that place (clipped to 1): a block half hidden by the hand, or at the frame's
edge, has a lower one. A colour with too few pixels is not reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reflexarc.perception.calibration import CameraCalibration

#: Hue bands (OpenCV hue, 0-180) of the block colours, as (low, high) pairs.
HUES: dict[str, tuple[tuple[int, int], ...]] = {
    "red": ((0, 8), (172, 180)),
    "green": ((45, 85),),
    "blue": ((100, 130),),
}
BLOCK_SIZE = 0.05  # m, the edge of a block (the scene's blocks; a real set would say)
TABLE_Z = 0.0  # m, the table top in the base frame


@dataclass(frozen=True)
class Detection:
    """One block found in one frame."""

    name: str  # its colour
    position: np.ndarray  # (3,) its centre in the base frame, m
    confidence: float  # 0-1
    pixels: int  # blob area, px
    uv: np.ndarray  # (2,) blob centroid, px


@dataclass
class DetectorConfig:
    """How blocks are told from the rest of the frame."""

    colors: tuple[str, ...] = ("red", "green", "blue")
    min_saturation: int = 110  # 0-255
    min_value: int = 40  # 0-255
    min_pixels: int = 2  # a blob smaller than this is noise
    block_size: float = BLOCK_SIZE
    table_z: float = TABLE_Z


class ObjectDetector:
    """Blocks in RGB frames (H, W, 3) uint8 of one calibrated camera (module docstring)."""

    def __init__(self, calibration: CameraCalibration, cfg: DetectorConfig | None = None) -> None:
        self.calib = calibration
        self.cfg = cfg or DetectorConfig()
        self._scaled: dict[tuple[int, int], CameraCalibration] = {}
        h = self.cfg.block_size / 2
        # (8, 3) the corners of an unrotated block around its centre
        self._corners = np.array([[sx, sy, sz] for sx in (-h, h) for sy in (-h, h)
                                  for sz in (-h, h)])

    def calibration(self, width: int, height: int) -> CameraCalibration:
        key = (width, height)
        c = self._scaled.get(key)
        if c is None:
            c = self._scaled[key] = self.calib.scaled(width, height)
        return c

    def masks(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Per colour, the pixels of that colour: (H, W) uint8 0/255."""
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        sat_val = cv2.inRange(hsv, (0, self.cfg.min_saturation, self.cfg.min_value),
                              (180, 255, 255))
        out = {}
        for name in self.cfg.colors:
            m = np.zeros(rgb.shape[:2], np.uint8)
            for lo, hi in HUES[name]:
                m |= cv2.inRange(hsv[:, :, 0], lo, hi)
            out[name] = m & sat_val
        return out

    def detect(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> list[Detection]:
        """The blocks in one frame, in ``cfg.colors`` order (those not seen are left out)."""
        h, w = rgb.shape[:2]
        calib = self.calibration(w, h)
        use_depth = depth is not None and depth.shape == (h, w)
        found = []
        for name, mask in self.masks(rgb).items():
            n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
            if n < 2:
                continue
            k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area < self.cfg.min_pixels:
                continue
            uv = np.asarray(cents[k], dtype=float)
            if use_depth:
                pos = self._from_depth(calib, labels == k, depth)  # type: ignore[arg-type]
            else:
                pos = self._on_table(calib, uv)
            if not np.all(np.isfinite(pos)):
                continue
            expected, _ = self._silhouette(calib, pos)
            conf = float(min(1.0, area / expected)) if expected > 0 else 0.0
            found.append(Detection(name, pos, conf, area, uv))
        return found

    # -- placing a blob --------------------------------------------------------------------

    def _silhouette(self, calib: CameraCalibration, centre: np.ndarray
                    ) -> tuple[float, np.ndarray]:
        """Area (px) and centroid offset from the centre's image (2,) of a block at
        ``centre`` (3,), from its corners' convex hull."""
        uv = calib.project(centre + self._corners).astype(np.float32)
        hull = cv2.convexHull(uv)
        m = cv2.moments(hull)
        if m["m00"] <= 0:
            return 0.0, np.zeros(2)
        c = np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])
        return float(m["m00"]), c - calib.project(centre)[0]

    def _on_table(self, calib: CameraCalibration, uv: np.ndarray) -> np.ndarray:
        z = self.cfg.table_z + self.cfg.block_size / 2
        pos = calib.on_plane(uv[None], z)[0]
        if not np.all(np.isfinite(pos)):
            return pos
        _, shift = self._silhouette(calib, pos)
        return calib.on_plane((uv - shift)[None], z)[0]

    def _from_depth(self, calib: CameraCalibration, mask: np.ndarray, depth: np.ndarray
                    ) -> np.ndarray:
        v, u = np.nonzero(mask)
        d = depth[v, u].astype(float)  # along the optical axis
        ok = np.isfinite(d) & (d > 0)
        if not ok.any():
            return np.full(3, np.nan)
        # edge pixels blend the block with what lies behind it: keep the block's surface
        ok &= np.abs(d - np.median(d[ok])) < self.cfg.block_size
        if not ok.any():
            return np.full(3, np.nan)
        uv = np.stack([u[ok], v[ok]], axis=1).astype(float)
        rays = calib.rays(uv)  # (N, 3) unit, base frame
        axis = calib.T_base_camera[:3, 2]
        pts = calib.position + rays * (d[ok] / (rays @ axis))[:, None]  # (N, 3)
        centre = pts.mean(0)
        view = centre - calib.position
        view /= np.linalg.norm(view)
        # the visible faces lie, on average, about a third of a block in front of the centre
        return centre + view * (self.cfg.block_size / 3)
