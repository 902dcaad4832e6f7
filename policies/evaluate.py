"""Evaluation of a world model on held-out episodes (labels used for diagnosis only).

- k-step latent prediction error, k = 1..H: ``|rollout_k - encode(frame_t+k)|^2``
  averaged over dimensions and normalised by the mean per-dimension variance of the
  latents, against the copy-last baseline ``|encode(frame_t) - encode(frame_t+k)|^2``
  normalised the same way (a model that ignores actions scores the baseline).
- A linear probe (ridge, closed form) from z to the end-effector position (x, y, z) and
  to the pushed block's position (x, y; the block rests on the table, so its z does not
  vary), fitted on training episodes and scored (R^2, mean over outputs) on held-out ones.
- Probes of named quantities of any env's observation (``probe.targets``, specs of
  :mod:`reflexarc.policies.quantities`): one ridge probe per quantity, R^2 per name
  (``probe_r2``), fitted and scored as above.
- Per-dimension latent std (collapse check: :func:`reflexarc.policies.world_model.is_collapsed`).

``evaluate_model(cfg)`` is what ``reflexarc eval model=...`` calls (reflexarc/tools/evaluate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reflexarc.policies.checkpoint import load_checkpoint
from reflexarc.policies.data import EpisodeData, load_episodes, split_names
from reflexarc.policies.quantities import Quantity, parse_quantities
from reflexarc.policies.world_model import WorldModel, is_collapsed, latent_std
from reflexarc.runtime.episode import list_episodes
from reflexarc.runtime.errors import ConfigError


@dataclass
class ProbeConfig:
    """Probes of named quantities (``probe.targets``): specs such as
    ``fingertip:obs[4:6]+obs[8:10]`` (:mod:`reflexarc.policies.quantities`)."""

    targets: list[str] = field(default_factory=list)

    def validate(self) -> None:
        parse_quantities(list(self.targets), "probe.targets")


@torch.no_grad()
def encode_all(model: WorldModel, data: EpisodeData, batch: int = 512, target: bool = False) -> Tensor:
    """Latents of every frame: (N, D) float32 on CPU."""
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(data), batch):
        obs: Any = data.stacked(torch.arange(i, min(i + batch, len(data))), model.cfg.frames).to(dev)
        if data.proprio is not None and model.cfg.proprio_dim:
            obs = {"image": obs, "proprio": data.proprio[i : i + batch].to(dev)}
        z = model.encode_target(obs) if target else model.encode(obs)
        out.append(z.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.latent_dim)


@torch.no_grad()
def prediction_errors(
    model: WorldModel, data: EpisodeData, z: Tensor, horizon: int, max_windows: int = 4096,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Normalised k-step errors of the model and of copy-last, k = 1..H.

    ``z`` (N, D): latents of ``data`` frames (the targets). Returns lists of length H.
    """
    starts = data.window_starts(horizon)
    if len(starts) == 0:
        raise ConfigError("data", f"held-out episodes have no window of {horizon + 1} frames")
    if len(starts) > max_windows:
        g = torch.Generator().manual_seed(seed)
        starts = starts[torch.randperm(len(starts), generator=g)[:max_windows]].sort().values
    dev = next(model.parameters()).device
    idx = starts[:, None] + torch.arange(horizon + 1)  # (M, H+1)
    zt = z[idx]  # (M, H+1, D)
    actions = data.actions[idx[:, :-1]]  # (M, H, A)
    preds = model.rollout(zt[:, 0].to(dev), actions.to(dev)).float().cpu()  # (M, H, D)
    scale = float(z.var(dim=0).mean().clamp_min(1e-12))
    pred = ((preds - zt[:, 1:]) ** 2).mean(dim=(0, 2)) / scale
    base = ((zt[:, :1] - zt[:, 1:]) ** 2).mean(dim=(0, 2)) / scale
    return {"pred_error": pred.tolist(), "baseline_error": base.tolist(), "windows": [len(starts)]}


