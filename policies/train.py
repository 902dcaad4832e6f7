"""``reflexarc train``: self-supervised world-model training from episode files.

Loads every episode under ``data`` into memory once (uint8 frames), holds out a
deterministic fraction of episodes, and trains :class:`~reflexarc.policies.world_model.WorldModel`
with the JEPA loss (H-step latent rollout against the EMA target encoder, VICReg terms).
CPU by default, CUDA when present (``device=auto``); deterministic for a seed on CPU.
Writes into ``run_dir``: ``model.safetensors`` + ``config.json`` (checkpoint, atomically),
``history.json``, ``loss.png``, ``eval.json`` and ``eval.png`` (held-out evaluation).
``data`` is a directory or an episode store's fsspec URL (:mod:`reflexarc.policies.store`).

Under ``torchrun --nproc_per_node=N`` the same command trains data-parallel
(:mod:`reflexarc.policies.distributed`: gloo on CPU, NCCL on CUDA): ``optim.batch_size``
stays the global batch, the model matches the single process's for the same seed (up to
floating-point sums), and rank 0 alone writes the checkpoint, figures and summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from reflexarc.policies import distributed
from reflexarc.policies.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from reflexarc.policies.data import EpisodeData, action_scales, load_episodes, split_names
from reflexarc.policies.evaluate import ProbeConfig, evaluate, plot_evaluation
from reflexarc.policies.quantities import parse_quantities
from reflexarc.policies.world_model import (
    ModelConfig,
    WorldModel,
    jepa_latents,
    jepa_loss,
    state_loss,
)
from reflexarc.runtime.config import bounded, choice, register
from reflexarc.runtime.errors import ConfigError


@dataclass
class OptimConfig:
    """Loss weights and optimiser settings (shared by ``train`` and the learner node)."""

    horizon: int = bounded(6, 1, 64)  # H: rollout steps per window (planner's default)
    batch_size: int = bounded(64, 2, 65536)
    lr: float = bounded(1e-3, 0.0, 1.0)
    weight_decay: float = bounded(1e-4, 0.0, 1.0)
    warmup: int = bounded(200, 0, None)  # linear warm-up steps
    grad_clip: float = bounded(10.0, 0.0, None)  # 0: off
    tau: float = bounded(0.01, 0.0, 1.0)  # EMA rate: target <- (1 - tau) target + tau online
    var_coef: float = bounded(1.0, 0.0, None)  # VICReg variance weight
    cov_coef: float = bounded(0.04, 0.0, None)  # VICReg covariance weight
    target_std: float = bounded(1.0, 0.0, None)
    discount: float = bounded(1.0, 0.0, 1.0)  # weight of step k: discount^(k-1)
    state_coef: float = bounded(1.0, 0.0, None)  # weight of the state head's error (state.parts)


@dataclass
class StateConfig:
    """The robot's own state in an env's observation (``state.parts``: named quantities,
    :mod:`reflexarc.policies.quantities`, e.g. ``angles:obs[0:4]``), which the latent is
    trained to carry through a linear head (``model.state_dim``). Name the robot's joints
    only, never the goal or the objects: it is proprioception, not a label."""

    parts: list[str] = field(default_factory=list)

    def validate(self) -> None:
        parse_quantities(list(self.parts), "state.parts")


@dataclass
class TrainConfig:
    """``reflexarc train`` (configs/train.yaml)."""

    data: str = "data/push-mujoco"  # root of episode directories
    run_dir: str = "runs/world-model"  # checkpoint, figures, history
    out: str = ""  # summary JSON (written by the CLI)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = bounded(5000, 0, None)
    camera: str = "front"
    probe_object: str = ""  # block for the probe ("" = first object)
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # named quantities (any env)
    state: StateConfig = field(default_factory=StateConfig)  # proprioception into the latent
    val_fraction: float = bounded(0.1, 0.0, 0.9)
    max_episodes: int = bounded(0, 0, None)  # 0 = all
    eval_every: int = bounded(500, 0, None)  # held-out check + checkpoint; 0 = at the end only
    final_eval: bool = True  # probe + k-step evaluation on held-out episodes at the end
    init: str = ""  # start from this checkpoint (its version + 1 is saved)
    seed: int = 0
    device: str = choice("auto", "cpu", "cuda")
    threads: int = bounded(0, 0, 256)  # torch CPU threads; 0 = torch's default
    progress: bool = True



register("train_schema", TrainConfig)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but torch sees no CUDA device; allowed: auto, cpu")
    return torch.device(name)


class Trainer:
    """Optimiser, schedule and EMA around a model; one :meth:`step` per batch of windows.

    Used by ``reflexarc train`` and by the learner node (policies/learner.py). With
    ``parallel`` (a torchrun process), :meth:`step` takes this rank's share of the global
    batch and makes the update of the whole batch (:mod:`reflexarc.policies.distributed`).
    """

    def __init__(
        self, model: WorldModel, cfg: OptimConfig, total_steps: int = 0,
        parallel: distributed.Parallel | None = None,
    ) -> None:
        self.model = model
        self.ddp = distributed.wrap(model, parallel) if parallel is not None else None
        self.cfg = cfg
        self.total_steps = total_steps  # 0: constant learning rate after warm-up
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.params = params
        self.steps_done = 0

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if c.warmup and step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        if self.total_steps <= 0:
            return c.lr
        t = min(1.0, (step - c.warmup) / max(1, self.total_steps - c.warmup))
        return c.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))

    def step(self, images: Tensor, actions: Tensor, proprio: Tensor | None = None,
             state: Tensor | None = None) -> Tensor:
        """One update on windows: images (B, H+1, 3, S, S) uint8, actions (B, H, A);
        ``state`` (B, H+1, P) normalised: the robot's state for the model's state head.

        Returns the detached loss terms (4,) = total, pred, var, cov (no host sync); the
        state head's error is in total.
        """
        c = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.steps_done)
        self.model.train()
        if self.ddp is not None:
            z0, preds, targets = (distributed.gather(t) for t in self.ddp(images, actions, proprio))
            losses = jepa_loss(z0, preds, targets, var_coef=c.var_coef, cov_coef=c.cov_coef,
                               target_std=c.target_std, discount=c.discount)
        else:
            z0, preds, targets = jepa_latents(self.model, images, actions, proprio)
            losses = jepa_loss(z0, preds, targets, var_coef=c.var_coef, cov_coef=c.cov_coef,
                               target_std=c.target_std, discount=c.discount)
            if state is not None and self.model.state_head is not None:
                s_loss = state_loss(self.model, z0, preds, state.to(z0.device))
                losses = dataclasses.replace(losses, total=losses.total + c.state_coef * s_loss)
        self.opt.zero_grad(set_to_none=True)
        losses.total.backward()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        self.opt.step()
        self.model.update_target(c.tau)
        self.steps_done += 1
        return torch.stack([losses.total, losses.pred, losses.var, losses.cov]).detach()


LOSS_NAMES = ("total", "pred", "var", "cov")


def _quick_val(model: WorldModel, data: EpisodeData, starts: Tensor, horizon: int) -> dict[str, float]:
    """Normalised H-step error of the model and copy-last on fixed held-out windows."""
    model.eval()
    with torch.no_grad():
        dev = next(model.parameters()).device
        images, actions, proprio = data.windows(starts, horizon, dev, model.cfg.frames)
        b = images.shape[0]
        flat: Any = images.flatten(0, 1)
        if proprio is not None:
            flat = {"image": flat, "proprio": proprio.flatten(0, 1)}
        z = model.encode(flat).view(b, horizon + 1, -1)
        preds = model.rollout(z[:, 0], actions)
        scale = z.flatten(0, 1).var(0).mean().clamp_min(1e-12)
        pred = ((preds[:, -1] - z[:, -1]) ** 2).mean() / scale
        base = ((z[:, 0] - z[:, -1]) ** 2).mean() / scale
    model.train()
    return {"val_pred_H": float(pred), "val_baseline_H": float(base)}


def plot_history(history: dict[str, list[float]], path: str | Path) -> None:
    """PNG of the training loss terms and the held-out H-step error over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in LOSS_NAMES:
        if history.get(name):
            ax[0].plot(history["step"], history[name], label=name)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].set_title("training loss terms")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    if history.get("val_step"):
        ax[1].plot(history["val_step"], history["val_pred_H"], "o-", label="world model")
        ax[1].plot(history["val_step"], history["val_baseline_H"], "s--", label="copy-last")
        ax[1].legend()
    ax[1].set_xlabel("step")
    ax[1].set_title("held-out H-step latent error (normalised)")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _next_version(cfg: TrainConfig) -> tuple[int, WorldModel | None]:
    """Version to save, and the initial model when ``init`` is set."""
    if cfg.init:
        model, info = load_checkpoint(cfg.init)
        return info.version + 1, model
    try:
        _, info = read_checkpoint(cfg.run_dir)
        return info.version + 1, None
    except CheckpointError:
        return 1, None


