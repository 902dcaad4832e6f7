"""The task planner node with plain objects: perceived blocks and a goal in, plans out."""

from __future__ import annotations

import numpy as np

from reflexarc.planner.task_node import TaskPlannerConfig, TaskPlannerNode
from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.runtime.msgs import Goal, JointState, Objects, empty
from reflexarc.runtime.node import Inbox, NodeContext

HOME_Q = robot_description("panda").home_q


def objects(stamp: int, seq: int) -> Objects:
    return Objects(seq=seq, stamp_ns=stamp, camera="front", names="red,green",
                   position=np.array([[0.5, 0.0, 0.025], [0.6, 0.2, 0.025]]),
                   confidence=np.array([0.95, 0.9], "f4"), render_us=100.0)


def test_each_frame_gives_a_plan_toward_the_stage_stamped_with_the_frame() -> None:
    node = TaskPlannerNode(NodeContext("planner", 500, clock="lockstep"), TaskPlannerConfig())
    inbox = Inbox()
    inbox.put("joint_state", JointState(stamp_ns=0, position=HOME_Q, velocity=np.zeros(7),
                                        effort=np.zeros(7), gripper=0.0), 0)
    assert list(node.step(0, inbox)) == [] and node.state() == "no_goal"
    inbox.put("goal", Goal(stamp_ns=10, task="push", object="red",
                           target=np.array([0.4, 0.0, 0.025]), image=empty("u1", 0, 0, 3),
                           z=empty("f4", 0)), 0)
    inbox.put("objects/front", objects(5, 0), 0)  # a frame from before the goal
    assert list(node.step(20, inbox)) == [] and node.state() == "no_objects"
    inbox.clear_new()
    inbox.put("objects/front", objects(30, 1), 0)
    (topic, plan), = node.step(40, inbox)
    assert topic == "plan" and plan.stamp_ns == 30 and plan.render_us == 100.0
    hand = ArmKinematics().fk(HOME_Q)[0]
    pos = plan.ee_pos
    np.testing.assert_allclose(pos[0], hand, atol=1e-9)  # from the measured hand
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    cfg = node.cfg
    assert np.all(steps <= cfg.layer.speed * cfg.control_dt_s + 1e-9)
    # toward the pre-push point behind the block (x 0.5 + standoff), high over the table
    goal = np.array([0.5 + cfg.layer.standoff, 0.0, cfg.layer.above_z])
    assert np.linalg.norm(pos[-1] - goal) < np.linalg.norm(pos[0] - goal)
    assert np.all(plan.gripper == -1.0)
    assert list(node.step(50, inbox)) == []  # no new frame: no new plan
    assert node.summary()["stages"] == {"above": 1}


def test_a_goal_it_cannot_pursue_is_counted_and_gives_no_plan() -> None:
    node = TaskPlannerNode(NodeContext("planner", 500, clock="lockstep"), TaskPlannerConfig())
    inbox = Inbox()
    inbox.put("goal", Goal(stamp_ns=1, task="push", object="", target=np.zeros(3),
                           image=empty("u1", 0, 0, 3), z=empty("f4", 0)), 0)
    inbox.put("objects/front", objects(2, 0), 0)
    assert list(node.step(3, inbox)) == []
    s = node.summary()
    assert s["goal_errors"] == 1 and "name of its block" in s["last_error"]