def ridge_fit(x: Tensor, y: Tensor, lam: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form ridge on standardised features: x (N, D), y (N, K).

    Returns (mean (D,), std (D,), W (D+1, K)); predict with :func:`ridge_predict`.
    ``lam`` is relative to N (penalty lam * N * |W|^2), so it does not depend on data size.
    """
    x = x.double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    reg = lam * len(x) * torch.eye(xs.shape[1], dtype=x.dtype)
    reg[-1, -1] = 0.0  # no penalty on the bias
    w = torch.linalg.solve(xs.T @ xs + reg, xs.T @ y.double())
    return mu, sd, w


def ridge_predict(probe: tuple[Tensor, Tensor, Tensor], x: Tensor) -> Tensor:
    mu, sd, w = probe
    xs = (x.double() - mu) / sd
    return xs @ w[:-1] + w[-1]


def r2_score(y: Tensor, pred: Tensor) -> float:
    """Coefficient of determination, mean over outputs. y, pred (N, K)."""
    y, pred = y.double(), pred.double()
    sse = ((y - pred) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return float((1.0 - sse / sst).mean())


def probe_r2(
    z_fit: Tensor, y_fit: Tensor, z_test: Tensor, y_test: Tensor, lam: float = 1e-3
) -> float:
    """R^2 on (z_test, y_test) of a ridge probe fitted on (z_fit, y_fit); NaN rows dropped."""
    ok_f = torch.isfinite(y_fit).all(1)
    ok_t = torch.isfinite(y_test).all(1)
    if ok_f.sum() < 2 or ok_t.sum() < 2:
        return float("nan")
    probe = ridge_fit(z_fit[ok_f], y_fit[ok_f], lam)
    return r2_score(y_test[ok_t], ridge_predict(probe, z_test[ok_t]))


def evaluate(
    model: WorldModel, fit: EpisodeData, test: EpisodeData, horizon: int, *,
    max_windows: int = 4096, max_fit_frames: int = 20000, seed: int = 0,
    targets: list[Quantity] | tuple[Quantity, ...] = (),
) -> dict[str, Any]:
    """All figures of one model: probe fitted on ``fit``, everything scored on ``test``;
    ``targets``: named quantities of the observation, one probe each (``probe_r2``)."""
    was_training = model.training
    model.eval()
    z_test = encode_all(model, test)
    errs = prediction_errors(model, test, z_test, horizon, max_windows, seed)
    errs_t = prediction_errors(model, test, encode_all(model, test, target=True), horizon, max_windows, seed)
    sel = torch.arange(len(fit))
    if len(sel) > max_fit_frames:
        sel = torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed))[:max_fit_frames]
    z_fit = _encode_rows(model, fit, sel)
    ee_fit, blk_fit = fit.ee_pos[sel], fit.block_pos[sel, :2]
    std = latent_std(z_test)
    model.train(was_training)
    named: dict[str, float] = {}
    for q in targets:
        if fit.obs is None or test.obs is None:
            raise ConfigError("probe.targets", f"{q.spec!r}: the episodes record no observation "
                              "(joint_state) to read it from")
        named[q.name] = probe_r2(z_fit, q.values(fit.obs[sel]), z_test, q.values(test.obs))
    return {
        "horizon": horizon,
        "pred_error": errs["pred_error"],
        "baseline_error": errs["baseline_error"],
        "pred_error_vs_target_encoder": errs_t["pred_error"],
        "baseline_error_vs_target_encoder": errs_t["baseline_error"],
        "ratio_to_baseline": [p / max(b, 1e-12) for p, b in zip(errs["pred_error"], errs["baseline_error"], strict=True)],
        "probe_r2_ee": probe_r2(z_fit, ee_fit, z_test, test.ee_pos),
        "probe_r2_block": probe_r2(z_fit, blk_fit, z_test, test.block_pos[:, :2]),
        "probe_r2": named,
        "min_latent_std": float(std.min()),
        "mean_latent_std": float(std.mean()),
        "collapsed": is_collapsed(z_test),
        "latent_std": std.tolist(),
        "fit_episodes": len(fit.names),
        "fit_frames": len(sel),
        "test_episodes": len(test.names),
        "test_frames": len(test),
        "test_windows": errs["windows"][0],
        "block": test.object_name or "first object",
    }


@torch.no_grad()
def _encode_rows(model: WorldModel, data: EpisodeData, rows: Tensor, batch: int = 512) -> Tensor:
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(rows), batch):
        r = rows[i : i + batch]
        obs: Any = data.stacked(r, model.cfg.frames).to(dev)
        if data.proprio is not None and model.cfg.proprio_dim:
            obs = {"image": obs, "proprio": data.proprio[r].to(dev)}
        out.append(model.encode(obs).float().cpu())
    return torch.cat(out)


def plot_evaluation(result: dict[str, Any], path: str | Path, title: str = "") -> None:
    """PNG: k-step error vs copy-last, and sorted per-dimension latent std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    k = np.arange(1, len(result["pred_error"]) + 1)
    ax[0].plot(k, result["pred_error"], "o-", label="world model")
    ax[0].plot(k, result["baseline_error"], "s--", label="copy-last baseline")
    ax[0].set_xlabel("prediction step k")
    ax[0].set_ylabel("normalised latent error")
    named = result.get("probe_r2") or {}
    probes = {**named} if named else {"ee": result["probe_r2_ee"], "block": result["probe_r2_block"]}
    ax[0].set_title("probe R2: " + ", ".join(f"{k} {v:.3f}" for k, v in probes.items()))
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    std = np.sort(np.asarray(result["latent_std"]))[::-1]
    ax[1].bar(np.arange(len(std)), std)
    ax[1].set_xlabel("latent dimension (sorted)")
    ax[1].set_ylabel("std over held-out frames")
    ax[1].set_title(f"min latent std {result['min_latent_std']:.3f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_model(cfg: Any) -> dict[str, Any]:
    """``reflexarc eval model=CKPT data=EPISODES``: figures on held-out episodes.

    Held-out = episodes under ``cfg.data`` that the checkpoint was not trained on (its
    config lists them, by name, when ``cfg.data`` is its training directory; any other
    directory is held out entirely). The probe is fitted on the episodes it was trained on
    (read from its training directory when ``cfg.data`` is another one); when those are
    not at hand, on the first half of the held-out episodes (scored on the second half).
    A PNG is written beside ``cfg.out`` (``.png``), or under runs/.
    """
    model, info = load_checkpoint(cfg.model)
    data_dir = getattr(cfg, "data", "") or info.config.get("train", {}).get("data", "")
    if not data_dir or not Path(data_dir).is_dir():
        raise ConfigError("data", f"episode directory {data_dir!r} not found")
    names = [p.name for p in list_episodes(data_dir)]
    trained_on = info.config.get("train", {}).get("data", "")
    same = bool(trained_on) and Path(trained_on).resolve() == Path(data_dir).resolve()
    train_split = set(info.config.get("split", {}).get("train", []))
    trained = train_split if same else set()
    fit_names = [n for n in names if n in trained]
    test_names = [n for n in names if n not in trained]
    how = "probe fitted on the checkpoint's training episodes"
    root = fit_root = Path(data_dir)
    if not test_names:
        raise ConfigError("data", f"every episode under {data_dir} was used for training")
    if not fit_names and trained_on and Path(trained_on).is_dir():
        # another data set: all of it is held out; the probe is fitted where the model
        # was trained, on the episodes it was trained on
        fit_root = Path(trained_on)
        fit_names = [p.name for p in list_episodes(fit_root) if p.name in train_split]
        how = f"probe fitted on the checkpoint's training episodes (under {trained_on})"
    if not fit_names:
        fit_names, test_names = split_names(test_names, 0.5, int(getattr(cfg, "seed", 0)))
        how = "no training episodes here: probe fitted on half of the episodes"
    train_cfg = info.config.get("train", {})
    horizon = int(getattr(cfg, "horizon", 0) or train_cfg.get("optim", {}).get("horizon", 5))
    kw = {"image_size": info.model.image_size, "with_proprio": info.model.proprio_dim > 0,
          "action_dim": info.model.action_dim,
          "camera": train_cfg.get("camera", "front"), "object_name": train_cfg.get("probe_object", "")}
    fit = load_episodes([fit_root / n for n in fit_names], **kw)
    test = load_episodes([root / n for n in test_names], **kw)
    probe = getattr(cfg, "probe", None)
    specs = list(getattr(probe, "targets", []) or []) or list(train_cfg.get("probe", {}).get("targets", []))
    targets = parse_quantities(specs, "probe.targets")
    result = evaluate(model, fit, test, horizon, seed=int(getattr(cfg, "seed", 0)), targets=targets)
    result = {"model": str(info.path), "version": info.version, "data": str(data_dir),
              "probe_fit": how, **result}
    out = getattr(cfg, "out", "")
    png = Path(out).with_suffix(".png") if out else Path("runs") / f"eval-{info.path.parent.name}.png"
    plot_evaluation(result, png, title=f"{info.path.parent.name} v{info.version} on {root.name}")
    result["figure"] = str(png)
    return result
