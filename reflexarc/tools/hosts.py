"""A graph across hosts, shown on one machine: two network namespaces joined by a veth pair.

The "robot" namespace runs the plant and the 1 kHz loop, the "brain" namespace perception,
the planner and the learner (configs/graph/pixels_hosts.yaml); each namespace has its own
launcher (``host=robot`` / ``host=brain``) and its own address, and every message between
them crosses the veth link over TCP with CURVE, as it would between two machines. Where
namespaces cannot be made (not root, no ``ip``), or with ``--loopback``, the two launchers
share 127.0.0.1. Beside each split run, the same graph under one launcher (TCP and CURVE
on 127.0.0.1). Two graphs:

- ``counter`` (bus): a source on the robot side, an echo woken by each message on the
  brain side; the echo's stamp-to-step latency is one hop across the boundary.
- ``pixels_hosts``: frame-to-command latency as the controller measures it (camera frame
  on the robot side -> latent and plan on the brain side -> joint command on the robot
  side), both hosts reading the same monotonic clock (between machines it needs their
  clocks in step: docs/scale.md).

    sudo python -m reflexarc.tools.hosts --seconds 30 --out runs/hosts

Writes ``<out>/hosts.json`` (figures) and each run's summary beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from reflexarc.runtime.bus import make_keys

NETS = {"robot": "10.213.0.1", "brain": "10.213.0.2"}
GRAPH_ARGS = {  # graph -> its overrides (pixels_hosts places its nodes itself)
    # the echo steps on each joint state's arrival: its latency is the bus hop, not its tick
    "counter": ["graph.nodes.source.host=robot", "graph.nodes.sink.host=robot",
                "graph.nodes.echo.host=brain",
                "graph.nodes.echo.target=reflexarc.runtime.testnodes:WakingEcho"],
    # the recorder and the evaluator (files, perception's score) are not what is measured
    # here; a loaded machine may stall a process for more than the default 1 s of silence
    "pixels_hosts": ["graph.nodes.recorder.enabled=false", "graph.nodes.evaluator.enabled=false",
                     "silent_timeout_s=5"],
}


class Namespaces:
    """Two network namespaces joined by a veth pair (removed on exit), or loopback."""

    def __init__(self, loopback: bool) -> None:
        tag = uuid.uuid4().hex[:6]
        self.names = {"robot": f"rx-robot-{tag}", "brain": f"rx-brain-{tag}"}
        self.made: list[str] = []
        self.loopback = loopback or not self._make()
        self.address = {h: "127.0.0.1" for h in NETS} if self.loopback else dict(NETS)

    def _make(self) -> bool:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            return False
        r, b = self.names["robot"], self.names["brain"]
        va, vb = f"v{r[-6:]}a", f"v{r[-6:]}b"
        steps = [
            ["ip", "netns", "add", r], ["ip", "netns", "add", b],
            ["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
            ["ip", "link", "set", va, "netns", r], ["ip", "link", "set", vb, "netns", b],
            ["ip", "-n", r, "addr", "add", f"{NETS['robot']}/24", "dev", va],
            ["ip", "-n", b, "addr", "add", f"{NETS['brain']}/24", "dev", vb],
            ["ip", "-n", r, "link", "set", va, "up"], ["ip", "-n", b, "link", "set", vb, "up"],
            ["ip", "-n", r, "link", "set", "lo", "up"], ["ip", "-n", b, "link", "set", "lo", "up"],
        ]
        for cmd in steps:
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                self.close()
                return False
            if cmd[1:3] == ["netns", "add"]:
                self.made.append(cmd[3])
        return True

    def prefix(self, host: str) -> list[str]:
        return [] if self.loopback else ["ip", "netns", "exec", self.names[host]]

    def close(self) -> None:
        for ns in self.made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()


def _run_args(graph: str, seconds: float, keys: Path, port: int, extra: list[str]) -> list[str]:
    args = [f"graph={graph}", f"duration_s={seconds}", "bus.transport=tcp", "bus.curve=true",
            f"bus.keys_dir={keys}", f"bus.base_port={port}", "startup_timeout_s=120", *extra]
    return args + GRAPH_ARGS.get(graph, [])


def _figures(graph: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    rates: dict[str, float] = {}
    for s in summaries:
        nodes.update(s.get("node_figures", {}))
        rates.update({r["node"]: r["rate_hz"] for r in s.get("nodes", [])})
    base = {"ok": all(s.get("ok", False) for s in summaries),
            "ended_by": [s.get("ended_by") for s in summaries]}
    if graph == "counter":
        echo = nodes.get("echo", {})
        return base | {"hop_p50_us": echo.get("echo_latency_p50_us"), "hop_p99_us": echo.get("echo_latency_p99_us"),
                "received": nodes.get("sink", {}).get("received"), "rates_hz": rates}
    ctl = nodes.get("controller", {})
    learner = nodes.get("learner", {})
    return base | {
        "frame_to_command_p50_ms": ctl.get("frame_to_command_p50_ms"),
        "frame_to_command_p99_ms": ctl.get("frame_to_command_p99_ms"),
        "frame_to_command_samples": ctl.get("frame_to_command_samples"),
        "learner_frames": learner.get("frames"), "rates_hz": rates,
    }


def run_pair(graph: str, ns: Namespaces, seconds: float, keys: Path, out: Path, port: int,
             extra: list[str]) -> dict[str, Any]:
    """The graph under one launcher, then split over the two hosts; both figures."""
    cli = [sys.executable, "-m", "reflexarc.runtime.cli", "run"]
    base = _run_args(graph, seconds, keys, port, extra)
    single_out = out / f"{graph}-single.json"
    subprocess.run([*cli, *base, f"run_dir={out / graph / 'single'}", f"out={single_out}"],
                   stdout=subprocess.DEVNULL)  # a failed run reports ok: false in its figures
    hosts = [f"+bus.hosts.{h}={a}" for h, a in ns.address.items()]
    procs = {}
    for host in ("brain", "robot"):
        procs[host] = subprocess.Popen(
            [*ns.prefix(host), *cli, *base, *hosts, f"host={host}",
             f"run_dir={out / graph / host}", f"out={out / f'{graph}-{host}.json'}"],
            stdout=subprocess.DEVNULL)
    for p in procs.values():
        p.wait(timeout=seconds + 300)
    split = [json.loads((out / f"{graph}-{h}.json").read_text()) for h in procs]
    return {"single": _figures(graph, [json.loads(single_out.read_text())]),
            "split": _figures(graph, split)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="each run's duration")
    ap.add_argument("--out", default="runs/hosts")
    ap.add_argument("--graphs", default="counter,pixels_hosts")
    ap.add_argument("--loopback", action="store_true", help="two launchers on 127.0.0.1, no namespaces")
    ap.add_argument("--port", type=int, default=47300, help="bus.base_port")
    ap.add_argument("extra", nargs="*", help="more overrides for every run (task=reach ...)")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    keys = make_keys(out / "keys")
    ns = Namespaces(a.loopback)
    result: dict[str, Any] = {"namespaces": not ns.loopback, "addresses": ns.address,
                              "seconds": a.seconds, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        for graph in a.graphs.split(","):
            result[graph] = run_pair(graph, ns, a.seconds, keys, out, a.port, a.extra)
    finally:
        ns.close()
    (out / "hosts.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
