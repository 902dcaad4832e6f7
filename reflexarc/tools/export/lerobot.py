"""Episodes as a LeRobot dataset (format v3.0), written with pyarrow and PyAV.

The ``lerobot`` package does not install beside this project's dependencies (it pins an
older torch and gymnasium), so this module writes its documented on-disk layout with
the libraries LeRobot uses itself:

    meta/info.json                                  features, fps, counts, path templates
    meta/stats.json                                 min, max, mean, std, count per feature
    meta/tasks.parquet                              task strings (the index) -> task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks,
                                                    where its rows and video lie
    data/chunk-000/file-000.parquet                 one row per frame
    videos/observation.images.<camera>/chunk-000/file-000.mp4   H.264, episodes back to back

One row per camera frame (runtime/frames.py): ``observation.state`` (joint positions,
gripper), ``action`` (the command made from the frame), ``next.success``, ``next.done``,
``timestamp`` (frame_index / fps, as LeRobot records), ``observation.stamp_ns`` (the
frame's capture stamp) and LeRobot's indices. Each scene episode in a recording becomes
one LeRobot episode (docs/data.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.episode import Episode
from reflexarc.runtime.frames import EpisodeDataError, FrameTable, frame_table
from reflexarc.runtime.video import H264Writer

CODEBASE_VERSION = "v3.0"
CHUNK = "chunk-000/file-000"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
GOP = 2  # a key frame every 2 frames, as LeRobot encodes: any frame decodes quickly


def task_string(meta: dict[str, Any]) -> str:
    """The task in words: the run's instruction, else its task name."""
    config = meta.get("config", {})
    return str(config.get("instruction") or meta.get("task") or "unknown")


def _stats(x: np.ndarray, axis: int | tuple[int, ...]) -> dict[str, Any]:
    x = x.astype(np.float64)
    return {"min": x.min(axis=axis).tolist(), "max": x.max(axis=axis).tolist(),
            "mean": x.mean(axis=axis).tolist(), "std": x.std(axis=axis).tolist(),
            "count": [int(x.shape[0])]}


def _pandas_index(schema: Any, index: str) -> Any:
    """Mark column ``index`` as a pandas index, as ``DataFrame.to_parquet`` writes it."""
    meta = {"index_columns": [index], "column_indexes": [], "columns": [
        {"name": None if f.name == index else f.name, "field_name": f.name,
         "pandas_type": "unicode" if str(f.type) == "string" else str(f.type),
         "numpy_type": "object" if str(f.type) == "string" else str(f.type), "metadata": None}
        for f in schema
    ], "creator": {"library": "pyarrow"}, "pandas_version": "2.2.0"}
    return schema.with_metadata({b"pandas": json.dumps(meta).encode()})


def write_lerobot(episodes: Sequence[str | Path], out: str | Path, camera: str = "",
                  crf: int = 20) -> dict[str, Any]:
    """Write ``episodes`` (recorded episode directories) as one LeRobot dataset at ``out``.

    Every episode must have the same camera, image size and joint count. Returns counts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    tables: list[tuple[Episode, FrameTable]] = []
    for path in episodes:
        ep = Episode(path)
        tables.append((ep, frame_table(ep, camera)))
    ep0, t0 = tables[0]
    camera = t0.camera
    key = f"observation.images.{camera}"
    fps = max(1, round(t0.fps))
    first_rgb = np.asarray(ep0.read(f"camera/{camera}")["rgb"][0])
    h, w = first_rgb.shape[:2]
    robot = str(ep0.meta.get("robot", ""))

    tasks: dict[str, int] = {}
    rows: dict[str, list[Any]] = {k: [] for k in (
        "observation.state", "action", "observation.stamp_ns", "timestamp", "frame_index",
        "episode_index", "index", "task_index", "next.success", "next.done")}
    ep_rows: list[dict[str, Any]] = []
    # per channel, over every pixel: min, max, sum, sum of squares (stats in [0, 1])
    px_min, px_max = np.full(3, np.inf), np.full(3, -np.inf)
    px_sum, px_sq, px_n = np.zeros(3), np.zeros(3), 0
    video_path = out / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
    n_total = 0
    with H264Writer(video_path, fps, crf=crf, gop=GOP) as video:
        for ep, table in tables:
            if table.camera != camera or table.state.shape[1] != t0.state.shape[1] or (
                    table.action.shape[1] != t0.action.shape[1]):
                raise EpisodeDataError(
                    f"{ep.path}: camera, joints or action differ from {ep0.path}'s; "
                    "export episodes of one robot and camera together")
            rgb_all = ep.read(f"camera/{camera}")["rgb"]
            task = task_string(ep.meta)
            task_index = tasks.setdefault(task, len(tasks))
            for rows_of in table.episodes():
                episode_index = len(ep_rows)
                length = len(rows_of)
                from_ts = video.frames / fps
                for k, r in enumerate(rows_of):
                    rgb = np.asarray(rgb_all[int(table.frame_index[r])])
                    if rgb.shape[:2] != (h, w):
                        raise EpisodeDataError(
                            f"{ep.path}: frame {r} is {rgb.shape[0]}x{rgb.shape[1]}, "
                            f"the dataset's frames are {h}x{w}")
                    video.write(rgb)
                    px = rgb.reshape(-1, 3).astype(np.float64) / 255.0
                    px_min, px_max = np.minimum(px_min, px.min(0)), np.maximum(px_max, px.max(0))
                    px_sum += px.sum(0)
                    px_sq += (px * px).sum(0)
                    px_n += len(px)
                    rows["observation.state"].append(table.state[r])
                    rows["action"].append(table.action[r])
                    rows["observation.stamp_ns"].append(int(table.stamp_ns[r]))
                    rows["timestamp"].append(np.float32(k / fps))
                    rows["frame_index"].append(k)
                    rows["episode_index"].append(episode_index)
                    rows["index"].append(n_total + k)
                    rows["task_index"].append(task_index)
                    rows["next.success"].append(bool(table.success[r]))
                    rows["next.done"].append(k == length - 1)
                ep_rows.append({
                    "episode_index": episode_index, "tasks": [task], "length": length,
                    "data/chunk_index": 0, "data/file_index": 0,
                    "dataset_from_index": n_total, "dataset_to_index": n_total + length,
                    f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                    f"videos/{key}/from_timestamp": from_ts,
                    f"videos/{key}/to_timestamp": from_ts + length / fps,
                    "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                    "reflexarc/source": str(ep.path),
                })
                n_total += length
    if n_total == 0:
        raise EpisodeDataError(f"{', '.join(map(str, episodes))}: no camera frames to export")

    state = np.stack(rows["observation.state"]).astype(np.float32)
    action = np.stack(rows["action"]).astype(np.float32)
    data = pa.table({
        "observation.state": pa.FixedSizeListArray.from_arrays(
            pa.array(state.ravel(), pa.float32()), state.shape[1]),
        "action": pa.FixedSizeListArray.from_arrays(
            pa.array(action.ravel(), pa.float32()), action.shape[1]),
        "observation.stamp_ns": pa.array(rows["observation.stamp_ns"], pa.int64()),
        "next.success": pa.array(rows["next.success"], pa.bool_()),
        "next.done": pa.array(rows["next.done"], pa.bool_()),
        "timestamp": pa.array(rows["timestamp"], pa.float32()),
        "frame_index": pa.array(rows["frame_index"], pa.int64()),
        "episode_index": pa.array(rows["episode_index"], pa.int64()),
        "index": pa.array(rows["index"], pa.int64()),
        "task_index": pa.array(rows["task_index"], pa.int64()),
    })
    (out / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(data, out / DATA_PATH.format(chunk_index=0, file_index=0))

    (out / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), out / "meta" / "episodes" / f"{CHUNK}.parquet")
    task_table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                           "__index_level_0__": pa.array(list(tasks), pa.string())})
    pq.write_table(task_table.replace_schema_metadata(
        _pandas_index(task_table.schema, "__index_level_0__").metadata),
        out / "meta" / "tasks.parquet")

    mean = px_sum / px_n
    std = np.sqrt(np.maximum(px_sq / px_n - mean * mean, 0.0))
    img_stats: dict[str, Any] = {  # (3, 1, 1) per channel, as LeRobot keeps image stats
        k: [[[float(v)]] for v in vals]
        for k, vals in (("min", px_min), ("max", px_max), ("mean", mean), ("std", std))}
    img_stats["count"] = [n_total]
    scalar = {k: np.asarray(rows[k], np.float64)[:, None] for k in (
        "timestamp", "frame_index", "episode_index", "index", "task_index")}
    stats = {"observation.state": _stats(state, 0), "action": _stats(action, 0), key: img_stats,
             **{k: _stats(v, 0) for k, v in scalar.items()}}
    (out / "meta" / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")

    features = {
        key: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
              "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                       "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                       "video.fps": fps, "video.channels": 3, "has_audio": False}},
        "observation.state": {"dtype": "float32", "shape": [state.shape[1]],
                              "names": t0.state_names},
        "action": {"dtype": "float32", "shape": [action.shape[1]], "names": t0.action_names},
        "observation.stamp_ns": {"dtype": "int64", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot,
        "total_episodes": len(ep_rows), "total_frames": n_total, "total_tasks": len(tasks),
        "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "fps": fps, "splits": {"train": f"0:{len(ep_rows)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH, "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    return {"format": "lerobot", "out": str(out), "episodes": len(ep_rows), "frames": n_total,
            "tasks": len(tasks), "fps": fps, "camera": camera}


def read_lerobot(root: str | Path) -> dict[str, Any]:
    """Load a LeRobot v3.0 dataset's tables and videos back, checking their consistency.

    Returns counts, the frame table and each episode's decoded frames; raises
    :class:`EpisodeDataError` where the layout breaks LeRobot's rules (what its loader
    relies on: row ranges, video windows, feature shapes).
    """
    import pyarrow.parquet as pq

    from reflexarc.runtime.video import read_video

    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise EpisodeDataError(f"{root}: codebase_version {info.get('codebase_version')!r}, "
                               f"expected {CODEBASE_VERSION}")
    data = pq.read_table(root / info["data_path"].format(chunk_index=0, file_index=0))
    episodes = pq.read_table(root / "meta" / "episodes" / f"{CHUNK}.parquet").to_pylist()
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    fps = info["fps"]
    videos = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    for k, f in info["features"].items():
        if f["dtype"] == "video":
            continue
        if k not in data.column_names:
            raise EpisodeDataError(f"{root}: feature {k!r} has no column in the data")
        width = data.schema.field(k).type.list_size if f["shape"] != [1] else 1
        if width != f["shape"][0]:
            raise EpisodeDataError(f"{root}: feature {k!r} is {width} wide, info says {f['shape']}")
    frames: dict[str, list[np.ndarray]] = {}
    for key in videos:
        path = root / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
        video, vinfo = read_video(path)
        frames[key] = []
        for ep in episodes:
            a = round(ep[f"videos/{key}/from_timestamp"] * fps)
            b = round(ep[f"videos/{key}/to_timestamp"] * fps)
            if b - a != ep["length"] or b > len(video):
                raise EpisodeDataError(
                    f"{path}: episode {ep['episode_index']}'s window [{a}, {b}) does not hold "
                    f"its {ep['length']} frames (video: {len(video)})")
            frames[key].append(video[a:b])
    ep_index = np.asarray(data.column("episode_index"))
    for ep in episodes:
        rows = np.flatnonzero(ep_index == ep["episode_index"])
        if rows.size != ep["length"] or rows[0] != ep["dataset_from_index"]:
            raise EpisodeDataError(f"{root}: episode {ep['episode_index']}'s rows do not match "
                                   "its dataset_from_index/length")
    ts = np.asarray(data.column("timestamp"))
    fi = np.asarray(data.column("frame_index"))
    if not np.allclose(ts, fi / fps, atol=1e-4):
        raise EpisodeDataError(f"{root}: timestamps are not frame_index / fps")
    return {"info": info, "data": data, "episodes": episodes, "tasks": tasks,
            "frames": frames, "total_frames": data.num_rows}
