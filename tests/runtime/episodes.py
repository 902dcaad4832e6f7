"""A small episode written message by message, with stamps the tests can predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reflexarc.runtime.episode import EpisodeWriter
from reflexarc.runtime.msgs import Goal, Image, JointCommand, JointState, Plan, SceneState

MS = 1_000_000
FRAME_MS = 40  # 25 Hz camera
EPISODE_MS = 400  # two scene episodes of 10 frames each
JOINTS = 7


def frame(k: int) -> np.ndarray:
    """Frame ``k``: a flat colour that changes with k (survives lossy video coding)."""
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = (10 * k) % 256
    rgb[..., 1] = 128
    rgb[:, : 4 + k] = 255  # a bar whose width counts frames
    return rgb


def write_episode(path: Path, meta: dict | None = None) -> Path:
    """Joint state at 1 kHz (position[0] = t in s), frames at 25 Hz, a command 1 ms after
    each frame carrying its stamp (position[0] = frame index), scene state at 100 Hz with
    the episode counter, success in the last 50 ms of episode 1, a goal per episode."""
    with EpisodeWriter(path, meta=meta or {"task": "reach", "robot": "panda"},
                       part_seconds=0.0) as w:  # a part per 100 ms of stamps
        for t in range(0, 2 * EPISODE_MS):
            ns = t * MS
            episode = t // EPISODE_MS
            if t % EPISODE_MS == 0:
                w.write("goal", Goal(seq=episode, stamp_ns=ns, task="reach",
                                     target=np.array([0.5, 0.0, 0.2]), image=frame(99),
                                     z=np.zeros(0, np.float32)))
            q = np.full(JOINTS, t / 1000.0)
            w.write("joint_state", JointState(seq=t, stamp_ns=ns, position=q,
                                              velocity=np.zeros(JOINTS), effort=np.zeros(JOINTS),
                                              gripper=0.5))
            if t % FRAME_MS == 0:
                k = t // FRAME_MS
                w.write("camera/front", Image(seq=k, stamp_ns=ns, camera="front", rgb=frame(k),
                                                     depth=np.zeros((0, 0), np.float32)))
            if t % FRAME_MS == 1:  # made from the frame of the tick before: its stamp
                k = t // FRAME_MS
                w.write("joint_command", JointCommand(
                    seq=k, stamp_ns=k * FRAME_MS * MS, position=np.full(JOINTS, float(k)),
                    velocity=np.zeros(JOINTS), effort=np.zeros(JOINTS), gripper=-1.0))
                w.write("plan", Plan(seq=k, stamp_ns=k * FRAME_MS * MS, t0_ns=ns, dt_ns=50 * MS,
                                     ee_pos=np.tile([0.4, 0.0, 0.3], (5, 1)),
                                     ee_quat=np.zeros((0, 4)), gripper=np.ones(5, np.float32)))
            if t % 10 == 0:
                success = episode == 1 and t % EPISODE_MS >= EPISODE_MS - 50
                w.write("scene_state", SceneState(
                    seq=t, stamp_ns=ns, ee_pos=np.array([0.4, 0.0, t / 1000.0]),
                    ee_quat=np.array([1.0, 0, 0, 0]), objects=np.zeros((1, 7)), names="red",
                    target=np.array([0.5, 0.0, 0.2]), success=success, episode=episode))
            if t % 100 == 99:
                w.flush()
                w.maybe_rotate()
    return path
