"""Data-parallel world-model training: ``reflexarc train`` under ``torchrun``.

``torchrun --nproc_per_node=N`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in every
process; :func:`setup` then joins the process group (gloo on CPU, NCCL on CUDA, one GPU
per process by local rank). Every rank holds the same data (read from the same episode
store) and draws the same global batch of window starts from the same seeded generator;
rank r trains on its slice r of that batch (``batch_size / N`` windows), so the global
batch, and the samples in it, are those of a single process with the same seed.

The model runs under :class:`~torch.nn.parallel.DistributedDataParallel` (gradients
averaged across ranks during the backward pass). The VICReg variance and covariance terms
are statistics of the whole batch, not means of per-sample terms, so each rank gathers
every rank's latents (:func:`gather`, differentiable) and computes the loss of the global
batch; the gather's backward sums each rank's share of the gradient (N times the
gradient of the global loss through its own samples) and DDP's average divides by N:
the update is the single process's, up to the order of floating-point sums.
docs/scale.md shows the commands; docs/benchmarks.md the figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from reflexarc.policies.world_model import WorldModel, jepa_latents
from reflexarc.runtime.errors import ConfigError


@dataclass
class Parallel:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, figures and the summary."""
        return self.rank == 0

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's slice of a global batch (B, ...) -> (B / N, ...)."""
        b = batch.shape[0] // self.world_size
        return batch[self.rank * b : (self.rank + 1) * b]


def launched() -> bool:
    """Whether this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str, batch_size: int) -> Parallel | None:
    """Join the process group torchrun prepared; None when running alone.

    ``device``: auto, cpu or cuda (as ``TrainConfig.device``). The global ``batch_size``
    must split evenly across the processes.
    """
    if not launched():
        return None
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if batch_size % world:
        raise ConfigError(
            "optim.batch_size",
            f"{batch_size} windows do not split over {world} processes; use a multiple of {world}",
        )
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if torch.cuda.device_count() <= local:
            raise ConfigError("device", f"local rank {local} has no GPU ({torch.cuda.device_count()} visible)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Parallel(rank=rank, world_size=world, local_rank=local, backend=backend, device=dev)


def teardown(par: Parallel | None) -> None:
    if par is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather(t: Tensor) -> Tensor:
    """Every rank's ``t`` (b, ...) concatenated in rank order (N b, ...), with gradient."""
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # its successor (functional collectives) needs reduce_scatter, which gloo lacks
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(t.contiguous()), dim=0)


class JepaLatents(nn.Module):
    """:func:`jepa_latents` as a module's forward, so that DDP can wrap it."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, actions: Tensor, proprio: Tensor | None = None) -> Any:
        return jepa_latents(self.model, images, actions, proprio)


def wrap(model: WorldModel, par: Parallel) -> nn.Module:
    """The model's latents under DDP (parameters broadcast from rank 0 here)."""
    ids = [par.device.index] if par.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(JepaLatents(model), device_ids=ids)