def train(cfg: TrainConfig, data: EpisodeData | None = None) -> dict[str, Any]:
    """Train from ``cfg.data`` (or preloaded ``data``); returns the summary.

    Under torchrun every rank returns it; only rank 0's has ``checkpoint`` set and wrote
    files."""
    par = distributed.setup(cfg.device, cfg.optim.batch_size)
    try:
        return _train(cfg, data, par)
    finally:
        distributed.teardown(par)


def _train(cfg: TrainConfig, data: EpisodeData | None, par: distributed.Parallel | None) -> dict[str, Any]:
    t_start = time.perf_counter()
    main = par is None or par.main
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = par.device if par is not None else resolve_device(cfg.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)
    if data is None:
        data = load_episodes(
            cfg.data, cfg.model.image_size, cfg.camera, 0,  # the episodes' action dimension
            with_proprio=cfg.model.proprio_dim > 0, max_episodes=cfg.max_episodes,
            object_name=cfg.probe_object,
        )
    t_loaded = time.perf_counter()
    for q in parse_quantities(list(cfg.probe.targets), "probe.targets"):  # fail now, not after training
        if data.obs is None:
            raise ConfigError("probe.targets", f"{q.spec!r}: the episodes under {cfg.data} record no "
                              "observation (joint_state) to read it from")
        q.values(data.obs[:1])
    cfg = _with_actions(cfg, data)
    train_names, val_names = split_names(data.names, cfg.val_fraction, cfg.seed)
    train_data = data.subset(train_names)
    state_parts = parse_quantities(list(cfg.state.parts), "state.parts")
    train_state, state_norm = None, None
    if state_parts:
        if par is not None:
            raise ConfigError("state.parts", "the state head trains in one process; run without "
                              "torchrun, or leave state.parts empty")
        train_state, state_norm = _state(train_data, state_parts, cfg.data)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, state_dim=int(train_state.shape[1])))
    val_data = data.subset(val_names) if val_names else None
    horizon = cfg.optim.horizon
    starts = train_data.window_starts(horizon)
    if len(starts) == 0:
        raise ConfigError("data", f"no window of {horizon + 1} consecutive frames in {cfg.data}")

    version, init_model = _next_version(cfg)
    if init_model is not None and init_model.cfg.action_dim != cfg.model.action_dim:
        raise ConfigError("init", f"{cfg.init} takes {init_model.cfg.action_dim}-d actions; the "
                          f"episodes under {cfg.data} carry {cfg.model.action_dim}-d ones")
    model = init_model if init_model is not None else WorldModel(cfg.model)
    if init_model is not None and dataclasses.asdict(init_model.cfg) != dataclasses.asdict(cfg.model):
        cfg = dataclasses.replace(cfg, model=init_model.cfg)  # the checkpoint's architecture wins
    model = model.to(device).train()
    if device.type == "cuda":  # whole data set on the GPU when it fits (uint8)
        free, _ = torch.cuda.mem_get_info(device)
        if train_data.nbytes < 0.5 * free:
            train_data = dataclasses.replace(train_data, frames=train_data.frames.to(device),
                                             actions=train_data.actions.to(device))
            starts = starts.to(device)
    if train_state is not None:
        train_state = train_state.to(starts.device)
    trainer = Trainer(model, cfg.optim, total_steps=cfg.steps, parallel=par)
    gen = torch.Generator(device=starts.device).manual_seed(cfg.seed)

    val_starts = None
    if val_data is not None:
        vs = val_data.window_starts(horizon)
        if len(vs):
            g = torch.Generator().manual_seed(cfg.seed + 1)
            val_starts = vs[torch.randperm(len(vs), generator=g)[:512]]

    history: dict[str, list[float]] = {k: [] for k in ("step", *LOSS_NAMES, "val_step", "val_pred_H", "val_baseline_H")}
    log_every = max(1, min(50, cfg.steps // 20 or 1))
    acc = torch.zeros(4, device=device)
    acc_n = 0
    run_dir = Path(cfg.run_dir)
    saved = {
        "train": dataclasses.asdict(cfg),
        "split": {"train": train_names, "val": val_names},
        "data": {"episodes": len(data.names), "frames": len(data), "windows": int(len(starts)),
                 "bytes": data.nbytes},
        "command": " ".join(sys.argv),
    }
    if state_norm is not None:  # the head reads (state - mean) / std
        saved["state"] = state_norm

    if par is not None:
        saved["parallel"] = {"world_size": par.world_size, "backend": par.backend}

    def checkpoint() -> Any:
        return save_checkpoint(run_dir, model, version, {**saved, "steps": trainer.steps_done})

    bar = None
    if cfg.progress and main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="train", unit="step", dynamic_ncols=True)
    for step in range(cfg.steps):
        idx = starts[torch.randint(len(starts), (cfg.optim.batch_size,), generator=gen, device=starts.device)]
        if par is not None:  # every rank draws the global batch; each trains on its slice
            idx = par.shard(idx)
        images, actions, proprio = train_data.windows(idx, horizon, device, cfg.model.frames)
        state = None
        if train_state is not None and model.state_head is not None:
            state = train_state[idx[:, None] + torch.arange(horizon + 1, device=idx.device)]
        acc += trainer.step(images, actions, proprio, state)
        acc_n += 1
        last = step + 1 == cfg.steps
        if (step + 1) % log_every == 0 or last:
            mean = (acc / acc_n).tolist()
            history["step"].append(step + 1)
            for name, v in zip(LOSS_NAMES, mean, strict=True):
                history[name].append(v)
            acc.zero_()
            acc_n = 0
            if bar is not None:
                bar.set_postfix(loss=f"{mean[0]:.4f}", pred=f"{mean[1]:.4f}", var=f"{mean[2]:.3f}")
        if main and val_starts is not None and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last):
            v = _quick_val(model, val_data, val_starts, horizon)
            history["val_step"].append(step + 1)
            history["val_pred_H"].append(v["val_pred_H"])
            history["val_baseline_H"].append(v["val_baseline_H"])
            if not last:
                checkpoint()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    t_trained = time.perf_counter()
    if not main:
        return {"rank": par.rank if par else 0, "steps": trainer.steps_done, "checkpoint": None,
                "train_s": round(t_trained - t_loaded, 1),
                "final_loss": history["total"][-1] if history["total"] else float("nan")}

    info = checkpoint()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "history.json").write_text(json.dumps(history) + "\n")
    if history["step"]:
        plot_history(history, run_dir / "loss.png")
    summary: dict[str, Any] = {
        "checkpoint": str(info.path),
        "version": info.version,
        "sha256": info.sha256,
        "device": str(device),
        "processes": par.world_size if par is not None else 1,
        "steps": trainer.steps_done,
        "episodes": len(data.names),
        "train_episodes": len(train_names),
        "val_episodes": len(val_names),
        "frames": len(data),
        "data_mb": round(data.nbytes / 2**20, 1),
        "load_s": round(t_loaded - t_start, 1),
        "train_s": round(t_trained - t_loaded, 1),
        "final_loss": history["total"][-1] if history["total"] else float("nan"),
        "final_pred_loss": history["pred"][-1] if history["pred"] else float("nan"),
    }
    if cfg.final_eval and val_data is not None and len(val_data.window_starts(horizon)):
        result = evaluate(model, _to_cpu(train_data), val_data, horizon, seed=cfg.seed,
                          targets=parse_quantities(list(cfg.probe.targets), "probe.targets"))
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_evaluation(result, run_dir / "eval.png", title=f"{run_dir.name} v{info.version}, held-out episodes")
        summary.update({k: result[k] for k in ("pred_error", "baseline_error", "probe_r2_ee",
                                               "probe_r2_block", "probe_r2", "min_latent_std",
                                               "collapsed")})
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    return summary


