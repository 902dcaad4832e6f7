"""Online-learning demo parts: the explorer node's timing and the block-moving selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from reflexarc.policies.checkpoint import save_checkpoint
from reflexarc.policies.data import EpisodeData
from reflexarc.policies.online import (
    ExplorerNode,
    ExplorerNodeConfig,
    block_moving,
    evaluate_versions,
)
from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.runtime.msgs import Image, SceneState, empty
from reflexarc.runtime.node import Inbox, NodeContext

MS = 1_000_000


def _frame(stamp: int) -> Image:
    return Image(stamp_ns=stamp, camera="front", rgb=np.zeros((8, 8, 3), np.uint8), depth=empty("f4", 0, 0))


def _state(stamp: int, episode: int) -> SceneState:
    objects = np.array([[0.5, 0.0, 0.025, 1.0, 0.0, 0.0, 0.0]])
    return SceneState(stamp_ns=stamp, ee_pos=np.array([0.4, 0.0, 0.2]), ee_quat=np.array([1.0, 0, 0, 0]),
                      objects=objects, names="red", target=np.zeros(3), episode=episode)


def test_explorer_acts_once_per_frame_with_the_frame_stamp() -> None:
    node = ExplorerNode(NodeContext(name="explorer", rate_hz=200.0), ExplorerNodeConfig())
    inbox = Inbox()
    inbox.put("scene_state", _state(95 * MS, 0), 0)
    assert list(node.step(96 * MS, inbox)) == []  # no frame: no action
    inbox.put("camera/front", _frame(100 * MS), 0)
    inbox.put("scene_state", _state(100 * MS, 0), 0)
    (topic, a), = node.step(101 * MS, inbox)
    assert topic == "ee_action" and a.stamp_ns == 100 * MS
    assert a.action.shape == (4,) and np.all(np.abs(a.action[:3]) <= 0.05 + 1e-9)
    inbox.clear_new()  # as the runtime does after each step
    assert list(node.step(102 * MS, inbox)) == []  # the same frame is acted on once
    inbox.put("camera/front", _frame(200 * MS), 0)
    inbox.put("scene_state", _state(200 * MS, 1), 0)  # a new episode: a new explorer
    assert len(list(node.step(201 * MS, inbox))) == 1
    inbox.clear_new()
    assert node.summary()["episodes"] == 2 and sum(node.summary()["modes"].values()) == 2
    inbox.put("camera/front", _frame(900 * MS), 0)  # the newest state is 0.7 s older
    assert list(node.step(901 * MS, inbox)) == [] and node.old_states == 1


def _data(block_x: list[float]) -> EpisodeData:
    n = len(block_x)
    block = torch.zeros(n, 3)
    block[:, 0] = torch.tensor(block_x)
    return EpisodeData(
        frames=torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8), actions=torch.zeros(n, 4),
        valid=torch.tensor([True] * (n - 1) + [False]), episode=torch.zeros(n, dtype=torch.int64),
        ee_pos=torch.rand(n, 3), block_pos=block, proprio=None, names=["a"],
    )


def test_block_moving_windows_are_those_where_the_block_moves() -> None:
    data = _data([0.5, 0.5, 0.5, 0.51, 0.52, 0.52, 0.52, 0.52])  # moves in transitions 2 and 3
    starts = data.window_starts(2)  # 0..5
    assert block_moving(data, starts, 2, 0.002).tolist() == [False, True, True, True, False, False]
    assert block_moving(data, starts, 1, 0.002).tolist() == [False, False, True, True, False, False]


def test_published_versions_are_scored_in_order(tmp_path: Path) -> None:
    cfg = ModelConfig(image_size=32, channels=[4, 8], latent_dim=8, hidden_dim=16)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "init", WorldModel(cfg), version=1)
    for v in (2, 3):
        save_checkpoint(tmp_path / "live" / f"v{v:06d}", WorldModel(cfg), version=v,
                        config={"learner": {"experience_s": 30.0 * (v - 1), "updates": 10 * v}})
    from reflexarc.runtime.episode import EpisodeWriter
    from reflexarc.runtime.msgs import EEAction

    root = tmp_path / "heldout"
    rng = np.random.default_rng(0)
    for e in range(2):  # two episodes: the probe fits on one, scores on the other
        with EpisodeWriter(root / f"ep-{e:06d}", {}) as w:
            for t in range(12):
                st = t * 100 * MS
                w.write("camera/front", Image(stamp_ns=st, camera="front", depth=empty("f4", 0, 0),
                                              rgb=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), st)
                w.write("scene_state", _state(st, e).__class__(
                    stamp_ns=st, ee_pos=rng.random(3), ee_quat=np.array([1.0, 0, 0, 0]),
                    objects=np.array([[0.5 + 0.01 * t * (t % 2), rng.random(), 0.025, 1, 0, 0, 0]]),
                    names="red", target=np.zeros(3), episode=e), st)
                w.write("ee_action", EEAction(stamp_ns=st, action=rng.uniform(-0.05, 0.05, 4).astype(np.float32)), st)
    rows = evaluate_versions(tmp_path / "live", root, init=str(tmp_path / "init"), horizon=2,
                             progress=False)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["experience_min"] for r in rows] == [0.0, 0.5, 1.0]
    for r in rows:
        assert r["moving_windows"] > 0 and len(r["moving_pred_error"]) == 2
        assert math.isfinite(r["pred_error_1step_moving"]) and r["baseline_error_1step_moving"] > 0
