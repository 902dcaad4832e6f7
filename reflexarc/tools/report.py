"""What a run of the pixel loop shows: a video of each episode, plots, headline figures.

:func:`pixels_report` runs after the graph has stopped (``report:`` in
``configs/graph/pixels.yaml``): it reads the recorder's episode and the run summary and
writes into the run directory

- ``episode-<k>.mp4`` for every episode: its camera frames, from its start (the first
  command after its reset) to its end, one per camera period (a frame the recording
  lacks is the one before held, so the video lasts as long as the episode), beside the
  goal image, with the time in the episode and the task distance written on each frame
  (H.264, which browsers play: runtime/video.py);
- ``pixels.png``: task distance over time in each episode (0 to its end, never past
  its time limit), time to success per
  episode, planner solve time and frame-to-plan latency, and every node's achieved rate
  against its target with its missed deadlines.

It returns the figures to put at the summary's top level: ``frame_to_command_ms_p50``
and ``_p99`` (recorded by the controller once per plan: graph time from the camera frame
a plan was computed from being ready, its stamp plus the sim's render time, to the first
joint command applying that plan), ``frame_to_command_with_render_ms_*`` (the same from
the frame's stamp), ``render_ms_p50``/``_p99`` (the sim's wall time per frame),
``plan_age_ms_p50``/``_p99`` (the age of the plan being executed, on every controller
tick: it includes the wait for the next frame, so it is no latency), ``encode_ms_p50``
(perception), ``short_solve_fraction`` (the planner's solves that its realtime deadline
cut to fewer iterations), the paths of the video and the plot, and
``reference``: one row per policy on the same task, backend and seeds, the pixel loop
beside the scripted expert and random actions (:func:`reference_rows`; the issue's
reference rows). Privileged scene state is read here for the plots and the reference
policies only; nothing in the loop sees it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.episode import Episode
from reflexarc.runtime.video import H264Writer

log = logging.getLogger(__name__)

VIDEO_SCALE = 4  # 64 px frames -> 256 px video


def episode_spans(states: dict[str, Any], results: list[dict[str, Any]]
                  ) -> dict[int, tuple[int, int]]:
    """Episode index -> (start_ns, end_ns) on the graph clock, from the recorded scene states.

    Every scene state names its episode. An episode ends at its last scene state (the sim
    sends one as it ends) and starts ``duration_s`` before (its result: the episode's clock
    runs from the first command, after the reset). Without a result, it starts at its first
    state. An episode with no state recorded has no span.
    """
    if not states or not len(states.get("stamp_ns", ())):
        return {}
    stamps, index = np.asarray(states["stamp_ns"]), np.asarray(states["episode"])
    spans = {}
    for k in np.unique(index):
        sel = stamps[index == k]
        end = int(sel.max())
        duration = results[k].get("duration_s") if 0 <= k < len(results) else None
        start = end - int(round(1e9 * duration)) if duration else int(sel.min())
        spans[int(k)] = (start, end)
    return spans


def _episode_video(run_dir: Path, k: int, spans: dict[int, tuple[int, int]],
                   cams: dict[str, Any], states: dict[str, Any], goals: dict[str, Any],
                   d_all: np.ndarray | None) -> Path | None:
    """``episode-<k>.mp4``: every frame of episode ``k``, from its start to its end, at the
    camera's rate. A frame the recording lacks is the one before held (so the video lasts
    as long as the episode); the part before the first recorded frame, if the recording
    began late, is said in the log and in the captions."""
    if k not in spans:
        return None
    start, end = spans[k]
    stamps = np.asarray(cams["stamp_ns"])
    # a frame's episode is that of the scene state at its stamp (the sim sends the truth
    # at each frame's stamp), which also sorts out the frame shared with a reset
    at = np.clip(np.searchsorted(states["stamp_ns"], stamps), 0, len(states["stamp_ns"]) - 1)
    # (its frames from before its start, while it waited for the first command, show the
    # same frozen scene: the newest of them is the video's first frame)
    mine = np.flatnonzero((np.asarray(states["episode"])[at] == k) & (stamps <= end))
    if not mine.size:
        log.warning("episode %d: no camera frame recorded in it", k)
        return None
    period_ns = int(np.median(np.diff(stamps))) if stamps.size > 1 else int(1e8)
    period_ns = max(period_ns, 1)
    first = int(stamps[mine[0]])
    if first - start > 2 * period_ns:
        log.warning("episode %d: its recording starts %.2f s into it (the recorder came up late)",
                    k, (first - start) / 1e9)
    # one video frame per camera period over the whole episode, the last one its end
    ticks = start + period_ns * np.arange(max(1, round((end - start) / period_ns)))
    ticks[-1] = max(ticks[-1], end)
    pick = np.searchsorted(stamps[mine], ticks, side="right") - 1  # the newest frame by then
    # within a period before the first recorded frame, that frame (the camera's phase)
    pick[(pick < 0) & (ticks > first - period_ns)] = 0
    frames, captions = [], []
    blank = np.zeros_like(np.asarray(cams["rgb"][mine[0]]))
    for t, j in zip(ticks, pick, strict=True):
        if j < 0:  # before the first recorded frame
            frames.append(blank)
            captions.append(f"ep {k}  t {(t - start) / 1e9:5.2f} s  not recorded")
            continue
        i = mine[j]
        frames.append(np.asarray(cams["rgb"][i]))
        text = f"ep {k}  t {(t - start) / 1e9:5.2f} s"
        if d_all is not None:
            text += f"  d {100 * d_all[min(np.searchsorted(states['stamp_ns'], stamps[i]), len(d_all) - 1)]:4.1f} cm"
        captions.append(text)
    goal_img = None
    if goals:
        gi = int(np.searchsorted(np.asarray(goals["stamp_ns"]), start, side="right")) - 1
        goal_img = np.asarray(goals["image"][min(max(gi, 0), len(goals["image"]) - 1)])
    return write_video(run_dir / f"episode-{k}.mp4", frames, goal_img, captions, 1e9 / period_ns)


def task_distance(task: str, ee: np.ndarray, objects: np.ndarray, target: np.ndarray
                  ) -> np.ndarray:
    """Task error (N,) in metres: hand to target (reach), block to target (push: xy)."""
    if task == "reach" or objects.shape[1] == 0:
        return np.linalg.norm(ee - target, axis=1)
    block = objects[:, 0, :3]
    if task == "push":
        return np.linalg.norm(block[:, :2] - target[:, :2], axis=1)
    return np.linalg.norm(block - target, axis=1)


def write_video(path: Path, frames: list[np.ndarray], goal: np.ndarray | None,
                captions: list[str], fps: float) -> Path:
    """An mp4 of RGB ``frames`` (H, W, 3), each beside ``goal``, captioned."""
    import cv2

    def big(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, None, fx=VIDEO_SCALE, fy=VIDEO_SCALE,
                          interpolation=cv2.INTER_NEAREST)

    first = big(frames[0])
    h, w = first.shape[:2]
    g = big(goal) if goal is not None and goal.size else np.zeros_like(first)
    if g.shape != first.shape:
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_NEAREST)
    with H264Writer(path, fps) as writer:
        for rgb, text in zip(frames, captions, strict=True):
            canvas = np.zeros((h + 24, 2 * w, 3), np.uint8)
            canvas[24:, :w] = big(rgb)
            canvas[24:, w:] = g
            cv2.putText(canvas, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            cv2.putText(canvas, "goal", (w + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1)
            writer.write(canvas)
    return path


def _plot(path: Path, task: str, curves: list[tuple[np.ndarray, np.ndarray, bool]],
          results: list[dict[str, Any]], solve_ms: np.ndarray, lag_ms: np.ndarray,
          nodes: list[dict[str, Any]], title: str, clock: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    a = ax[0, 0]
    for t, d, ok in curves:
        a.plot(t, 100 * d, color="tab:green" if ok else "tab:red", alpha=0.5, lw=1)
    if curves:  # from each episode's start to the end of the longest
        a.set_xlim(0.0, max(float(t.max()) for t, _, _ in curves if t.size) * 1.02 + 1e-3)
    a.set_xlabel("time in episode (s)")
    a.set_ylabel("task distance (cm)")
    a.set_title(f"{task}: distance to the goal (green: success)")
    a.grid(alpha=0.3)
    a = ax[0, 1]
    if results:
        k = np.arange(len(results))
        tts = [r.get("time_to_success_s") for r in results]
        ok = [t is not None for t in tts]
        dur = [r.get("duration_s", 0.0) for r in results]
        a.bar(k, [t if t is not None else d for t, d in zip(tts, dur, strict=True)],
              color=["tab:green" if o else "tab:red" for o in ok])
        a.set_title(f"time to success per episode: {sum(ok)}/{len(ok)} succeeded")
    a.set_xlabel("episode")
    a.set_ylabel("s (red: failed, episode length)")
    a.grid(alpha=0.3)
    a = ax[1, 0]
    if solve_ms.size:
        bins = np.linspace(0, max(np.percentile(solve_ms, 99.5), np.percentile(lag_ms, 99.5)
                                  if lag_ms.size else 0) * 1.1 + 1e-3, 60)
        a.hist(solve_ms, bins=bins, alpha=0.6, label=f"solve, p50 {np.median(solve_ms):.1f} ms")
        if lag_ms.size:
            a.hist(lag_ms, bins=bins, alpha=0.6,
                   label=f"frame age at solve start, p50 {np.median(lag_ms):.1f} ms")
        a.legend()
    a.set_xlabel("ms")
    a.set_title("planner")
    a = ax[1, 1]
    names = [r["node"] for r in nodes]
    if names:
        x = np.arange(len(names))
        a.bar(x - 0.2, [r.get("target_hz", 0) for r in nodes], 0.4, label="target")
        a.bar(x + 0.2, [r.get("rate_hz", 0) for r in nodes], 0.4, label="achieved")
        for i, r in enumerate(nodes):
            a.text(i, max(r.get("target_hz", 0), r.get("rate_hz", 0)) * 1.1 + 1e-9,
                   f"{r.get('misses', 0)} miss", ha="center", fontsize=7)
        a.set_xticks(x, names, rotation=30)
        a.set_yscale("log")
        a.legend()
    a.set_ylabel("Hz")
    a.set_title(f"node rates ({clock}, wall clock) and missed deadlines")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reference_rows(summary: dict[str, Any], policies: tuple[str, ...] = ("expert", "random"),
                   control_hz: float = 10.0) -> list[dict[str, Any]]:
    """The run's success beside reference policies on the same task, backend and seeds.

    The first row is the pixel loop (from ``summary``); then one row per policy in
    ``policies``, played in the task's gymnasium env (:func:`reflexarc.tools.evaluate.evaluate_policy`:
    the scripted expert uses privileged state, random samples the action space). Steps
    to success count at the envs' ``control_hz``. [] when the summary has no episodes.
    """
    from reflexarc.tools.evaluate import evaluate_policy

    results = list(summary.get("episode_results") or [])
    task, backend = str(summary.get("task", "")), str(summary.get("backend", ""))
    if not results or not task or not backend:
        return []
    seed = int(results[0].get("seed", 0))
    tts = [r["time_to_success_s"] for r in results if r.get("success")]
    dist = [r["final_distance_m"] for r in results if r.get("final_distance_m") is not None]
    rows = [{
        "policy": "pixels (latent MPC)",
        "episodes": len(results),
        "success_rate": len(tts) / len(results),
        "mean_time_to_success_s": float(np.mean(tts)) if tts else None,
        "mean_final_distance_m": float(np.mean(dist)) if dist else None,
    }]
    for policy in policies:
        r = evaluate_policy(task, backend, policy, episodes=len(results), seed=seed)
        steps = r["mean_steps_to_success"]
        rows.append({
            "policy": policy,
            "episodes": r["episodes"],
            "success_rate": r["success_rate"],
            "mean_time_to_success_s": None if steps is None else steps / control_hz,
            "mean_final_distance_m": r["mean_final_distance"],
        })
    return rows


# node, the name of its p50/p99 figure, and the name in the run's summary
_HEADLINE = (
    ("controller", "frame_to_command_p{p}_ms", "frame_to_command_ms_p{p}"),
    ("controller", "frame_to_command_with_render_p{p}_ms", "frame_to_command_with_render_ms_p{p}"),
    ("sim", "render_ms_p{p}", "render_ms_p{p}"),
    ("controller", "plan_age_p{p}_ms", "plan_age_ms_p{p}"),
)


def pixels_report(run_dir: str | Path, summary: dict[str, Any], episode: int = -1,
                  camera: str = "front") -> dict[str, Any]:
    """Video, plot and headline figures of a finished run (module docstring).
    ``episode``: the one episode to make a video of; -1: every episode."""
    run_dir = Path(run_dir)
    figures = summary.get("node_figures", {})
    out: dict[str, Any] = {}
    if summary.get("task") in ("reach", "push", "pick_place"):
        out["reference"] = reference_rows(summary)
    for node, theirs, ours in _HEADLINE:
        fig = figures.get(node, {})
        for p in (50, 99):
            if theirs.format(p=p) in fig:
                out[ours.format(p=p)] = fig[theirs.format(p=p)]
    perception = figures.get("perception", {})
    if "encode_ms_p50" in perception:
        out["encode_ms_p50"] = perception["encode_ms_p50"]
    planner = figures.get("planner", {})
    if planner.get("solves"):  # solves the realtime deadline cut to fewer iterations
        out["short_solve_fraction"] = planner.get("short_solves", 0) / planner["solves"]
    ep_dir = run_dir / "episode"
    if not ep_dir.is_dir():
        return out
    ep = Episode(ep_dir)
    topics = ep.topics()
    task = str(summary.get("task", ""))
    goals = ep.read("goal") if "goal" in topics else {}
    results = list(summary.get("episode_results") or [])
    states = ep.read("scene_state") if "scene_state" in topics else {}
    spans = episode_spans(states, results)

    curves: list[tuple[np.ndarray, np.ndarray, bool]] = []
    d = None
    if states:
        d = task_distance(task, states["ee_pos"], np.asarray(states["objects"]),
                          states["target"])
        for k, (start, _end) in spans.items():
            # the episode's time runs from its start (the first command) to its end; the
            # states of its reset, before the start, are not on its time axis
            sel = (np.asarray(states["episode"]) == k) & (states["stamp_ns"] >= start)
            if sel.any():
                t = (states["stamp_ns"][sel] - start) / 1e9
                ok = bool(results[k]["success"]) if k < len(results) else False
                curves.append((t, d[sel], ok))

    topic = f"camera/{camera}"
    if topic in topics and spans:
        cams = ep.read(topic)
        videos = []
        for k in sorted(spans) if episode < 0 else [episode]:
            path = _episode_video(run_dir, k, spans, cams, states, goals, d)
            if path is not None:
                videos.append(str(path))
        if videos:
            out["video"] = videos[0]
            out["videos"] = videos

    plans = ep.read("plan") if "plan" in topics else {}
    solve_ms = np.asarray(plans.get("solve_us", np.zeros(0))) / 1e3
    lag_ms = np.zeros(0)
    if plans:
        fresh = np.r_[True, np.diff(plans["stamp_ns"]) != 0]  # keepalives repeat a plan
        solve_ms = solve_ms[fresh]
        lag_ms = (plans["t0_ns"][fresh] - plans["stamp_ns"][fresh]) / 1e6
    title = (f"{task} on {summary.get('backend', '')}: success "
             f"{summary.get('success_rate', float('nan')):.0%} of {len(results)} episodes")
    out["plot"] = str(_plot(run_dir / "pixels.png", task, curves, results, solve_ms, lag_ms,
                            summary.get("nodes", []), title, str(summary.get("clock", ""))))
    return out
