"""``reflexarc bench arms``: the scripted expert's reach and push on every shipped arm.

For each robot (``robots``; default: every shipped one), backend (MuJoCo, PyBullet) and
task (reach, push): ``episodes`` seeded episodes (seeds 0 .. episodes - 1) of the control
graph's nodes -- sim, 1 kHz controller, scripted expert publishing Plans -- stepped in one
process on a lockstep clock (:func:`reflexarc.sim.inprocess.control_episodes`). Rows:
success rate, mean time to success, mean final task error, the plant's count of samples
past the joint limits and of overspeed holds, wall time. Figures in
docs/benchmarks.md ("A second arm").
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reflexarc.robot.description import BUILTIN
from reflexarc.runtime.progress import Progress
from reflexarc.sim.inprocess import control_episodes

BACKENDS = ("mujoco", "pybullet")
TASKS = ("reach", "push")


def bench_arms(cfg: Any) -> list[dict[str, Any]]:
    """Rows of robot, backend, task, episodes, success_rate, mean_time_to_success_s,
    mean_final_distance_m, beyond_limits (the sim's joint-state samples past a position,
    velocity or torque limit), beyond_accel (past an acceleration limit), max_speed_share,
    overspeed_holds, wall_s. ``cfg.quick``: 2 reach episodes per arm and backend."""
    quick = bool(getattr(cfg, "quick", False))
    robots = list(getattr(cfg, "robots", []) or BUILTIN)
    episodes = 2 if quick else int(cfg.episodes)
    tasks = ("reach",) if quick else TASKS
    cases = [(r, b, t) for r in robots for b in BACKENDS for t in tasks]
    progress = Progress("bench arms", len(cases), "cases", every_s=0.0)
    rows: list[dict[str, Any]] = []
    for robot, backend, task in cases:
        t0 = time.perf_counter()
        results, summaries = control_episodes(task, backend, robot, episodes, seed=0)
        times = [r.time_to_success_s for r in results if r.success]
        sim = summaries["sim"]
        rows.append({
            "robot": robot,
            "backend": backend,
            "task": task,
            "episodes": len(results),
            "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
            "mean_time_to_success_s": round(float(np.mean(times)), 3) if times else None,
            "mean_final_distance_m": round(float(np.mean(
                [r.final_distance_m for r in results])), 4) if results else None,
            # the plant's view of the limits: joint-state samples past them (accelerations
            # apart: contacts pass them), holds after an overspeed
            "beyond_limits": sum(v for k, v in sim["beyond_limits"].items()
                                 if k != "acceleration"),
            "beyond_accel": sim["beyond_limits"].get("acceleration", 0),
            "max_speed_share": sim["max_speed_share"],
            "overspeed_holds": sim["overspeed_holds"],
            "wall_s": round(time.perf_counter() - t0, 1),
        })
        progress.update(len(rows), f"{robot} {backend} {task}")
    return rows
