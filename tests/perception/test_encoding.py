"""Frame encoding and the hot-swappable model slot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reflexarc.perception.encoding import EncodingError, FrameEncoder, ModelSlot, load_model
from reflexarc.policies.checkpoint import CheckpointError, CheckpointInfo
from reflexarc.runtime.msgs import Weights


def frames(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_batch_encoding_equals_the_model(ckpt_v1: CheckpointInfo) -> None:
    loaded = load_model(ckpt_v1.path)
    enc = FrameEncoder(loaded)
    imgs = frames(3)
    z = enc.encode(imgs)
    with torch.no_grad():
        ref = loaded.model.encode(torch.from_numpy(np.stack(imgs))).numpy()
    assert z.shape == (3, 8) and z.dtype == np.float32
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)
    # one frame alone encodes as in the batch (no batch-dependent normalisation)
    np.testing.assert_allclose(enc.encode(imgs[1:2])[0], z[1], rtol=1e-4, atol=1e-5)
    assert enc.encode([]).shape == (0, 8)


def test_frames_of_another_size_are_resized(ckpt_v1: CheckpointInfo) -> None:
    enc = FrameEncoder(load_model(ckpt_v1.path))
    small = frames(1)[0]
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # 64 px, the same picture
    np.testing.assert_allclose(enc.encode([big]), enc.encode([small]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8),
            np.zeros((32, 32, 3), np.float32)],
)
def test_malformed_frames_are_refused(ckpt_v1: CheckpointInfo, bad: np.ndarray) -> None:
    with pytest.raises(EncodingError, match="uint8"):
        FrameEncoder(load_model(ckpt_v1.path)).encode([bad])


def test_load_checks_the_announced_digest(ckpt_v1: CheckpointInfo) -> None:
    assert load_model(ckpt_v1.path, ckpt_v1.sha256).version == 1
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(ckpt_v1.path, "0" * 64)


def test_slot_hands_over_a_loaded_model_once(ckpt_v2: CheckpointInfo) -> None:
    slot = ModelSlot()
    assert slot.poll() is None
    slot.request(Weights(version=2, path=str(ckpt_v2.path), sha256=ckpt_v2.sha256))
    slot.wait()
    got = slot.poll()
    assert got is not None and got.version == 2 and got.sha256 == ckpt_v2.sha256
    assert slot.poll() is None and slot.failures == 0


def test_slot_keeps_nothing_from_a_bad_load(ckpt_v2: CheckpointInfo, tmp_path) -> None:
    slot = ModelSlot()
    slot.request(Weights(version=2, path=str(ckpt_v2.path), sha256="f" * 64))
    slot.wait()
    slot.request(Weights(version=3, path=str(tmp_path / "missing"), sha256=""))
    slot.wait()
    slot.request(Weights(version=7, path=str(ckpt_v2.path), sha256=ckpt_v2.sha256))
    slot.wait()  # the file holds version 2, not 7
    assert slot.poll() is None
    assert slot.failures == 3 and "version 2" in slot.last_error


def test_a_newer_request_supersedes_one_still_loading(
    ckpt_v1: CheckpointInfo, ckpt_v2: CheckpointInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import reflexarc.perception.encoding as encoding

    gate = threading.Event()
    real = encoding.load_model

    def slow(path, sha256="", device="cpu"):  # the first load waits for the gate
        if "v1" in str(path):
            gate.wait(10)
        return real(path, sha256, device)

    monkeypatch.setattr(encoding, "load_model", slow)
    slot = ModelSlot()
    slot.request(Weights(version=1, path=str(ckpt_v1.path)))
    first = slot._thread
    slot.request(Weights(version=2, path=str(ckpt_v2.path)))
    slot.wait()
    gate.set()
    assert first is not None
    first.join(10)
    got = slot.poll()
    assert got is not None and got.version == 2
    assert slot.poll() is None  # the superseded v1 load was dropped
