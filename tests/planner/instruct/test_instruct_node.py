"""The instruct node: its step with plain objects (the LLM in a worker thread never blocks
it), and the node in the real runtime process answering `reflexarc say`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from reflexarc.planner.instruct.llm import LLMConfig
from reflexarc.planner.instruct.node import InstructGoalNode, InstructNode, ask
from reflexarc.planner.instruct.testing import ChatServer, reply
from reflexarc.runtime import bus as busmod
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Goal, Instruction, SceneState, TaskSpec
from reflexarc.runtime.node import Inbox, NodeContext, NodeSpec, spec_json

ROOT = Path(__file__).resolve().parents[3]
SCENE_STATE = SceneState(
    stamp_ns=5, ee_pos=np.array([0.45, 0.0, 0.2]), ee_quat=np.array([1.0, 0, 0, 0]),
    objects=np.array([[0.5, -0.05, 0.025, 1, 0, 0, 0], [0.45, 0.15, 0.025, 1, 0, 0, 0]]),
    names="red,green", target=np.zeros(3),
)


def make(cls=InstructNode, **args):  # noqa: ANN001, ANN003
    cfg = from_mapping(cls.Config, {"listen": "", "memory": False, **args})
    return cls(NodeContext(name="instruct", rate_hz=50.0), cfg)


def inbox(*items: tuple[str, object]) -> Inbox:
    box = Inbox()
    for topic, msg in items:
        box.put(topic, msg, 0)  # type: ignore[arg-type]
    return box


def test_an_instruction_becomes_a_task_spec_in_the_live_scene() -> None:
    node = make()
    out = node.step(1_000, inbox(("scene_state", SCENE_STATE),
                                 ("instruction", Instruction(stamp_ns=77, text="push the red block to the left"))))
    ((topic, spec),) = out
    assert topic == "task_spec" and isinstance(spec, TaskSpec)
    assert (spec.task, spec.object, spec.source, spec.stamp_ns) == ("push", "red", "fast", 77)
    assert np.allclose(spec.target_pos, [0.5, 0.05, 0.025])  # from red's position in the SceneState
    # a colour that the live scene does not have is refused (blue is not in this scene)
    ((_, spec),) = node.step(2_000, inbox(("instruction", Instruction(text="push the blue block left"))))
    assert spec.refusal and "objects: red, green" in spec.refusal
    node.close()


def test_the_goal_node_also_publishes_goals_for_accepted_specs() -> None:
    node = make(InstructGoalNode, use_default_scene=True, instruction="put the red block on the blue block")
    out = node.step(1_000, Inbox())  # the configured instruction, once
    assert [t for t, _ in out] == ["task_spec", "goal"]
    goal = out[1][1]
    assert isinstance(goal, Goal) and goal.task == "pick_place" and np.allclose(goal.target, out[0][1].target_pos)
    assert node.step(2_000, Inbox()) == []
    out = node.step(3_000, inbox(("instruction", Instruction(text="push the yellow block"))))
    assert [t for t, _ in out] == ["task_spec"]  # a refusal is never a goal
    node.close()


def test_instructions_wait_for_the_first_scene_state_then_time_out() -> None:
    node = make(scene_timeout_s=1.0)
    assert node.step(0, inbox(("instruction", Instruction(text="push the red block left")))) == []
    ((_, spec),) = node.step(500_000_000, inbox(("scene_state", SCENE_STATE)))
    assert not spec.refusal and spec.object == "red"
    # a new node without any scene: refused after the timeout, with the reason
    lonely = make(scene_timeout_s=1.0)
    assert lonely.step(0, inbox(("instruction", Instruction(text="push the red block left")))) == []
    ((_, spec),) = lonely.step(1_500_000_000, Inbox())
    assert "no scene_state received within 1 s" in spec.refusal
    # a scene_state that does not add up is ignored, the previous scene kept
    bad = SCENE_STATE.replace(names="red,green,blue")
    ((_, spec),) = node.step(700_000_000, inbox(("scene_state", bad), ("instruction", Instruction(text="push the red block left"))))
    assert not spec.refusal and np.allclose(spec.target_pos, [0.5, 0.05, 0.025])
    node.close()
    lonely.close()


def test_the_llm_runs_in_a_worker_and_never_blocks_step(tmp_path: Path) -> None:
    release = threading.Event()
    with ChatServer([("hold", release, reply(task="push", object="green", target_type="place", place="front"))]) as server:
        llm = LLMConfig(base_url=server.url, model="m", timeout_s=30.0, retries=0)
        node = make(use_default_scene=True, memory=True, cache_dir=str(tmp_path), llm=llm)
        hard = Instruction(stamp_ns=9, text="wiggle the green block over to the near edge")
        easy = Instruction(stamp_ns=10, text="push the red block to the right")
        out = node.step(1, inbox(("instruction", hard), ("instruction", easy)))
        # the easy one is answered at once; the hard one is with the LLM, which holds its reply
        assert [s.source for _, s in out] == ["fast"]
        assert server.received.wait(10.0)
        for _ in range(3):
            assert node.step(2, Inbox()) == []  # step returns while the LLM is still thinking
        release.set()
        out = []
        for _ in range(500):
            out = node.step(3, Inbox())
            if out:
                break
            time.sleep(0.01)
        ((_, spec),) = out
        assert (spec.source, spec.object, spec.target, spec.stamp_ns) == ("llm", "green", "place:front", 9)
        # remembered: the same words again are answered within the step
        ((_, again),) = node.step(4, inbox(("instruction", hard)))
        assert again.source == "memory" and len(server.requests) == 1
        assert node.summary()["instruct_llm"] == 1
        node.close()


def test_listen_must_be_local_and_tcp_authenticated() -> None:
    with pytest.raises(ConfigError, match="listen.*local addresses only"):
        from_mapping(InstructNode.Config, {"listen": "tcp://0.0.0.0:47090"})
    with pytest.raises(ConfigError, match="curve_keys_dir"):
        from_mapping(InstructNode.Config, {"listen": "tcp://127.0.0.1:47090"})
    assert InstructNode.Config().listen.startswith("ipc://")  # the default


def test_requests_come_only_from_this_user_or_a_curve_key_holder(tmp_path: Path) -> None:
    from reflexarc.runtime.bus import make_keys

    listen = f"ipc://{tmp_path}/priv/say.sock"
    node = make(listen=listen, use_default_scene=True)
    try:
        assert os.stat(f"{tmp_path}/priv/say.sock").st_mode & 0o777 == 0o600
    finally:
        node.close()
    keys = make_keys(tmp_path / "keys")
    port = 47000 + os.getpid() % 900
    node = make(listen=f"tcp://127.0.0.1:{port}", curve_keys_dir=str(keys), use_default_scene=True)
    try:
        assert ask(f"tcp://127.0.0.1:{port}", "push the red block to the left", timeout_s=1.0) is None
        worker = threading.Thread(target=_steps, args=(node, 3.0), daemon=True)
        worker.start()
        spec = ask(f"tcp://127.0.0.1:{port}", "push the red block to the left", timeout_s=10.0,
                   curve_keys_dir=str(keys))
        worker.join()
        assert spec is not None and spec.task == "push" and not spec.refusal
    finally:
        node.close()


def _steps(node: InstructNode, seconds: float) -> None:
    inbox = Inbox()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        node.step(time.monotonic_ns(), inbox)
        time.sleep(0.01)


def test_the_node_in_its_process_answers_say_and_publishes(tmp_path: Path) -> None:
    """The real runtime (reflexarc.runtime.node main), real sockets: `reflexarc say` (no dry run) ->
    the node -> TaskSpec + Goal on the graph's bus and as the reply."""
    listen = f"ipc://{tmp_path}/say.sock"
    pub = f"ipc://{tmp_path}/instruct.pub"
    spec = NodeSpec(
        name="instruct", target="reflexarc.planner.instruct.node:InstructGoalNode", rate_hz=50.0,
        args={"listen": listen, "use_default_scene": True, "cache_dir": str(tmp_path / "mem")},
        seed=0, clock="realtime", bus={"transport": "ipc", "ipc_dir": str(tmp_path)},
        addresses={"instruct": pub},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXARC_LLM", "OPENAI"))}
    proc = subprocess.Popen([sys.executable, "-c", "from reflexarc.runtime.node import main; main()", spec_json(spec)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    zctx = busmod.context()
    sub = busmod.Subscriber(zctx, [pub], ["task_spec", "goal", "heartbeat"], busmod.BusConfig(),
                            busmod.Security(zctx, busmod.BusConfig()))
    try:
        deadline = time.monotonic() + 30
        while not any(t == "heartbeat" for t, _, _ in sub.drain()):  # connected and running
            assert time.monotonic() < deadline and proc.poll() is None, "the node did not start"
            sub.wait(0.1)
        said = subprocess.run(
            [sys.executable, "-m", "reflexarc.runtime.cli", "say", "nudge the green block a bit towards the robot",
             f"address={listen}", "timeout_s=20", f"out={tmp_path / 'said.json'}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
        assert said.returncode == 0, said.stderr
        assert "reflexarc say" in said.stdout and "green" in said.stdout  # the table
        answer = json.loads((tmp_path / "said.json").read_text())
        assert (answer["task"], answer["object"], answer["target"]) == ("push", "green", "direction:backward:0.050")
        got: dict[str, object] = {}
        while len(got) < 2 and time.monotonic() < deadline:
            sub.wait(0.1)
            got.update({t: m for t, m, _ in sub.drain() if t != "heartbeat"})
        assert np.allclose(got["task_spec"].target_pos, answer["target_pos"])  # type: ignore[attr-defined]
        assert np.allclose(got["goal"].target, answer["target_pos"])  # type: ignore[attr-defined]
        refused = ask(listen, "push the purple block", timeout_s=20)
        assert refused is not None and "no purple object" in refused.refusal
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        sub.close()
        zctx.term()
    assert rc == 0, proc.stderr.read() if proc.stderr else ""


def test_the_configured_instruction_is_understood_again_at_each_episode() -> None:
    """``instruction`` from the config: resolved in each episode's scene and stamped with
    the scene state it was resolved in (a sim tells its episode's spec by that stamp)."""
    node = make(instruction="push the red block to the left")
    assert node.step(1, Inbox()) == []  # no scene yet: it waits
    ((_, first),) = node.step(2, inbox(("scene_state", SCENE_STATE)))
    assert first.stamp_ns == SCENE_STATE.stamp_ns and np.allclose(first.target_pos, [0.5, 0.05, 0.025])
    assert node.step(3, inbox(("scene_state", SCENE_STATE))) == []  # same episode: once
    moved = SceneState(
        stamp_ns=900, ee_pos=SCENE_STATE.ee_pos, ee_quat=SCENE_STATE.ee_quat,
        objects=np.array([[0.45, -0.1, 0.025, 1, 0, 0, 0], [0.45, 0.15, 0.025, 1, 0, 0, 0]]),
        names="red,green", target=np.zeros(3), episode=1,
    )
    ((_, again),) = node.step(4, inbox(("scene_state", moved)))
    assert again.stamp_ns == 900 and np.allclose(again.target_pos, [0.45, 0.0, 0.025])  # from red's new place
    run = node.summary()["run"]
    assert run["instruction"] == "push the red block to the left"
    assert [s["episode"] for s in run["specs"]] == [0, 1]
    node.close()


def test_from_the_senses_an_instruction_is_resolved_in_the_next_perceived_frame() -> None:
    from reflexarc.robot.description import robot_description
    from reflexarc.runtime.msgs import JointState, Objects

    HOME_Q = robot_description("panda").home_q  # noqa: N806

    node = make(InstructGoalNode, scene_from="objects")
    try:
        assert "scene_state" not in node.subscribes and "objects/front" in node.subscribes
        seen = Objects(stamp_ns=5, camera="front", names="red,green",
                       position=np.array([[0.5, -0.05, 0.025], [0.45, 0.15, 0.025]]),
                       confidence=np.array([0.9, 0.9], "f4"))
        js = JointState(stamp_ns=5, position=HOME_Q, velocity=np.zeros(7), effort=np.zeros(7))
        # an instruction given after the newest frame waits for a frame taken after it
        box = inbox(("objects/front", seen), ("joint_state", js),
                    ("instruction", Instruction(stamp_ns=8, text="push the red block to the left")))
        assert list(node.step(10, box)) == []
        box.clear_new()
        box.put("objects/front", Objects(**{**{f: getattr(seen, f) for f in (
            "camera", "names", "position", "confidence")}, "stamp_ns": 12}), 0)
        out = dict(node.step(20, box))
        spec, goal = out["task_spec"], out["goal"]
        assert not spec.refusal and spec.stamp_ns == 12 and goal.stamp_ns == 12  # that frame's
        assert (spec.task, spec.object) == ("push", "red")
        # "to the left" of where perception placed the red block: +y from (0.5, -0.05)
        np.testing.assert_allclose(spec.target_pos[:2], [0.5, 0.05], atol=1e-6)
    finally:
        node.close()