def _with_actions(cfg: TrainConfig, data: EpisodeData) -> TrainConfig:
    """``cfg`` with the model's action dimension and scales taken from the episodes.

    Episodes that say their action space (any env, collected through the gymnasium
    adapter) or carry other than 4-d actions get per-dimension ``action_scales`` (the Box
    bounds, else the largest |action|) unless given; the Panda's 4-d hand-action episodes
    keep ``action_scale`` on the displacement (today's recipe)."""
    dim = int(data.actions.shape[1])
    mc = cfg.model
    scales = list(mc.action_scales)
    generic = data.action_space is not None or dim != 4
    if scales and len(scales) != dim:
        raise ConfigError("model.action_scales", f"got {len(scales)} values; the episodes under "
                          f"{cfg.data} carry {dim}-d actions")
    if generic and not scales:
        scales = action_scales(data.action_space, data.actions[data.valid])
    mc = dataclasses.replace(mc, action_dim=dim, action_scales=scales)
    mc.validate()
    return dataclasses.replace(cfg, model=mc)


def _state(data: EpisodeData, parts: list[Any], root: str) -> tuple[Tensor, dict[str, Any]]:
    """The robot's state named by ``state.parts`` at every frame of ``data``, normalised
    per entry over these (training) episodes: (N, P) float32, and the normalisation."""
    if data.obs is None:
        raise ConfigError("state.parts", f"the episodes under {root} record no observation "
                          "(joint_state) to read the robot's state from")
    s = torch.cat([q.values(data.obs, "state.parts") for q in parts], dim=1).float()
    s = torch.nan_to_num(s)
    mean, std = s.mean(0), s.std(0).clamp_min(1e-6)
    norm = {"parts": [q.spec for q in parts], "mean": mean.tolist(), "std": std.tolist()}
    return (s - mean) / std, norm


def _to_cpu(d: EpisodeData) -> EpisodeData:
    return dataclasses.replace(d, frames=d.frames.cpu(), actions=d.actions.cpu())


def train_verb(cfg: TrainConfig) -> dict[str, Any] | None:
    """``reflexarc train [key=value ...]`` (under torchrun, rank 0 reports)."""
    summary = train(cfg)
    return summary if summary.get("checkpoint") is not None else None
