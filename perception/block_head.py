"""Where the blocks will be, read from the world model's latents: a head trained on what
the robot's own camera saw.

A :class:`BlockHead` is a small MLP from a latent ``z`` (D,) of the world model to the
positions on the table (x, y, in the base frame) of the coloured blocks (K, 2). It reads
the encoder's latent of a frame and, as well, the latents the predictor rolls out from it
under actions, so the planner can ask where a sequence of actions leaves the blocks.

Its labels are **pseudo-labels from perception**: the object detector
(:mod:`reflexarc.perception.objects`) run on the recorded frames through the camera's
calibration file, as on a real arm. No simulator state enters the fit. A block is
labelled in a frame only when it is seen well (``min_confidence``: a block the hand
half hides is placed centimetres off and is left out).

Training pairs, from every window of ``horizon`` transitions of the recorded episodes
(frame t, actions t..t+H-1), the world model frozen:

- ``(encode(frame t), blocks seen in frame t)``, k = 0;
- ``(rollout(encode(frame t), actions)[k - 1], blocks seen in frame t + k)``, k = 1..H.

So the head learns to read the rolled-out latents, which is what the planner gives it.

The planner reads it relative to what perception sees now, as it reads the hand
(:mod:`reflexarc.planner.task_cost`)::

    block_k = block_seen + head(z_k(actions)) - head(z_k(still))

A head belongs to one checkpoint (its SHA-256 is stored and checked). The file is an
``.npz`` of its arrays and a JSON ``meta`` (config, figures, ``weights_sha256``: the
digest of every array's name, dtype, shape and bytes, checked on every load).

    python -m reflexarc.perception.block_head fit push-mujoco data/push3-mujoco \\
        perception/probes/push-mujoco-blocks.npz --calibration sim-front-mujoco
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reflexarc.perception.calibration import CameraCalibration
from reflexarc.perception.encoding import LoadedModel, load_model
from reflexarc.perception.hand import PROBES_DIR
from reflexarc.perception.objects import DetectorConfig, ObjectDetector
from reflexarc.policies.checkpoint import shipped
from reflexarc.policies.data import EpisodeData, load_episodes, split_names
from reflexarc.runtime.errors import ReflexarcError

FORMAT = "reflexarc-block-head"
ARRAYS = ("mean", "scale", "w1", "b1", "w2", "b2", "w3", "b3", "y_mean")


class BlockHeadError(ReflexarcError):
    """A block head cannot be fitted, read, or used with this model."""


def head_path(path: str | Path) -> Path:
    """A head file, or the shipped head of that name (``push-mujoco-blocks``)."""
    return shipped(path if str(path).endswith(".npz") else f"{path}.npz", PROBES_DIR)


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, in :data:`ARRAYS` order."""
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{list(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class BlockHeadConfig:
    """How a head is fitted."""

    names: tuple[str, ...] = ("red", "green", "blue")  # the block colours it predicts
    hidden: int = 64  # units of each of the two hidden layers
    horizon: int = 6  # rolled-out steps it is trained on (the planner's horizon or more)
    min_confidence: float = 0.75  # a detection below this is no label
    steps: int = 2000  # Adam updates
    batch: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2  # share of the episodes held out (by name) to score it
    max_episodes: int = 0  # 0: all
    camera: str = "front"
    calibration: str = ""  # the camera's calibration file or shipped name
    seed: int = 0


@dataclass(frozen=True)
class BlockHead:
    """``blocks = mlp((z - mean) / scale) * y_scale + y_mean``: (..., D) -> (..., K, 2) m."""

    arrays: dict[str, np.ndarray]
    names: tuple[str, ...]
    y_scale: float
    checkpoint_sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return int(self.arrays["mean"].shape[0])

    @property
    def weights_sha256(self) -> str:
        return arrays_digest(self.arrays)

    def index(self, name: str) -> int:
        """The output row of block ``name`` (BlockHeadError if it does not predict it)."""
        if name not in self.names:
            raise BlockHeadError(f"the head predicts {', '.join(self.names)}, not {name!r}")
        return self.names.index(name)

    def module(self, device: torch.device | str = "cpu") -> BlockHeadModule:
        return BlockHeadModule(self, device)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Block positions (..., K, 2) of latents ``z`` (..., D)."""
        z = np.asarray(z, dtype=np.float32)
        if z.shape[-1] != self.latent_dim:
            raise BlockHeadError(f"latent has {z.shape[-1]} dims; the head reads {self.latent_dim}")
        with torch.no_grad():
            return self.module()(torch.from_numpy(z)).numpy()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "names": list(self.names), "y_scale": self.y_scale,
                "checkpoint_sha256": self.checkpoint_sha256, "config": self.config,
                "figures": self.figures, "weights_sha256": self.weights_sha256}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **self.arrays, meta=np.array(json.dumps(meta)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BlockHead:
        """Load a head file, or a shipped head by name; its arrays must hash to the
        digest it names."""
        path = head_path(path)
        try:
            with np.load(path, allow_pickle=False) as d:
                meta = json.loads(str(d["meta"]))
                arrays = {k: np.asarray(d[k]) for k in ARRAYS}
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise BlockHeadError(f"cannot read a block head from {path}: {e}") from None
        if meta.get("format") != FORMAT:
            raise BlockHeadError(f"{path}: not a block head (format {meta.get('format')!r})")
        digest = arrays_digest(arrays)
        if digest != meta.get("weights_sha256"):
            raise BlockHeadError(
                f"{path}: damaged: its arrays hash to sha256 {digest[:12]}..., the file says "
                f"{str(meta.get('weights_sha256'))[:12]}...")
        return cls(arrays=arrays, names=tuple(meta["names"]), y_scale=float(meta["y_scale"]),
                   checkpoint_sha256=meta["checkpoint_sha256"], config=meta.get("config", {}),
                   figures=meta.get("figures", {}))


class BlockHeadModule(nn.Module):
    """The head as a torch module on ``device``: (..., D) -> (..., K, 2), for batched use."""

    def __init__(self, head: BlockHead, device: torch.device | str = "cpu") -> None:
        super().__init__()
        a = {k: torch.as_tensor(v, dtype=torch.float32, device=device)
             for k, v in head.arrays.items()}
        self.register_buffer("mean", a["mean"])
        self.register_buffer("scale", a["scale"])
        self.l1 = _linear(a["w1"], a["b1"])
        self.l2 = _linear(a["w2"], a["b2"])
        self.l3 = _linear(a["w3"], a["b3"])
        self.register_buffer("y_mean", a["y_mean"])
        self.y_scale = float(head.y_scale)
        self.k = len(head.names)
        self.requires_grad_(False)

    def forward(self, z: Tensor) -> Tensor:
        x = (z - self.mean) / self.scale
        h = torch.relu(self.l2(torch.relu(self.l1(x))))
        y = self.l3(h).unflatten(-1, (self.k, 2))
        return y * self.y_scale + self.y_mean


def _linear(w: Tensor, b: Tensor) -> nn.Linear:
    lin = nn.Linear(w.shape[0], w.shape[1], device=w.device)
    with torch.no_grad():
        lin.weight.copy_(w.T)
        lin.bias.copy_(b)
    return lin


# -- pseudo-labels ---------------------------------------------------------------------------


def pseudo_labels(frames: Tensor, detector: ObjectDetector, names: tuple[str, ...],
                  min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The blocks perception sees in each frame (N, 3, S, S) uint8: positions (N, K, 2)
    (NaN where unseen) and seen (N, K) bool (confidence >= ``min_confidence``)."""
    n = int(frames.shape[0])
    pos = np.full((n, len(names), 2), np.nan, np.float32)
    rgb = frames.permute(0, 2, 3, 1).contiguous().numpy()
    for i in range(n):
        for d in detector.detect(rgb[i]):
            if d.name in names and d.confidence >= min_confidence:
                pos[i, names.index(d.name)] = d.position[:2]
    return pos, np.isfinite(pos[..., 0])


# -- latents ---------------------------------------------------------------------------------


@torch.no_grad()
def frame_latents(loaded: LoadedModel, data: EpisodeData, batch: int = 512) -> Tensor:
    """The encoder's latent (N, D) of every frame of ``data`` (with the model's history)."""
    frames_n = int(getattr(loaded.model.cfg, "frames", 1) or 1)
    rows = torch.arange(len(data))
    out = [loaded.model.encode(data.stacked(rows[s:s + batch], frames_n).permute(0, 2, 3, 1))
           for s in range(0, len(data), batch)]
    return torch.cat(out).float() if out else torch.zeros(0, loaded.latent_dim)


@torch.no_grad()
def window_latents(loaded: LoadedModel, data: EpisodeData, horizon: int, still: bool = False,
                   batch: int = 2048, z_frames: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For every window start t (all H transitions valid): the latents (M, H + 1, D) of
    frame t (k = 0) and of the rollout under the recorded actions (k = 1..H), and the
    starts (M,). ``still``: the rollout with the hand held still (dims 0-2 zero, the
    recorded gripper), as the planner's reference. ``z_frames``: the frames' latents
    (:func:`frame_latents`), if already encoded."""
    model = loaded.model
    if z_frames is None:
        z_frames = frame_latents(loaded, data)
    starts = data.window_starts(horizon)
    out = []
    for s in range(0, len(starts), batch):
        st = starts[s:s + batch]
        z0 = z_frames[st]
        idx = st[:, None] + torch.arange(horizon)
        acts = data.actions[idx].clone()  # (B, H, A)
        if still:
            acts[..., :3] = 0.0
        zs = model.rollout(z0, acts)
        out.append(torch.cat([z0[:, None], zs], dim=1).float())
    d = loaded.latent_dim
    return (torch.cat(out) if out else torch.zeros(0, horizon + 1, d)), starts


# -- fitting ---------------------------------------------------------------------------------


def _fit_mlp(x: Tensor, y: Tensor, seen: Tensor, cfg: BlockHeadConfig, names: tuple[str, ...],
             sha256: str) -> tuple[BlockHead, list[float]]:
    """Fit the MLP on latents x (N, D) -> positions y (N, K, 2) where ``seen`` (N, K);
    returns the head and its loss every 100 updates."""
    torch.manual_seed(cfg.seed)
    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    yv = y[seen]  # (M, 2)
    y_mean = torch.stack([
        y[:, k][seen[:, k]].mean(0) if seen[:, k].any() else yv.mean(0) for k in range(y.shape[1])
    ])  # (K, 2)
    y_scale = float(max(yv.std().item(), 1e-3))
    d, k = x.shape[1], y.shape[1]
    net = nn.Sequential(nn.Linear(d, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden),
                        nn.ReLU(), nn.Linear(cfg.hidden, 2 * k))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps))
    xs = (x - mean) / scale
    target = torch.nan_to_num((y - y_mean) / y_scale)
    w = seen.float()[..., None]
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    run = 0.0
    for step in range(cfg.steps):
        i = torch.randint(0, len(xs), (min(cfg.batch, len(xs)),), generator=gen)
        pred = net(xs[i]).unflatten(-1, (k, 2))
        err = nn.functional.smooth_l1_loss(pred, target[i], reduction="none", beta=0.5) * w[i]
        loss = err.sum() / w[i].sum().clamp(min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run += loss.item()
        if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
            losses.append(run / (100 if (step + 1) % 100 == 0 else (step + 1) % 100))
            run = 0.0
    lin = [m for m in net if isinstance(m, nn.Linear)]
    arrays = {"mean": mean.numpy(), "scale": scale.numpy(), "y_mean": y_mean.numpy()}
    for j, m in enumerate(lin, start=1):
        arrays[f"w{j}"] = m.weight.detach().T.contiguous().numpy()
        arrays[f"b{j}"] = m.bias.detach().numpy()
    arrays = {n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in ARRAYS}
    head = BlockHead(arrays=arrays, names=names, y_scale=y_scale, checkpoint_sha256=sha256)
    return head, losses


def training_pairs(z: Tensor, starts: Tensor, labels: np.ndarray, seen: np.ndarray
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Latents (M, H + 1, D) of windows at ``starts`` -> pairs x (P, D), y (P, K, 2),
    seen (P, K): latent k of a window with the blocks seen in frame t + k."""
    h1 = z.shape[1]
    rows = (starts[:, None] + torch.arange(h1)).reshape(-1).numpy()  # (M * (H+1),)
    x = z.reshape(-1, z.shape[-1])
    y = torch.from_numpy(labels[rows])
    s = torch.from_numpy(seen[rows])
    keep = s.any(1)
    return x[keep], y[keep], s[keep]


def fit_block_head(checkpoint: str | Path, episodes: str | Path, cfg: BlockHeadConfig,
                   truth: Any = None) -> tuple[BlockHead, dict[str, Any]]:
    """Fit a head for ``checkpoint`` on the episodes under ``episodes`` with perception's
    labels, on all but the ``holdout`` share of the episodes, which score it (:func:`score`).
    ``truth``: an optional callable ``(data) -> (N, K, 2)`` of true positions, for the
    diagnosis only (it never enters the fit). Returns the head and a report."""
    if not cfg.calibration:
        raise BlockHeadError("give the camera's calibration file (calibration=...)")
    loaded = load_model(checkpoint)
    detector = ObjectDetector(CameraCalibration.load(cfg.calibration), DetectorConfig(colors=cfg.names))
    data = load_episodes(episodes, image_size=loaded.image_size, camera=cfg.camera,
                         max_episodes=cfg.max_episodes)
    if len(data.names) < 2:
        raise BlockHeadError(f"need at least 2 episodes under {episodes}, found {len(data.names)}")
    labels, seen = pseudo_labels(data.frames, detector, cfg.names, cfg.min_confidence)
    z_frames = frame_latents(loaded, data)
    z, starts = window_latents(loaded, data, cfg.horizon, z_frames=z_frames)
    if len(starts) < 10:
        raise BlockHeadError(f"only {len(starts)} windows of {cfg.horizon} steps under {episodes}")
    train_names, val_names = split_names(data.names, cfg.holdout, cfg.seed)
    ep = data.episode[starts]
    val_idx = torch.tensor([data.names.index(n) for n in val_names], dtype=torch.int64)
    is_val = torch.isin(ep, val_idx)
    report: dict[str, Any] = {
        "episodes": len(data.names), "heldout_episodes": len(val_names),
        "frames": len(data), "labelled": {n: int(seen[:, i].sum()) for i, n in enumerate(cfg.names)},
        "windows": len(starts),
    }
    # the head shipped is the one the held-out figures score (no refit on every episode)
    final, losses = _fit_mlp(*training_pairs(z[~is_val], starts[~is_val], labels, seen), cfg,
                             cfg.names, loaded.sha256)
    report["train_loss"] = losses
    if is_val.any():
        still, _ = window_latents(loaded, data, cfg.horizon, still=True, z_frames=z_frames)
        true = None if truth is None else truth(data)
        report["heldout"] = score(final, z[is_val], still[is_val], starts[is_val], labels, seen,
                                  true)
    conf = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}
    conf.update(checkpoint=str(checkpoint), episodes_root=str(episodes))
    figures = {k: report[k] for k in ("episodes", "heldout_episodes", "frames", "windows",
                                      "labelled")}
    figures["heldout"] = report.get("heldout", {})
    final = BlockHead(arrays=final.arrays, names=final.names, y_scale=final.y_scale,
                      checkpoint_sha256=final.checkpoint_sha256, config=conf, figures=figures)
    return final, report


# -- scoring ---------------------------------------------------------------------------------


def _stats(err: np.ndarray) -> dict[str, float]:
    err = err[np.isfinite(err)]
    if not len(err):
        return {"n": 0, "p50_cm": float("nan"), "p95_cm": float("nan")}
    return {"n": int(len(err)), "p50_cm": round(float(np.median(err)) * 100, 2),
            "p95_cm": round(float(np.percentile(err, 95)) * 100, 2)}


@torch.no_grad()
def score(head: BlockHead, z: Tensor, still: Tensor, starts: Tensor, labels: np.ndarray,
          seen: np.ndarray, truth: np.ndarray | None = None, moved_m: float = 0.01
          ) -> dict[str, Any]:
    """Per k = 0..H, the head's error (p50 / p95 cm) on windows (latents ``z`` and the
    still rollout ``still``, (M, H + 1, D), at ``starts``), against the blocks perception
    sees in frame t + k, and against ``truth`` (N, K, 2) where given:

    - ``head``: head(z_k) itself;
    - ``relative``: seen_t + head(z_k) - head(z_k(still)), as the planner reads it;
    - ``copy_last``: seen_t (the block assumed not to move), the baseline;
    - ``moved``: the same three on the pairs where the block moved more than ``moved_m``
      between t and t + k (by perception; by the truth for the truth's rows)."""
    mod = head.module()
    pred = mod(z).numpy()  # (M, H+1, K, 2)
    pred_still = mod(still).numpy()
    h1 = z.shape[1]
    out: dict[str, Any] = {}
    st = starts.numpy()
    for ref_name, ref in (("perceived", labels), ("truth", truth)):
        if ref is None:
            continue
        rows: list[dict[str, Any]] = []
        for k in range(h1):
            tk = st + k
            now = labels[st]  # (M, K, 2) what perception saw at t (the planner's base)
            y = ref[tk]
            rel = now + pred[:, k] - pred_still[:, k]
            ok = np.isfinite(y[..., 0])
            ok_now = ok & np.isfinite(now[..., 0])
            base_ref = ref[st]
            moved = ok_now & (np.linalg.norm(y - base_ref, axis=-1) > moved_m)
            e_head = np.linalg.norm(pred[:, k] - y, axis=-1)
            e_rel = np.linalg.norm(rel - y, axis=-1)
            e_copy = np.linalg.norm(now - y, axis=-1)
            rows.append({
                "k": k,
                "head": _stats(e_head[ok]), "relative": _stats(e_rel[ok_now]),
                "copy_last": _stats(e_copy[ok_now]),
                "moved": {"head": _stats(e_head[moved]), "relative": _stats(e_rel[moved]),
                          "copy_last": _stats(e_copy[moved])},
                "blocks": {name: {"head": _stats(e_head[:, j][ok[:, j]]),
                                  "relative": _stats(e_rel[:, j][ok_now[:, j]]),
                                  "moved_relative": _stats(e_rel[:, j][moved[:, j]]),
                                  "moved_copy_last": _stats(e_copy[:, j][moved[:, j]])}
                           for j, name in enumerate(head.names)},
            })
        out[ref_name] = rows
    return out


def block_table(report: dict[str, Any], ref: str = "perceived") -> str:
    """Per block: head(z_k) p50 / p95 cm, and on the moved pairs relative vs copy-last."""
    rows = report.get(ref, [])
    if not rows:
        return ""
    names = list(rows[0]["blocks"])
    lines = ["| k | " + " | ".join(f"{n}: head | {n} moved: relative / copy-last p50"
                                    for n in names) + " |",
             "| --- |" + " --- | --- |" * len(names)]
    for r in rows:
        cells = []
        for n in names:
            b = r["blocks"][n]
            cells.append(f"{b['head']['p50_cm']:.2f} / {b['head']['p95_cm']:.2f}")
            cells.append(f"{b['moved_relative']['p50_cm']:.2f} / "
                         f"{b['moved_copy_last']['p50_cm']:.2f} ({b['moved_relative']['n']})")
        lines.append(f"| {r['k']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(report: dict[str, Any], ref: str = "perceived") -> str:
    """The held-out figures as a markdown table (p50 / p95 cm per k)."""
    rows = report.get(ref, [])
    lines = ["| k | head | relative | copy-last | moved: head | moved: relative | moved: copy-last | moved n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(s: dict[str, Any]) -> str:
        return f"{s['p50_cm']:.2f} / {s['p95_cm']:.2f}"

    for r in rows:
        m = r["moved"]
        lines.append(f"| {r['k']} | {f(r['head'])} | {f(r['relative'])} | {f(r['copy_last'])} "
                     f"| {f(m['head'])} | {f(m['relative'])} | {f(m['copy_last'])} "
                     f"| {m['head']['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m reflexarc.perception.block_head fit CHECKPOINT EPISODES OUT.npz
    --calibration NAME [--steps N] [--max-episodes N]``; ``check HEAD``."""
    p = argparse.ArgumentParser(prog="python -m reflexarc.perception.block_head")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit a head on perception's detections in episodes")
    f.add_argument("checkpoint")
    f.add_argument("episodes")
    f.add_argument("out")
    f.add_argument("--calibration", required=True)
    f.add_argument("--steps", type=int, default=BlockHeadConfig.steps)
    f.add_argument("--max-episodes", type=int, default=0)
    f.add_argument("--horizon", type=int, default=BlockHeadConfig.horizon)
    f.add_argument("--report", default="", help="also write the full report (JSON) here")
    f.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    c = sub.add_parser("check", help="load a head (its digest is checked) and print it")
    c.add_argument("head")
    a = p.parse_args(argv)
    if a.cmd == "check":
        head = BlockHead.load(a.head)
        print(f"{head_path(a.head)}: ok, blocks {', '.join(head.names)}, checkpoint "
              f"{head.checkpoint_sha256[:12]}..., weights {head.weights_sha256[:12]}...")
        return 0
    # one thread: on a shared machine more spin against each other (and the others)
    torch.set_num_threads(a.threads)
    cfg = BlockHeadConfig(calibration=a.calibration, steps=a.steps, max_episodes=a.max_episodes,
                          horizon=a.horizon)
    head, report = fit_block_head(a.checkpoint, a.episodes, cfg)
    head.save(a.out)
    if a.report:
        Path(a.report).write_text(json.dumps(report, indent=1))
    print(f"{a.out}: {report['frames']} frames, {report['windows']} windows, labelled "
          f"{report['labelled']}, loss {report['train_loss'][0]:.3f} -> {report['train_loss'][-1]:.3f}")
    if "heldout" in report:
        print("held out, against what perception sees (p50 / p95 cm, all blocks):")
        print(table(report["heldout"]))
        print(block_table(report["heldout"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
