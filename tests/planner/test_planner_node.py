"""The planner node with plain objects: goals, latents, plans, timing modes, hot swap."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from reflexarc.planner.node import PlannerNode, plan_setpoints
from reflexarc.policies.checkpoint import CheckpointInfo
from reflexarc.robot.panda import PANDA
from reflexarc.robot.plan import sample_plan
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Goal, JointState, Latent, Plan, Weights, empty
from reflexarc.runtime.node import Inbox, NodeContext
from tests.perception.conftest import tiny_checkpoint

HOME_EE = np.array([0.4, 0.0, 0.3])  # FK of the home pose
MS = 1_000_000
SMALL = {"samples": 16, "elites": 4, "horizon": 3, "iterations": 1}


@pytest.fixture
def ckpt(tmp_path: Path) -> CheckpointInfo:
    return tiny_checkpoint(tmp_path / "v1", version=1, seed=1)


def make_node(ckpt: CheckpointInfo, clock: str = "lockstep", **args: object) -> PlannerNode:
    cfg = from_mapping(PlannerNode.Config, {
        "checkpoint": str(ckpt.path), "planner": "cem", "cem": SMALL, **args})
    return PlannerNode(NodeContext(name="planner", rate_hz=100, clock=clock), cfg)


def goal(stamp: int, seed: int = 7, version: int = 1, dim: int = 8) -> Goal:
    """A goal latent, as the perception node publishes it on goal_latent."""
    z = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return Goal(stamp_ns=stamp, target=np.zeros(3), image=empty("u1", 0, 0, 3), z=z,
                model_version=version, source="file")


def latent(seq: int, stamp: int, version: int = 1, dim: int = 8) -> Latent:
    z = np.random.default_rng(seq).normal(size=dim).astype(np.float32)
    return Latent(seq=seq, stamp_ns=stamp, camera="front", model_version=version, z=z,
                  render_us=10.0 * seq)


def state(seq: int, stamp: int, q: np.ndarray = PANDA.home_q) -> JointState:
    z = np.zeros(7)
    return JointState(seq=seq, stamp_ns=stamp, position=np.asarray(q, float), velocity=z,
                      effort=z)


class Feed:
    """Steps a node with messages put into its inbox, as the runtime does."""

    def __init__(self, node: PlannerNode) -> None:
        self.node, self.inbox = node, Inbox()

    def __call__(self, now: int, *msgs: tuple[str, object]) -> list[Plan]:
        for topic, m in msgs:
            self.inbox.put(topic, m, now)  # type: ignore[arg-type]
        out = list(self.node.step(now, self.inbox))
        self.inbox.clear_new()
        assert all(t == "plan" for t, _ in out)
        return [m for _, m in out]


def test_setpoints_add_up_displacements_inside_the_box() -> None:
    lo, hi = np.array([0.25, -0.35, 0.0]), np.array([0.75, 0.35, 0.5])
    a = np.array([[0.05, 0.0, -0.02, 1.0], [0.05, 0.01, -0.02, -1.0], [0.0, 0.0, -0.05, -0.3]])
    pos, grip = plan_setpoints(np.array([0.4, 0.0, 0.05]), a, lo, hi)
    np.testing.assert_allclose(pos, [[0.4, 0, 0.05], [0.45, 0, 0.03], [0.5, 0.01, 0.01],
                                     [0.5, 0.01, 0.0]])  # the last step is clipped at z = 0
    np.testing.assert_allclose(grip, [1.0, 1.0, -1.0, -0.3], rtol=1e-6)
    plan = Plan(t0_ns=100, dt_ns=10, ee_pos=pos, ee_quat=empty("f8", 0, 4), gripper=grip)
    np.testing.assert_allclose(sample_plan(plan, 115), (pos[1] + pos[2]) / 2)
    np.testing.assert_allclose(sample_plan(plan, 0), pos[0])  # held before t0 ...
    np.testing.assert_allclose(sample_plan(plan, 10**6), pos[-1])  # ... and after the end


def test_no_goal_is_a_state_not_a_crash(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    assert feed(10 * MS, ("latent/front", latent(0, 5 * MS)), ("joint_state", state(0, 9 * MS))) == []
    assert node.state() == "no_goal"
    empty_goal = Goal(stamp_ns=1, image=empty("u1", 0, 0, 3), z=empty("f4", 0), target=np.zeros(3))
    assert feed(20 * MS, ("goal", empty_goal), ("latent/front", latent(1, 15 * MS))) == []
    s = node.summary()
    assert node.state() == "no_goal" and "no task, image or latent" in s["goal_error"]
    assert s["mode_ticks"]["no_goal"] == 2 and s["solves"] == 0


def test_a_plan_from_a_goal_latent_and_a_latent(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    assert feed(10 * MS, ("goal_latent", goal(10 * MS)), ("joint_state", state(0, 10 * MS)),
                ("latent/front", latent(0, 10 * MS))) == []  # a frame from before the goal
    assert node.state() == "no_latent"
    plans = feed(20 * MS, ("latent/front", latent(1, 15 * MS)))
    assert len(plans) == 1 and node.state() == "running"
    p = plans[0]
    assert p.stamp_ns == 15 * MS and p.t0_ns == 20 * MS and p.dt_ns == 100 * MS
    assert p.render_us == 10.0  # the latent's frame's, carried forward
    assert p.ee_pos.shape == (4, 3) and p.gripper.shape == (4,)  # horizon 3 -> 4 setpoints
    np.testing.assert_allclose(p.ee_pos[0], HOME_EE, atol=1e-3)  # from the measured hand
    steps = np.diff(p.ee_pos, axis=0)
    assert np.all(np.abs(steps) <= 0.05 + 1e-9)  # within the action bounds
    np.testing.assert_allclose(p.ee_quat, np.tile(PANDA.ee_down_quat, (4, 1)))
    assert p.solve_us > 0 and np.isfinite(p.cost)
    assert feed(30 * MS) == []  # no new latent, plan still fresh: nothing to send
    # the next plan starts where the previous one commands the hand now (0.1 of a period)
    p2 = feed(30 * MS, ("latent/front", latent(2, 25 * MS)))[0]
    lead = sample_plan(p, 30 * MS) - HOME_EE
    np.testing.assert_allclose(p2.ee_pos[0], HOME_EE + lead * min(1, 0.03 / np.linalg.norm(lead)),
                               atol=1e-3)


def test_keepalive_resends_the_newest_plan(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, keepalive_s=0.05)
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    p = feed(10 * MS, ("latent/front", latent(0, 5 * MS)))[0]
    assert feed(40 * MS) == []
    again = feed(61 * MS)
    assert len(again) == 1 and again[0] is p
    assert node.summary()["republished"] == 1


def test_a_stale_goal_stops_the_plans(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, goal_max_age_s=0.5, keepalive_s=0.1)
    feed = Feed(node)
    g = goal(1 * MS)
    feed(1 * MS, ("goal", g), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent(0, 5 * MS)))) == 1
    assert len(feed(400 * MS, ("goal", g), ("latent/front", latent(1, 390 * MS)))) == 1
    # the goal's source went quiet: 0.5 s after its last message the goal is stale
    assert feed(950 * MS, ("latent/front", latent(2, 940 * MS))) == []
    assert node.state() == "stale_goal"
    assert feed(1000 * MS) == []  # no keepalive of a plan toward a stale goal
    assert len(feed(1010 * MS, ("goal", g), ("latent/front", latent(3, 1005 * MS)))) == 1
    assert node.state() == "running"
    assert node.summary()["mode_ticks"]["stale_goal"] == 2


def test_old_latents_give_no_plan(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, max_latent_age_s=0.2)
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    assert feed(500 * MS, ("latent/front", latent(0, 100 * MS))) == []
    assert node.state() == "no_latent"


def test_a_goal_image_waits_for_its_latent_from_perception(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    shown = Goal(stamp_ns=1 * MS, target=np.zeros(3), image=img, z=empty("f4", 0))
    assert feed(10 * MS, ("goal", shown), ("joint_state", state(0, 1 * MS)),
                ("latent/front", latent(0, 5 * MS))) == []
    assert node.state() == "goal_wait"  # the planner holds no encoder
    assert len(feed(20 * MS, ("goal_latent", goal(1 * MS)), ("latent/front", latent(1, 15 * MS)))) == 1
    assert node.summary()["goals"] == 1  # the same goal, now with its latent
    # a goal latent of an older goal is ignored
    feed(30 * MS, ("goal_latent", goal(0, seed=3)), ("latent/front", latent(2, 25 * MS)))
    assert node.summary()["goals"] == 1


def test_the_planner_has_no_encoder(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    assert not hasattr(node.brains[1], "encoder")
    assert "goal_image" not in PlannerNode.Config.__dataclass_fields__


def test_goal_latent_without_image(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    z = np.ones(8, np.float32)
    g = Goal(stamp_ns=1, image=empty("u1", 0, 0, 3), z=z, model_version=1, target=np.zeros(3))
    assert len(feed(10 * MS, ("goal", g), ("joint_state", state(0, 1)),
                    ("latent/front", latent(0, 5 * MS)))) == 1
    g9 = Goal(stamp_ns=2, image=empty("u1", 0, 0, 3), z=z, model_version=9, target=np.zeros(3))
    assert feed(20 * MS, ("goal", g9), ("latent/front", latent(1, 15 * MS))) == []
    assert node.state() == "stale_goal" and "v9" in node.summary()["goal_error"]


def test_threaded_solve_keeps_the_loop_free(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt, clock="realtime", solve="thread",
                     cem={**SMALL, "samples": 512, "iterations": 8})
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    assert feed(10 * MS, ("latent/front", latent(0, 5 * MS))) == []  # started, not waited for
    assert node.state() == "solving" and node.worker is not None
    node.worker.join(30)
    plans = feed(20 * MS)
    assert len(plans) == 1 and plans[0].stamp_ns == 5 * MS
    assert node.summary()["threaded"] and node.summary()["solves"] == 1


def test_hot_swap_plans_each_latent_with_its_own_model(ckpt: CheckpointInfo, tmp_path: Path
                                                        ) -> None:
    v2 = tiny_checkpoint(tmp_path / "v2", version=2, seed=2)
    node = make_node(ckpt)  # lockstep: the load completes within the step
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent(0, 5 * MS, version=2)))) == 0
    assert node.state() == "version_wait"  # perception swapped first: wait for our load
    w = Weights(version=2, path=str(v2.path), sha256=v2.sha256)
    assert len(feed(20 * MS, ("weights", w), ("latent/front", latent(1, 15 * MS, version=2)))) == 0
    assert node.state() == "stale_goal"  # the goal latent is v1's: perception re-encodes it
    assert len(feed(30 * MS, ("goal_latent", goal(1 * MS, version=2)),
                    ("latent/front", latent(2, 25 * MS, version=2)))) == 1
    assert sorted(node.brains) == [2]  # v1 dropped once v2 latents arrive
    assert node.brains[2].planner._goal.model_version == 2  # planned with v2's goal latent
    s = node.summary()
    assert s["swaps"] == 1 and s["version_waits"] == 1


def test_new_goal_restarts_the_warm_start(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    feed(10 * MS, ("latent/front", latent(0, 5 * MS)))
    assert node.brains[1].planner._warm
    feed(20 * MS, ("goal_latent", goal(20 * MS, seed=3)))
    feed(30 * MS, ("latent/front", latent(1, 25 * MS)))
    assert node.summary()["goals"] == 2 and node.last_plan is not None
    assert node.last_plan.stamp_ns == 25 * MS


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        from_mapping(PlannerNode.Config, {})


def test_solve_time_is_reported(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    t = time.perf_counter()
    for k in range(3):
        feed((10 + 10 * k) * MS, ("latent/front", latent(k, (5 + 10 * k) * MS)))
    s = node.summary()
    assert s["solves"] == 3 and 0 < s["run"]["plan_ms_p50"] <= (time.perf_counter() - t) * 1e3
    # from each frame being ready (5 ms old latents, rendered in 0, 10 and 20 us)
    assert s["frame_to_plan_ms_p50"] == pytest.approx(5.0 - 0.01)


def test_hand_box_cost_grows_outside_the_box() -> None:
    import torch

    from reflexarc.planner.node import HandBox

    box = HandBox(np.array([0.3, -0.3, 0.0]), np.array([0.7, 0.3, 0.35]), 1e4, torch.device("cpu"))
    box.base = torch.tensor([0.68, 0.0, 0.2])
    a = torch.zeros(2, 3, 4)
    a[1, :, 0] = 0.05  # +x: 0.73, 0.78, 0.83
    cost = box(a)
    assert float(cost[0]) == 0.0
    assert float(cost[1]) == pytest.approx(1e4 * (0.03**2 + 0.08**2 + 0.13**2), rel=1e-4)


def test_plans_keep_the_hand_in_the_box(ckpt: CheckpointInfo) -> None:
    from reflexarc.robot.kinematics import ArmKinematics

    q = ArmKinematics().solve(np.array([0.69, 0.0, 0.2])).q
    node = make_node(ckpt, hand_box_weight=1e6, cem={**SMALL, "samples": 64, "iterations": 3})
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS, q)))
    for k in range(4):
        p = feed((10 + 10 * k) * MS, ("latent/front", latent(k, (5 + 10 * k) * MS)))[0]
        assert np.all(p.ee_pos <= np.array([0.7, 0.3, 0.35]) + 0.005)
        assert np.all(p.ee_pos >= np.array([0.3, -0.3, 0.0]) - 0.005)


def test_hand_probe_pulls_plans_toward_the_goal_hand(ckpt: CheckpointInfo, tmp_path: Path
                                                      ) -> None:
    from reflexarc.perception.hand import HandProbe

    target = np.array([0.6, 0.15, 0.2])
    weights = np.zeros((9, 3))
    weights[-1] = target  # this probe reads every latent as a hand at `target`
    probe = HandProbe(np.zeros(8), np.ones(8), weights, ckpt.sha256, 0.0, 1)
    node = make_node(ckpt, hand_probe=str(probe.save(tmp_path / "p.npz")),
                     hand_prior_weight=1e4, cem={**SMALL, "samples": 64, "iterations": 3})
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    p = feed(10 * MS, ("latent/front", latent(0, 5 * MS)))[0]
    np.testing.assert_allclose(node.summary()["goal_hand"], target)
    d0 = np.linalg.norm(p.ee_pos[0] - target)
    assert np.linalg.norm(p.ee_pos[-1] - target) < d0 - 0.05  # heads for the goal's hand

    other = HandProbe(np.zeros(8), np.ones(8), weights, "0" * 64, 0.0, 1)
    node = make_node(ckpt, hand_probe=str(other.save(tmp_path / "q.npz")))
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    assert len(feed(10 * MS, ("latent/front", latent(0, 5 * MS)))) == 1  # plans without it
    assert node.summary()["goal_hand"] is None


def test_hand_pull_lets_go_near_the_goal_hand_and_takes_hold_far_from_it() -> None:
    import torch

    from reflexarc.planner.node import HandBox

    box = HandBox(np.array([0.3, -0.3, 0.0]), np.array([0.7, 0.3, 0.35]), 0.0,
                  torch.device("cpu"), prior_weight=100.0, radius=0.05)
    a = torch.zeros(1, 2, 4)
    box.base = torch.tensor([0.4, 0.0, 0.2])
    assert float(box(a)[0]) == 0.0  # no goal hand: no pull
    box.goal = torch.tensor([0.6, 0.0, 0.2])
    far = float(box(a)[0])
    assert far == pytest.approx(100.0 * 2 * (0.2 - 0.05) ** 2, rel=1e-5)
    box.update(np.array([0.56, 0.0, 0.2]))  # within the radius: let go
    assert not box.pulling and float(box(a)[0]) == 0.0
    box.update(np.array([0.52, 0.0, 0.2]))  # 8 cm: between radius and 2 radius, still free
    assert not box.pulling
    box.update(np.array([0.45, 0.0, 0.2]))  # 15 cm: hold again
    assert box.pulling and float(box(a)[0]) == pytest.approx(far, rel=1e-5)


def test_hand_pull_lets_go_when_the_hand_stalls_outside_its_radius() -> None:
    """A probe reading off by more than the radius must not pin the hand on its sphere."""
    import torch

    from reflexarc.planner.node import HandBox

    box = HandBox(np.array([0.3, -0.3, 0.0]), np.array([0.7, 0.3, 0.35]), 0.0,
                  torch.device("cpu"), prior_weight=100.0, radius=0.05, stall_s=0.5)
    box.goal = torch.tensor([0.6, 0.0, 0.2])
    ms = 1_000_000
    box.update(np.array([0.40, 0.0, 0.2]), 0)
    box.update(np.array([0.48, 0.0, 0.2]), 300 * ms)  # progress: still pulling
    box.update(np.array([0.53, 0.0, 0.2]), 600 * ms)
    box.update(np.array([0.535, 0.0, 0.2]), 1000 * ms)  # < 1 cm closer in 0.4 s: still
    assert box.pulling and box.stalls == 0
    box.update(np.array([0.534, 0.0, 0.2]), 1200 * ms)  # 0.6 s without 1 cm: let go
    assert not box.pulling and box.stalls == 1
    box.update(np.array([0.50, 0.0, 0.2]), 1300 * ms)  # 10 cm: within released + radius
    assert not box.pulling
    box.update(np.array([0.47, 0.0, 0.2]), 1400 * ms)  # 13 cm: strayed a radius beyond
    assert box.pulling
    box.update(np.array([0.47, 0.0, 0.2]))  # no clock: no stall test
    assert box.pulling


def test_fine_pull_reads_the_goal_hand_relative_to_the_measured_hand(
    ckpt: CheckpointInfo, tmp_path: Path
) -> None:
    """Servo estimate = measured hand + probe(goal) - probe(now); the box pulls toward it
    only once the pull toward the probe's own reading has let go."""
    import torch

    from reflexarc.perception.hand import HandProbe
    from reflexarc.planner.node import HandBox

    weights = np.zeros((9, 3))
    weights[0] = [0.02, 0.0, 0.0]  # this probe reads x from z[0], with an offset
    weights[-1] = [0.5, 0.1, 0.2]
    probe = HandProbe(np.zeros(8), np.ones(8), weights, ckpt.sha256, 0.0, 1)
    node = make_node(ckpt, hand_probe=str(probe.save(tmp_path / "p.npz")),
                     hand_servo_radius=0.01)
    feed = Feed(node)
    feed(1 * MS, ("goal_latent", goal(1 * MS)), ("joint_state", state(0, 1 * MS)))
    lat = latent(0, 5 * MS)
    assert len(feed(10 * MS, ("latent/front", lat))) == 1
    goal_z = node.brains[1].goal_z
    expected = np.clip(node.ee + probe(goal_z) - probe(lat.z), node.lo, node.hi)
    np.testing.assert_allclose(node.servo_est, expected, atol=1e-9)
    lat2 = latent(1, 15 * MS)
    feed(20 * MS, ("latent/front", lat2))  # averaged with the next reading
    second = np.clip(node.ee + probe(goal_z) - probe(lat2.z), node.lo, node.hi)
    np.testing.assert_allclose(node.servo_est, 0.5 * (expected + second), atol=1e-9)

    box = HandBox(np.array([0.3, -0.3, 0.0]), np.array([0.7, 0.3, 0.35]), 0.0,
                  torch.device("cpu"), prior_weight=100.0, radius=0.05)
    box.goal = torch.tensor([0.6, 0.0, 0.2])
    box.base = torch.tensor([0.5, 0.0, 0.2])
    box.servo, box.servo_radius = torch.tensor([0.5, 0.05, 0.2]), 0.01
    a = torch.zeros(1, 2, 4)
    pulling = float(box(a)[0])
    assert pulling == pytest.approx(100.0 * 2 * (0.1 - 0.05) ** 2, rel=1e-5)  # the coarse pull
    box.pulling = False
    assert float(box(a)[0]) == pytest.approx(100.0 * 2 * (0.05 - 0.01) ** 2, rel=1e-5)
    box.base = torch.tensor([0.5, 0.045, 0.2])
    assert float(box(a)[0]) == 0.0  # within the fine radius


