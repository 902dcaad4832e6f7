"""The perception node: camera frames in, latents out, at camera rate.

One step (the perception node in docs/architecture.md, "The nodes"):

1. **Weights.** A ``weights`` message starts loading the announced checkpoint in a
   background thread (:class:`reflexarc.perception.encoding.ModelSlot`); meanwhile frames keep
   being encoded with the current model. The new model is swapped in at the start of a
   step, between frames, once it is loaded (in lockstep the step that receives the
   message waits for the load, so runs stay deterministic). A failed load keeps the
   current model and is counted.
2. **Frames.** Every frame new since the previous step on ``camera/<name>`` (all
   cameras, or those in ``cameras``) is encoded, all in one batch: one forward pass.
3. **Latents.** Each frame gives a :class:`~reflexarc.runtime.msgs.Latent` on ``latent/<name>``
   carrying the frame's stamp (so frame-to-command latency stays measurable), the model
   version that encoded it and ``encode_us``: the time of the batch that encoded it.
4. **Objects.** For each camera with a calibration file (``calibration``: camera ->
   file or shipped name), the newest frame's coloured blocks are found and placed in the
   robot's base frame (:mod:`reflexarc.perception.objects`) and published as
   :class:`~reflexarc.runtime.msgs.Objects` on ``objects/<name>`` with the frame's stamp,
   after the latents (the plan waits for those).

5. **Goals.** This node is the only encoder (docs/senses.md): a goal image, from a
   ``goal`` message that carries one or from the file ``goal_image`` (a person showing
   the robot what to do), is encoded with the current model and published on
   ``goal_latent`` (a :class:`~reflexarc.runtime.msgs.Goal` with ``z`` and
   ``model_version``, the image left out, the goal's stamp kept); again after every
   weight swap (the latent space changed) and every ``goal_period_s``, for late joiners.
   A goal without an image (a task, as a person states it) is not this node's: the
   planner takes it as it is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflexarc.perception.calibration import CalibrationError, CameraCalibration
from reflexarc.perception.encoding import EncodingError, FrameEncoder, ModelSlot, load_model
from reflexarc.perception.objects import DetectorConfig, ObjectDetector
from reflexarc.policies.checkpoint import CheckpointError, verify_checkpoint, weights_path
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Goal, Image, Latent, Objects, empty
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring

log = logging.getLogger(__name__)

CAMERA_PREFIX = "camera/"
LATENT_PREFIX = "latent/"
OBJECTS_PREFIX = "objects/"


def read_goal_image(path: str | Path) -> np.ndarray:
    """An RGB goal image (H, W, 3) uint8 from a PNG/JPEG file. Raises ConfigError."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError("goal_image", f"cannot read an image from {str(path)!r}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


