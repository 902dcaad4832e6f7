"""Calibration files: the shipped ones are the simulated cameras', rays and projections agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from reflexarc.perception.calibration import CalibrationError, CameraCalibration
from reflexarc.sim.calibration import PRINCIPAL_OFFSET, camera_calibration, shipped_name


@pytest.mark.parametrize("backend", sorted(PRINCIPAL_OFFSET))
def test_the_shipped_files_are_the_scene_cameras(backend: str) -> None:
    shipped = CameraCalibration.load(shipped_name("front", backend))
    made = camera_calibration("front", backend)
    np.testing.assert_allclose(shipped.K, made["K"], atol=1e-8)
    np.testing.assert_allclose(shipped.T_base_camera, made["T_base_camera"], atol=1e-8)
    # the camera looks down at the workspace, from in front of it
    assert shipped.position[2] > 0.3 and shipped.T_base_camera[2, 2] < 0


def test_a_ray_through_a_points_pixel_passes_through_the_point() -> None:
    calib = CameraCalibration.load("sim-front-mujoco")
    pts = np.array([[0.5, 0.0, 0.025], [0.4, 0.2, 0.1], [0.6, -0.2, 0.0]])
    uv = calib.project(pts)
    back = calib.on_plane(uv, pts[:, 2])
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_scaling_keeps_the_pixel_of_a_point_in_proportion() -> None:
    calib = CameraCalibration.load("sim-front-mujoco")
    big = calib.scaled(128, 128)
    p = np.array([[0.45, 0.05, 0.025]])
    # pixel centres at integers: u128 + 0.5 = 2 (u64 + 0.5)
    np.testing.assert_allclose(big.project(p) + 0.5, 2 * (calib.project(p) + 0.5), atol=1e-9)
    with pytest.raises(CalibrationError, match="aspect"):
        calib.scaled(128, 96)


def test_bad_files_name_what_is_wrong(tmp_path: Path) -> None:
    good = camera_calibration("front", "mujoco")
    path = tmp_path / "cam.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in good.items() if k != "K"}))
    with pytest.raises(CalibrationError, match="missing K"):
        CameraCalibration.load(path)
    bad_rot = {**good, "T_base_camera": np.diag([1.0, 1.0, -1.0, 1.0]).tolist()}
    path.write_text(yaml.safe_dump(bad_rot))
    with pytest.raises(CalibrationError, match="proper rotation"):
        CameraCalibration.load(path)
    with pytest.raises(CalibrationError, match="shipped name"):
        CameraCalibration.load("no-such-camera")
