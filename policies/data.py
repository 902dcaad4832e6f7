"""Episode files -> in-memory tensors, and batched window sampling for world-model training.

Every episode is read once (reflexarc/runtime/episode.py format): frames of ``camera/<camera>`` become
one uint8 tensor (N, 3, S, S) over all episodes; ``ee_action`` messages are aligned to the
frames by stamp (the action applied after frame j is the sum of the displacements stamped
in [stamp_j, stamp_j+1), gripper = the last one); ``scene_state`` gives the privileged
end-effector and block positions used only by the evaluation probe. Training samples
windows (frame t, actions t..t+H-1, frames t+1..t+H) by fancy indexing, without a
per-sample Python loop.

Actions of any dimension: ``action_dim=0`` takes it from the episodes (every episode must
carry the same). Episodes of an env collected through the gymnasium adapter say their
Box action space in their metadata (``action_space``); :func:`action_scales` turns it into
the per-dimension scale the world model divides actions by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from reflexarc.policies.store import is_url, local_root
from reflexarc.runtime.episode import Episode, list_episodes
from reflexarc.runtime.errors import ReflexarcError


class DataError(ReflexarcError):
    """Episode files are missing, empty or lack a topic the world model needs."""


@dataclass
class EpisodeData:
    """Frames, actions and probe labels of a set of episodes, concatenated along time.

    frames (N, 3, S, S) uint8; actions (N, A) float32 (row j: action after frame j, zero
    where ``valid[j]`` is False); valid (N,) bool: frames j and j+1 are one transition of
    one episode; episode (N,) int64 index into ``names``; ee_pos (N, 3) and block_pos
    (N, 3) float32 (NaN where no scene_state); proprio (N, P) float32 or None.
    """

    frames: Tensor
    actions: Tensor
    valid: Tensor
    episode: Tensor
    ee_pos: Tensor
    block_pos: Tensor
    proprio: Tensor | None
    names: list[str]
    object_name: str = ""
    action_space: dict | None = None  # the episodes' metadata ``action_space`` (low, high), if any
    # (N, K) float32: ``joint_state.position`` at each frame (an env's flattened observation
    # for episodes collected through the gymnasium adapter), NaN where none; for probes of
    # named quantities (reflexarc.policies.quantities)
    obs: Tensor | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.frames.numel() * self.frames.element_size())

    def window_starts(self, horizon: int) -> Tensor:
        """(M,) int64 frame indices t whose transitions t..t+H-1 are all valid."""
        v = self.valid.to(torch.int64)
        c = torch.cat([torch.zeros(1, dtype=torch.int64), v.cumsum(0)])  # (N+1,)
        n = len(self) - horizon
        if n <= 0:
            return torch.zeros(0, dtype=torch.int64)
        t = torch.arange(n)
        ok = (c[t + horizon] - c[t]) == horizon
        return t[ok]

    def stacked(self, rows: Tensor, frames: int = 1) -> Tensor:
        """Images at ``rows`` (any shape R) with a history of ``frames``: (*R, 3F, S, S)
        uint8, frames rows-F+1..rows stacked along channels, oldest first; before an
        episode's first frame, that frame repeats (as at an env's reset)."""
        if frames <= 1:
            return self.frames[rows]
        ep = self.episode.to(rows.device)
        first = torch.searchsorted(ep, ep[rows])  # episodes are contiguous and in order
        idx = rows[..., None] + torch.arange(1 - frames, 1, device=rows.device)  # (*R, F)
        idx = torch.maximum(idx, first[..., None])
        return self.frames[idx.to(self.frames.device)].flatten(-4, -3)

    def windows(
        self, starts: Tensor, horizon: int, device: torch.device | str = "cpu", frames: int = 1,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Windows at ``starts`` (B,): images (B, H+1, 3F, S, S) uint8 (F = ``frames`` of
        history, :meth:`stacked`), actions (B, H, A), proprio (B, H+1, P) or None, on
        ``device``."""
        idx = starts[:, None] + torch.arange(horizon + 1, device=starts.device)  # (B, H+1)
        images = self.stacked(idx, frames).to(device, non_blocking=True)
        actions = self.actions[idx[:, :-1]].to(device, non_blocking=True)
        proprio = None if self.proprio is None else self.proprio[idx].to(device)
        return images, actions, proprio

    def subset(self, names: list[str]) -> EpisodeData:
        """The episodes named ``names`` (in this object's order)."""
        keep = [i for i, n in enumerate(self.names) if n in set(names)]
        mask = torch.isin(self.episode, torch.tensor(keep, dtype=torch.int64))
        remap = torch.full((len(self.names),), -1, dtype=torch.int64)
        remap[keep] = torch.arange(len(keep))
        return EpisodeData(
            frames=self.frames[mask], actions=self.actions[mask], valid=self.valid[mask],
            episode=remap[self.episode[mask]], ee_pos=self.ee_pos[mask],
            block_pos=self.block_pos[mask],
            proprio=None if self.proprio is None else self.proprio[mask],
            names=[self.names[i] for i in keep], object_name=self.object_name,
            action_space=self.action_space, obs=None if self.obs is None else self.obs[mask],
        )


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, size, size, 3) uint8 (area interpolation)."""
    if rgb.shape[1] == size and rgb.shape[2] == size:
        return rgb
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in rgb])


def _latest_before(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the newest ``stamps`` entry <= each ``at`` (-1 if none). Both sorted."""
    return np.searchsorted(stamps, at, side="right") - 1


