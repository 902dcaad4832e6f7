"""Frames to latents with the world model's encoder, and hot-swappable models.

:func:`load_model` reads a world-model checkpoint (``reflexarc.policies.checkpoint``) and checks its
SHA-256 when one is given. :class:`FrameEncoder` turns a batch of camera frames into
latents with one forward pass, resizing frames whose size differs from the model's.
:class:`ModelSlot` holds the current model and loads a replacement in a background
thread when new weights are announced (``reflexarc.runtime.msgs.Weights``): the node that owns the
slot keeps using the old model until :meth:`ModelSlot.poll` hands over the new one,
between two steps, so no frame waits for a load and no frame is half-encoded by two
models. The perception node and the planner node both use it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from reflexarc.policies.checkpoint import CheckpointError, load_checkpoint
from reflexarc.policies.world_model import WorldModel
from reflexarc.runtime.errors import ReflexarcError
from reflexarc.runtime.msgs import Weights


class EncodingError(ReflexarcError):
    """A frame cannot be encoded (wrong shape or dtype)."""


@dataclass(frozen=True)
class LoadedModel:
    """A world model ready to use, with where it came from."""

    model: WorldModel
    version: int
    sha256: str
    path: str
    load_ms: float

    @property
    def image_size(self) -> int:
        return int(self.model.cfg.image_size)

    @property
    def latent_dim(self) -> int:
        return int(self.model.cfg.latent_dim)


def load_model(path: str | Path, sha256: str = "", device: str = "cpu") -> LoadedModel:
    """Load the checkpoint at ``path`` (directory or ``model.safetensors``), in eval mode.

    ``sha256``: expected digest of the weights file ("" skips the check). Raises
    :class:`~reflexarc.policies.checkpoint.CheckpointError` when the file is missing, corrupt,
    of another format, or its digest differs.
    """
    t0 = time.perf_counter()
    model, info = load_checkpoint(path, device=device)
    if sha256 and info.sha256 != sha256:
        raise CheckpointError(
            f"{info.path}: sha256 {info.sha256[:12]}... differs from the announced {sha256[:12]}..."
        )
    model.requires_grad_(False)
    return LoadedModel(
        model=model,
        version=info.version,
        sha256=info.sha256,
        path=str(info.path),
        load_ms=(time.perf_counter() - t0) * 1e3,
    )


class FrameEncoder:
    """Batched encoding of RGB frames (H, W, 3) uint8 to latents (D,) float32.

    Frames of another size than the model's ``image_size`` are resized (area
    interpolation), so a camera may run at a higher resolution than the model.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.size = loaded.image_size
        self.device = next(loaded.model.parameters()).device

    @property
    def version(self) -> int:
        return self.loaded.version

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Validate one frame and bring it to the model's size. (S, S, 3) uint8"""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise EncodingError(
                f"a frame must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        if rgb.shape[0] != self.size or rgb.shape[1] != self.size:
            rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return rgb

    @torch.inference_mode()
    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        """Latents of ``frames`` (each (H, W, 3) uint8), in one forward pass. (B, D) float32"""
        if not frames:
            return np.zeros((0, self.loaded.latent_dim), dtype=np.float32)
        batch = np.stack([self.prepare(f) for f in frames])  # (B, S, S, 3)
        z = self.loaded.model.encode(torch.from_numpy(batch).to(self.device))  # (B, D)
        return z.float().cpu().numpy()


class ModelSlot:
    """The current world model and, when new weights are announced, its replacement.

    :meth:`request` starts loading in a daemon thread and returns at once; a newer
    request supersedes one still loading (its result is dropped). :meth:`poll`, called
    by the owner between steps, returns the new model once it is loaded (exactly once),
    else None. A failed load keeps the current model and is counted in ``failures``
    with its reason in ``last_error``.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._ready: LoadedModel | None = None
        self._thread: threading.Thread | None = None
        self._wanted = 0  # id of the newest request
        self.requests = 0
        self.failures = 0
        self.last_error = ""
        self.load_ms: list[float] = []

    @property
    def loading(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def request(self, weights: Weights) -> None:
        """Load ``weights.path`` (checked against ``weights.sha256``) in the background."""
        with self._lock:
            self.requests += 1
            self._wanted = ticket = self.requests
        thread = threading.Thread(
            target=self._load, args=(ticket, weights.path, weights.sha256, weights.version),
            name=f"load-weights-v{weights.version}", daemon=True,
        )
        self._thread = thread
        thread.start()

    def _load(self, ticket: int, path: str, sha256: str, version: int) -> None:
        try:
            loaded = load_model(path, sha256, self.device)
            if version and loaded.version != version:
                raise CheckpointError(
                    f"{path} holds model version {loaded.version}; the announcement said {version}"
                )
        except (CheckpointError, OSError, RuntimeError, ValueError) as e:
            with self._lock:
                self.failures += 1
                self.last_error = str(e)
            return
        with self._lock:
            if ticket == self._wanted:
                self._ready = loaded
                self.load_ms.append(loaded.load_ms)

    def wait(self, timeout_s: float = 60.0) -> None:
        """Block until the load in progress (if any) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def poll(self) -> LoadedModel | None:
        """The newly loaded model, once; None when nothing new is ready."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready
