"""The Franka Emika Panda: the URDF shipped in pybullet_data (``franka_panda/panda.urdf``)
and Franka's published limits.

Joint position limits are Franka's published ones ("Robot and interface specifications",
Franka Control Interface documentation), which are also the URDF's ``safety_controller``
soft limits. The URDF's ``<limit>`` elements are wider (e.g. joint 4 up to 0 rad instead
of -0.0698): they stay the simulated mechanical stops of the compiled models, while every
command, IK solution and safety check keeps within the published ones
(docs/robots.md).
"""

from __future__ import annotations

from reflexarc.robot.description import Gripper, RobotDescription

DESCRIPTION = RobotDescription(
    name="panda",
    urdf="franka_panda/panda.urdf",
    arm_joints=tuple(f"panda_joint{i}" for i in range(1, 8)),
    ee_link="panda_grasptarget",  # between the fingertips, 0.105 m below the flange
    hand_link="panda_hand",
    # the hand points down, fingers closing along world y, end effector at (0.4, 0, 0.3)
    home=(0.0, -0.4207, 0.0, -2.5762, 0.0, 2.1555, 0.7854),
    q_min=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    q_max=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    dq_max=(2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100),
    ddq_max=(15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0),
    tau_max=(87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0),  # also the URDF's effort limits
    dtau_max=1000.0,
    # Joint PD of the scenes' position mode (and the controller's diagonal impedance):
    # critically damped at 25 rad/s for the diagonal of the mass matrix at home
    # ([1.73, 2.19, 1.67, 1.72, 0.81, 0.74, 0.60] kg m^2; the URDF's inertias are large).
    # Stiffer gains make the joint-1/joint-3 null-space mode ring at 500 Hz.
    kp=(1100.0, 1400.0, 1050.0, 1100.0, 500.0, 450.0, 375.0),
    kd=(85.0, 110.0, 85.0, 85.0, 40.0, 37.0, 30.0),
    workspace=((0.25, 0.75), (-0.35, 0.35), (0.0, 0.5)),
    gripper=Gripper(joints=("panda_finger_joint1", "panda_finger_joint2"), finger_max=0.04,
                    force=20.0),
    ee_speed_max=1.7,  # Franka's published Cartesian limits
    ee_accel_max=13.0,
    ee_rot_speed_max=2.5,
    ee_site="ee",
    ee_down=(0.0, 1.0, 0.0, 0.0),  # a half turn about x
    collision_meshes=("meshes/visual/", "meshes/collision/"),
    dark_links=("panda_link7", "panda_hand", "panda_leftfinger", "panda_rightfinger"),
    gripper_links=("panda_hand", "panda_leftfinger", "panda_rightfinger"),
    finger_links=("panda_leftfinger", "panda_rightfinger"),
    no_collision_links=tuple(f"panda_link{i}" for i in range(7)),
    wrist_camera=(0.06, 0.0, 0.02),
)

PANDA = DESCRIPTION