def action_scales(space: dict | None, actions: Tensor) -> list[float]:
    """Per-dimension action scale: max(|low|, |high|) of a Box ``space`` (finite bounds),
    else the largest |action| in ``actions`` (N, A); at least 1e-6."""
    a = actions.abs().amax(0).double() if len(actions) else torch.ones(actions.shape[1], dtype=torch.float64)
    if space is not None:
        lo = torch.tensor(space["low"], dtype=torch.float64).abs()
        hi = torch.tensor(space["high"], dtype=torch.float64).abs()
        bound = torch.maximum(lo, hi)
        if len(bound) == len(a):
            a = torch.where(torch.isfinite(bound), bound, a)
    return [max(float(v), 1e-6) for v in a]


def episode_action_dim(path: str | Path) -> int:
    """Length of the actions on an episode's ``ee_action`` topic (DataError if none)."""
    ep = Episode(path)
    if "ee_action" not in ep.topics():
        raise DataError(f"episode {path} has no topic 'ee_action': its action dimension is unknown")
    act = np.asarray(ep.read("ee_action")["action"])
    if act.ndim != 2 or act.shape[0] == 0:
        raise DataError(f"episode {path}: 'ee_action' holds no action vectors")
    return int(act.shape[1])


def load_episode(
    path: str | Path, image_size: int = 64, camera: str = "front", action_dim: int = 4,
    with_proprio: bool = False, object_name: str = "",
) -> dict[str, np.ndarray]:
    """One episode as aligned numpy arrays (see :class:`EpisodeData` for the fields).

    ``action_dim`` 0: the episode's own."""
    ep = Episode(path)
    topics = ep.topics()
    if action_dim == 0:
        action_dim = episode_action_dim(path) if "ee_action" in topics else 4
    cam = f"camera/{camera}"
    if cam not in topics:
        raise DataError(f"episode {path} has no topic {cam!r} (topics: {', '.join(topics)})")
    img = ep.read(cam)
    rgb = img["rgb"]
    if isinstance(rgb, list):
        rgb = np.stack(rgb)
    stamps = np.asarray(img["stamp_ns"], dtype=np.int64)
    n = len(stamps)
    order = np.argsort(stamps, kind="stable")
    rgb, stamps = _resize(np.asarray(rgb)[order], image_size), stamps[order]

    actions = np.zeros((n, action_dim), np.float32)
    count = np.zeros(n, np.int64)
    if "ee_action" in topics:
        act = ep.read("ee_action")
        a = np.asarray(act["action"], np.float32)
        if a.ndim != 2 or a.shape[1] != action_dim:
            raise DataError(f"episode {path}: 'ee_action' carries {a.shape[-1] if a.ndim else 0}-d "
                            f"actions; expected {action_dim} (model.action_dim; 0 = from the episodes)")
        a_st = np.asarray(act["stamp_ns"], np.int64)
        j = _latest_before(stamps, a_st)
        ok = j >= 0
        j, a = j[ok], a[ok]
        np.add.at(count, j, 1)
        if "action_space" in ep.meta:  # an env's own actions (torques...): the last one holds
            actions[j] = a
        else:
            np.add.at(actions[:, :3], j, a[:, :3])  # displacements add up within a frame interval
            actions[j, 3:] = a[:, 3:]  # later ones overwrite: gripper = the last command
    valid = count > 0
    valid[-1] = False

    ee = np.full((n, 3), np.nan, np.float32)
    block = np.full((n, 3), np.nan, np.float32)
    if "scene_state" in topics:
        ss = ep.read("scene_state")
        s_st = np.asarray(ss["stamp_ns"], np.int64)
        k = _latest_before(s_st, stamps)
        ok = k >= 0
        ee[ok] = np.asarray(ss["ee_pos"], np.float32)[k[ok]]
        objects = ss["objects"]
        names = ss.get("names", [""])
        obj_names = str(names[0]).split(",") if len(names) else []
        col = obj_names.index(object_name) if object_name in obj_names else 0
        if not isinstance(objects, list) and objects.ndim == 3 and objects.shape[1] > 0:
            block[ok] = objects[k[ok], col, :3]
        elif isinstance(objects, list):
            for i in np.flatnonzero(ok):
                o = np.asarray(objects[k[i]])
                if o.ndim == 2 and o.shape[0] > col:
                    block[i] = o[col, :3]
    out = {"rgb": rgb, "actions": actions, "valid": valid, "ee_pos": ee, "block_pos": block}
    if "joint_state" in topics:
        js = ep.read("joint_state")
        pos = js["position"]
        widths = {len(p) for p in pos} if isinstance(pos, list) else {np.asarray(pos).shape[-1]}
        if len(widths) == 1:  # one width over the episode (an env's observation, 7 joints...)
            j_st = np.asarray(js["stamp_ns"], np.int64)
            k = _latest_before(j_st, stamps)
            pos = np.asarray(pos, np.float32).reshape(len(j_st), -1)
            o = np.full((n, pos.shape[1]), np.nan, np.float32)
            o[k >= 0] = pos[k[k >= 0]]
            out["obs"] = o
    if with_proprio:
        js = ep.read("joint_state")
        j_st = np.asarray(js["stamp_ns"], np.int64)
        k = np.clip(_latest_before(j_st, stamps), 0, None)
        pos = np.asarray(js["position"], np.float32)
        grip = np.asarray(js["gripper"], np.float32)[:, None]
        out["proprio"] = np.concatenate([pos, grip], axis=1)[k]
    return out


