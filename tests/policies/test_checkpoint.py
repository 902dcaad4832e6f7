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


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped":  # 2,000 bytes of the weights, past the header
        n = int.from_bytes(data[:8], "little")
        for i in range(2000):
            data[8 + n + 100 + 7 * i] ^= 0xFF
    elif how == "truncated":
        data = data[: len(data) * 2 // 3]
    else:  # not a checkpoint at all
        data = bytearray(b"PK\x03\x04 this is a zip file, not weights" * 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, message", [
    ("flipped", r"damaged: its weights hash to sha256 [0-9a-f]{12}\.\.\., the checkpoint says"),
    ("truncated", r"truncated \(\d+ bytes; its tensors need \d+\)"),
    ("garbage", r"not a checkpoint \(header length \d+ bytes\)"),
])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path: Path, how: str, message: str) -> None:
    info = save_checkpoint(tmp_path / "ck", tiny(), version=1)
    read_checkpoint(info.path)  # whole: it loads
    _damage(info.path, how)
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(tmp_path / "ck")
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(info.path))


def test_the_weights_digest_is_in_the_file_and_rehash_keeps_the_tensors(tmp_path: Path) -> None:
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from reflexarc.policies.checkpoint import rehash, verify_checkpoint

    info = save_checkpoint(tmp_path / "ck", tiny(), version=4)
    _, meta = verify_checkpoint(info.path)
    assert len(meta["weights_sha256"]) == 64
    # a checkpoint from before the digest: refused with what to do, then re-hashed in place
    data = info.path.read_bytes()
    tensors = st_load(data)
    old_meta = {k: v for k, v in meta.items() if k != "weights_sha256"}
    info.path.write_bytes(st_save(tensors, metadata=old_meta))
    with pytest.raises(CheckpointError, match=r"no weights_sha256 .* --rehash"):
        read_checkpoint(info.path)
    assert rehash(info.path) == meta["weights_sha256"]  # the same tensors, the same digest
    again, info2 = read_checkpoint(info.path)
    assert info2.version == 4 and again.keys() == tensors.keys()
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)


def test_the_shipped_checkpoints_are_whole() -> None:
    from reflexarc.policies.checkpoint import verify_checkpoint

    for name in ("push-mujoco", "push-pybullet"):
        _, meta = verify_checkpoint(name)
        assert meta["version"] == "1" and len(meta["weights_sha256"]) == 64


def test_the_checkpoint_tool_runs_as_a_module_with_a_clean_stderr(tmp_path: Path) -> None:
    """``python -m reflexarc.policies.checkpoint``: the package does not import the module
    before runpy runs it (no RuntimeWarning), and a damaged file is one line and exit 2."""
    import subprocess
    import sys

    tool = [sys.executable, "-W", "error::RuntimeWarning", "-m", "reflexarc.policies.checkpoint"]
    res = subprocess.run([*tool, "--verify", "push-mujoco"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert ": ok, version 1, weights_sha256 " in res.stdout
    info = save_checkpoint(tmp_path / "ck", tiny(), version=1)
    _damage(info.path, "truncated")
    res = subprocess.run([*tool, "--verify", str(info.path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "RuntimeWarning" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and str(info.path) in res.stderr, res.stderr
