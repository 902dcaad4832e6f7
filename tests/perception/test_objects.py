"""Object perception on rendered frames of both backends, against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.perception.calibration import CameraCalibration
from reflexarc.perception.objects import ObjectDetector
from reflexarc.sim.calibration import PRINCIPAL_OFFSET, shipped_name
from reflexarc.sim.scene import SceneConfig
from reflexarc.sim.scenes import make_scene
from reflexarc.sim.tasks import make_task


@pytest.fixture(scope="module", params=sorted(PRINCIPAL_OFFSET))
def scene(request: pytest.FixtureRequest):
    s = make_scene(SceneConfig(backend=request.param, objects=["red", "green", "blue"]))
    yield s
    s.close()


def errors(scene, size: int, depth: bool, seeds: range) -> np.ndarray:
    det = ObjectDetector(CameraCalibration.load(shipped_name("front", scene.backend)))
    task = make_task("push")
    out = []
    for seed in seeds:
        task.reset(scene, np.random.default_rng(seed))
        truth = scene.object_poses()[:, :3]
        if depth:
            rgb, d = scene.render("front", size, depth=True)
        else:
            rgb, d = scene.render("front", size), None
        found = {x.name: x for x in det.detect(rgb, d)}
        assert sorted(found) == sorted(scene.object_names)  # every block, no other
        for i, name in enumerate(scene.object_names):
            assert 0.5 < found[name].confidence <= 1.0
            out.append(np.linalg.norm(found[name].position - truth[i]))
    return np.array(out)


@pytest.mark.parametrize(("size", "depth"), [(64, False), (64, True)])
def test_blocks_are_placed_within_a_centimetre_or_two(scene, size: int, depth: bool) -> None:
    err = errors(scene, size, depth, range(8))
    assert np.percentile(err, 50) < 0.01 and np.percentile(err, 95) < 0.02


def test_a_lifted_block_is_placed_by_depth_not_on_the_table(scene) -> None:
    det = ObjectDetector(CameraCalibration.load(shipped_name("front", scene.backend)))
    make_task("push").reset(scene, np.random.default_rng(3))
    poses = scene.object_poses()
    poses[0, 2] += 0.1  # held 10 cm up
    scene.set_object_poses(poses)
    rgb, d = scene.render("front", 64, depth=True)
    red = {x.name: x for x in det.detect(rgb, d)}["red"]
    assert np.linalg.norm(red.position - poses[0, :3]) < 0.02
    flat = {x.name: x for x in det.detect(rgb)}["red"]  # without depth: assumed resting
    assert abs(flat.position[2] - 0.025) < 1e-9


def test_a_blank_frame_has_no_blocks() -> None:
    det = ObjectDetector(CameraCalibration.load("sim-front-mujoco"))
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert det.detect(grey) == []
