"""Checkpoints: exact round trip, format checks, atomic hand-over to a polling reader."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from reflexarc.policies.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from reflexarc.policies.world_model import ModelConfig, WorldModel


def tiny() -> WorldModel:
    return WorldModel(ModelConfig(image_size=32, channels=[8, 16], latent_dim=8, hidden_dim=16))


def test_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(3)
    m = tiny()
    with torch.no_grad():
        for p in m.target_encoder.parameters():
            p.add_(1.0)  # target differs from online: both must be saved
    info = save_checkpoint(tmp_path / "ck", m, version=7, config={"train": {"lr": 0.5, "seed": 3}})
    assert (tmp_path / "ck" / "config.json").is_file()
    loaded, info2 = load_checkpoint(tmp_path / "ck")
    assert info2.version == 7
    assert info2.model == m.cfg
    assert info2.config["train"] == {"lr": 0.5, "seed": 3}
    assert info2.sha256 == info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    sd, sd2 = m.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    img = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    m.eval()
    assert torch.equal(m.encode(img), loaded.encode(img))


def test_bad_files_raise(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "missing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(CheckpointError):
        read_checkpoint(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, other, metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="format"):
        read_checkpoint(other)


def _writer(path: str, payloads: list[bytes], rounds: int, ready: mp.Event) -> None:
    ready.set()
    for i in range(rounds):
        atomic_write_bytes(path, payloads[i % len(payloads)])


def test_atomic_hand_over_never_half_written(tmp_path: Path) -> None:
    """A reader polling while another process replaces the file sees only whole versions."""
    payloads = []
    for v in range(3):
        torch.manual_seed(v)
        save_checkpoint(tmp_path / f"v{v}", tiny(), version=v)
        payloads.append((tmp_path / f"v{v}" / "model.safetensors").read_bytes())
    known = {hashlib.sha256(p).hexdigest() for p in payloads}
    target = tmp_path / "live" / "model.safetensors"
    atomic_write_bytes(target, payloads[0])
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(target), payloads, 300, ready))
    proc.start()
    ready.wait(30)
    reads, seen = 0, set()
    deadline = time.monotonic() + 30
    while (proc.is_alive() or reads == 0) and time.monotonic() < deadline:
        data = target.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert digest in known, "reader saw a partial or foreign file"
        seen.add(digest)
        _, info = read_checkpoint(target)  # and it parses as a checkpoint
        assert info.version in (0, 1, 2)
        reads += 1
    proc.join(30)
    assert proc.exitcode == 0
    assert reads > 0
    assert not list(target.parent.glob(".*.tmp")), "temporary files left behind"
