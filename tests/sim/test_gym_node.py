"""A stock gymnasium MuJoCo env as the graph's sim node: a user's node acts on it, the
recorder records it, replay republishes it (real processes, real MuJoCo)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

import reflexarc
from reflexarc import ConfigError
from reflexarc.runtime import bus as busmod
from reflexarc.runtime.launcher import Launcher
from reflexarc.runtime.recorder import ReplayConfig, replay

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEPS = {"graph.nodes.sim.args.env_kwargs": {"max_episode_steps": 30},
         "silent_timeout_s": 10.0, "stop_timeout_s": 10.0}  # a shared CI machine may stall a node for seconds


@pytest.mark.slow
def test_a_stock_env_is_stepped_by_a_user_node_recorded_and_replayed(tmp_path: Path) -> None:
    # examples/balance.yaml: InvertedPendulum-v5 + examples/my_nodes.py:Balance + recorder
    balanced = reflexarc.run(EXAMPLES / "balance.yaml", clock="lockstep", episodes=1,
                             run_dir=str(tmp_path / "balance"), overrides=STEPS)
    assert balanced.ok and balanced.backend == "gym" and balanced.task == "InvertedPendulum-v5"
    (episode,) = balanced.episodes
    # the pole stays up to the time limit: every step earns 1
    assert episode.figures["steps"] == 30 and episode.figures["return"] == 30.0
    assert episode.figures["terminated"] is False and episode.success is None

    ep = reflexarc.Episode(balanced.episode_dir)
    frames = ep.read("camera/front")["rgb"]
    states, commands = ep.read("joint_state"), ep.read("joint_command")
    assert frames.shape[1:] == (64, 64, 3) and len(frames) >= 30
    assert frames.std() > 1.0  # rendered, not blank
    assert states["position"].shape[1] == 4  # the env's observation
    assert commands["effort"].shape[1] == 1  # the env's action
    # each action is the user's feedback law on the state it answers
    gains = np.array([1.0, 10.0, 1.0, 1.0])
    by_stamp = dict(zip(states["stamp_ns"].tolist(), states["position"], strict=True))
    for stamp, effort in zip(commands["stamp_ns"].tolist(), commands["effort"], strict=True):
        assert effort[0] == pytest.approx(np.clip(gains @ by_stamp[stamp], -3, 3))

    # the same env under random actions falls well before the limit
    random = reflexarc.run("gym", clock="lockstep", episodes=1, run_dir=str(tmp_path / "random"),
                           overrides=STEPS)
    assert random.episodes[0].figures["terminated"] is True
    assert random.episodes[0].figures["steps"] < 30

    # replay: the recorded stream comes back on its topics, frames bit for bit
    address = f"ipc:///tmp/reflexarc-replay-{uuid.uuid4().hex[:8]}.pub"
    cfg = ReplayConfig(path=str(balanced.episode_dir), speed=0.0, address=address, wait_s=1.0)
    zctx = busmod.context()
    security = busmod.Security(zctx, cfg.bus)
    sub = busmod.Subscriber(zctx, [address], ["camera/", "joint_state"], cfg.bus, security)
    summary: dict = {}
    thread = threading.Thread(target=lambda: summary.update(replay(cfg)))
    thread.start()
    got: list = []
    while thread.is_alive() or sub.wait(0.5):
        if sub.wait(0.1):
            got += sub.drain()
    thread.join()
    sub.close()
    security.close()
    zctx.term()
    replayed = [m.rgb for t, m, _ in got if t == "camera/front"]
    assert len(replayed) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(replayed, frames, strict=True))
    assert sum(t == "joint_state" for t, _, _ in got) == len(states["position"])


def test_an_unknown_env_fails_before_any_process_starts(tmp_path: Path) -> None:
    cfg = reflexarc.configure("gym", overrides={"graph.nodes.sim.args.env_id": "NoSuchEnv-v0"},
                              run_dir=str(tmp_path / "never"))
    with pytest.raises(ConfigError) as err:
        Launcher(cfg)
    assert err.value.key == "graph.nodes.sim.args.env_id"
    assert "NoSuchEnv" in err.value.problem and "registered gymnasium id" in err.value.problem


def test_panda_arguments_do_not_apply_to_a_gym_env(tmp_path: Path) -> None:
    cfg = reflexarc.configure("gym", overrides={"graph.nodes.sim.args.task": "push"})
    with pytest.raises(ConfigError) as err:
        Launcher(cfg)
    assert err.value.key.startswith("graph.nodes.sim.args.task")
