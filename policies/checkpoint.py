"""World-model checkpoints: safetensors weights + the config that made them + a version.

A checkpoint is one self-contained ``model.safetensors`` file: the tensors of
:class:`~reflexarc.policies.world_model.WorldModel` (online encoder, EMA target encoder, predictor)
and, in the safetensors metadata, ``format``, ``format_version``, ``version`` (the model
version, increasing with every published update) and ``config`` (JSON: the model config
and the training config). A ``config.json`` with the same content is written beside it
for people. Files are written atomically (temporary file in the same directory, fsync,
``os.replace``), so a reader never sees a half-written file: it sees the old one or the
new one.

Integrity: the metadata also holds ``weights_sha256``, a digest of every tensor's name,
dtype, shape, offsets and bytes (:func:`weights_digest`), checked at every load. A file
with a flipped byte, truncated, or not a checkpoint at all is a :class:`CheckpointError`
of one line naming the file and the problem (docs/world-model.md, "Checkpoints").
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
HEADER_MAX = 100_000_000  # safetensors' own bound on the JSON header
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
    data = _safetensors_bytes(tensors, meta)
    atomic_write_bytes(wpath, data)
    human = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": int(version), **full}
    atomic_write_bytes(wpath.parent / CONFIG_FILE, (json.dumps(human, indent=2, default=str) + "\n").encode())
    return CheckpointInfo(
        path=wpath, version=int(version), model=model.cfg, config=full,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def weights_digest(header: dict[str, Any], buffer: bytes | memoryview) -> str:
    """sha256 of a safetensors file's tensors: each entry of its header (name, dtype, shape,
    data offsets; not the metadata, which holds the digest) and the data buffer."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    h = hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())
    h.update(buffer)
    return h.hexdigest()


def _header(wpath: Path, data: bytes) -> tuple[dict[str, Any], memoryview]:
    """The parsed JSON header and the data buffer of safetensors bytes, or one-line errors."""
    if len(data) < 8:
        raise CheckpointError(f"{wpath}: truncated or not a checkpoint ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > HEADER_MAX:
        raise CheckpointError(f"{wpath}: not a checkpoint (header length {n} bytes)")
    if 8 + n > len(data):
        raise CheckpointError(
            f"{wpath}: truncated ({len(data)} bytes; its header alone needs {8 + n})"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{wpath}: not a checkpoint (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{wpath}: not a checkpoint (its header is not a JSON object)")
    buffer = memoryview(data)[8 + n :]
    ends = [e.get("data_offsets", [0, 0])[1] for k, e in header.items()
            if k != "__metadata__" and isinstance(e, dict) and isinstance(e.get("data_offsets"), list)
            and len(e["data_offsets"]) == 2]
    need = max((x for x in ends if isinstance(x, int)), default=0)
    if need > len(buffer):
        raise CheckpointError(
            f"{wpath}: truncated ({len(data)} bytes; its tensors need {8 + n + need})"
        )
    return header, buffer


def verify_checkpoint(path: str | Path) -> tuple[Path, dict[str, str]]:
    """Check a checkpoint file without building a model or reading its tensors into torch:
    readable, a safetensors file of this format and version, not truncated, and its weights
    match their ``weights_sha256``. Returns the weights file and its metadata.

    Raises CheckpointError, one line naming the file and the problem.
    """
    wpath = weights_path(path)
    try:
        data = wpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {wpath}: {e.strerror}") from None
    return wpath, _verified_metadata(wpath, data)


def _verified_metadata(wpath: Path, data: bytes) -> dict[str, str]:
    header, buffer = _header(wpath, data)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{wpath}: format {got!r}, expected {FORMAT!r}")
    fv = meta.get("format_version", "0")
    if fv != str(FORMAT_VERSION):
        raise CheckpointError(f"{wpath}: format version {fv}, this code reads {FORMAT_VERSION}")
    want = meta.get("weights_sha256", "")
    if not want:
        raise CheckpointError(
            f"{wpath}: no weights_sha256 in its metadata (written before checkpoints carried "
            "one): add it with python -m reflexarc.policies.checkpoint --rehash FILE"
        )
    got = weights_digest(header, buffer)
    if got != want:
        raise CheckpointError(
            f"{wpath}: damaged: its weights hash to sha256 {got[:12]}..., the checkpoint says "
            f"{want[:12]}..."
        )
    return meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Tensors and info of a checkpoint (verified: :func:`verify_checkpoint`), without
    building a model."""
    wpath = weights_path(path)
    try:
        data = wpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {wpath}: {e.strerror}") from None
    meta = _verified_metadata(wpath, data)
    try:
        tensors = st_load(data)
        config = json.loads(meta["config"])
        model_cfg = from_mapping(ModelConfig, config["model"], "model.")
        version = int(meta["version"])
    except (SafetensorError, ValueError, KeyError, TypeError, ReflexarcError) as e:
        raise CheckpointError(f"{wpath}: not a readable checkpoint: {e}".replace("\n", " ")) from None
    info = CheckpointInfo(
        path=wpath, version=version, model=model_cfg, config=config,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return tensors, info


def _safetensors_bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> bytes:
    """Safetensors bytes of ``tensors`` with ``meta`` and their ``weights_sha256``."""
    meta = {k: v for k, v in meta.items() if k != "weights_sha256"}
    plain = st_save(tensors, metadata=meta)
    header, buffer = _header(Path("<memory>"), plain)
    data = st_save(tensors, metadata={**meta, "weights_sha256": weights_digest(header, buffer)})
    if data[len(data) - len(buffer):] != bytes(buffer):  # the digest is of these very bytes
        raise CheckpointError("safetensors wrote the same tensors differently twice")
    return data


def rehash(path: str | Path) -> str:
    """Give a checkpoint written before ``weights_sha256`` existed its digest: the same
    tensors, bit for bit, and the same metadata, written again with the digest added
    (atomically). Returns the digest. The file's own sha256 changes (its header grows)."""
    wpath = weights_path(path)
    data = wpath.read_bytes()
    header, _ = _header(wpath, data)
    meta = dict(header.get("__metadata__") or {})
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{wpath}: format {meta.get('format')!r}, expected {FORMAT!r}")
    tensors = st_load(data)
    new = _safetensors_bytes(tensors, meta)
    for name, t in st_load(new).items():
        if not torch.equal(t, tensors[name]) or t.dtype != tensors[name].dtype:
            raise CheckpointError(f"{wpath}: re-saving changed tensor {name}")
    atomic_write_bytes(wpath, new)
    return _verified_metadata(wpath, new)["weights_sha256"]


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


def main(argv: list[str] | None = None) -> int:
    """``python -m reflexarc.policies.checkpoint --rehash PATH...`` (add ``weights_sha256``)
    or ``--verify PATH...``: one line per checkpoint; exit 2 on the first bad one."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("--rehash", "--verify"):
        print("usage: python -m reflexarc.policies.checkpoint --rehash|--verify PATH...", file=sys.stderr)
        return 2
    for p in args[1:]:
        try:
            if args[0] == "--rehash":
                print(f"{weights_path(p)}: weights_sha256 {rehash(p)}")
            else:
                wpath, meta = verify_checkpoint(p)
                print(f"{wpath}: ok, version {meta.get('version')}, weights_sha256 {meta['weights_sha256']}")
        except CheckpointError as e:
            print(e, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