def test_realtime_budget_applies_on_the_realtime_clock_only(ckpt: CheckpointInfo) -> None:
    rt = make_node(ckpt, clock="realtime", solve="inline", realtime_samples=8,
                   realtime_iterations=2)
    s = rt.summary()
    assert (s["samples"], s["iterations"]) == (8, 2)
    assert rt.brains[1].planner.cfg.elites == 4  # SMALL's elites fit in 8 samples
    ls = make_node(ckpt, realtime_samples=8, realtime_iterations=2)
    assert (ls.summary()["samples"], ls.summary()["iterations"]) == (16, 1)


def test_a_late_frame_is_planned_with_fewer_iterations_not_answered_late(
    ckpt: CheckpointInfo,
) -> None:
    def short_solves(clock: str, age_ns: int) -> int:
        node = make_node(ckpt, clock=clock, solve="inline", realtime_deadline_ms=200.0,
                         cem={**SMALL, "iterations": 3})
        feed = Feed(node)
        now = time.monotonic_ns() if clock == "realtime" else 10**9
        feed(now, ("goal_latent", goal(now - age_ns - 1)), ("joint_state", state(0, now)))
        assert len(feed(now, ("latent/front", latent(0, now - age_ns)))) == 1
        return node.summary()["short_solves"]

    assert short_solves("realtime", 0) == 0  # 0.2 s is ample for 3 small iterations
    assert short_solves("realtime", 300 * MS) == 1  # a frame 0.3 s old: one iteration
    assert short_solves("lockstep", 300 * MS) == 0  # graph time: no deadline


