"""A curious explorer for any env: actions where the world model's ensemble disagrees.

Random play seldom touches what it does not have to (230 random Pusher-v5 episodes never
moved the object, issue 28). The curious explorer (``reflexarc collect env=<id>
explore.policy=curious explore.model=<checkpoint>``) uses the world model trained on the
env's own play so far, and no reward and no label:

1. the checkpoint's encoder (frozen) embeds up to ``explore.fit_episodes`` of its training
   episodes (with its frame history);
2. an ensemble of ``explore.ensemble`` small predictors ``(z, a) -> z'`` (MLPs, each from
   its own initialisation and its own bootstrap of the transitions) is fitted on them;
3. every step, ``explore.candidates`` smooth random action sequences of
   ``explore.horizon`` steps (the random player's Ornstein-Uhlenbeck noise, from the
   current one) are rolled through every member, and the first action of the sequence
   whose predicted latents disagree most (variance over the members, summed over the
   steps) is taken: where the members disagree, the data has not been. With a model that
   has a state head (train's ``state.parts``), the disagreement is measured only in the
   part of the latent the head does not read (its row space projected out): the robot's
   own state is known, so curiosity points at everything else, the objects.

:func:`moved_share` measures what exploration reached: the share of episodes in which a
named quantity of the observation (say the object's position, ``object:obs[17:20]``,
:mod:`reflexarc.policies.quantities`) moved more than a threshold;
``python -m reflexarc.policies.explore ROOT SPEC`` prints it for a folder of episodes.
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reflexarc.policies.data import EpisodeData, load_episodes
from reflexarc.policies.quantities import parse_quantities
from reflexarc.policies.world_model import WorldModel, stack_frames


class Ensemble(nn.Module):
    """K residual MLP predictors in one batched module: z (B, D), a (B, A) -> (K, B, D)."""

    def __init__(self, k: int, latent_dim: int, action_dim: int, hidden: int, scales: Tensor) -> None:
        super().__init__()
        d_in = latent_dim + action_dim
        self.w1 = nn.Parameter(torch.randn(k, d_in, hidden) / d_in**0.5)
        self.b1 = nn.Parameter(torch.zeros(k, 1, hidden))
        self.w2 = nn.Parameter(torch.randn(k, hidden, latent_dim) / hidden**0.5 * 0.1)
        self.b2 = nn.Parameter(torch.zeros(k, 1, latent_dim))
        self.register_buffer("scales", scales.float())
        self.scales: Tensor

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        """z (K, B, D) or (B, D); a (K, B, A) or (B, A) -> (K, B, D)."""
        k = self.w1.shape[0]
        if z.dim() == 2:
            z = z.expand(k, -1, -1)
        if a.dim() == 2:
            a = a.expand(k, -1, -1)
        x = torch.cat([z, a / self.scales], dim=-1)
        h = torch.nn.functional.silu(torch.baddbmm(self.b1, x, self.w1))
        return z + torch.baddbmm(self.b2, h, self.w2)


@torch.no_grad()
def _latents(model: WorldModel, data: EpisodeData, batch: int = 256) -> Tensor:
    out = []
    for i in range(0, len(data), batch):
        rows = torch.arange(i, min(i + batch, len(data)))
        out.append(model.encode(data.stacked(rows, model.cfg.frames)).float())
    return torch.cat(out)


class Curiosity:
    """The ensemble fitted on a world model's latents, and the scoring of candidates."""

    def __init__(self, model: WorldModel, data: EpisodeData, k: int = 5, steps: int = 300,
                 seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = model.eval()
        z = _latents(model, data)  # (N, D)
        rows = torch.nonzero(data.valid).flatten()
        scales = torch.tensor(model.cfg.action_scales or [1.0] * model.action_dim)
        self.ens = Ensemble(k, model.latent_dim, model.action_dim, 128, scales)
        opt = torch.optim.Adam(self.ens.parameters(), lr=3e-3)
        boot = rows[torch.randint(len(rows), (k, len(rows)), generator=g)]  # (K, M) bootstrap
        self.losses: list[float] = []
        for _ in range(steps):
            pick = boot[:, torch.randint(boot.shape[1], (256,), generator=g)]  # (K, 256)
            pred = self.ens(z[pick], data.actions[pick])
            loss = (pred - z[pick + 1]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.losses.append(float(loss.detach()))
        self.ens.requires_grad_(False)
        # the robot's state is what the state head reads: disagree about the rest only
        self.beyond: Tensor | None = None
        head = getattr(model, "state_head", None)
        if head is not None:
            q, _ = torch.linalg.qr(head.weight.detach().float().T)  # (D, P) orthonormal basis
            self.beyond = torch.eye(model.latent_dim) - q @ q.T  # (D, D) projector

    @torch.no_grad()
    def disagreement(self, z: Tensor, actions: Tensor) -> Tensor:
        """z (D,), actions (C, H, A) -> (C,): variance over members, summed over steps."""
        c = actions.shape[0]
        zk = z.expand(self.ens.w1.shape[0], c, -1)
        total = torch.zeros(c)
        for t in range(actions.shape[1]):
            zk = self.ens(zk, actions[:, t].expand(self.ens.w1.shape[0], -1, -1))
            spread = zk.var(dim=0) if self.beyond is None else (zk @ self.beyond).var(dim=0)
            total += spread.mean(-1)
        return total

    @torch.no_grad()
    def encode(self, frames: list[np.ndarray]) -> Tensor:
        x = stack_frames([torch.from_numpy(np.ascontiguousarray(f)) for f in frames], self.model.cfg.frames)
        return self.model.encode(x.unsqueeze(0))[0].float()


def load_curiosity(checkpoint: str, fit_episodes: int, ensemble: int, seed: int) -> Curiosity:
    """The ensemble for ``checkpoint``, fitted on (up to ``fit_episodes`` of) its training
    episodes (its config names them)."""
    from reflexarc.policies.checkpoint import load_checkpoint
    from reflexarc.runtime.errors import ConfigError

    model, info = load_checkpoint(checkpoint)
    train = info.config.get("train", {})
    root = train.get("data", "")
    names = info.config.get("split", {}).get("train", [])
    if not root or not Path(root).is_dir():
        raise ConfigError("explore.model", f"{checkpoint}: its training episodes ({root!r}) are "
                          "not at hand; the curious explorer fits its ensemble on them")
    paths = [Path(root) / n for n in names if (Path(root) / n).is_dir()][:fit_episodes]
    data = load_episodes(paths, info.model.image_size, train.get("camera", "front"), info.model.action_dim)
    return Curiosity(model, data, k=ensemble, seed=seed)


class CuriousPlay:
    """The curious explorer of one env (module docstring): ``act(frame) -> action``."""

    mode = "curious"

    def __init__(self, curiosity: Curiosity, cfg: Any, low: np.ndarray, high: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.cur = curiosity
        self.cfg = cfg
        self.mid = (np.asarray(high, np.float64) + np.asarray(low, np.float64)) / 2
        self.half = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2
        self.rng = rng
        self.noise = rng.uniform(-1.0, 1.0, self.mid.shape)
        self.frames: deque[np.ndarray] = deque(maxlen=curiosity.model.cfg.frames)

    def _candidates(self) -> np.ndarray:
        """(C, H, A) noise paths of the OU process from the current noise, in [-1, 1]."""
        c, h = int(self.cfg.candidates), int(self.cfg.horizon)
        n = np.empty((c, h, len(self.mid)))
        x = np.broadcast_to(self.noise, (c, len(self.mid))).copy()
        for t in range(h):
            x += -self.cfg.ou_theta * x + self.cfg.ou_sigma * self.rng.standard_normal(x.shape)
            x = np.clip(x, -1.0, 1.0)
            n[:, t] = x
        return n

    def act(self, frame: np.ndarray) -> np.ndarray:
        self.frames.append(frame)
        z = self.cur.encode(list(self.frames))
        noise = self._candidates()
        actions = torch.from_numpy(self.mid + self.half * noise).float()
        best = int(torch.argmax(self.cur.disagreement(z, actions)))
        self.noise = noise[best, 0]
        return (self.mid + self.half * self.noise).astype(np.float32)


def moved_share(root: str | Path, spec: str, threshold: float = 0.01, near: str = "",
                episodes: int = 0) -> dict[str, Any]:
    """Share of the episodes under ``root`` in which the quantity ``spec`` (e.g.
    ``object:obs[17:20]``) got farther than ``threshold`` from where it started. With
    ``near`` (another quantity of the same width, e.g. the robot's tip ``tip:obs[14:17]``),
    also how close the two came in each episode (``closest``), a graded measure of
    reaching the object where moving it is rare. ``episodes``: only the first that many."""
    from reflexarc.runtime.episode import Episode, list_episodes

    q = parse_quantities([spec], "spec")[0]
    other = parse_quantities([near], "near")[0] if near else None
    moved, far, closest = [], [], []
    paths = list_episodes(root)
    for p in paths[:episodes] if episodes > 0 else paths:
        pos = torch.tensor(np.asarray(Episode(p).read("joint_state")["position"], np.float32))
        v = q.values(pos)
        d = float((v - v[0]).norm(dim=-1).max())
        far.append(d)
        moved.append(d > threshold)
        if other is not None:
            closest.append(float((other.values(pos, "near") - v).norm(dim=-1).min()))
    out = {"root": str(root), "quantity": spec, "threshold": threshold, "episodes": len(moved),
           "moved_share": float(np.mean(moved)) if moved else float("nan"),
           "max_displacement_mean": float(np.mean(far)) if far else float("nan")}
    if other is not None:
        out.update({"near": near, "closest_mean": float(np.mean(closest)) if closest else float("nan"),
                    "closest": [round(c, 4) for c in closest]})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=moved_share.__doc__)
    p.add_argument("root")
    p.add_argument("spec")
    p.add_argument("--threshold", type=float, default=0.01)
    p.add_argument("--near", default="", help="another quantity: how close the two came")
    p.add_argument("--episodes", type=int, default=0, help="only the first N episodes")
    a = p.parse_args(argv)
    print(json.dumps(moved_share(a.root, a.spec, a.threshold, a.near, a.episodes), indent=2))


if __name__ == "__main__":
    main()
