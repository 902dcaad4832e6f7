"""The sim node (the plant) and the policy node, stepped with plain objects (no sockets, no
processes); the plant is laid out by a reset as the evaluator sends it (tests/sim/test_evaluator.py
runs the two together)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from reflexarc import sim
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import (
    EEAction,
    Image,
    JointCommand,
    JointState,
    Plan,
    Reset,
    SceneState,
    empty,
)
from reflexarc.runtime.node import Inbox, NodeContext
from reflexarc.sim.experts import make_expert
from reflexarc.sim.node import SimConfig, SimNode
from reflexarc.sim.policy_node import PolicyConfig, PolicyNode
from reflexarc.sim.tasks import make_task

RATE = 500
DT_NS = 1_000_000_000 // RATE


def layout(task: str = "push", seed: int = 0, blocks: int = 1, episode: int = 0) -> Reset:
    """The reset the evaluator sends for episode ``episode`` seeded ``seed``."""
    lay = make_task(task).sample(np.random.default_rng(seed), blocks)
    return Reset(episode=episode, seed=seed, q=lay.q, gripper=lay.gripper, objects=lay.objects,
                 target=lay.target)


def laid_inbox() -> Inbox:
    """An inbox holding the reset of episode 0."""
    box = Inbox()
    box.put("reset", layout(), 0)
    return box


def make_sim(clock: str = "lockstep", seed: int = 0, laid: bool = True, **args: Any) -> SimNode:
    """A plant; ``laid``: its inbox holds the reset of episode 0 (seeded ``seed``) for its
    first step (:func:`run` passes it)."""
    cfg = from_mapping(SimConfig, args, prefix="args.")
    node = SimNode(NodeContext(name="sim", rate_hz=RATE, seed=seed, clock=clock), cfg)
    node._first = layout(seed=seed, blocks=len(cfg.objects)) if laid else None  # type: ignore[attr-defined]
    return node


def run(node: SimNode, ticks: int, start: int = 0, inbox: Inbox | None = None,
        feed: Any = None) -> list[tuple[int, str, Any]]:
    """Step ``node`` at ticks start..start+ticks-1; ``feed(k, inbox)`` may put commands."""
    inbox = inbox or Inbox()
    out = []
    for k in range(start, start + ticks):
        first = getattr(node, "_first", None)
        if first is not None:
            inbox.put("reset", first, k)
            node._first = None  # type: ignore[attr-defined]
        if feed is not None:
            feed(k, inbox)
        out += [(k, topic, msg) for topic, msg in node.step(k * DT_NS, inbox)]
        inbox.clear_new()
    return out


def on(out: list[tuple[int, str, Any]], topic: str) -> list[tuple[int, Any]]:
    return [(k, m) for k, t, m in out if t == topic]


def test_step_publishes_joint_state_every_tick_and_frames_at_the_camera_rate(backend: str) -> None:
    node = make_sim(backend=backend, camera_hz=30, start_timeout_s=0.0)
    try:
        out = run(node, RATE // 2)  # 0.5 s
    finally:
        node.close()
    js = on(out, "joint_state")
    assert [k for k, _ in js] == list(range(RATE // 2))
    assert all(isinstance(m, JointState) and m.position.shape == (7,) for _, m in js)
    assert [m.stamp_ns for _, m in js] == [k * DT_NS for k in range(RATE // 2)]
    frames = on(out, "camera/front")
    assert len(frames) == 15  # frames due at 0, 1/30, ... 14/30 s
    due = [k * (10**9 // 30) for k in range(15)]  # each frame at the first tick at or after
    assert [m.stamp_ns for _, m in frames] == [-(-d // DT_NS) * DT_NS for d in due]
    for _, m in frames:
        assert isinstance(m, Image) and m.camera == "front"
        assert m.rgb.shape == (64, 64, 3) and m.rgb.dtype == np.uint8 and m.depth.size == 0
        assert m.render_us == 0.0  # lockstep: rendering takes no graph time
    assert len(on(out, "scene_state")) == RATE // 2  # every tick by default
    assert on(out, "goal") == []  # the task is the evaluator's to state
    ss = on(out, "scene_state")
    assert ss[0][1].reset_ns == 0 and ss[0][1].started_ns == 0  # start_timeout_s 0: at once
    assert ss[-1][1].sim_time_s == pytest.approx((RATE // 2) / RATE)


def test_the_plant_publishes_nothing_before_its_first_reset_and_performs_each_once() -> None:
    node = make_sim(laid=False, camera_hz=30, start_timeout_s=0.0)
    inbox = Inbox()
    try:
        assert run(node, 5, inbox=inbox) == [] and node.state() == "holding"
        first = layout(seed=3)
        out = run(node, 3, start=5, inbox=inbox,
                  feed=lambda k, box: box.put("reset", first, k) if k < 7 else None)
        # performed once (the evaluator repeats its request until it sees it done)
        assert node.resets == 1 and [m.episode for _, m in on(out, "scene_state")] == [0, 0, 0]
        ss = on(out, "scene_state")[0][1]
        assert ss.reset_ns == 5 * DT_NS and ss.started_ns == 5 * DT_NS
        np.testing.assert_allclose(ss.objects, first.objects, atol=1e-4)  # one physics step on
        np.testing.assert_array_equal(ss.target, first.target)
        assert not ss.success  # the plant never scores
        # a reset the scene cannot take (2 blocks for 1) is refused and counted
        bad = layout(blocks=2, episode=1)
        run(node, 1, start=8, inbox=inbox, feed=lambda k, box: box.put("reset", bad, k))
        assert node.episode == 0 and node.bad_resets == 1
        nxt = layout(seed=4, episode=1)
        out = run(node, 1, start=9, inbox=inbox, feed=lambda k, box: box.put("reset", nxt, k))
        assert node.episode == 1 and on(out, "scene_state")[0][1].reset_ns == 9 * DT_NS
    finally:
        node.close()


def test_reset_is_seeded_like_the_env(backend: str) -> None:
    node = make_sim(backend=backend, seed=7, camera_hz=0)
    env = gym.make(sim.ENV_IDS["push"], backend=backend)
    try:
        ss = on(run(node, 1), "scene_state")[0][1]
        _, info = env.reset(seed=7)
    finally:
        node.close()
        env.close()
    assert ss.episode == 0 and ss.names == "red" and not ss.success
    np.testing.assert_allclose(ss.target, info["target"])
    np.testing.assert_allclose(ss.objects[:, :3], info["object_pos"], atol=1e-9)
    np.testing.assert_allclose(ss.ee_pos, info["ee_pos"], atol=1e-9)


def _js(out: list[tuple[int, str, Any]], k: int) -> JointState:
    return next(m for kk, t, m in out if t == "joint_state" and kk == k)


def test_joint_mode_holds_position_when_commands_stop() -> None:
    node = make_sim(command="joint", camera_hz=0, command_timeout_s=0.1)
    try:
        q0 = on(run(node, 1), "joint_state")[0][1].position.copy()
        assert node.state() == "holding"  # no command yet
        # raw torque mode: zero torque, no gravity compensation, the arm starts to fall
        zero = JointCommand(stamp_ns=0, mode="torque", position=np.zeros(7), velocity=empty("f8", 0),
                            effort=np.zeros(7), gripper=1.0)
        out = run(node, 25, start=1, feed=lambda k, box: box.put("joint_command", zero, k))
        assert node.state() == "running"
        falling = np.abs(_js(out, 25).position - q0).max()
        assert falling > 0.005
        # the commands stop: after command_timeout_s (50 ticks) the arm holds where it was
        out = run(node, 50, start=26)  # ticks 26-75: 0.1 s without a command
        assert node.state() == "running" and node.holds == 0
        out = run(node, 250, start=76)
        assert node.state() == "holding" and node.holds == 1
        q_hold = _js(out, 76).position
        assert np.abs(q_hold - q0).max() > 2 * falling  # it was still falling
        assert np.abs(_js(out, 325).velocity).max() < 0.01
        assert np.abs(_js(out, 325).position - q_hold).max() < 0.05
        drift = np.abs(_js(out, 325).position - _js(out, 200).position).max()
        assert drift < 5e-3, drift  # held still, where zero torque would keep it falling
        # a malformed command is rejected and counted; a good one ends the hold
        bad = JointCommand(stamp_ns=0, mode="position", position=np.zeros(3),
                           velocity=empty("f8", 0), effort=np.zeros(7))
        run(node, 1, start=326, feed=lambda k, box: box.put("joint_command", bad, k))
        assert node.state() == "holding" and node.rejected == {"joint_command": 1}
        hold = JointCommand(stamp_ns=0, mode="position", position=q0, velocity=empty("f8", 0),
                            effort=np.zeros(7))
        out = run(node, 200, start=327, feed=lambda k, box: box.put("joint_command", hold, k))
        assert node.state() == "running" and node.holds == 1
        assert np.abs(_js(out, 526).position - q0).max() < 0.01  # position mode tracks q0
    finally:
        node.close()


def test_late_realtime_ticks_are_caught_up() -> None:
    node = make_sim(clock="realtime", camera_hz=0, start_timeout_s=0.0,
                    catch_up_steps=4)
    try:
        t0 = 10**12
        node.step(t0, laid_inbox())
        node.step(t0 + DT_NS, Inbox())
        assert node.physics_steps == 2
        node.step(t0 + 4 * DT_NS + DT_NS // 3, Inbox())  # 3 ticks late: 3 more steps
        assert node.physics_steps == 5
        node.step(t0 + 20 * DT_NS, Inbox())  # 15 ticks late: 4 caught up, the rest dropped
        assert node.physics_steps == 10 and node.dropped_steps == 11
        node.step(t0 + 21 * DT_NS, Inbox())
        assert node.physics_steps == 11
        assert node.scene.time == pytest.approx(11 * node.scene.dt)
    finally:
        node.close()


def test_realtime_frames_say_how_long_they_took_to_render() -> None:
    node = make_sim(clock="realtime", camera_hz=30, start_timeout_s=0.0)
    try:
        t0 = 10**12
        frames = [m for t, m in node.step(t0, laid_inbox()) if t == "camera/front"]
        assert len(frames) == 1 and frames[0].stamp_ns == t0
        assert frames[0].render_us > 0
        assert node.summary()["render_ms_p50"] == pytest.approx(frames[0].render_us / 1e3)
    finally:
        node.close()


def test_ee_actions_move_the_hand_and_stale_ones_are_dropped() -> None:
    node = make_sim(camera_hz=0)
    inbox = Inbox()
    try:
        out = run(node, 10, inbox=inbox)  # waiting for a first command: physics frozen
        assert node.state() == "holding" and node.physics_steps == 0
        ee0 = on(out, "scene_state")[-1][1].ee_pos
        act = EEAction(stamp_ns=9 * DT_NS, action=np.array([0.03, 0.0, 0.0, 1.0], np.float32))
        out = run(node, 100, start=10, inbox=inbox,
                  feed=lambda k, box: box.put("ee_action", act, k) if k == 10 else None)
        assert node.state() == "running"
        ee = on(out, "scene_state")[-1][1].ee_pos
        assert ee[0] - ee0[0] == pytest.approx(0.03, abs=0.006)  # one action: +3 cm in x
        assert abs(ee[1] - ee0[1]) < 0.005 and abs(ee[2] - ee0[2]) < 0.005
        # an action computed before the episode began (older stamp) is not applied
        node.valid_from_ns = 200 * DT_NS
        old = EEAction(stamp_ns=150 * DT_NS, action=np.array([0.0, 0.05, 0.0, 1.0], np.float32))
        out = run(node, 60, start=110, inbox=inbox,
                  feed=lambda k, box: box.put("ee_action", old, k) if k == 110 else None)
        assert node.stale_actions == 1
        assert abs(on(out, "scene_state")[-1][1].ee_pos[1] - ee0[1]) < 0.005
    finally:
        node.close()


def test_sim_config_is_checked_before_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="viewer.*display"):
        from_mapping(SimConfig, {"viewer": True})
    with pytest.raises(ConfigError, match="cameras"):
        from_mapping(SimConfig, {"cameras": ["top"]})
    with pytest.raises(ConfigError, match="rate_hz"):
        SimNode(NodeContext(name="sim", rate_hz=100), SimConfig())
    with pytest.raises(ConfigError, match="task"):  # the task is the evaluator's
        from_mapping(SimConfig, {"task": "push"})


# --------------------------------------------------------------------------------------
# Policy node
# --------------------------------------------------------------------------------------


def scene_state(seq: int, stamp_ns: int, episode: int = 0, ee: Any = (0.4, 0.0, 0.3),
                success: bool = False) -> SceneState:
    objects = np.array([[0.5, 0.1, 0.025, 1.0, 0.0, 0.0, 0.0]])
    return SceneState(seq=seq, stamp_ns=stamp_ns, ee_pos=np.array(ee, float),
                      ee_quat=np.array([0.0, 1.0, 0.0, 0.0]), objects=objects, names="red",
                      target=np.array([0.5, 0.25, 0.025]), success=success, episode=episode)


def make_policy(rate_hz: float = 10.0, **args: Any) -> PolicyNode:
    cfg = from_mapping(PolicyConfig, args, prefix="args.")
    return PolicyNode(NodeContext(name="expert", rate_hz=rate_hz, seed=3), cfg)


def test_policy_node_acts_once_per_fresh_scene_state() -> None:
    node = make_policy(task="reach")
    inbox = Inbox()
    assert list(node.step(0, inbox)) == []  # nothing seen yet
    inbox.put("scene_state", scene_state(0, 5_000), 0)
    (topic, msg), = node.step(10_000, inbox)
    assert topic == "ee_action" and isinstance(msg, EEAction) and msg.stamp_ns == 5_000
    # the reach expert goes straight to the target, at most max_delta per axis
    d = np.array([0.1, 0.25, -0.275])  # target - ee
    np.testing.assert_allclose(msg.action, [*(d * 0.05 / 0.275), 1.0], atol=1e-6)
    assert list(node.step(20_000, inbox)) == []  # the same state is not acted on twice
    inbox.put("scene_state", scene_state(1, 30_000), 0)
    assert list(node.step(2 * 10**9, inbox)) == []  # older than state_timeout_s
    inbox.put("scene_state", scene_state(2, 40_000, success=True), 0)
    assert list(node.step(50_000, inbox)) == []  # the episode is over
    assert node.summary()["actions"] == 1 and node.summary()["old_states"] == 1


def test_policy_node_plan_is_hand_setpoints_from_the_state() -> None:
    node = make_policy(task="push", output="plan", plan_steps=4)
    inbox = Inbox()
    inbox.put("scene_state", scene_state(0, 7_000), 0)
    (topic, plan), = node.step(9_000, inbox)
    assert topic == "plan" and isinstance(plan, Plan)
    assert plan.stamp_ns == plan.t0_ns == 7_000 and plan.dt_ns == 100_000_000
    assert plan.ee_pos.shape == (5, 3) and plan.gripper.shape == (5,)
    assert plan.ee_quat.shape == (0, 4)
    np.testing.assert_allclose(plan.ee_pos[0], [0.4, 0.0, 0.3])
    steps = np.diff(plan.ee_pos, axis=0)
    assert np.abs(steps).max() <= 0.05 + 1e-6 and np.abs(steps).max() > 0.01
    # the push expert first closes the gripper and heads behind the block, above it
    assert np.all(plan.gripper == -1.0)
    assert np.linalg.norm(plan.ee_pos[-1, :2] - [0.5, 0.1]) < np.linalg.norm(plan.ee_pos[0, :2] - [0.5, 0.1])
    # the first displacement is the expert's action, and the rollout of the others did
    # not advance the node's own expert beyond that one step
    fresh = make_expert("push")
    info = {"ee_pos": np.array([0.4, 0.0, 0.3]), "object_pos": np.array([[0.5, 0.1, 0.025]]),
            "target": np.array([0.5, 0.25, 0.025])}
    fresh.reset(info)
    np.testing.assert_allclose(plan.ee_pos[1] - plan.ee_pos[0], fresh.act(info)[:3], atol=1e-7)
    assert node.expert is not None and vars(node.expert) == vars(fresh)
    # a new episode resets the expert
    node.expert.phase = "push"
    inbox.put("scene_state", scene_state(1, 8_000, episode=1), 0)
    node.step(10_000, inbox)
    assert node.episode == 1 and node.expert.phase == "above"


def test_random_policy_is_seeded_and_bounded() -> None:
    def actions() -> np.ndarray:
        node, inbox, acts = make_policy(policy="random", max_delta=0.02), Inbox(), []
        for i in range(20):
            inbox.put("scene_state", scene_state(i, i * 1000), 0)
            acts.append(next(iter(node.step(i * 1000 + 10, inbox)))[1].action)
        return np.array(acts)

    a, b = actions(), actions()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[:, :3]).max() <= 0.02 and np.abs(a[:, 3]).max() <= 1.0
    assert a[:, :3].std() > 0.005


def test_policy_node_publishes_one_topic_per_output() -> None:
    assert PolicyNode.publishes_for(PolicyConfig(output="plan")) == ("plan",)
    assert PolicyNode.publishes_for(PolicyConfig()) == ("ee_action",)
    with pytest.raises(ConfigError, match="policy"):
        from_mapping(PolicyConfig, {"policy": "smart"}, prefix="graph.nodes.expert.args.")


def test_the_overspeed_reflex_holds_the_arm_under_ee_actions_too() -> None:
    """A joint past 90 % of its speed limit (here thrown by hand, as a contact or a starved
    tick could) makes the plant hold where the arm is, with the EE tracker as with joint
    commands; the actions that come meanwhile wait."""
    node = make_sim(command="ee_action", camera_hz=0)
    push = EEAction(stamp_ns=0, action=np.array([0.02, 0.0, 0.0, 1.0], np.float32))
    try:
        run(node, 50, start=0, feed=lambda k, box: box.put("ee_action", push, k))
        assert node.overspeed_holds == 0
        node.scene.data.qvel[0] = 1.5 * node.guard.lim.dq_max[0]  # joint 1 thrown past its limit
        out = run(node, 90, start=50, feed=lambda k, box: box.put("ee_action", push, k))
        assert node.overspeed_holds == 1
        js = _js(out, 139)  # within the 0.2 s hold: settling where the reflex caught it
        assert np.abs(js.velocity).max() < 0.25, js.velocity  # from 3.3 rad/s thrown
        assert np.array_equal(node.tracker.q_cmd, node.tracker.q_from)  # no action taken
        run(node, 60, start=140, feed=lambda k, box: box.put("ee_action", push, k))
        assert not np.array_equal(node.tracker.q_cmd, node.tracker.q_from)  # then they are
    finally:
        node.close()


def test_joint_commands_are_held_to_the_arms_limits_and_overspeed_holds() -> None:
    node = make_sim(command="joint", camera_hz=0)  # holds after 10 ms
    try:
        huge = JointCommand(stamp_ns=0, mode="torque", position=np.zeros(7), velocity=empty("f8", 0),
                            effort=np.full(7, 1e6), gripper=1.0)
        out = run(node, 300, start=0, feed=lambda k, box: box.put("joint_command", huge, k))
        s = node.summary()
        assert s["guard"]["torque_clipped"] > 0 and s["overspeed_holds"] >= 1
        assert s["limit_samples"] == 300 and s["beyond_limits"]["torque"] == 0
        # the reflex catches the joint within a tick or two of 95 % of its limit
        assert s["max_speed_share"] < 1.3, s
        # commands stop: the arm holds within 5 ticks (10 ms) and comes to rest
        out = run(node, 200, start=300)
        assert node.holds >= 1 and np.abs(_js(out, 499).velocity).max() < 0.05
    finally:
        node.close()
