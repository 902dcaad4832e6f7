"""Online learning, measured: a model that never saw a block learns one from the stream.

The demonstration of issue 5 ("online learning, measured"), in three parts:

1. :class:`ExplorerNode`: the exploration policy of ``reflexarc collect``
   (:class:`reflexarc.policies.collect.Explorer`: smooth, contact-seeking pushes and wandering) as
   a graph node. It acts once on every new ``camera/<camera>`` frame, from the newest
   ``scene_state`` (privileged: hand and block positions), and publishes an
   ``ee_action`` stamped with the frame's stamp: the sim applies it right after that
   frame, so each action belongs to the frame of the same stamp, as in the collected
   episodes (frame j, action j -> frame j + 1). configs/graph/learn.yaml runs it with the
   sim (block scene) and the learner node (policies/learner.py), which starts from a
   model trained on the empty table (``reflexarc/PandaEmpty-v0``) and trains on the
   stream, publishing a versioned checkpoint every ``publish_every`` updates.
2. :func:`evaluate_versions`: every published version (and the starting model) scored
   on a fixed held-out set of block-scene episodes: the k-step latent prediction error,
   normalised as in :mod:`reflexarc.policies.evaluate` (by the mean per-dimension latent variance
   of the held-out frames, so versions with differently scaled latents compare), on the
   **block-moving** windows (the block's privileged position moves by more than
   ``move_m`` over the window's transitions) and on all windows, each against
   copy-last; plus a block probe R^2 (ridge, fitted on other episodes of the scene, or
   on half the held-out ones and scored on the other half; diagnosis only) and, through
   that probe, the block position
   decoded from the k-step predicted latents on the other half's block-moving windows,
   in cm against the true one (one physical scale for every version; copy-last = the
   block stays put). Plotted against minutes of experience (the stream time the version
   had seen).
3. :func:`controller_figures`: the 1 kHz controller's loop figures (rate, missed
   deadlines, step time, jitter) in configs/graph/control_learner.yaml with the learner
   training and with it disabled.

Commands (``python -m reflexarc.policies.online --help``)::

    python -m reflexarc.policies.online eval runs/learn/learner --data data/push-mujoco-heldout \\
        --init runs/empty-mujoco --out runs/learn/online
    python -m reflexarc.policies.online control --seconds 60 --out runs/learn/control.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reflexarc.policies.checkpoint import load_checkpoint
from reflexarc.policies.collect import ExploreConfig, Explorer
from reflexarc.policies.data import EpisodeData, load_episodes
from reflexarc.policies.evaluate import encode_all, probe_r2, ridge_fit, ridge_predict
from reflexarc.policies.world_model import WorldModel
from reflexarc.runtime.config import bounded
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EEAction, SceneState
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

# --------------------------------------------------------------------------------------
# The exploring robot
# --------------------------------------------------------------------------------------


@dataclass
class ExplorerNodeConfig:
    """Arguments of :class:`ExplorerNode` (``graph.nodes.<explorer>.args``)."""

    explore: ExploreConfig = field(default_factory=ExploreConfig)
    camera: str = "front"  # act once per frame of this camera
    max_delta: float = bounded(0.05, 1e-4, 0.2)  # m per action, as the sim's
    state_timeout_s: float = bounded(0.1, 0.0, None)  # ignore older scene states; 0: never


class ExplorerNode(Node):
    """``collect``'s exploration policy on the live scene; one ``ee_action`` per frame."""

    Config = ExplorerNodeConfig
    subscribes = {"scene_state": "latest", "camera/": "latest"}
    publishes = ("ee_action",)

    def __init__(self, ctx: NodeContext, cfg: ExplorerNodeConfig) -> None:
        super().__init__(ctx, cfg)
        self.seed = ctx.seed
        self.topic = f"camera/{cfg.camera}"
        self.episode = -1
        self.explorer: Explorer | None = None
        self.actions = 0
        self.old_states = 0
        self.modes: dict[str, int] = {}

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        frames = inbox.new(self.topic)
        ss: SceneState | None = inbox.latest("scene_state")
        if not frames or ss is None:
            return ()
        stamp = max(f.stamp_ns for f in frames)
        timeout = self.cfg.state_timeout_s
        if timeout and abs(stamp - ss.stamp_ns) > int(timeout * 1e9):
            self.old_states += 1
            return ()
        if ss.episode != self.episode or self.explorer is None:  # a new episode, a new plan
            self.episode = ss.episode
            rng = np.random.default_rng([self.seed, max(ss.episode, 0), 2])
            self.explorer = Explorer(self.cfg.explore, self.cfg.max_delta, rng)
            self.modes[self.explorer.mode] = self.modes.get(self.explorer.mode, 0) + 1
        objects = np.asarray(ss.objects)
        block = objects[0, :3] if objects.ndim == 2 and len(objects) else None
        action = self.explorer.act(np.asarray(ss.ee_pos, np.float64), block)
        self.actions += 1
        return [("ee_action", EEAction(stamp_ns=stamp, action=action))]

    def summary(self) -> dict[str, Any]:
        return {"actions": self.actions, "old_states": self.old_states,
                "episodes": self.episode + 1, "modes": dict(self.modes)}


