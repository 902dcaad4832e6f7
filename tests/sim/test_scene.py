"""The Scene interface on both backends: joint-space control, cameras, full state."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.errors import ConfigError
from reflexarc.sim.assets import CAMERAS, SceneError, has_display
from reflexarc.sim.mujoco_scene import panda_model
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene


def test_reset_puts_the_arm_at_rest_at_home(scene: Scene) -> None:
    scene.reset()
    js = scene.joint_state()
    assert js.q.shape == js.dq.shape == js.tau.shape == (7,)
    np.testing.assert_allclose(js.q, PANDA.home_q, atol=1e-9)
    np.testing.assert_allclose(js.dq, 0.0, atol=1e-9)
    assert js.gripper == pytest.approx(0.08, abs=1e-6)
    pos, quat = scene.ee_pose()
    np.testing.assert_allclose(pos, [0.4, 0.0, 0.3], atol=1e-3)
    assert abs(quat[1]) == pytest.approx(1.0, abs=1e-3)  # 180 deg about x: pointing down
    assert scene.time == 0.0


def test_position_command_is_tracked_and_held(scene: Scene) -> None:
    scene.reset()
    target = PANDA.home_q + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.2, 0.3])
    scene.command_position(target)
    scene.step(int(2.0 / scene.dt))
    js = scene.joint_state()
    np.testing.assert_allclose(js.q, target, atol=5e-3)
    np.testing.assert_allclose(js.dq, 0.0, atol=1e-2)
    assert scene.time == pytest.approx(2.0)


def test_torques_are_clipped_to_the_effort_limits(scene: Scene) -> None:
    scene.reset()
    scene.command_torque(np.full(7, 1000.0))
    scene.step(2)
    tau = scene.joint_state().tau
    np.testing.assert_allclose(tau, PANDA.tau_limits, atol=1e-6)


def test_gripper_opens_and_closes(scene: Scene) -> None:
    scene.reset(gripper=1.0)
    scene.command_position(PANDA.home_q, gripper=-1.0)
    scene.step(int(1.0 / scene.dt))
    assert scene.joint_state().gripper < 0.005
    scene.command_position(PANDA.home_q, gripper=1.0)
    scene.step(int(1.0 / scene.dt))
    assert scene.joint_state().gripper > 0.075


@pytest.mark.parametrize("size", [64, 128])
def test_cameras_render_rgb_and_metric_depth(scene: Scene, size: int) -> None:
    scene.reset()
    rgb, depth = scene.render("front", size, depth=True)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert depth.shape == (size, size) and depth.dtype == np.float32
    assert rgb.std() > 10  # not a blank frame
    # the optical axis meets the table top (z = 0) at this depth
    cam = CAMERAS["front"]
    fwd = np.asarray(cam.forward) / np.linalg.norm(cam.forward)
    expected = cam.pos[2] / -fwd[2]
    centre = depth[size // 2 - 1 : size // 2 + 1, size // 2 - 1 : size // 2 + 1].mean()
    assert centre == pytest.approx(expected, abs=0.02)
    wrist_rgb, wrist_depth = scene.render("wrist", size, depth=True)
    assert wrist_rgb.shape == (size, size, 3)
    # the wrist camera looks straight down from about 0.3 m (+ hand offset) above the table
    assert 0.25 < float(np.median(wrist_depth)) < 0.45


def test_blocks_have_their_colours_in_the_image(scene: Scene) -> None:
    scene.reset(
        object_poses=np.array([[0.5, 0.0, 0.025]] * 1 + [[0.5, 0.15, 0.025], [0.5, -0.15, 0.025]])
    )
    rgb = scene.render("front", 128).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert np.sum((r > 150) & (g < 80) & (b < 80)) > 5  # red block
    assert np.sum((g > 120) & (r < 80) & (b < 100)) > 5  # green block
    assert np.sum((b > 150) & (r < 100) & (g < 120)) > 5  # blue block


def test_snapshot_and_restore_replay_exactly(scene: Scene) -> None:
    scene.reset()
    scene.command_position(PANDA.home_q + 0.2, gripper=-1.0)
    scene.step(50)
    snap = scene.snapshot()

    def run() -> np.ndarray:
        scene.step(200)
        js = scene.joint_state()
        return np.concatenate([js.q, js.dq, scene.object_poses().ravel(), [scene.time]])

    first = run()
    scene.restore(snap)
    second = run()
    np.testing.assert_array_equal(first, second)
    scene.discard(snap)


def test_objects_can_be_placed_and_read_back(scene: Scene) -> None:
    scene.reset()
    poses = np.array(
        [
            [0.45, 0.1, 0.025, 1, 0, 0, 0],
            [0.55, -0.1, 0.025, 0.9239, 0, 0, 0.3827],
            [0.6, 0.2, 0.025, 1, 0, 0, 0],
        ]
    )
    scene.set_object_poses(poses)
    got = scene.object_poses()
    np.testing.assert_allclose(got[:, :3], poses[:, :3], atol=1e-6)
    np.testing.assert_allclose(
        np.abs(
            got[:, 3:] @ (poses[:, 3:] / np.linalg.norm(poses[:, 3:], axis=1, keepdims=True)).T
        ).diagonal(),
        1.0,
        atol=1e-4,
    )
    scene.step(250)  # resting blocks stay put
    np.testing.assert_allclose(scene.object_poses()[:, :3], poses[:, :3], atol=2e-3)


def test_bad_input_is_refused_with_scene_errors(scene: Scene) -> None:
    with pytest.raises(SceneError, match="7 finite"):
        scene.command_torque(np.zeros(6))
    with pytest.raises(SceneError, match="7 finite"):
        scene.command_position(np.full(7, np.nan))
    with pytest.raises(SceneError, match="no camera"):
        scene.render("top")
    with pytest.raises(SceneError, match="image size"):
        scene.render("front", 8)
    with pytest.raises(SceneError, match="object poses"):
        scene.set_object_poses(np.zeros((2, 3)))
    with pytest.raises(SceneError, match="mode"):
        scene.apply("velocity", PANDA.home_q, np.zeros(7), 1.0)


def test_scene_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="objects"):
        make_scene(objects=["purple"])
    with pytest.raises(ConfigError, match="physics_hz"):
        make_scene(physics_hz=100)
    with pytest.raises(ConfigError, match="cameras"):
        make_scene(cameras=["top"])
    if not has_display():
        with pytest.raises(SceneError, match="display"):
            make_scene(gui=True)


def test_panda_model_matches_both_scenes(scene: Scene) -> None:
    """The robot-alone MjModels (the description's, for controllers and planners, and the
    sim's with actuators) have the scenes' kinematics."""
    model = panda_model()
    assert model.nq == model.nv == 9
    assert model.site(PANDA.ee_site).id >= 0
    rng = np.random.default_rng(0)
    for kin in (ArmKinematics(PANDA, model), ArmKinematics()):
        for _ in range(5):
            q = PANDA.home_q + rng.uniform(-0.5, 0.5, 7)
            scene.set_joint_positions(q)
            pos, _ = kin.fk(q)
            np.testing.assert_allclose(scene.ee_pose()[0], pos, atol=1e-6)
