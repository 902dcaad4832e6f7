"""``reflexarc bench sim``: physics and rendering speed of each backend.

One row per (backend, resolution): physics steps per second of the 3-block scene
holding a joint position command (the envs' mode; in PyBullet this includes the joint
PD and inverse dynamics computed in Python each step), the real-time factor at the
scene's physics rate, and milliseconds per frame of the front camera (RGB, RGB + depth)
and of the wrist camera. Renderer start-up is excluded. Timings are noisy on a shared
machine: compare backends and resolutions within one run. The plot (frame time against
resolution per backend and camera, physics rate per backend) goes beside ``out`` (or to
``runs/bench/sim.png``); a progress line with an ETA goes to stderr.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.progress import Progress
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene

BACKENDS = ("mujoco", "pybullet")
RESOLUTIONS = (64, 128, 224)
DEFAULT_PLOT = Path("runs/bench/sim.png")


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
    progress = Progress("bench sim", len(BACKENDS) * len(RESOLUTIONS), "cases", every_s=0.0)
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
                progress.update(len(rows), f"{backend} {size} px")
        finally:
            scene.close()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float):
                row[k] = float(np.round(v, 4))
    out = getattr(cfg, "out", "")
    plot(rows, Path(out).with_suffix(".png") if out else DEFAULT_PLOT)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Frame time against resolution (per backend: front RGB, front RGB + depth, wrist)
    and physics steps per second per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_p) = plt.subplots(1, 2, figsize=(11, 4))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    for b, color in zip(backends, ("C0", "C1", "C2", "C3"), strict=False):
        mine = [r for r in rows if r["backend"] == b]
        sizes = [r["resolution"] for r in mine]
        for key, style, label in (("render_ms", "-o", "front"),
                                  ("render_depth_ms", "--s", "front + depth"),
                                  ("wrist_render_ms", ":^", "wrist")):
            ax_r.plot(sizes, [r[key] for r in mine], style, color=color, label=f"{b} {label}")
    ax_r.set_xlabel("resolution (px a side)")
    ax_r.set_ylabel("ms per frame")
    ax_r.set_yscale("log")
    ax_r.legend(fontsize=7)
    ax_r.set_title("rendering")
    rates = [next(r["physics_steps_per_s"] for r in rows if r["backend"] == b) for b in backends]
    ax_p.bar(backends, rates, color=["C0", "C1", "C2", "C3"][: len(backends)])
    for i, rate in enumerate(rates):
        ax_p.text(i, rate, f"{rate:.0f}/s", ha="center", va="bottom", fontsize=8)
    ax_p.set_ylabel("physics steps per second")
    ax_p.set_title("physics (3 blocks, joint PD)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
