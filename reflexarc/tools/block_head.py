"""The block head scored against the simulator's truth (the evaluator's side).

The head (:mod:`reflexarc.perception.block_head`) is fitted on perception's detections
only. How far that is from where the blocks really are is a question for the evaluator,
the one reader of privileged state: here the recorded episodes' ``scene_state`` (the
simulator's block positions at each frame) is the reference, beside what perception saw.
Nothing read here goes back into a head.

    python -m reflexarc.tools.block_head push-mujoco-blocks data/push3-mujoco [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflexarc.perception.block_head import (
    BlockHead,
    block_table,
    frame_latents,
    head_path,
    pseudo_labels,
    score,
    table,
    window_latents,
)
from reflexarc.perception.calibration import CameraCalibration
from reflexarc.perception.encoding import load_model
from reflexarc.perception.objects import DetectorConfig, ObjectDetector
from reflexarc.policies.data import EpisodeData, load_episodes, split_names
from reflexarc.runtime.episode import Episode, list_episodes


def recorded_truth(paths: list[Path], data: EpisodeData, names: tuple[str, ...],
                   camera: str = "front") -> np.ndarray:
    """The simulator's block positions (N, K, 2) at each frame of ``data`` (read from the
    episodes ``paths`` in the same order), NaN where the episode has no such block."""
    out = np.full((len(data), len(names), 2), np.nan, np.float32)
    row = 0
    for p in paths:
        ep = Episode(p)
        stamps = np.sort(np.asarray(ep.read(f"camera/{camera}")["stamp_ns"], np.int64))
        n = len(stamps)
        if "scene_state" in ep.topics():
            ss = ep.read("scene_state")
            s_st = np.asarray(ss["stamp_ns"], np.int64)
            k = np.searchsorted(s_st, stamps, side="right") - 1
            have = str(ss["names"][0]).split(",") if len(ss["names"]) else []
            objs = np.asarray(ss["objects"])
            for j, name in enumerate(names):
                if name in have and objs.ndim == 3:
                    col = have.index(name)
                    ok = k >= 0
                    out[row:row + n][ok, j] = objs[k[ok], col, :2]
        row += n
    return out


def score_truth(head_name: str, episodes: str, checkpoint: str = "", calibration: str = "",
                heldout_only: bool = True) -> dict[str, Any]:
    """The head's held-out figures against perception and against the truth."""
    head = BlockHead.load(head_name)
    cfg = head.config
    loaded = load_model(checkpoint or cfg["checkpoint"])
    if loaded.sha256 != head.checkpoint_sha256:
        raise SystemExit(f"{head_path(head_name)} belongs to another checkpoint than {loaded.path}")
    paths = list_episodes(episodes)
    if cfg.get("max_episodes"):
        paths = paths[:cfg["max_episodes"]]
    data = load_episodes(paths, image_size=loaded.image_size, camera=cfg.get("camera", "front"))
    detector = ObjectDetector(CameraCalibration.load(calibration or cfg["calibration"]),
                              DetectorConfig(colors=head.names))
    labels, seen = pseudo_labels(data.frames, detector, head.names, cfg["min_confidence"])
    horizon = int(cfg["horizon"])
    z_frames = frame_latents(loaded, data)
    z, starts = window_latents(loaded, data, horizon, z_frames=z_frames)
    still, _ = window_latents(loaded, data, horizon, still=True, z_frames=z_frames)
    keep = torch.ones(len(starts), dtype=torch.bool)
    if heldout_only:
        _, val = split_names(data.names, cfg["holdout"], cfg["seed"])
        val_idx = torch.tensor([data.names.index(n) for n in val], dtype=torch.int64)
        keep = torch.isin(data.episode[starts], val_idx)
    truth = recorded_truth(paths, data, head.names, cfg.get("camera", "front"))
    return score(head, z[keep], still[keep], starts[keep], labels, seen, truth)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reflexarc.tools.block_head")
    p.add_argument("head")
    p.add_argument("episodes")
    p.add_argument("--checkpoint", default="")
    p.add_argument("--calibration", default="")
    p.add_argument("--all", action="store_true", help="every episode, not only the held-out")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # a shared machine: more threads spin against each other
    rep = score_truth(a.head, a.episodes, a.checkpoint, a.calibration, not a.all)
    if a.out:
        Path(a.out).write_text(json.dumps(rep, indent=1))
    for ref in ("perceived", "truth"):
        print(f"against {ref} (p50 / p95 cm, all blocks):")
        print(table(rep, ref))
        print(block_table(rep, ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
