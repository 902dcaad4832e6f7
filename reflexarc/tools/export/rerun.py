"""Episodes as a rerun recording (``.rrd``): camera, goal, joints, hand, actions and plans
on one timeline, ``time`` (seconds from the recording's first stamp).

Entities:

- ``camera/<name>``: the frames; ``goal/image``: the goal image; ``goal/target``: its
  target point;
- ``joints/position``, ``joints/velocity``: one scalar series per joint;
- ``action/joint_command``: the commanded joint positions and gripper; ``action/ee``: the
  end-effector actions where the graph sends them;
- ``world/hand``, ``world/objects``: the hand and the blocks (``scene_state``), and
  ``plots/hand``: the hand's x, y, z over time; ``plots/success``;
- ``world/plan``: each plan's end-effector path, ``plots/plan_cost``.

:func:`view` opens the rerun viewer on an episode, or writes the ``.rrd`` when there is
no display (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.episode import Episode
from reflexarc.runtime.frames import episode_results

TIMELINE = "time"


def _times(stamps: np.ndarray, t0: int) -> np.ndarray:
    return (np.asarray(stamps, np.int64) - t0) / 1e9


def log_episode(rec: Any, ep: Episode, prefix: str = "") -> dict[str, int]:
    """Log ``ep`` into the recording stream ``rec``; returns rows logged per entity."""
    import rerun as rr

    topics = ep.topics()
    cols = {t: ep.read(t) for t in topics}
    t0 = min(int(np.min(c["stamp_ns"])) for c in cols.values() if len(c["stamp_ns"]))
    counts: dict[str, int] = {}

    def series(entity: str, stamps: np.ndarray, values: np.ndarray) -> None:
        values = np.asarray(values, np.float64).reshape(len(stamps), -1)
        rec.send_columns(f"{prefix}{entity}",
                         indexes=[rr.TimeColumn(TIMELINE, duration=_times(stamps, t0))],
                         columns=rr.Scalars.columns(scalars=values))
        counts[entity] = len(stamps)

    def at(stamp: int) -> None:
        rec.set_time(TIMELINE, duration=(stamp - t0) / 1e9)

    for topic, c in cols.items():
        if topic.startswith("camera/"):
            entity = topic
            for stamp, rgb in zip(c["stamp_ns"], c["rgb"], strict=True):
                at(int(stamp))
                rec.log(f"{prefix}{entity}", rr.Image(np.asarray(rgb)))
            counts[entity] = len(c["stamp_ns"])
    if "goal" in cols:
        g = cols["goal"]
        for k, stamp in enumerate(g["stamp_ns"]):
            at(int(stamp))
            image = np.asarray(g["image"][k])
            if image.size:
                rec.log(f"{prefix}goal/image", rr.Image(image))
            target = np.asarray(g["target"][k])
            if target.size == 3:
                rec.log(f"{prefix}goal/target", rr.Points3D(target[None], radii=0.01))
        counts["goal/image"] = len(g["stamp_ns"])
    if "joint_state" in cols:
        js = cols["joint_state"]
        series("joints/position", js["stamp_ns"], js["position"])
        series("joints/velocity", js["stamp_ns"], js["velocity"])
    if "joint_command" in cols:
        jc = cols["joint_command"]
        series("action/joint_command", jc["stamp_ns"],
               np.concatenate([np.asarray(jc["position"]), np.asarray(jc["gripper"])[:, None]], 1))
    if "ee_action" in cols:
        series("action/ee", cols["ee_action"]["stamp_ns"], cols["ee_action"]["action"])
    if "scene_state" in cols:
        ss = cols["scene_state"]
        series("plots/hand", ss["stamp_ns"], ss["ee_pos"])
        # the evaluator's verdicts (its episode_results beside the episode): 1 at the last
        # state of each episode it scored a success (the sim node never sets the field)
        success = np.asarray(ss["success"], np.float64).copy()
        index = np.asarray(ss["episode"], np.int64)
        for r in episode_results(ep):
            rows = np.flatnonzero(index == int(r.get("episode", -1)))
            if rows.size and r.get("success"):
                success[rows[-1]] = 1.0
        series("plots/success", ss["stamp_ns"], success)
        for k, stamp in enumerate(ss["stamp_ns"]):
            at(int(stamp))
            rec.log(f"{prefix}world/hand", rr.Points3D(np.asarray(ss["ee_pos"][k])[None],
                                                       radii=0.01))
            objects = np.asarray(ss["objects"][k])
            if objects.size:
                rec.log(f"{prefix}world/objects", rr.Points3D(objects[:, :3], radii=0.02))
        counts["world/hand"] = len(ss["stamp_ns"])
    if "plan" in cols:
        p = cols["plan"]
        for k, stamp in enumerate(p["stamp_ns"]):
            at(int(stamp))
            path = np.asarray(p["ee_pos"][k])
            if len(path):
                rec.log(f"{prefix}world/plan", rr.LineStrips3D([path]))
        series("plots/plan_cost", p["stamp_ns"], p["cost"])
        counts["world/plan"] = len(p["stamp_ns"])
    return counts


def write_rrd(episodes: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write ``episodes`` into one ``.rrd`` (several under ``episode_<k>/``); returns counts."""
    import rerun as rr

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream("reflexarc", recording_id=f"reflexarc-{out.stem}")
    rec.save(str(out))
    counts: dict[str, int] = {}
    for k, path in enumerate(episodes):
        prefix = f"episode_{k}/" if len(episodes) > 1 else ""
        for entity, n in log_episode(rec, Episode(path), prefix).items():
            counts[prefix + entity] = n
    rec.flush()
    rec.disconnect()
    return {"format": "rerun", "out": str(out), "entities": len(counts),
            "rows": sum(counts.values()), "per_entity": counts}


def read_rrd(path: str | Path) -> dict[str, int]:
    """Rows per entity in an ``.rrd``, read back with rerun's own loader."""
    from rerun.chunk import RrdReader

    rows: dict[str, int] = {}
    for chunk in RrdReader(path).stream().to_chunks():
        if chunk.is_static:
            continue
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    return rows
