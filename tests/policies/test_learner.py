"""Learner node: learns from episode files and the stream, publishes atomic weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from reflexarc.policies.checkpoint import load_checkpoint, save_checkpoint
from reflexarc.policies.learner import LearnerConfig, LearnerNode, ReplayBuffer
from reflexarc.policies.train import OptimConfig
from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.runtime.msgs import EEAction, Image, Weights
from reflexarc.runtime.node import Inbox, NodeContext

TINY = ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32)


def test_learner_publishes_versions_from_episode_files(toy_episodes: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "init", WorldModel(TINY), version=4).path
    cfg = LearnerConfig(
        init=str(init), out_dir=str(tmp_path / "live"), episodes=str(toy_episodes), stream=False,
        optim=OptimConfig(horizon=3, batch_size=8, warmup=0), min_windows=8,
        updates_per_step=3, publish_every=2, max_step_ms=60000, train_in="step", keep_versions=2,
    )
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0), cfg)
    before = {k: v.clone() for k, v in node.model.state_dict().items()}
    published: list[Weights] = []
    for t in range(3):
        for topic, msg in node.step(t * 10**9, Inbox()):
            assert topic == "weights"
            published.append(msg)
    assert node.summary()["episodes"] == 6 and node.updates == 9
    assert [w.version for w in published] == [5, 6, 7, 8]  # continues from the init version
    last = published[-1]
    assert last.sha256 == hashlib.sha256(Path(last.path).read_bytes()).hexdigest()
    model, info = load_checkpoint(last.path)
    assert info.version == 8 and info.config["learner"]["updates"] == 8
    assert last.path != published[-2].path  # a version never rewrites another one's file
    kept = sorted(p.name for p in (tmp_path / "live").glob("v*"))
    assert kept == ["v000007", "v000008"]  # keep_versions=2
    assert load_checkpoint(tmp_path / "live")[1].version == 8  # the latest, beside them
    changed = any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert changed, "the published weights are the initial ones"


def test_learner_aligns_stream_frames_and_actions(tmp_path: Path) -> None:
    cfg = LearnerConfig(model=TINY, out_dir=str(tmp_path / "live"), min_windows=10**6)
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0), cfg)
    inbox = Inbox()
    rng = np.random.default_rng(0)
    for j in range(5):
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # resized to the model's 32 px
        inbox.put("camera/front", Image(stamp_ns=j * 100, camera="front", rgb=img,
                                        depth=np.zeros((0, 0), np.float32)), 0)
        if j < 4:  # two actions per frame interval: displacements add up
            for s in (0, 50):
                a = np.array([0.01, 0.0, 0.0, -1.0 if s else 1.0], np.float32)
                inbox.put("ee_action", EEAction(stamp_ns=j * 100 + s, action=a), 0)
    try:
        assert node.step(0, inbox) == []  # realtime: the step starts the training thread
    finally:
        node.close()
    buf = node.buffer
    assert buf.size == 5 and buf.valid[:5].tolist() == [True, True, True, True, False]
    torch.testing.assert_close(buf.actions[0], torch.tensor([0.02, 0.0, 0.0, -1.0]))
    assert buf.window_starts(3).tolist() == [0, 1]


def test_a_hand_model_ignores_the_controllers_joint_torques(tmp_path: Path) -> None:
    """In the Panda's pixels graphs joint_command carries the controller's 7 joint torques:
    a model of the hand's 4-value actions learns from ee_action and leaves those alone."""
    from reflexarc.runtime.msgs import JointCommand

    cfg = LearnerConfig(model=TINY, out_dir=str(tmp_path / "live"), min_windows=10**6,
                        train_in="step")
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0, clock="lockstep"), cfg)
    inbox = Inbox()
    for j in range(3):
        inbox.put("camera/front", Image(stamp_ns=j * 100, camera="front",
                                        rgb=np.full((32, 32, 3), j, np.uint8),
                                        depth=np.zeros((0, 0), np.float32)), 0)
        inbox.put("joint_command", JointCommand(stamp_ns=j * 100 + 10, effort=np.ones(7),
                                                position=np.zeros(7), velocity=np.zeros(7)), 0)
        inbox.put("ee_action", EEAction(stamp_ns=j * 100 + 20,
                                        action=np.array([0.01, 0, 0, 1], np.float32)), 0)
    try:
        node.step(0, inbox)
    finally:
        node.close()
    assert node.buffer.size == 3 and node.transitions == 2
    torch.testing.assert_close(node.buffer.actions[0], torch.tensor([0.01, 0.0, 0.0, 1.0]))
    assert node.summary()["wrong_size_actions"] == 0