# --------------------------------------------------------------------------------------
# Prediction error on block-moving transitions
# --------------------------------------------------------------------------------------


def block_moving(data: EpisodeData, starts: Tensor, horizon: int, move_m: float) -> Tensor:
    """(M,) bool: the block's (x, y) moves by more than ``move_m`` in some transition of
    the window ``starts[m] .. starts[m] + horizon`` (privileged positions; NaN = still)."""
    idx = starts[:, None] + torch.arange(horizon + 1)  # (M, H+1)
    xy = data.block_pos[idx][..., :2].double()  # (M, H+1, 2)
    step = (xy[:, 1:] - xy[:, :-1]).norm(dim=-1)  # (M, H)
    return torch.nan_to_num(step, nan=0.0).amax(dim=1) > move_m


@torch.no_grad()
def window_errors(model: WorldModel, data: EpisodeData, z: Tensor, starts: Tensor,
                  horizon: int, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-window k-step errors of the model and of copy-last, each (M, H), normalised by
    ``scale`` (the mean per-dimension latent variance), and the predicted latents
    (M, H, D). ``z`` (N, D): latents of ``data``."""
    idx = starts[:, None] + torch.arange(horizon + 1)  # (M, H+1)
    zt = z[idx]  # (M, H+1, D)
    dev = next(model.parameters()).device
    preds = model.rollout(zt[:, 0].to(dev), data.actions[idx[:, :-1]].to(dev)).float().cpu()
    pred = ((preds - zt[:, 1:]) ** 2).mean(dim=2) / scale  # (M, H)
    base = ((zt[:, :1] - zt[:, 1:]) ** 2).mean(dim=2) / scale  # (M, H)
    return pred, base, preds


@torch.no_grad()
def score_model(model: WorldModel, data: EpisodeData, horizon: int = 6, move_m: float = 0.002,
                probe_data: EpisodeData | None = None) -> dict[str, Any]:
    """Figures of one model on ``data`` (see the module docstring, part 2).

    The block probe is fitted on ``probe_data`` (other episodes of the scene) when given,
    else on the first half of ``data``'s episodes and scored on the second half.
    """
    model.eval()
    z = encode_all(model, data)  # (N, D)
    scale = float(z.var(dim=0).mean().clamp_min(1e-12))
    starts = data.window_starts(horizon)
    if len(starts) == 0:
        raise ConfigError("data", f"no window of {horizon + 1} frames in the held-out episodes")
    moving = block_moving(data, starts, horizon, move_m)
    pred, base, preds = window_errors(model, data, z, starts, horizon, scale)
    first = block_moving(data, starts, 1, move_m)  # the block moves in the first transition
    if probe_data is None:
        fit = data.episode < len(data.names) // 2
        z_fit, blk_fit, ee_fit = z[fit], data.block_pos[fit, :2], data.ee_pos[fit]
    else:
        fit = torch.zeros(len(data), dtype=torch.bool)
        z_fit = encode_all(model, probe_data)
        blk_fit, ee_fit = probe_data.block_pos[:, :2], probe_data.ee_pos
    test = ~fit
    return {
        **block_from_predictions(data, z, preds, starts, moving & test[starts], z_fit, blk_fit),
        "windows": len(starts),
        "moving_windows": int(moving.sum()),
        "moving_pred_error": pred[moving].mean(0).tolist(),  # k = 1..H
        "moving_baseline_error": base[moving].mean(0).tolist(),
        "pred_error_1step_moving": float(pred[first, 0].mean()),
        "baseline_error_1step_moving": float(base[first, 0].mean()),
        "still_pred_error": pred[~moving].mean(0).tolist(),
        "all_pred_error": pred.mean(0).tolist(),
        "all_baseline_error": base.mean(0).tolist(),
        "probe_r2_block": probe_r2(z_fit, blk_fit, z[test], data.block_pos[test, :2]),
        "probe_r2_ee": probe_r2(z_fit, ee_fit, z[test], data.ee_pos[test]),
    }


def block_from_predictions(data: EpisodeData, z: Tensor, preds: Tensor, starts: Tensor,
                           select: Tensor, z_fit: Tensor, xy_fit: Tensor) -> dict[str, Any]:
    """Where the model's predicted latents put the block, in metres (labels: diagnosis only).

    A ridge probe z -> block (x, y) is fitted on (``z_fit`` (F, D), ``xy_fit`` (F, 2)); on the
    windows ``select`` (M,) it decodes the predicted latents ``preds`` (M, H, D) and
    scores them against the block's true position k steps on (mean distance per k), next
    to copy-last (the block stays where it was) and to decoding the true future latent
    (the probe's own floor). Units are metres, so every version is on one scale.
    """
    xy = data.block_pos[:, :2].double()  # (N, 2)
    ok = torch.isfinite(xy_fit).all(1)
    h = preds.shape[1]
    idx = starts[select][:, None] + torch.arange(h + 1)  # (M', H+1)
    if ok.sum() < 2 or len(idx) == 0:
        nan = [float("nan")] * h
        return {"block_err_pred_m": nan, "block_err_copy_m": nan, "block_err_probe_m": nan}
    probe = ridge_fit(z_fit[ok], xy_fit[ok].double())
    true = xy[idx[:, 1:]]  # (M', H, 2)
    d = preds.shape[-1]
    dec = ridge_predict(probe, preds[select].reshape(-1, d)).reshape(-1, h, 2)
    floor = ridge_predict(probe, z[idx[:, 1:]].reshape(-1, d)).reshape(-1, h, 2)
    return {
        "block_err_pred_m": (dec - true).norm(dim=-1).mean(0).tolist(),
        "block_err_copy_m": (xy[idx[:, :1]] - true).norm(dim=-1).mean(0).tolist(),
        "block_err_probe_m": (floor - true).norm(dim=-1).mean(0).tolist(),
    }


def published_versions(learner_dir: str | Path) -> list[Path]:
    """The versioned checkpoints a learner wrote (``v<version>/model.safetensors``), in order."""
    return sorted(p / "model.safetensors" for p in Path(learner_dir).glob("v[0-9]*")
                  if (p / "model.safetensors").is_file())


def evaluate_versions(learner_dir: str | Path, data_root: str | Path, init: str = "",
                      horizon: int = 6, move_m: float = 0.002, threads: int = 1,
                      max_episodes: int = 0, probe_data: str = "", probe_episodes: int = 100,
                      progress: bool = True) -> list[dict[str, Any]]:
    """One row per checkpoint: ``init`` (the starting model, 0 minutes) and every version
    the learner published, with its experience and :func:`score_model` figures."""
    if threads:
        torch.set_num_threads(threads)
    paths = ([Path(init)] if init else []) + published_versions(learner_dir)
    if not paths:
        raise ConfigError("learner_dir", f"no published versions (v*/model.safetensors) in {learner_dir}")
    first, _ = load_checkpoint(paths[0])
    data = load_episodes(data_root, image_size=first.cfg.image_size, max_episodes=max_episodes)
    fit = (load_episodes(probe_data, image_size=first.cfg.image_size, max_episodes=probe_episodes)
           if probe_data else None)
    rows = []
    for i, path in enumerate(paths):
        model, info = load_checkpoint(path)
        lr = info.config.get("learner", {}) if i or not init else {}
        t = time.perf_counter()
        row = {"version": info.version, "path": str(path),
               "experience_min": lr.get("experience_s", 0.0) / 60.0,
               "wall_min": lr.get("wall_s", 0.0) / 60.0, "updates": lr.get("updates", 0),
               "transitions": lr.get("transitions", 0), "loss": lr.get("loss", float("nan")),
               **score_model(model, data, horizon, move_m, fit)}
        if progress:
            print(f"v{row['version']}: {row['experience_min']:.1f} min, "
                  f"block-moving 1-step {row['pred_error_1step_moving']:.3f} "
                  f"H-step {row['moving_pred_error'][-1]:.3f} ({time.perf_counter() - t:.0f} s)",
                  file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def plot_online(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Error on block-moving transitions versus minutes of experience (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["experience_min"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(x, [r["pred_error_1step_moving"] for r in rows], "o-", label="model, k=1")
    ax.plot(x, [r["moving_pred_error"][-1] for r in rows], "s-",
            label=f"model, k={len(rows[0]['moving_pred_error'])}")
    ax.plot(x, [r["baseline_error_1step_moving"] for r in rows], "o:", c="gray", label="copy-last, k=1")
    ax.plot(x, [r["moving_baseline_error"][-1] for r in rows], "s:", c="gray",
            label=f"copy-last, k={len(rows[0]['moving_pred_error'])}")
    ax.set_xlabel("minutes of experience in the block scene")
    ax.set_ylabel("normalised latent prediction error")
    ax.set_title("held-out block-moving transitions")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(x, [r["pred_error_1step_moving"] / max(r["baseline_error_1step_moving"], 1e-12) for r in rows],
            "o-", label="block-moving, k=1")
    ax.plot(x, [r["moving_pred_error"][-1] / max(r["moving_baseline_error"][-1], 1e-12) for r in rows],
            "s-", label="block-moving, k=H")
    ax.plot(x, [r["probe_r2_block"] for r in rows], "^--", label="block probe R^2 (diagnosis)")
    ax.set_xlabel("minutes of experience in the block scene")
    ax.set_title("error / copy-last, and block probe")
    ax.legend(fontsize=8)
    ax = axes[2]
    h = len(rows[0]["block_err_pred_m"])
    ax.plot(x, [100 * r["block_err_pred_m"][-1] for r in rows], "s-", label=f"predicted, k={h}")
    ax.plot(x, [100 * r["block_err_probe_m"][-1] for r in rows], "^--", label="true future latent (probe floor)")
    ax.plot(x, [100 * r["block_err_copy_m"][-1] for r in rows], ":", c="gray", label="copy-last (block stays)")
    ax.set_xlabel("minutes of experience in the block scene")
    ax.set_ylabel("cm")
    ax.set_title(f"block position decoded from the {h}-step prediction")
    ax.legend(fontsize=8)
    fig.suptitle(title or "online learning: a no-block model in the block scene")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# The controller with the learner on and off
# --------------------------------------------------------------------------------------

CONTROL_COLUMNS = ("rate_hz", "misses", "ticks", "miss_share", "step_p50_us", "step_p99_us",
                   "jitter_p50_us", "jitter_p99_us")


def controller_figures(seconds: float = 60.0, run_root: str | Path = "runs/control-learner",
                       graph: str = "control_learner", extra: list[str] | None = None
                       ) -> list[dict[str, Any]]:
    """Run ``graph`` for ``seconds`` with the learner enabled, then disabled; one row each:
    the controller's loop figures, the learner's updates, and the load average before."""
    rows = []
    for learner in (True, False):
        run_dir = Path(run_root) / ("learner-on" if learner else "learner-off")
        load = os.getloadavg()
        cmd = [sys.executable, "-m", "reflexarc.runtime.cli", "run", f"graph={graph}", f"duration_s={seconds}",
               f"run_dir={run_dir}", f"graph.nodes.learner.enabled={str(learner).lower()}",
               *(extra or [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        ctl = json.loads((run_dir / "controller.summary.json").read_text())
        row = {"learner": "on" if learner else "off", **{k: ctl[k] for k in CONTROL_COLUMNS},
               "load1_before": round(load[0], 2)}
        lsum = run_dir / "learner.summary.json"
        if learner and lsum.is_file():
            ls = json.loads(lsum.read_text())
            row.update(learner_updates=ls.get("updates"), learner_nice=ls.get("nice"),
                       learner_torch_threads=ls.get("torch_threads"))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reflexarc.policies.online", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="score every published version on held-out block episodes")
    e.add_argument("learner_dir")
    e.add_argument("--data", default="data/push-mujoco-heldout")
    e.add_argument("--init", default="", help="the starting checkpoint (scored at 0 minutes)")
    e.add_argument("--horizon", type=int, default=6)
    e.add_argument("--move-m", type=float, default=0.002)
    e.add_argument("--max-episodes", type=int, default=0, help="held-out episodes used (0: all)")
    e.add_argument("--probe-data", default="", help="episodes to fit the block probe on "
                   "(default: the first half of --data, scored on the second)")
    e.add_argument("--probe-episodes", type=int, default=100)
    e.add_argument("--out", default="", help="stem of OUT.json and OUT.png (default: learner_dir/online)")
    c = sub.add_parser("control", help="the controller's deadline figures, learner on and off")
    c.add_argument("--seconds", type=float, default=60.0)
    c.add_argument("--run-root", default="runs/control-learner")
    c.add_argument("--out", default="")
    c.add_argument("overrides", nargs="*", help="extra key=value for reflexarc run")
    a = ap.parse_args(argv)
    if a.cmd == "eval":
        rows = evaluate_versions(a.learner_dir, a.data, a.init, a.horizon, a.move_m,
                                 max_episodes=a.max_episodes, probe_data=a.probe_data,
                                 probe_episodes=a.probe_episodes)
        stem = Path(a.out or Path(a.learner_dir) / "online")
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        plot_online(rows, stem.with_suffix(".png"))
        print("| version | experience min | updates | 1-step err (moving) | copy-last | "
              f"{a.horizon}-step err (moving) | copy-last | block probe R^2 | "
              f"block from {a.horizon}-step prediction, cm (copy-last) |")
        print("| --- " * 9 + "|")
        for r in rows:
            print(f"| {r['version']} | {r['experience_min']:.1f} | {r['updates']} | "
                  f"{r['pred_error_1step_moving']:.3f} | {r['baseline_error_1step_moving']:.3f} | "
                  f"{r['moving_pred_error'][-1]:.3f} | {r['moving_baseline_error'][-1]:.3f} | "
                  f"{r['probe_r2_block']:.2f} | {100 * r['block_err_pred_m'][-1]:.2f} "
                  f"({100 * r['block_err_copy_m'][-1]:.2f}) |")
        print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    else:
        rows = controller_figures(a.seconds, a.run_root, extra=a.overrides)
        print("| learner | " + " | ".join(CONTROL_COLUMNS) + " | load1 before |")
        print("| --- " * (len(CONTROL_COLUMNS) + 2) + "|")
        for r in rows:
            vals = [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in CONTROL_COLUMNS]
            print(f"| {r['learner']} | " + " | ".join(vals) + f" | {r['load1_before']} |")
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
