"""The pixel loop's report from a real short recorded run: one video per episode, from
the episode's start to its end, and plots whose time axis ends where the episode did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reflexarc.runtime.episode import Episode
from reflexarc.runtime.video import read_video
from reflexarc.tools.report import episode_spans, pixels_report
from tests.conftest import reflexarc

CAMERA_HZ = 10.0


@pytest.mark.slow
def test_every_episode_has_a_video_as_long_as_it_from_its_start(tmp_path: Path) -> None:
    # the sim and its evaluator alone (episodes start without a command after
    # start_timeout_s) and the recorder; 2 episodes of 1.5 s, frames at 10 Hz with the
    # truth at each frame
    graph = {"nodes": {
        "sim": {"target": "reflexarc.sim.node:SimNode", "rate_hz": 500, "args": {
            "start_timeout_s": 0.3, "camera_hz": CAMERA_HZ, "state_hz": 20,
            "frame_state": True, "command": "joint"}},
        "evaluator": {"target": "reflexarc.sim.evaluator:EvaluatorNode", "rate_hz": 50, "args": {
            "task": "reach", "episodes": 2, "episode_s": 1.5}},
        "recorder": {"target": "reflexarc.runtime.recorder:Recorder", "rate_hz": 50},
    }}
    (tmp_path / "g.yaml").write_text(json.dumps(graph))
    run, out = tmp_path / "run", tmp_path / "summary.json"
    res = reflexarc("run", f"graph={tmp_path / 'g.yaml'}", "task=reach", f"run_dir={run}",
                    f"out={out}", timeout=300)
    summary = json.loads(out.read_text())
    assert res.returncode == 0, (summary.get("reasons"), res.stderr[-2000:])
    results = summary["episode_results"]
    assert len(results) == 2

    ep = Episode(run / "episode")
    spans = episode_spans(ep.read("scene_state"), results)
    assert sorted(spans) == [0, 1]
    report = pixels_report(run, summary)
    assert [Path(v).name for v in report["videos"]] == ["episode-0.mp4", "episode-1.mp4"]
    for k, path in enumerate(report["videos"]):
        frames, info = read_video(path)
        seconds = len(frames) / info["fps"]
        # from the episode's start to its end, within half a camera period
        assert abs(seconds - results[k]["duration_s"]) <= 0.5 / CAMERA_HZ + 1e-3, (k, seconds, results[k])
        assert abs(info["fps"] - CAMERA_HZ) < 0.5
        # the first frame is the scene, not a black "not recorded" frame
        assert frames[0].mean() > 10
    # the plot's curves: time from 0 to the episode's end, never past its limit
    states = ep.read("scene_state")
    for k, (start, _end) in spans.items():
        sel = (np.asarray(states["episode"]) == k) & (states["stamp_ns"] >= start)
        t = (states["stamp_ns"][sel] - start) / 1e9
        # the sim ends an episode at its first tick past the limit (late on a busy machine)
        assert t.min() >= 0 and t.max() <= results[k]["duration_s"] + 1e-6
        assert results[k]["duration_s"] < 1.5 + 0.25
    assert Path(report["plot"]).stat().st_size > 10_000