def load_episodes(
    root: str | Path | list[Path], image_size: int = 64, camera: str = "front",
    action_dim: int = 4, with_proprio: bool = False, max_episodes: int = 0,
    object_name: str = "",
) -> EpisodeData:
    """Read episodes (a root directory of episode dirs or an episode store's fsspec URL,
    or a list of dirs) into memory."""
    if isinstance(root, str | Path) and is_url(root):
        root = local_root(root)  # an fsspec URL: read from a local copy
    paths = list_episodes(root) if isinstance(root, str | Path) else list(root)
    if max_episodes > 0:
        paths = paths[:max_episodes]
    if not paths:
        raise DataError(f"no episodes under {root}")
    if action_dim == 0:
        action_dim = episode_action_dim(paths[0])
    parts = [
        load_episode(p, image_size, camera, action_dim, with_proprio, object_name) for p in paths
    ]
    space = Episode(paths[0]).meta.get("action_space")
    obs_w = {p["obs"].shape[1] for p in parts if "obs" in p}
    obs = None
    if len(obs_w) == 1:  # NaN rows for an episode without one
        w = obs_w.pop()
        obs = torch.from_numpy(np.concatenate([
            p["obs"] if "obs" in p else np.full((len(p["valid"]), w), np.nan, np.float32)
            for p in parts]))
    rgb = np.concatenate([p["rgb"] for p in parts])  # (N, S, S, 3)
    frames = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    episode = np.concatenate([np.full(len(p["valid"]), i, np.int64) for i, p in enumerate(parts)])
    return EpisodeData(
        frames=frames,
        actions=torch.from_numpy(np.concatenate([p["actions"] for p in parts])),
        valid=torch.from_numpy(np.concatenate([p["valid"] for p in parts])),
        episode=torch.from_numpy(episode),
        ee_pos=torch.from_numpy(np.concatenate([p["ee_pos"] for p in parts])),
        block_pos=torch.from_numpy(np.concatenate([p["block_pos"] for p in parts])),
        proprio=torch.from_numpy(np.concatenate([p["proprio"] for p in parts]))
        if with_proprio else None,
        names=[Path(p).name for p in paths],
        object_name=object_name,
        action_space=space,
        obs=obs,
    )


def split_names(names: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/held-out split of episode names by a salted hash.

    An episode stays on its side when more episodes are added (resumed collection).
    At least one episode is held out when ``val_fraction > 0`` and there are two or more.
    """
    def u(name: str) -> float:
        h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
        return int.from_bytes(h[:8], "little") / 2**64

    val = [n for n in names if u(n) < val_fraction]
    if val_fraction > 0 and not val and len(names) > 1:
        val = [min(names, key=u)]
    train = [n for n in names if n not in set(val)]
    return train, val
