"""The block head: perceived block positions read from the world model's latents, trained
on perception's own detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reflexarc.perception.block_head import (
    ARRAYS,
    BlockHead,
    BlockHeadConfig,
    BlockHeadError,
    fit_block_head,
)

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "checkpoints" / "push-mujoco"


def random_head(d: int = 8, hidden: int = 6, names: tuple[str, ...] = ("red", "green")
                ) -> BlockHead:
    rng = np.random.default_rng(0)
    k = len(names)
    shapes = {"mean": (d,), "scale": (d,), "w1": (d, hidden), "b1": (hidden,),
              "w2": (hidden, hidden), "b2": (hidden,), "w3": (hidden, 2 * k), "b3": (2 * k,),
              "y_mean": (k, 2)}
    arrays = {n: rng.normal(size=shapes[n]).astype(np.float32) for n in ARRAYS}
    arrays["scale"] = np.abs(arrays["scale"]) + 0.5
    return BlockHead(arrays=arrays, names=names, y_scale=0.1, checkpoint_sha256="c" * 64)


def test_a_head_saves_and_loads_with_its_hash(tmp_path: Path) -> None:
    head = random_head()
    path = head.save(tmp_path / "head.npz")
    again = BlockHead.load(path)
    z = np.random.default_rng(1).normal(size=(3, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(again(z), head(z), atol=1e-6)
    assert again(z).shape == (3, 4, 2, 2)
    assert again.weights_sha256 == head.weights_sha256 and again.index("green") == 1
    with pytest.raises(BlockHeadError, match="not 'blue'"):
        again.index("blue")
    with pytest.raises(BlockHeadError, match="8"):
        again(np.zeros(5, np.float32))
    # one weight changed in the file: the load refuses it, naming the file
    bad = dict(head.arrays)
    bad["w2"] = bad["w2"].copy()
    bad["w2"][0, 0] += 1e-3
    with np.load(path) as d:
        meta = d["meta"]
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **bad, meta=meta)
    with pytest.raises(BlockHeadError, match="bad.npz: damaged"):
        BlockHead.load(tmp_path / "bad.npz")
    with pytest.raises(BlockHeadError, match="cannot read"):
        BlockHead.load(tmp_path / "missing.npz")


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped world-model checkpoint")
def test_the_head_learns_from_perceptions_labels_on_real_frames(tmp_path: Path) -> None:
    """Exploration of the three-block table (the default graph's scene), labelled by the
    object detector through the camera's calibration file: the loss falls, and the
    held-out error against what perception sees is scored per k."""
    from reflexarc.policies.collect import CollectConfig, collect

    cfg = CollectConfig(root=str(tmp_path / "eps"), backend="mujoco", episodes=3, steps=24,
                        num_envs=1, vector="sync", expert_ratio=0.0, seed=0, progress=False,
                        env_kwargs={"objects": ["red", "green", "blue"]})
    collect(cfg)
    torch.manual_seed(0)
    head_cfg = BlockHeadConfig(calibration="sim-front-mujoco", steps=300, horizon=3,
                               holdout=0.34, hidden=32)
    head, report = fit_block_head(SHIPPED, tmp_path / "eps", head_cfg)
    loss = report["train_loss"]
    assert loss[-1] < 0.5 * loss[0], loss
    # every block was seen (and labelled) in most frames
    assert min(report["labelled"].values()) > 0.5 * report["frames"], report["labelled"]
    rows = report["heldout"]["perceived"]
    assert [r["k"] for r in rows] == [0, 1, 2, 3]
    # k = 0: the planner's reading (seen + head(z_0) - head(z_0)) is what perception saw
    assert rows[0]["relative"]["p50_cm"] == 0.0 and rows[0]["relative"]["n"] > 0
    assert rows[3]["head"]["n"] > 0 and set(rows[3]["blocks"]) == {"red", "green", "blue"}
    path = head.save(tmp_path / "head.npz")
    assert BlockHead.load(path).checkpoint_sha256 == head.checkpoint_sha256
    assert head.config["calibration"] == "sim-front-mujoco"
