"""Data-parallel training under torchrun (2 CPU processes, gloo) gives the single
process's model for the same seed and global batch; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reflexarc.policies import distributed
from reflexarc.policies.checkpoint import load_checkpoint
from reflexarc.policies.train import train
from reflexarc.runtime.errors import ConfigError
from tests.policies.test_train import tiny_config

OVERRIDES = [
    "model.image_size=32", "model.channels=[8,16,16]", "model.latent_dim=16", "model.hidden_dim=32",
    "optim.horizon=3", "optim.batch_size=8", "optim.warmup=2", "steps=6", "eval_every=3",
    "val_fraction=0.34", "device=cpu", "progress=false", "threads=1",
]


@pytest.mark.slow
def test_two_processes_train_the_single_process_model(toy_episodes: Path, tmp_path: Path) -> None:
    one = train(tiny_config(toy_episodes, tmp_path / "one", threads=1))
    out = tmp_path / "ddp.json"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "reflexarc.runtime.cli", "train", f"data={toy_episodes}",
         f"run_dir={tmp_path / 'ddp'}", f"out={out}", *OVERRIDES],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads(out.read_text())  # written by rank 0 alone
    assert summary["processes"] == 2 and summary["steps"] == 6
    assert proc.stdout.count("reflexarc train") == 1  # one summary printed
    m1, _ = load_checkpoint(tmp_path / "one")
    m2, info = load_checkpoint(tmp_path / "ddp")
    assert info.version == 1 and info.config["parallel"] == {"world_size": 2, "backend": "gloo"}
    assert info.config["split"] == load_checkpoint(tmp_path / "one")[1].config["split"]
    for k, v in m1.state_dict().items():
        torch.testing.assert_close(m2.state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=k)
    assert summary["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4)
    assert summary["pred_error"] == pytest.approx(one["pred_error"], rel=1e-4)


def test_the_global_batch_must_split_over_the_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match=r"optim.batch_size.*multiple of 3"):
        distributed.setup("cpu", 8)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup("cpu", 8) is None


def test_a_rank_trains_on_its_slice_of_the_global_batch() -> None:
    par = distributed.Parallel(rank=1, world_size=2, local_rank=1, backend="gloo",
                               device=torch.device("cpu"))
    assert par.shard(torch.arange(8)).tolist() == [4, 5, 6, 7] and not par.main
