"""World-model checkpoints: safetensors weights + the config that made them + a version.

A checkpoint is one self-contained ``model.safetensors`` file: the tensors of
:class:`~reflexarc.policies.world_model.WorldModel` (online encoder, EMA target encoder, predictor)
and, in the safetensors metadata, ``format``, ``format_version``, ``version`` (the model
version, increasing with every published update) and ``config`` (JSON: the model config
and the training config). A ``config.json`` with the same content is written beside it
for people. Files are written atomically (temporary file in the same directory, fsync,
``os.replace``), so a reader never sees a half-written file: it sees the old one or the
new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ReflexarcError

FORMAT = "reflexarc-world-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ReflexarcError):
    """A checkpoint is missing, corrupt, of another format, or does not fit the model."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself."""

    path: Path  # the weights file
    version: int
    model: ModelConfig
    config: dict[str, Any]  # everything saved: {"model": ..., "train": ..., ...}
    sha256: str


#: The checkpoints the project ships, installed with the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


def shipped(path: str | Path, folder: Path) -> Path:
    """``path`` as given when it exists or names a folder; else the shipped file of that name
    in ``folder`` if there is one (so ``push-mujoco`` works from any working directory)."""
    p = Path(path).expanduser()
    if p.exists() or len(p.parts) != 1:
        return p
    return folder / p if (folder / p).exists() else p


def weights_path(path: str | Path) -> Path:
    """A checkpoint directory or weights file, or the name of a shipped checkpoint
    (``push-mujoco``) -> the weights file."""
    return _weights_file(shipped(path, SHIPPED_DIR))


def _weights_file(p: Path) -> Path:
    return p / WEIGHTS_FILE if p.is_dir() or not p.suffix else p


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; weights are read by other processes
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def save_checkpoint(
    path: str | Path, model: WorldModel, version: int, config: dict[str, Any] | None = None
) -> CheckpointInfo:
    """Write ``model`` (and ``config`` beside its model config) atomically; return its info.

    ``path`` is a directory (``model.safetensors`` and ``config.json`` go in it) or a
    ``.safetensors`` file (``config.json`` goes beside it).
    """
    wpath = _weights_file(Path(path))  # never a shipped checkpoint by name
    full = {"model": dataclasses.asdict(model.cfg)}
    full.update({k: _plain(v) for k, v in (config or {}).items() if k != "model"})
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "version": str(int(version)),
        "config": json.dumps(full, sort_keys=True, default=str),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    data = st_save(tensors, metadata=meta)
    atomic_write_bytes(wpath, data)
    human = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": int(version), **full}
    atomic_write_bytes(wpath.parent / CONFIG_FILE, (json.dumps(human, indent=2, default=str) + "\n").encode())
    return CheckpointInfo(
        path=wpath, version=int(version), model=model.cfg, config=full,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Tensors and info of a checkpoint, without building a model."""
    wpath = weights_path(path)
    try:
        data = wpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {wpath}: {e.strerror}") from None
    try:
        tensors = st_load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError) as e:  # json errors are ValueErrors

        raise CheckpointError(f"{wpath} is not a safetensors file: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{wpath}: format {meta.get('format')!r}, expected {FORMAT!r}")
    fv = int(meta.get("format_version", "0"))
    if fv != FORMAT_VERSION:
        raise CheckpointError(f"{wpath}: format version {fv}, this code reads {FORMAT_VERSION}")
    config = json.loads(meta["config"])
    model_cfg = from_mapping(ModelConfig, config["model"], "model.")
    info = CheckpointInfo(
        path=wpath, version=int(meta["version"]), model=model_cfg, config=config,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return tensors, info


def _metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return header.get("__metadata__", {}) or {}


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[WorldModel, CheckpointInfo]:
    """Build the model a checkpoint describes, load its weights exactly, eval mode.

    ``path``: a checkpoint directory or its ``model.safetensors``.
    """
    tensors, info = read_checkpoint(path)
    model = WorldModel(info.model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{info.path} does not fit its own model config: {e}") from None
    return model.to(device).eval(), info
