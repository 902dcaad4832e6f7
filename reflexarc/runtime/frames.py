"""One row per camera frame: the episode's topics aligned to a camera's stamps.

Topics run at their own rates (joint state at 1 kHz, frames at 30 Hz, plans at tens of
Hz). A dataset for learning from pixels wants one row per frame, so :func:`frame_table`
puts beside each frame of ``camera/<name>``:

- ``state``: the joint state nearest the frame's stamp (positions, then the gripper);
- ``action``: the first command at or after the frame's stamp (joint command positions,
  then the gripper; or the end-effector action where the graph sends those). Derived
  messages carry their source frame's stamp, so this is the command made from this
  frame, where the graph makes one per frame;
- ``episode_index``: the scene's episode counter (``scene_state``), 0 without one;
- ``success``: the scene's success test at the frame, or the episode's result on its last
  frame (a scene ends an episode at its first success, often before it publishes it);
- ``ee_pos``: the hand's position (``scene_state``), NaN without one.

Every stamp is the sensor time of the message (``stamp_ns``), one clock for the graph
(docs/data.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.episode import Episode
from reflexarc.runtime.errors import ReflexarcError


class EpisodeDataError(ReflexarcError):
    """An episode lacks what an export or a table needs (a camera, joint states)."""


@dataclass
class FrameTable:
    """Rows aligned to one camera's frames. ``N`` frames, ``n`` joints."""

    camera: str
    stamp_ns: np.ndarray  # (N,) int64, the frames' capture stamps
    frame_index: np.ndarray  # (N,) int64, each frame's index in the camera topic
    episode_index: np.ndarray  # (N,) int64
    state: np.ndarray  # (N, n + 1) float32: joint positions, gripper
    action: np.ndarray  # (N, m) float32
    success: np.ndarray  # (N,) bool
    ee_pos: np.ndarray  # (N, 3) float64, NaN without scene_state
    state_names: list[str] = field(default_factory=list)
    action_names: list[str] = field(default_factory=list)
    fps: float = 0.0  # the camera's median frame rate

    def __len__(self) -> int:
        return len(self.stamp_ns)

    def episodes(self) -> list[np.ndarray]:
        """Row indices of each episode, in order."""
        ids = np.unique(self.episode_index)
        return [np.flatnonzero(self.episode_index == e) for e in ids]


def cameras(episode: Episode) -> list[str]:
    """Names of the cameras recorded in ``episode`` (topics ``camera/<name>``)."""
    return sorted(t.split("/", 1)[1] for t in episode.topics() if t.startswith("camera/"))


def nearest(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index into sorted ``stamps`` of the stamp nearest each of ``at``. (len(at),)"""
    if len(stamps) < 2:
        return np.zeros(len(at), np.int64)
    i = np.clip(np.searchsorted(stamps, at), 1, len(stamps) - 1)
    return np.where(at - stamps[i - 1] <= stamps[i] - at, i - 1, i)


def at_or_before(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the last of sorted ``stamps`` at or before each of ``at`` (first if none)."""
    return np.clip(np.searchsorted(stamps, at, side="right") - 1, 0, max(0, len(stamps) - 1))


def at_or_after(stamps: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index of the first of sorted ``stamps`` at or after each of ``at`` (last if none)."""
    return np.clip(np.searchsorted(stamps, at, side="left"), 0, max(0, len(stamps) - 1))


def episode_results(episode: Episode) -> list[dict[str, Any]]:
    """The scene's per-episode results, from the run's node summaries beside the episode.

    Empty when the episode was copied away from its run directory.
    """
    run_dir = episode.parts[0].parent.parent
    for path in sorted(run_dir.glob("*.summary.json")):
        try:
            run = json.loads(path.read_text()).get("run", {})
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(run, dict) and run.get("episode_results"):
            return list(run["episode_results"])
    return []


def frame_table(episode: Episode | str | Path, camera: str = "") -> FrameTable:
    """Align ``episode``'s joint states, commands and scene state to ``camera``'s frames.

    ``camera`` empty: the first recorded camera. Raises :class:`EpisodeDataError` when
    the episode has no such camera or no joint states.
    """
    ep = episode if isinstance(episode, Episode) else Episode(episode)
    topics = ep.topics()
    names = cameras(ep)
    if not names:
        raise EpisodeDataError(f"{ep.path}: no camera topic (camera/<name>) was recorded")
    camera = camera or names[0]
    if camera not in names:
        raise EpisodeDataError(
            f"{ep.path}: camera {camera!r} was not recorded; recorded: {', '.join(names)}")
    if "joint_state" not in topics:
        raise EpisodeDataError(f"{ep.path}: no joint_state topic was recorded")
    cam = ep.read(f"camera/{camera}")
    order = np.argsort(cam["stamp_ns"], kind="stable")
    t = np.asarray(cam["stamp_ns"])[order]
    n_frames = len(t)

    js = ep.read("joint_state")
    js_t = np.asarray(js["stamp_ns"])
    jsel = nearest(js_t, t)
    position = np.asarray(js["position"])
    n = position.shape[1]
    state = np.concatenate([position[jsel], np.asarray(js["gripper"])[jsel, None]], axis=1)
    state_names = [f"joint_{k}" for k in range(n)] + ["gripper"]

    if "joint_command" in topics:
        cmd = ep.read("joint_command")
        csel = at_or_after(np.asarray(cmd["stamp_ns"]), t)
        action = np.concatenate(
            [np.asarray(cmd["position"])[csel], np.asarray(cmd["gripper"])[csel, None]], axis=1)
        action_names = [f"joint_{k}" for k in range(action.shape[1] - 1)] + ["gripper"]
    elif "ee_action" in topics:
        act = ep.read("ee_action")
        action = np.asarray(act["action"])[at_or_after(np.asarray(act["stamp_ns"]), t)]
        action_names = ["dx", "dy", "dz", "gripper"][: action.shape[1]]
    else:
        action = np.zeros((n_frames, 0))
        action_names = []

    episode_index = np.zeros(n_frames, np.int64)
    success = np.zeros(n_frames, bool)
    ee_pos = np.full((n_frames, 3), np.nan)
    if "scene_state" in topics:
        ss = ep.read("scene_state")
        ssel = at_or_before(np.asarray(ss["stamp_ns"]), t)
        episode_index = np.asarray(ss["episode"], np.int64)[ssel]
        success = np.asarray(ss["success"], bool)[ssel]
        ee_pos = np.asarray(ss["ee_pos"], np.float64)[ssel]
    for r in episode_results(ep):
        rows = np.flatnonzero(episode_index == int(r.get("episode", -1)))
        if rows.size and r.get("success"):
            success[rows[-1]] = True

    fps = 1e9 / float(np.median(np.diff(t))) if n_frames > 1 else 0.0
    return FrameTable(
        camera=camera, stamp_ns=t.astype(np.int64), frame_index=order.astype(np.int64),
        episode_index=episode_index, state=state.astype(np.float32),
        action=action.astype(np.float32), success=success, ee_pos=ee_pos,
        state_names=state_names, action_names=action_names, fps=fps,
    )