def test_replay_ring_never_crosses_the_write_pointer() -> None:
    buf = ReplayBuffer(capacity=6, image_size=4)
    frame = np.zeros((4, 4, 3), np.uint8)
    buf.add_frame(frame)
    for _ in range(8):  # 9 frames in a ring of 6: the oldest are overwritten
        buf.add_frame(frame, np.zeros(4, np.float32))
    starts = buf.window_starts(2)
    newest = (buf.ptr - 1) % buf.capacity
    for s in starts.tolist():
        slots = [(s + k) % 6 for k in range(3)]
        assert newest not in slots[:-1]  # a window may end at the newest frame, not pass it
    assert len(starts) == 4
    buf.break_link()
    assert len(buf.window_starts(2)) == 4


def test_learner_config_from_graph_args(tmp_path: Path) -> None:
    """Graph YAML args validate into the node's Config before any process starts."""
    import pytest

    from reflexarc.runtime.config import from_mapping
    from reflexarc.runtime.errors import ConfigError

    cfg = from_mapping(LearnerConfig, {"out_dir": str(tmp_path), "optim": {"horizon": 4},
                                       "publish_every": 10})
    assert cfg.optim.horizon == 4 and cfg.optim.warmup == 0 and cfg.publish_every == 10
    with pytest.raises(ConfigError, match="publish_every"):
        from_mapping(LearnerConfig, {"publish_every": 0}, "graph.nodes.learner.args.")


def _threaded_learner(toy_episodes: Path, tmp_path: Path, **cfg: object) -> dict[str, object]:
    """A learner with a training thread, made and stepped in a thread of its own: the
    niceness it takes (per thread on Linux, inherited by the threads it starts) stays off
    pytest's main thread. Returns the node and the loop thread's scheduling as the OS says."""
    import os
    import threading

    init = save_checkpoint(tmp_path / "init", WorldModel(TINY), version=1).path
    args: dict[str, object] = {"publish_every": 1000, **cfg}
    config = LearnerConfig(
        init=str(init), out_dir=str(tmp_path / "live"), episodes=str(toy_episodes), stream=False,
        optim=OptimConfig(horizon=3, batch_size=8, warmup=0), min_windows=8, train_in="thread",
        **args,  # type: ignore[arg-type]
    )
    made: dict[str, object] = {}

    def loop() -> None:
        node = LearnerNode(NodeContext(name="learner", rate_hz=10.0, clock="realtime"), config)
        made["node"] = node
        node.step(0, Inbox())  # starts the training thread
        made["loop_policy"] = os.sched_getscheduler(0)
        made["loop_nice"] = os.getpriority(os.PRIO_PROCESS, 0)

    t = threading.Thread(target=loop)
    t.start()
    t.join(60)
    assert "loop_nice" in made, "the learner's loop thread did not make and step the node"
    return made


def test_the_training_thread_runs_at_idle_priority(toy_episodes: Path, tmp_path: Path) -> None:
    """What the OS says of the training thread (its id): SCHED_IDLE and niceness 10, while
    the node's loop thread stays in the normal class. Not how many updates it makes: a
    thread of the lowest priority gets no CPU at all on a busy machine, which is the point."""
    import os
    import time

    main_nice = os.getpriority(os.PRIO_PROCESS, 0)
    made = _threaded_learner(toy_episodes, tmp_path, sched="idle", nice=10)
    node = made["node"]
    assert isinstance(node, LearnerNode)
    try:
        assert node.thread is not None and node.thread.native_id is not None
        tid = node.thread.native_id
        assert os.getpriority(os.PRIO_PROCESS, tid) == 10  # inherited from the loop thread
        # the thread moves itself to SCHED_IDLE first thing; until then it is an ordinary
        # niced thread, which the OS does schedule, however busy
        deadline = time.monotonic() + 120
        while os.sched_getscheduler(tid) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE
        assert made["loop_policy"] == os.SCHED_OTHER and made["loop_nice"] == 10
        assert node.summary()["nice"] == 10
        assert os.getpriority(os.PRIO_PROCESS, 0) == main_nice  # pytest's thread untouched
    finally:
        node.close()
    assert not node.thread.is_alive()


