"""A sweep over backends and seeds: the scripted expert on one task, one lockstep run per
(backend, seed), and a table of what each run gave.

    python examples/sweep.py [--task reach] [--backends mujoco pybullet] [--seeds 0 1]
"""

from __future__ import annotations

import argparse

import reflexarc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach", choices=["reach", "push", "pick_place"])
    parser.add_argument("--backends", nargs="+", default=["mujoco", "pybullet"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--runs", default="runs/examples/sweep", help="where run directories go")
    a = parser.parse_args()

    rows = []
    for backend in a.backends:
        for seed in a.seeds:
            result = reflexarc.run("expert", task=a.task, backend=backend, seed=seed,
                                   episodes=a.episodes, clock="lockstep",
                                   run_dir=f"{a.runs}/{backend}-{seed}")
            times = [e.figures.get("time_to_success_s") for e in result.episodes]
            done = [t for t in times if t is not None]
            rows.append((backend, seed, result.success_rate, len(result.episodes),
                         sum(done) / len(done) if done else float("nan"),
                         result.nodes["sim"].figures.get("physics_hz", 0.0), result.seconds))

    print(f"\n{a.task}, scripted expert, lockstep")
    print(f"{'backend':<9} {'seed':>4} {'success':>7} {'episodes':>8} {'t_success_s':>11} "
          f"{'physics_hz':>10} {'wall_s':>6}")
    for backend, seed, rate, n, t, hz, wall in rows:
        print(f"{backend:<9} {seed:>4} {rate:>7.0%} {n:>8} {t:>11.2f} {hz:>10.0f} {wall:>6.1f}")


if __name__ == "__main__":
    main()
