"""The bridge's start-up with the pretend arm as a real process: calibration, the
operator's acknowledgement, the move to start, then a gripper move and a grasp with width
and force, and camera frames stamped when they were captured."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reflexarc.robot.authority import Operator
from reflexarc.robot.bridge import BridgeConfig, BridgeNode
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EStop, GripperCommand, JointCommand
from reflexarc.runtime.node import NodeContext
from reflexarc.sim.pretend_arm import PretendDriver
from tests.robot.bridge_run import BridgeRun as _Run

OPERATOR = Operator.generate()


def test_acknowledgement_is_on_by_default_and_needs_the_operator_key() -> None:
    with pytest.raises(ConfigError, match="acknowledge.*operator_key"):
        BridgeConfig().validate()
    BridgeConfig(acknowledge=False).validate()
    BridgeConfig(operator_key=OPERATOR.public_hex()).validate()
    with pytest.raises(ConfigError, match="start_position.*2 values for 7 joints"):
        BridgeConfig(acknowledge=False, start_position=[0.0, 1.0]).validate()


@pytest.mark.slow
def test_pretend_arm_calibrates_waits_for_the_go_moves_to_start_and_grasps() -> None:
    home = np.array([0.0, -0.4207, 0.0, -2.5762, 0.0, 2.1555, 0.7854])
    start = home + np.array([0.25, 0.1, 0.0, 0.0, 0.0, 0.0, -0.2])
    cfg = BridgeConfig(operator_key=OPERATOR.public_hex(), start_position=start.tolist(),
                       start_speed=0.5, command_timeout_s=0.2, camera_hz=30,
                       gripper="joint")  # only the gripper_commands below move the fingers
    cfg.validate()
    node = BridgeNode(NodeContext(name="bridge", rate_hz=1000.0), cfg,
                      driver=PretendDriver(camera_hz=30))
    run = _Run(node)
    try:
        run.until(lambda: sum(t == "joint_state" for _, t, _ in run.out) > 200, 60)
        assert node.calibration["gripper_max_width_m"] == pytest.approx(0.08, abs=0.002)
        # no motion before the operator's go: the graph's commands are ignored
        q0 = run.last("joint_state").position.copy()
        hold = JointCommand(seq=1, mode="position", position=start, velocity=np.zeros(7),
                            effort=np.zeros(7))
        run.put("joint_command", hold)
        run.put("estop", EStop(engage=False, reason="no signature"))
        t0 = time.monotonic()
        run.until(lambda: time.monotonic() - t0 > 0.5, 5)
        assert node.phase == "acknowledge" and node.counts["releases_refused"] == 1
        assert node.counts["ignored_before_start"] == 1 and node.counts["commands"] == 0
        np.testing.assert_allclose(run.last("joint_state").position, q0, atol=1e-3)
        # the go: the bridge brings the arm to the start pose itself, then lets the graph in
        run.put("estop", OPERATOR.release())
        run.until(lambda: node.phase == "running", 20)
        np.testing.assert_allclose(run.last("joint_state").position, start,
                                   atol=cfg.start_tolerance)
        assert node.counts["commands"] == 0  # the move was the bridge's, not the graph's
        # a command made from a frame carries the frame's capture stamp: its age at the arm
        # is frame-to-command (here the test's own turnaround, the frame's age included)
        frame = run.last("camera/front")
        run.put("joint_command", JointCommand(seq=2, stamp_ns=frame.stamp_ns, mode="position",
                                              position=start, velocity=np.zeros(7),
                                              effort=np.zeros(7)))
        sent = time.monotonic_ns()
        run.until(lambda: node.counts["commands"] == 1, 2)
        age = node.command_age.percentiles([50])[0]
        assert (sent - frame.stamp_ns) / 1e6 <= age <= (time.monotonic_ns() - frame.stamp_ns) / 1e6
        # the gripper: a move to 3 cm (no force), then a grasp of a 3 cm object on nothing
        run.put("gripper_command", GripperCommand(seq=1, width=0.03, speed=0.05, force=0.0))
        moved = run.settled_gripper(10)
        assert moved.width == pytest.approx(0.03, abs=0.002) and not moved.grasped
        assert moved.command_seq == 1 and moved.force == 0.0
        run.put("gripper_command", GripperCommand(seq=2, width=0.03, speed=0.05, force=40.0))
        empty = run.settled_gripper(10)
        assert empty.width < 0.005 and node.counts["grasps"] == 2
        assert not empty.grasped and empty.force == 0.0  # closed on nothing: no grasp
        # frames carry their capture stamps, earlier than the tick that published them
        frames = [(now, m) for now, t, m in run.out if t == "camera/front"]
        assert len(frames) > 30
        ages = np.array([(now - m.stamp_ns) / 1e6 for now, m in frames])
        assert np.all(ages > 0) and node.counts["unstamped_frames"] == 0
    finally:
        summary = node.summary()
    assert summary["frame_age_ms_p50"] > 0 and summary["phase"] == "running"
