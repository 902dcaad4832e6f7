"""A gymnasium env as the sim of a graph: InvertedPendulum-v5, stepped by the user's own
node (my_nodes.Balance), beside the same env under random actions; both recorded.

    python examples/gym_env.py [--episodes 2] [--steps 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import reflexarc

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="the env's max_episode_steps")
    parser.add_argument("--runs", default="runs/examples", help="where run directories go")
    a = parser.parse_args()
    steps = {"graph.nodes.sim.args.env_kwargs": {"max_episode_steps": a.steps}}
    balanced = reflexarc.run(HERE / "balance.yaml", clock="lockstep", episodes=a.episodes,
                             run_dir=f"{a.runs}/balance", overrides=steps)
    random = reflexarc.run("gym", clock="lockstep", episodes=a.episodes,
                           run_dir=f"{a.runs}/random", overrides=steps)
    print(f"{'policy':<10} {'episode':>7} {'steps':>5} {'return':>7} {'ended':>10}")
    for name, result in (("balance", balanced), ("random", random)):
        for e in result.episodes:
            ended = "terminated" if e.figures["terminated"] else "time limit"
            print(f"{name:<10} {e.episode:>7} {e.figures['steps']:>5} "
                  f"{e.figures['return']:>7.1f} {ended:>10}")
    print(f"recorded: {balanced.episode_dir}")


if __name__ == "__main__":
    main()
