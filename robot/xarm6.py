"""The UFactory xArm6 with its gripper: the URDF shipped in pybullet_data
(``xarm/xarm6_with_gripper.urdf``) and UFactory's published joint ranges.

The joint ranges, speeds and efforts are the URDF's ``<limit>`` elements, which are the
published ones (joints 1, 4 and 6: +-360 deg; joint 2: -118 to 120 deg; joint 3: -225 to
11 deg; joint 5: -97 to 180 deg; 180 deg/s). The end-effector frame is the tool-centre
point between the closed fingertips, 0.172 m beyond the flange along its axis (the URDF
has no tool-centre link; the closed fingertips reach 0.1745 m). The gripper is a linkage:
``drive_joint`` turns from 0 (open, 88 mm between the pads) to 0.85 rad (closed) and five
revolute joints mimic it one to one (docs/robots.md, "The xArm6").
"""

from __future__ import annotations

from reflexarc.robot.description import Gripper, RobotDescription

_GRIPPER_JOINTS = ("drive_joint", "left_finger_joint", "left_inner_knuckle_joint",
                   "right_outer_knuckle_joint", "right_finger_joint", "right_inner_knuckle_joint")

DESCRIPTION = RobotDescription(
    name="xarm6",
    urdf="xarm/xarm6_with_gripper.urdf",
    arm_joints=tuple(f"joint{i}" for i in range(1, 7)),
    ee_link="xarm_gripper_base_link",  # the gripper's base, at the flange
    ee_offset=(0.0, 0.0, 0.172),  # the tool-centre point between the closed fingertips
    hand_link="link6",
    # the fingers point down, closing along world y, the tool centre at (0.4, 0, 0.3)
    home=(0.0, -0.2789, -1.1086, 0.0, 1.3875, 0.0),
    q_min=(-6.2832, -2.059, -3.927, -6.2832, -1.69297, -6.2832),
    q_max=(6.2832, 2.0944, 0.19198, 6.2832, 3.14159, 6.2832),
    dq_max=(3.14, 3.14, 3.14, 3.14, 3.14, 3.14),
    ddq_max=(20.0, 20.0, 20.0, 20.0, 20.0, 20.0),
    tau_max=(50.0, 50.0, 32.0, 32.0, 32.0, 20.0),
    dtau_max=1000.0,
    # joint PD: critically damped at 25 rad/s for the diagonal of the mass matrix at home
    # ([0.470, 0.925, 0.536, 0.022, 0.033, 0.001] kg m^2), the wrist's stiffness floored at
    # 20 N m/rad; joint 6's damping at 0.2 N m s/rad (damping ratio 0.7): on its
    # 0.001 kg m^2 the explicit 2 ms step of the scenes' PD diverges in contact from 0.5
    kp=(300.0, 580.0, 340.0, 20.0, 21.0, 20.0),
    kd=(24.0, 46.0, 27.0, 2.0, 2.0, 0.2),
    # every corner reachable with the fingers pointing down
    workspace=((0.2, 0.55), (-0.28, 0.28), (0.0, 0.3)),
    # blocks spawn 5 cm inside this table area and targets lie in it: the arm reaches
    # behind a block at its edge and pushes it through
    table_area=((0.28, 0.52), (-0.2, 0.2)),
    gripper=Gripper(
        joints=_GRIPPER_JOINTS,
        finger_max=0.044,  # 88 mm between the pads when open
        force=10.0,  # N m on each joint
        open_q=(0.0,) * 6,
        closed_q=(0.85,) * 6,
        mimic=True,
        # a soft servo on the light linkage, kd on each joint: it closes in about 0.5 s
        kp=4.0,
        kd=0.15,
    ),
    ee_speed_max=1.0,  # UFactory's published TCP speed
    ee_site="ee",
    ee_down=(0.0, 1.0, 0.0, 0.0),  # a half turn about x: the flange's z points down
    dark_links=("link6", "xarm_gripper_base_link"),
    gripper_links=("link6", "xarm_gripper_base_link", "left_outer_knuckle", "left_finger",
                   "left_inner_knuckle", "right_outer_knuckle", "right_finger",
                   "right_inner_knuckle"),
    finger_links=("left_finger", "right_finger"),
    no_collision_links=("link_base", "link1", "link2", "link3", "link4"),
    wrist_camera=(0.07, 0.0, 0.02),
)

XARM6 = DESCRIPTION