def test_the_training_thread_trains_when_given_cpu(toy_episodes: Path, tmp_path: Path) -> None:
    """The same thread in the normal class at the test's own priority: it updates the model
    and publishes through the loop (as fast as any test runs, not slower than the machine)."""
    import time

    # every version kept: the thread trains on while the test reads version 2, and with the
    # default keep_versions (5) it had been pruned by then once (fresh-clone CI)
    made = _threaded_learner(toy_episodes, tmp_path, sched="normal", nice=0, publish_every=2,
                             keep_versions=0)
    node = made["node"]
    assert isinstance(node, LearnerNode)
    try:
        before = {k: v.clone() for k, v in node.model.state_dict().items()}
        published: list[Weights] = []
        deadline = time.monotonic() + 300
        while not published and time.monotonic() < deadline:
            published += [msg for _, msg in node.step(0, Inbox())]
            time.sleep(0.05)
        assert published and published[0].version == 2
        assert node.updates >= 2
        model, info = load_checkpoint(published[0].path)
        assert info.version == 2
        assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    finally:
        node.close()
    assert not node.thread.is_alive()


def test_updates_are_capped_per_frame_of_experience(toy_episodes: Path, tmp_path: Path) -> None:
    init = save_checkpoint(tmp_path / "init", WorldModel(TINY), version=1).path
    cfg = LearnerConfig(
        init=str(init), out_dir=str(tmp_path / "live"), episodes=str(toy_episodes), stream=False,
        optim=OptimConfig(horizon=3, batch_size=8, warmup=0), min_windows=8, publish_every=1000,
        train_in="step", updates_per_step=1000, max_step_ms=60000, max_updates_per_frame=0.05,
    )
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0), cfg)
    for t in range(2):
        node.step(t * 10**9, Inbox())
    frames = node.buffer.added
    assert frames > 40 and node.updates == int(np.ceil(0.05 * frames))  # not 2 x 1000


def test_learner_takes_an_envs_own_actions_and_a_frame_history(tmp_path: Path) -> None:
    """Any gymnasium env (issue 28): the env's action on joint_command.effort (the last one
    of a frame interval holds, nothing adds up), and stacked frames within an episode."""
    from reflexarc.runtime.msgs import JointCommand

    mc = ModelConfig(image_size=32, channels=[8, 16, 16], latent_dim=16, hidden_dim=32,
                     action_dim=2, action_scales=[1.0, 1.0], frames=2)
    cfg = LearnerConfig(model=mc, out_dir=str(tmp_path / "live"), min_windows=2,
                        optim=OptimConfig(horizon=2, batch_size=4, warmup=0), train_in="step",
                        updates_per_step=1, publish_every=1000)
    node = LearnerNode(NodeContext(name="learner", rate_hz=1.0, clock="lockstep"), cfg)
    inbox = Inbox()
    for j in range(5):
        img = np.full((32, 32, 3), 10 * j, np.uint8)
        inbox.put("camera/front", Image(stamp_ns=j * 100, camera="front", rgb=img,
                                        depth=np.zeros((0, 0), np.float32)), 0)
        if j < 4:
            for s in (0, 50):
                e = np.array([0.1 * j + s / 1000, -0.5], np.float64)
                inbox.put("joint_command", JointCommand(stamp_ns=j * 100 + s, effort=e,
                                                        position=np.zeros(2), velocity=np.zeros(2)), 0)
    node.step(0, inbox)
    buf = node.buffer
    assert buf.size == 5 and buf.valid[:5].tolist() == [True, True, True, True, False]
    torch.testing.assert_close(buf.actions[1], torch.tensor([0.15, -0.5]))  # the last one holds
    assert node.updates == 1  # trained on stacked windows
    buf.break_link()
    buf.add_frame(np.full((32, 32, 3), 200, np.uint8))  # a new episode's first frame
    buf.add_frame(np.full((32, 32, 3), 210, np.uint8), np.zeros(2, np.float32))
    slots = buf.history(torch.tensor([0, 3, 5, 6]), 3).tolist()
    assert slots == [[0, 0, 0], [1, 2, 3], [5, 5, 5], [5, 5, 6]]  # never back across a start
    images, actions = buf.windows(torch.tensor([5]), 1, frames=2)
    assert images.shape == (1, 2, 6, 32, 32) and images[0, :, ::3, 0, 0].tolist() == [[200, 200], [200, 210]]