def task_goal(stamp: int, task: str = "push", obj: str = "red") -> Goal:
    """A goal as a person states it: the task, the block and the target; no image."""
    return Goal(stamp_ns=stamp, task=task, object=obj, target=np.array([0.5, 0.1, 0.025]),
                image=empty("u1", 0, 0, 3), z=empty("f4", 0), source="task")


def test_a_task_goal_is_planned_from_perceived_blocks(ckpt: CheckpointInfo, tmp_path: Path
                                                      ) -> None:
    from reflexarc.perception.hand import HandProbe
    from reflexarc.runtime.msgs import Objects

    weights = np.zeros((9, 3))
    weights[:3] = 0.01 * np.eye(3)  # this probe reads the hand from z[:3]
    probe = HandProbe(np.zeros(8), np.ones(8), weights, ckpt.sha256, 0.0, 1)
    node = make_node(ckpt, hand_probe=str(probe.save(tmp_path / "p.npz")))
    feed = Feed(node)
    assert feed(10 * MS, ("goal", task_goal(1 * MS)), ("joint_state", state(0, 1 * MS)),
                ("latent/front", latent(0, 5 * MS))) == []
    assert node.state() == "not_seen"  # the red block has not been seen yet
    red = Objects(stamp_ns=15 * MS, camera="front", names="green,red",
                  position=np.array([[0.5, -0.1, 0.025], [0.45, 0.0, 0.025]]),
                  confidence=np.array([1.0, 0.95], np.float32))
    plans = feed(20 * MS, ("objects/front", red), ("latent/front", latent(1, 15 * MS)))
    assert len(plans) == 1 and node.state() == "running"
    p = plans[0]
    assert node.layer is not None and node.layer.phase == "above"  # behind the red block, high
    assert np.all(p.gripper == -1.0)  # the push stage's closed fingers, as the layer says
    steps = np.linalg.norm(np.diff(p.ee_pos, axis=0), axis=1)
    assert np.all(steps <= 0.25 * 0.1 * np.sqrt(3) + 1e-6)  # at most the stage's speed
    s = node.summary()
    assert s["goal_kind"] == "task" and s["stages"] == {"above": 1}


def test_a_task_goal_needs_a_hand_probe(ckpt: CheckpointInfo) -> None:
    node = make_node(ckpt)
    feed = Feed(node)
    feed(10 * MS, ("goal", task_goal(1 * MS)), ("joint_state", state(0, 1 * MS)),
         ("latent/front", latent(0, 5 * MS)))
    assert node.state() == "no_goal" and "hand_probe" in node.summary()["goal_error"]
