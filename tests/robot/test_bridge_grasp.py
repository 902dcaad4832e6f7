"""A successful grasp on the pretend arm, through the bridge as on a real arm (docs/drivers.md):
the gripper homes (calibrate), the operator gives the signed go, the arm moves to the start
pose, the block is found in a camera frame the bridge published (perception's detector,
through the camera's calibration and depth), the hand goes down to it, a grasp of a 5 cm
object with 20 N holds it, and the arm lifts it off the table."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reflexarc.perception.calibration import CameraCalibration
from reflexarc.perception.objects import ObjectDetector
from reflexarc.robot.authority import Operator
from reflexarc.robot.bridge import BridgeConfig, BridgeNode
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.msgs import GripperCommand, JointCommand
from reflexarc.runtime.node import NodeContext
from reflexarc.sim.pretend_arm import PretendDriver
from tests.robot.bridge_run import BridgeRun

OPERATOR = Operator.generate()
HOME = np.asarray(PANDA.home, dtype=float)


class _Run(BridgeRun):
    def __init__(self, node: BridgeNode) -> None:
        super().__init__(node)
        self.seq = 0

    def go(self, q_to: np.ndarray, seconds: float) -> None:
        """Position commands on a straight line in joint space to ``q_to``, then hold there."""
        q_from = self.last("joint_state").position.copy()
        t0 = time.monotonic()

        def tick() -> bool:
            s = min(1.0, (time.monotonic() - t0) / seconds)
            self.seq += 1
            self.put("joint_command", JointCommand(
                seq=self.seq, stamp_ns=time.monotonic_ns(), mode="position",
                position=q_from + s * (q_to - q_from), velocity=np.zeros(7), effort=np.zeros(7)))
            return s >= 1.0 and np.abs(self.last("joint_state").position - q_to).max() < 0.01

        self.until(tick, seconds + 20)


@pytest.mark.slow
def test_pretend_arm_homes_waits_for_the_go_and_grasps_a_block_it_sees() -> None:
    cfg = BridgeConfig(operator_key=OPERATOR.public_hex(), start_position=HOME.tolist(),
                       start_speed=0.5, command_timeout_s=0.5, camera_hz=30)
    cfg.validate()
    driver = PretendDriver(camera_hz=30, depth=True, objects=["red"], layout="pick_place", seed=4,
                           hold_after_s=0.5)
    node = BridgeNode(NodeContext(name="bridge", rate_hz=1000.0), cfg, driver=driver)
    run = _Run(node)
    kin = ArmKinematics()
    try:
        # homing: the gripper found its range at connect; the arm waits for the go
        assert node.calibration["gripper_max_width_m"] == pytest.approx(0.08, abs=0.002)
        run.until(lambda: any(t == "joint_state" for _, t, _ in run.out), 30)
        assert node.phase == "acknowledge"
        run.put("estop", OPERATOR.release())
        run.until(lambda: node.phase == "running", 30)
        np.testing.assert_allclose(run.last("joint_state").position, HOME, atol=cfg.start_tolerance)
        # the block, as perception sees it in a frame the bridge published (capture stamp, depth)
        n0 = len(run.out)
        run.until(lambda: any(t == "camera/front" for _, t, _ in run.out[n0:]), 5)
        frame = run.last("camera/front")
        assert frame.depth.shape == frame.rgb.shape[:2]
        detector = ObjectDetector(CameraCalibration.load("sim-front-mujoco"))
        seen = {d.name: d.position for d in detector.detect(frame.rgb, frame.depth)}
        block = seen["red"]
        # above it, down, a grasp with width and force, then lift
        q_above = kin.solve(np.array([block[0], block[1], 0.12]), q0=HOME).q
        q_down = kin.solve(np.array([block[0], block[1], 0.02]), q0=q_above).q
        run.go(q_above, 2.0)
        run.go(q_down, 1.5)
        run.put("gripper_command", GripperCommand(seq=1, width=0.05, speed=0.1, force=20.0,
                                                  epsilon=0.01))
        run.until(lambda: node.counts["held"] == 1, 15)
        held = run.last("gripper_state")
        assert held.grasped and held.command_seq == 1 and held.force == 20.0
        assert held.width == pytest.approx(0.05, abs=0.01)
        run.go(q_above, 2.0)
        t0 = time.monotonic()
        run.until(lambda: time.monotonic() - t0 > 0.5, 5)
        assert run.last("gripper_state").grasped  # still holding it, up in the air
    finally:
        summary = node.summary()
    # two calls of the driver's grasp: the opening move the joint commands' gripper (1.0,
    # open) asked for (the bridge maps it: gripper=auto), then the grasp; one held an object
    assert summary["held"] == 1 and summary["grasps"] == 2 and summary["gripper"]["grasped"]
    assert summary["unstamped_frames"] == 0 and summary["beyond_limits"]["velocity"] == 0
    # the world's truth, as a person watching would score it: the block is off the table
    start, end = (np.array(summary[k]["red"]) for k in ("arm_blocks_start", "arm_blocks_end"))
    assert np.linalg.norm(start[:2] - block[:2]) < 0.01  # perception placed it within 1 cm
    assert end[2] > start[2] + 0.05, (start, end)
