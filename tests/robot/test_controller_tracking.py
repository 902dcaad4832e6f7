"""Tracking: a step and a circle of EE setpoints in closed loop with each backend's scene
(commands applied two ticks late, as over the bus), within stated tolerances.

Tolerances (measured: step overshoot 0.5 mm, settles to 1 mm in 0.51 s, final 0.05 mm;
circle r = 8 cm at 0.25 m/s: RMS 0.36 mm, max 0.44 mm, in both backends):
"""

from __future__ import annotations

import pytest

from reflexarc.planner.tracking import CIRCLE, STEP, circle_metrics, closed_loop, step_metrics

STEP_OVERSHOOT_MM = 2.0
STEP_SETTLE_S = 0.8  # to within 1 mm of a 15 cm step (speed 0.5 m/s, acceleration 2 m/s^2)
STEP_FINAL_MM = 0.2
CIRCLE_RMS_MM = 1.0
CIRCLE_MAX_MM = 1.5


@pytest.mark.parametrize("backend", ["mujoco", "pybullet"])
def test_step_and_circle_are_tracked_within_tolerance(backend: str) -> None:
    step = closed_loop(backend, STEP, 1.5, delay_ticks=2)
    m = step_metrics(step, STEP)
    assert m["overshoot_mm"] < STEP_OVERSHOOT_MM, m
    assert m["settle_1mm_s"] < STEP_SETTLE_S, m
    assert m["final_err_mm"] < STEP_FINAL_MM, m
    circle = closed_loop(backend, CIRCLE, 2.7, delay_ticks=2)
    c = circle_metrics(circle, CIRCLE)
    assert c["rms_err_mm"] < CIRCLE_RMS_MM, c
    assert c["max_err_mm"] < CIRCLE_MAX_MM, c
    assert step.summary["safety_events"].keys() <= {"velocity_limit", "torque_limit"}
