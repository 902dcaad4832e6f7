"""A custom node from the user's own module in a graph built in Python: the scripted
expert reaches on the Panda while my_nodes.JointWatch, beside this script, watches the
joint states and reports the arm's fastest joint speed and how far the hand's joints moved.

    python examples/custom_node.py [--backend mujoco]
"""

from __future__ import annotations

import argparse

from my_nodes import JointWatch

import reflexarc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="mujoco", choices=["mujoco", "pybullet"])
    parser.add_argument("--runs", default="runs/examples", help="where run directories go")
    a = parser.parse_args()

    graph = reflexarc.Graph({
        "sim": reflexarc.node("reflexarc.sim.node:SimNode", 500, backend=a.backend,
                              command="ee_action", camera_hz=0.0),
        # the episodes: lays each one out on the plant, says when it succeeded
        "evaluator": reflexarc.node("reflexarc.sim.evaluator:EvaluatorNode", 50, task="reach",
                                    backend=a.backend, episodes=1, publish_goal=False),
        "expert": reflexarc.node("reflexarc.sim.policy_node:PolicyNode", 10, task="reach",
                                 policy="expert", output="ee_action"),
        "watch": reflexarc.node(JointWatch, 50, joints=7),  # the class itself, or "my_nodes:JointWatch"
    })
    result = reflexarc.run(graph, clock="lockstep", run_dir=f"{a.runs}/custom-node")
    watch = result.nodes["watch"].figures
    print(f"reach on {a.backend}: success {result.success_rate:.0%}, "
          f"{watch['states']} joint states watched, fastest joint {watch['max_speed']:.2f} rad/s, "
          f"joints travelled {watch['travel']:.3f} rad in all")


if __name__ == "__main__":
    main()
