"""``reflexarc bench sim``: physics and rendering speed of each backend.

One row per (backend, resolution): physics steps per second of the 3-block scene
holding a joint position command (the envs' mode; in PyBullet this includes the joint
PD and inverse dynamics computed in Python each step), the real-time factor at the
scene's physics rate, and milliseconds per frame of the front camera (RGB, RGB + depth)
and of the wrist camera. Renderer start-up is excluded. Timings are noisy on a shared
machine: compare backends and resolutions within one run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reflexarc.sim.scene import Scene, make_scene

BACKENDS = ("mujoco", "pybullet")
RESOLUTIONS = (64, 128, 224)


def _physics_rate(scene: Scene, steps: int) -> float:
    scene.reset()
    q = scene.joint_state().q + 0.05  # a small move, so the PD is doing work
    scene.command_position(q, gripper=-1.0)
    scene.step(10)
    t0 = time.perf_counter()
    scene.step(steps)
    return steps / (time.perf_counter() - t0)


def _render_ms(scene: Scene, camera: str, size: int, frames: int, depth: bool = False) -> float:
    scene.render(camera, size, depth=depth)  # warm up (renderer creation)
    t0 = time.perf_counter()
    for _ in range(frames):
        scene.render(camera, size, depth=depth)
    return 1e3 * (time.perf_counter() - t0) / frames


def bench_sim(cfg: Any) -> list[dict[str, Any]]:
    """Rows of backend, resolution, physics_steps_per_s, realtime_factor, render_ms,
    render_depth_ms, wrist_render_ms. ``cfg.quick``: a short run (tests)."""
    quick = bool(getattr(cfg, "quick", False))
    steps = 200 if quick else 5000
    frames = 3 if quick else 50
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        scene = make_scene(
            backend=backend, objects=["red", "green", "blue"], cameras=["front", "wrist"]
        )
        try:
            rate = _physics_rate(scene, steps)
            for size in RESOLUTIONS:
                rows.append(
                    {
                        "backend": backend,
                        "resolution": size,
                        "physics_steps_per_s": rate,
                        "realtime_factor": rate * scene.dt,
                        "render_ms": _render_ms(scene, "front", size, frames),
                        "render_depth_ms": _render_ms(scene, "front", size, frames, depth=True),
                        "wrist_render_ms": _render_ms(scene, "wrist", size, frames),
                    }
                )
        finally:
            scene.close()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = float(np.round(v, 4))
    return rows
