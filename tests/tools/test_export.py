"""Export to LeRobot, MCAP and rerun, each read back by its own library; ``view``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reflexarc.runtime.cli import main
from tests.runtime.episodes import FRAME_MS, JOINTS, frame, write_episode

pytest.importorskip("pyarrow", reason="the export extra: pip install 'reflexarc[export]'")
pytest.importorskip("mcap", reason="the export extra: pip install 'reflexarc[export]'")
pytest.importorskip("rerun", reason="the export extra: pip install 'reflexarc[export]'")

from reflexarc.tools.export import export  # noqa: E402
from reflexarc.tools.export.lerobot import read_lerobot  # noqa: E402
from reflexarc.tools.export.mcap import read_mcap  # noqa: E402
from reflexarc.tools.export.rerun import read_rrd  # noqa: E402


@pytest.fixture
def episode(tmp_path: Path) -> Path:
    return write_episode(tmp_path / "ep", meta={"task": "reach", "robot": "panda",
                                                "config": {"instruction": "touch the dot"}})


def test_lerobot_layout_loads_in_our_reader_and_rerun_s(episode: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    summary = export([str(episode), str(episode)], "lerobot", out)
    assert (summary["episodes"], summary["frames"], summary["fps"]) == (4, 40, 25)
    ds = read_lerobot(out)
    info = ds["info"]
    assert info["total_episodes"] == 4 and info["total_frames"] == 40 and info["robot_type"] == "panda"
    assert info["features"]["observation.state"]["shape"] == [JOINTS + 1]
    assert [e["length"] for e in ds["episodes"]] == [10, 10, 10, 10]
    assert [e["tasks"] for e in ds["episodes"]] == [["touch the dot"]] * 4
    data = ds["data"]
    assert np.asarray(data.column("episode_index")).tolist() == sum(([e] * 10 for e in range(4)), [])
    action = np.stack(data.column("action").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(action[:20, 0], np.arange(20))  # the frame's own command
    assert np.asarray(data.column("next.success")).sum() == 2  # episode 1 of each recording
    stamps = np.asarray(data.column("observation.stamp_ns"))
    np.testing.assert_array_equal(stamps[:20], np.arange(20) * FRAME_MS * 1_000_000)
    # each episode's video window holds its own frames (frame k: red = 10 k)
    video = ds["frames"]["observation.images.front"]
    for e, clip in enumerate(video):
        first = 10 * (e % 2)
        red = clip[:, 16, -1, 0].astype(int)
        assert np.abs(red - 10 * np.arange(first, first + 10)).max() <= 4
    assert clip.shape[1:] == frame(0).shape
    assert ds["tasks"].schema.pandas_metadata["index_columns"] == ["__index_level_0__"]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert np.asarray(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)

    from rerun.experimental import LeRobotReader

    reader = LeRobotReader(out)
    assert reader.version == "v3" and reader.episodes() == [0, 1, 2, 3]
    rows: dict[str, int] = {}
    for chunk in reader.stream(2, video_mode="skip").to_chunks():
        if not chunk.is_static:
            rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    assert rows["/observation.state"] == 10 and rows["/action"] == 10


def test_mcap_read_back_by_the_mcap_reader(episode: Path, tmp_path: Path) -> None:
    summary = export([str(episode)], "mcap", tmp_path / "ep.mcap")
    back = read_mcap(tmp_path / "ep.mcap")
    assert back["counts"] == summary["per_topic"]
    assert back["counts"]["/camera/front"] == 20 and back["counts"]["/joint_state"] == 800
    assert back["counts"]["/goal/image"] == 2
    img = back["messages"]["/camera/front"][3]
    assert img["schema"] == "foxglove.CompressedImage" and img["format"] == "png"
    import base64

    import cv2

    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(img["data"]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[:, :, ::-1], frame(3))  # PNG: lossless
    js = back["messages"]["/joint_state"][500]
    assert js["log_time"] == 500 * 1_000_000 and js["position"][0] == pytest.approx(0.5)
    assert json.loads(back["metadata"][0]["meta"])["task"] == "reach"


def test_rrd_read_back_by_rerun(episode: Path, tmp_path: Path) -> None:
    summary = export([str(episode)], "rerun", tmp_path / "ep.rrd")
    rows = read_rrd(tmp_path / "ep.rrd")
    assert rows["/camera/front"] == 20 and rows["/joints/position"] == 800
    assert rows["/action/joint_command"] == 20 and rows["/world/plan"] == 20
    assert rows["/world/hand"] == 80 and rows["/goal/image"] == 2
    assert summary["per_entity"]["camera/front"] == 20


def test_cli_export_takes_several_episodes_and_view_writes_the_rrd_headless(
        episode: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    second = write_episode(tmp_path / "ep2")
    out = tmp_path / "all.mcap"
    assert main(["export", str(episode), str(second), "format=mcap", f"out={out}"]) == 0
    assert read_mcap(out)["counts"]["/camera/front"] == 40
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", str(episode)]) == 0
    assert read_rrd(tmp_path / "ep.rrd")["/camera/front"] == 20
    assert main(["export", str(tmp_path / "nothing"), "format=rerun"]) == 2
    assert "is not an episode" in capsys.readouterr().err


@pytest.mark.slow
def test_a_recorded_pixels_run_carries_its_metadata_and_exports(tmp_path: Path) -> None:
    from reflexarc.runtime.episode import Episode
    from reflexarc.runtime.frames import frame_table
    from reflexarc.runtime.video import read_video
    from tests.conftest import reflexarc

    run_dir = tmp_path / "run"
    done = reflexarc("run", "graph=pixels", "task=reach", "episodes=1", "clock=lockstep",
                     f"run_dir={run_dir}", timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    ep = Episode(run_dir / "episode")
    meta = ep.meta
    assert (meta["task"], meta["backend"], meta["robot"]) == ("reach", "mujoco", "panda")
    assert meta["version"] and meta["config"]["graph"]["nodes"]["evaluator"]["args"]["task"] == "reach"
    front = meta["cameras"]["front"]
    assert front["width"] == 64 and np.asarray(front["K"]).shape == (3, 3)
    assert meta["topics"]["camera/front"]["hz"] == pytest.approx(30, rel=0.05)
    assert meta["topics"]["joint_state"]["hz"] == pytest.approx(1000, rel=0.05)
    table = frame_table(ep)
    assert len(table) == meta["topics"]["camera/front"]["messages"]
    assert table.success[-1]  # the evaluator's result: the reach succeeded
    _, info = read_video(run_dir / "episode-0.mp4")  # the report's video plays in browsers
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    ds = read_lerobot(export([str(run_dir / "episode")], "lerobot", tmp_path / "ds")["out"])
    assert ds["total_frames"] == len(table) and ds["info"]["fps"] == 30
    assert ds["tasks"].column("__index_level_0__").to_pylist() == ["reach"]
    mcap = read_mcap(export([str(run_dir / "episode")], "mcap", tmp_path / "e.mcap")["out"])
    assert mcap["counts"]["/camera/front"] == len(table)
    assert mcap["counts"]["/joint_state"] == meta["topics"]["joint_state"]["messages"]
    rows = read_rrd(export([str(run_dir / "episode")], "rerun", tmp_path / "e.rrd")["out"])
    assert rows["/camera/front"] == len(table)
    assert rows["/world/plan"] == meta["topics"]["plan"]["messages"]
