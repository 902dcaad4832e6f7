"""The script as a node: start a graph, act on it while it runs, stop it.

InvertedPendulum-v5 runs as the sim (in real time, 25 env steps a second); this script
subscribes to its joint states (the observation), answers each with a joint command (the
env's action: the same feedback law as my_nodes.Balance), and stops the graph after
``--seconds``. Publishing from a script needs clock=realtime.

    python examples/script_policy.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import reflexarc
from reflexarc import JointCommand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", default="runs/examples", help="where run directories go")
    a = parser.parse_args()

    graph = reflexarc.Graph({"sim": reflexarc.node(
        "reflexarc.sim.node:SimNode", 25, backend="gym", env_id="InvertedPendulum-v5",
        episodes=0, camera_hz=0.0)})
    gains = np.array([1.0, 10.0, 1.0, 1.0])
    angles = []
    with reflexarc.start(graph, run_dir=f"{a.runs}/script-policy") as running:
        states = running.subscribe("joint_state")
        running.wait_ready()
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            got = states.recv(timeout_s=0.5)
            if got is None:
                continue
            obs = got[1].position
            angles.append(obs[1])
            force = np.clip([gains @ obs], -3.0, 3.0)
            zeros = np.zeros(1)
            running.publish("joint_command", JointCommand(mode="torque", position=zeros,
                                                          velocity=zeros, effort=force))
    result = running.result
    sim = result.nodes["sim"].figures
    falls = len(result.episodes)
    print(f"{len(angles)} states answered in {a.seconds:.0f} s; env steps {sim['env_steps']}, "
          f"commands applied {sim['commands']}; pole angle max |{max(map(abs, angles)):.3f}| rad; "
          f"falls {falls}")


if __name__ == "__main__":
    main()
