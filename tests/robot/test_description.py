"""Robot descriptions: the Panda's facts agree with its URDF, bad descriptions are refused,
and names resolve through the registry."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from reflexarc.robot.description import (
    RobotDescription,
    RobotError,
    register,
    robot_description,
    robot_names,
)
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.errors import ConfigError


def _urdf_joints() -> dict[str, ET.Element]:
    root = ET.fromstring(PANDA.urdf_path().read_text())
    return {j.get("name"): j for j in root.iter("joint")}


def test_panda_limits_are_the_urdf_soft_limits_inside_its_hard_stops() -> None:
    """Franka's published limits are the URDF's safety_controller limits; the URDF's
    <limit> (the simulated stops) are wider; efforts and speeds are the URDF's."""
    joints = _urdf_joints()
    for i, name in enumerate(PANDA.arm_joints):
        j = joints[name]
        soft, hard = j.find("safety_controller"), j.find("limit")
        assert soft is not None and hard is not None
        assert PANDA.q_min[i] == pytest.approx(float(soft.get("soft_lower_limit")))
        assert PANDA.q_max[i] == pytest.approx(float(soft.get("soft_upper_limit")))
        assert float(hard.get("lower")) <= PANDA.q_min[i] < PANDA.q_max[i] <= float(hard.get("upper"))
        assert PANDA.tau_max[i] == pytest.approx(float(hard.get("effort")))
        assert PANDA.dq_max[i] == pytest.approx(float(hard.get("velocity")))
    assert PANDA.gripper is not None
    for name in PANDA.gripper.joints:
        hard = joints[name].find("limit")
        assert PANDA.gripper.finger_max == pytest.approx(float(hard.get("upper")))
        assert PANDA.gripper.force == pytest.approx(float(hard.get("effort")))


def test_panda_home_points_the_hand_down_at_the_workspace_start() -> None:
    from reflexarc.robot.kinematics import ArmKinematics

    pos, rot = ArmKinematics(PANDA).fk(PANDA.home_q)
    np.testing.assert_allclose(pos, [0.4, 0.0, 0.3], atol=1e-3)
    np.testing.assert_allclose(rot, PANDA.ee_down_rot, atol=1e-3)
    box = PANDA.workspace_box
    assert np.all(box[:, 0] <= pos) and np.all(pos <= box[:, 1])


def test_the_model_has_the_arm_then_the_fingers_and_the_ee_site() -> None:
    model = PANDA.mj_model()
    names = [model.joint(i).name for i in range(model.njnt)]
    assert names == [*PANDA.arm_joints, *PANDA.gripper.joints]
    assert model.site(PANDA.ee_site).bodyid == model.body(PANDA.ee_link).id


def test_arrays_are_copies_and_the_description_is_frozen() -> None:
    PANDA.home_q[0] = 99.0
    assert PANDA.home[0] == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        PANDA.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kp": (1.0,) * 6}, "kp needs 7"),
        ({"home": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)}, "outside the joint limits"),
        ({"q_max": PANDA.q_min}, "below q_max"),
        ({"dq_max": (0.0,) * 7}, "dq_max must be > 0"),
        ({"workspace": ((0.0, 1.0), (1.0, 0.0), (0.0, 1.0))}, "workspace"),
        ({"arm_joints": ()}, "no arm joints"),
    ],
)
def test_inconsistent_descriptions_are_refused(change: dict, problem: str) -> None:
    with pytest.raises(RobotError, match=problem):
        dataclasses.replace(PANDA, **change)


def test_the_registry_resolves_names_and_names_the_known_ones() -> None:
    assert robot_description("panda") is PANDA
    with pytest.raises(ConfigError, match="known: .*panda"):
        robot_description("nope")
    six = register(dataclasses.replace(
        PANDA, name="panda6-test", arm_joints=PANDA.arm_joints[:6], **{
            k: getattr(PANDA, k)[:6]
            for k in ("home", "q_min", "q_max", "dq_max", "ddq_max", "tau_max", "kp", "kd")
        }))
    assert robot_description("panda6-test") is six and six.dof == 6
    assert "panda6-test" in robot_names()


def test_a_missing_urdf_is_named() -> None:
    bad = dataclasses.replace(PANDA, urdf="franka_panda/missing.urdf")
    with pytest.raises(RobotError, match="missing.urdf"):
        bad.urdf_path()


def test_controller_config_takes_the_robot_by_name() -> None:
    from reflexarc.robot.controller import ControllerNode
    from reflexarc.runtime.config import from_mapping

    with pytest.raises(ConfigError, match="robot"):
        from_mapping(ControllerNode.Config, {"robot": "nope"})
    with pytest.raises(ConfigError, match="7 finite values"):
        from_mapping(ControllerNode.Config, {"kp": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="max_speed"):
        from_mapping(ControllerNode.Config, {"max_speed": 2.0})


def test_description_is_a_plain_dataclass() -> None:
    assert dataclasses.is_dataclass(RobotDescription)