class PerceptionNode(Node):
    """Encodes camera frames to latents with the current world-model encoder."""

    @dataclass
    class Config:
        checkpoint: str = ""  # world-model checkpoint (directory or model.safetensors)
        cameras: list[str] = field(default_factory=list)  # [] = every camera/<name> received
        device: str = "cpu"
        threads: int = bounded(1, 1, 64)  # torch CPU threads (the node shares the machine)
        max_batch: int = bounded(16, 1, 1024)  # frames per camera per step; older ones skipped
        swap: str = choice("auto", "background", "wait")  # auto: wait in lockstep
        # camera -> its calibration file (or a shipped name, sim-front-mujoco): the blocks
        # in that camera's frames are found and published on objects/<camera>
        calibration: dict[str, str] = field(default_factory=dict)
        detector: DetectorConfig = field(default_factory=DetectorConfig)
        # a goal image file (PNG/JPEG, RGB) to encode and publish on goal_latent; when set,
        # goal messages' images are ignored
        goal_image: str = ""
        goal_period_s: float = bounded(1.0, 0.0, None)  # republish the goal latent; 0: once

        def validate(self) -> None:
            if self.goal_image and not Path(self.goal_image).is_file():
                raise ConfigError("goal_image", f"{self.goal_image!r} is not a file")
            for cam, name in self.calibration.items():
                try:
                    CameraCalibration.load(name)
                except CalibrationError as e:
                    raise ConfigError(f"calibration.{cam}", str(e)) from None
            if not self.checkpoint:
                raise ConfigError("checkpoint", "give the world-model checkpoint to encode with")
            if not weights_path(self.checkpoint).is_file():
                raise ConfigError(
                    "checkpoint", f"{self.checkpoint!r} is not a checkpoint file or directory"
                )

    @classmethod
    def preflight(cls, cfg: Config) -> None:
        """Before any process starts: the checkpoint is whole (docs/world-model.md)."""
        verify_checkpoint(cfg.checkpoint)

    subscribes = {CAMERA_PREFIX: "all", "weights": "all", "goal": "latest"}
    wakes_on = (CAMERA_PREFIX,)  # realtime: encode a frame the moment it arrives
    publishes = (LATENT_PREFIX, OBJECTS_PREFIX, "goal_latent")

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        torch.set_num_threads(cfg.threads)
        try:
            loaded = load_model(cfg.checkpoint, device=cfg.device)
        except CheckpointError as e:
            raise ConfigError("checkpoint", str(e)) from None
        self.encoder = FrameEncoder(loaded)
        self.slot = ModelSlot(cfg.device)
        self.wait_swap = cfg.swap == "wait" or (cfg.swap == "auto" and ctx.clock == "lockstep")
        self.cameras = set(cfg.cameras)
        self.detectors = {cam: ObjectDetector(CameraCalibration.load(name), cfg.detector)
                          for cam, name in cfg.calibration.items()}
        self.detect_ms = Ring()  # per frame
        self.detected: dict[str, int] = {}  # frames in which each object was found
        # figures
        self.frames = 0  # frames received on the cameras we encode
        self.encoded = 0
        self.skipped = 0  # frames over max_batch in one step (older ones dropped)
        self.rejected = 0  # malformed frames
        self.frames_while_loading = 0  # encoded by the old model while new weights loaded
        self.swaps = 0
        self.failures_logged = 0
        self.encode_ms = Ring()  # per batch
        self.frame_ms = Ring()  # per frame: batch time / batch size
        # realtime: a frame's age when its encoding starts (the sim's render, the bus, the
        # wait for this node's step); the first share of frame-to-command latency
        self.frame_age_ms = Ring()
        self.per_camera: dict[str, int] = {}
        # warm up the allocator and kernels, so the first frame is not an outlier
        self.encoder.encode([np.zeros((loaded.image_size, loaded.image_size, 3), np.uint8)])
        # goals: the image held (re-encoded after a swap) and its encoding
        self.goal: Goal | None = None
        self.goal_latent: Goal | None = None
        self.next_goal_ns = 0
        self.goals_encoded = 0
        self.goal_errors = 0
        if cfg.goal_image:
            self.goal = Goal(stamp_ns=0, image=read_goal_image(cfg.goal_image),
                             z=empty("f4", 0), target=np.zeros(3), source="file")

    # -- the step ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        for w in inbox.new("weights"):
            self.slot.request(w)
            if self.wait_swap:
                self.slot.wait()
        swapped = self._maybe_swap()
        out: list[tuple[str, Any]] = self._goal(now_ns, inbox, swapped)
        frames: list[Image] = []
        for topic in inbox.topics():
            if not topic.startswith(CAMERA_PREFIX):
                continue
            name = topic[len(CAMERA_PREFIX):]
            if self.cameras and name not in self.cameras:
                continue
            new = inbox.new(topic)
            self.frames += len(new)
            if len(new) > self.cfg.max_batch:
                self.skipped += len(new) - self.cfg.max_batch
                new = new[-self.cfg.max_batch:]
            frames.extend(new)
        if not frames:
            return out
        return [*out, *self._encode(frames), *self._detect(frames)]

    def _goal(self, now_ns: int, inbox: Inbox, swapped: bool) -> list[tuple[str, Any]]:
        """Encode a new goal image (or the held one after a swap) and publish its latent;
        republish it every ``goal_period_s``."""
        g: Goal | None = None if self.cfg.goal_image else inbox.latest("goal")
        new = g is not None and (self.goal is None or g.stamp_ns != self.goal.stamp_ns)
        if new and g is not None:
            if not g.image.size:
                self.goal, self.goal_latent = g, None  # a task: the planner's, as it is
                return []
            self.goal = g
        if self.goal is None or not self.goal.image.size:
            return []
        if new or swapped or self.goal_latent is None:
            try:
                z = self.encoder.encode([np.asarray(self.goal.image)])[0]
            except EncodingError as e:
                self.goal_errors += 1
                log.warning("%s: cannot encode the goal image: %s", self.ctx.name, e)
                self.goal = None
                return []
            g0 = self.goal
            self.goal_latent = Goal(
                stamp_ns=g0.stamp_ns, task=g0.task, object=g0.object, target=g0.target,
                image=empty("u1", 0, 0, 3), z=z, model_version=self.encoder.version,
                source=g0.source)
            self.goals_encoded += 1
        elif not self.cfg.goal_period_s or now_ns < self.next_goal_ns:
            return []
        self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
        return [("goal_latent", self.goal_latent)]

    def _detect(self, frames: list[Image]) -> list[tuple[str, Objects]]:
        """The objects in the newest frame of each calibrated camera."""
        newest: dict[str, Image] = {}
        for f in frames:
            if f.camera in self.detectors:
                newest[f.camera] = f
        out = []
        for cam, f in newest.items():
            rgb = np.asarray(f.rgb)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                continue  # counted by _encode
            t0 = time.perf_counter_ns()
            depth = np.asarray(f.depth) if np.size(f.depth) else None
            found = self.detectors[cam].detect(rgb, depth)
            took_us = (time.perf_counter_ns() - t0) / 1e3
            self.detect_ms.add(took_us / 1e3)
            for d in found:
                self.detected[d.name] = self.detected.get(d.name, 0) + 1
            out.append((OBJECTS_PREFIX + cam, Objects(
                stamp_ns=f.stamp_ns, camera=cam, names=",".join(d.name for d in found),
                position=np.array([d.position for d in found], dtype=np.float64).reshape(-1, 3),
                confidence=np.array([d.confidence for d in found], dtype=np.float32),
                detect_us=took_us, render_us=f.render_us,
            )))
        return out

    def _maybe_swap(self) -> bool:
        """Swap in newly loaded weights; True when it did."""
        if self.slot.failures > self.failures_logged:
            self.failures_logged = self.slot.failures
            log.warning("%s: new weights not loaded, keeping v%d: %s", self.ctx.name,
                        self.encoder.version, self.slot.last_error)
        loaded = self.slot.poll()
        if loaded is None:
            return False
        if loaded.latent_dim != self.encoder.loaded.latent_dim:
            log.warning("%s: new weights v%d change the latent size %d -> %d",
                        self.ctx.name, loaded.version, self.encoder.loaded.latent_dim,
                        loaded.latent_dim)
        self.encoder = FrameEncoder(loaded)
        self.swaps += 1
        log.info("%s: encoder now v%d (%s), loaded in %.0f ms", self.ctx.name, loaded.version,
                 loaded.path, loaded.load_ms)
        return True

    def _encode(self, frames: list[Image]) -> list[tuple[str, Latent]]:
        good: list[Image] = []
        rgbs: list[np.ndarray] = []
        for f in frames:
            try:
                rgbs.append(self.encoder.prepare(f.rgb))
                good.append(f)
            except EncodingError as e:
                if self.rejected == 0:
                    log.warning("%s: dropping frame from %r: %s", self.ctx.name, f.camera, e)
                self.rejected += 1
        if not good:
            return []
        if self.ctx.clock == "realtime":
            now = time.monotonic_ns()  # the graph clock in realtime
            for f in good:
                self.frame_age_ms.add((now - f.stamp_ns) / 1e6)
        t0 = time.perf_counter_ns()
        z = self.encoder.encode(rgbs)  # (B, D)
        took_us = (time.perf_counter_ns() - t0) / 1e3
        self.encode_ms.add(took_us / 1e3)
        self.frame_ms.add(took_us / 1e3 / len(good))
        self.encoded += len(good)
        if self.slot.loading:
            self.frames_while_loading += len(good)
        version = self.encoder.version
        out = []
        for f, zi in zip(good, z, strict=True):
            cam = f.camera or "front"
            self.per_camera[cam] = self.per_camera.get(cam, 0) + 1
            out.append((
                LATENT_PREFIX + cam,
                Latent(stamp_ns=f.stamp_ns, camera=cam, model_version=version, z=zi,
                       encode_us=took_us, render_us=f.render_us),
            ))
        return out

    # -- reporting -------------------------------------------------------------------------

    def state(self) -> str:
        return "loading" if self.slot.loading else "running"

    def summary(self) -> dict[str, Any]:
        b50, b99 = self.encode_ms.percentiles([50, 99])
        f50, f99 = self.frame_ms.percentiles([50, 99])
        a50, a99 = self.frame_age_ms.percentiles([50, 99])
        d50, d99 = self.detect_ms.percentiles([50, 99])
        return {
            "detect_ms_p50": d50,
            "detect_ms_p99": d99,
            "detected": dict(self.detected),
            "frames": self.frames,
            "encoded": self.encoded,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "per_camera": dict(self.per_camera),
            "encode_ms_p50": f50,
            "encode_ms_p99": f99,
            "batch_ms_p50": b50,
            "batch_ms_p99": b99,
            "frame_age_ms_p50": a50,  # realtime only: frame stamp to its encoding's start
            "frame_age_ms_p99": a99,
            "model_version": self.encoder.version,
            "swaps": self.swaps,
            "swap_failures": self.slot.failures,
            "swap_error": self.slot.last_error,
            "frames_while_loading": self.frames_while_loading,
            "goals_encoded": self.goals_encoded,  # goal images encoded (again after swaps)
            "goal_errors": self.goal_errors,
            "load_ms": list(self.slot.load_ms),
        }
