"""Where the hand is, read from a latent: a self-model learnt from the robot's own senses.

A :class:`HandProbe` is a ridge regression from the world model's latent ``z`` (D,) to the
end-effector position (3,). It is fitted on the robot's own experience, the episodes the
world model was trained on: each camera frame is paired with the hand position that
forward kinematics gives for the joint state measured with it. No task label, no reward
and no privileged simulator state enter it: joint encoders and the arm's kinematics are
what a real robot has too.

The planner uses it to read the hand position a goal image shows, which gives its search a
smooth pull toward the goal from far away, where latent distances to the goal are flat
(the frames look equally unlike the goal); near the goal the latent cost decides.

    python -m reflexarc.perception.hand policies/checkpoints/push-mujoco data/push-mujoco \\
        perception/probes/push-mujoco.npz

A probe belongs to one checkpoint: it stores the checkpoint's SHA-256 and is not used
with another model (after a weights hot swap the planner plans without it).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reflexarc.perception.encoding import FrameEncoder, load_model
from reflexarc.policies.checkpoint import shipped
from reflexarc.runtime.episode import Episode, list_episodes
from reflexarc.runtime.errors import ReflexarcError

#: The hand probes the project ships, installed with the package.
PROBES_DIR = Path(__file__).resolve().parent / "probes"


def probe_path(path: str | Path) -> Path:
    """A probe file, or the shipped probe of that name (``push-mujoco``)."""
    return shipped(path if str(path).endswith(".npz") else f"{path}.npz", PROBES_DIR)


class ProbeError(ReflexarcError):
    """A hand probe cannot be fitted, read, or used with this model."""


@dataclass(frozen=True)
class HandProbe:
    """``hand = [(z - mean) / scale, 1] @ weights``: latent (D,) -> hand position (3,) m."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weights: np.ndarray  # (D + 1, 3)
    checkpoint_sha256: str
    heldout_error_m: float  # median hand position error on held-out episodes
    frames: int  # frames it was fitted on

    @property
    def latent_dim(self) -> int:
        return int(self.mean.shape[0])

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Hand positions of latents ``z``: (D,) -> (3,), (B, D) -> (B, 3)."""
        z = np.asarray(z, dtype=np.float64)
        if z.shape[-1] != self.latent_dim:
            raise ProbeError(f"latent has {z.shape[-1]} dims; the probe reads {self.latent_dim}")
        x = (z - self.mean) / self.scale
        return x @ self.weights[:-1] + self.weights[-1]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"checkpoint_sha256": self.checkpoint_sha256,
                "heldout_error_m": self.heldout_error_m, "frames": self.frames}
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean, scale=self.scale, weights=self.weights,
                     meta=np.array(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> HandProbe:
        """Load a probe file, or a shipped probe by name (``push-mujoco``)."""
        path = probe_path(path)
        try:
            with np.load(path, allow_pickle=False) as d:
                meta = json.loads(str(d["meta"]))
                probe = cls(mean=d["mean"], scale=d["scale"], weights=d["weights"], **meta)
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise ProbeError(f"cannot read a hand probe from {path}: {e}") from None
        if probe.weights.shape != (probe.latent_dim + 1, 3):
            raise ProbeError(f"{path}: weights {probe.weights.shape}, latent {probe.latent_dim}")
        return probe


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on standardised features: x (N, D), y (N, K) -> mean (D,), scale (D,),
    weights (D + 1, K); ``lam`` is relative to N, the bias is not penalised."""
    mean = x.mean(0)
    scale = x.std(0) + 1e-8
    xs = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    reg = lam * len(x) * np.eye(xs.shape[1])
    reg[-1, -1] = 0.0
    weights = np.linalg.solve(xs.T @ xs + reg, xs.T @ y)
    return mean, scale, weights


def episode_samples(path: Path, encoder: FrameEncoder, kin: object, camera: str = "front"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Latents (N, D) of an episode's frames and the hand positions (N, 3) by forward
    kinematics of the joint state measured at each frame (the newest not after it)."""
    ep = Episode(path)
    frames = ep.read(f"camera/{camera}")
    js = ep.read("joint_state")
    if not len(frames.get("stamp_ns", [])) or not len(js.get("stamp_ns", [])):
        return np.zeros((0, encoder.loaded.latent_dim)), np.zeros((0, 3))
    k = np.searchsorted(js["stamp_ns"], frames["stamp_ns"], side="right") - 1
    ok = k >= 0
    hands = np.array([kin.fk(q)[0] for q in js["position"][k[ok]]])  # type: ignore[attr-defined]
    z = encoder.encode([np.asarray(f) for f in np.asarray(frames["rgb"])[ok]])
    return z.astype(np.float64), hands


def fit_hand_probe(
    checkpoint: str | Path, episodes: str | Path, max_episodes: int = 150,
    holdout: float = 0.2, lam: float = 1e-2, camera: str = "front",
) -> HandProbe:
    """Fit a probe for ``checkpoint`` on the episodes under ``episodes`` (the first
    ``max_episodes``; the last ``holdout`` share of them measures its error)."""
    from reflexarc.robot.kinematics import ArmKinematics

    torch.set_num_threads(max(1, torch.get_num_threads()))
    loaded = load_model(checkpoint)
    encoder = FrameEncoder(loaded)
    kin = ArmKinematics()
    paths = list_episodes(episodes)[:max_episodes]
    if len(paths) < 2:
        raise ProbeError(f"need at least 2 episodes under {episodes}, found {len(paths)}")
    parts = [episode_samples(p, encoder, kin, camera) for p in paths]
    n_fit = max(1, int(round(len(parts) * (1.0 - holdout))))
    z_fit = np.concatenate([z for z, _ in parts[:n_fit]])
    y_fit = np.concatenate([y for _, y in parts[:n_fit]])
    if len(z_fit) < 10:
        raise ProbeError(f"only {len(z_fit)} frames with joint states under {episodes}")
    mean, scale, weights = ridge(z_fit, y_fit, lam)
    err = float("nan")
    if n_fit < len(parts):
        probe = HandProbe(mean, scale, weights, loaded.sha256, err, len(z_fit))
        z_te = np.concatenate([z for z, _ in parts[n_fit:]])
        y_te = np.concatenate([y for _, y in parts[n_fit:]])
        err = float(np.median(np.linalg.norm(probe(z_te) - y_te, axis=1)))
    z_all = np.concatenate([z for z, _ in parts])
    y_all = np.concatenate([y for _, y in parts])
    mean, scale, weights = ridge(z_all, y_all, lam)
    return HandProbe(mean, scale, weights, loaded.sha256, err, len(z_all))


def main(argv: list[str] | None = None) -> int:
    """``python -m reflexarc.perception.hand CHECKPOINT EPISODES OUT.npz [MAX_EPISODES]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print(main.__doc__, file=sys.stderr)
        return 2
    probe = fit_hand_probe(args[0], args[1], int(args[3]) if len(args) == 4 else 150)
    probe.save(args[2])
    print(f"{args[2]}: {probe.frames} frames, held-out median error "
          f"{100 * probe.heldout_error_m:.1f} cm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
