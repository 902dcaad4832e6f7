"""The UFactory xArm6 with its gripper: the URDF shipped in pybullet_data
(``xarm/xarm6_with_gripper.urdf``) and UFactory's published joint ranges.

The joint ranges, speeds and efforts are the URDF's ``<limit>`` elements, which are the
published ones (joints 1, 4 and 6: +-360 deg; joint 2: -118 to 120 deg; joint 3: -225 to
11 deg; joint 5: -97 to 180 deg; 180 deg/s). The end-effector frame is the gripper's base
at the flange (the URDF has no tool-centre link). The gripper is a linkage of six revolute
joints (``drive_joint`` and five that mimic it), not two prismatic fingers, so the
description carries none: the arm, its kinematics, limits and gains are described; the
scenes and the gripper's linkage are not done yet (docs/robots.md, "The xArm6").
"""

from __future__ import annotations

from reflexarc.robot.description import RobotDescription

DESCRIPTION = RobotDescription(
    name="xarm6",
    urdf="xarm/xarm6_with_gripper.urdf",
    arm_joints=tuple(f"joint{i}" for i in range(1, 7)),
    ee_link="xarm_gripper_base_link",  # at the flange; the fingertips are 0.17 m further
    hand_link="link6",
    # the flange points down at (0.4, 0, 0.3), as the Panda's end effector at its home
    home=(0.0, -0.1477, -0.7303, 0.0, 0.8782, 0.0),
    q_min=(-6.2832, -2.059, -3.927, -6.2832, -1.69297, -6.2832),
    q_max=(6.2832, 2.0944, 0.19198, 6.2832, 3.14159, 6.2832),
    dq_max=(3.14, 3.14, 3.14, 3.14, 3.14, 3.14),
    ddq_max=(20.0, 20.0, 20.0, 20.0, 20.0, 20.0),
    tau_max=(50.0, 50.0, 32.0, 32.0, 32.0, 20.0),
    dtau_max=1000.0,
    # joint PD: critically damped at 25 rad/s for the diagonal of the mass matrix at home
    # ([0.486, 0.704, 0.579, 0.010, 0.033, 0.001] kg m^2), the wrist's floored at 20 N m/rad
    kp=(300.0, 440.0, 360.0, 20.0, 21.0, 20.0),
    kd=(24.0, 35.0, 29.0, 2.0, 2.0, 1.5),
    workspace=((0.2, 0.55), (-0.3, 0.3), (0.15, 0.4)),  # every corner reachable flange-down
    gripper=None,
    ee_speed_max=1.0,  # UFactory's published TCP speed
    ee_site="ee",
    ee_down=(0.0, 1.0, 0.0, 0.0),  # a half turn about x: the flange's z points down
)

XARM6 = DESCRIPTION
