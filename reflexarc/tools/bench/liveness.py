"""Liveness under load: the default ``reflexarc run`` beside N CPU-bound processes.

    python -m reflexarc.tools.bench.liveness runs=10 load=4 [stop=planner] [out=FILE.json]

Runs the default job ``runs`` times with ``load=N`` (reflexarc.runtime.load) and prints one
row per run: ok, episodes run of those asked, seconds, how long the graph took to come up,
the liveness events, the reasons and the warnings. With ``stop=NODE``, one more run
SIGSTOPs that node once the graph is up and reports how long the launcher took to find it.
Figures and how to read them: docs/liveness.md; results: docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ASKED = 0  # episodes the default job asks for (its config's episodes)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reflexarc.runtime.cli", *args]


def one_run(run_dir: Path, load: int, extra: list[str], timeout_s: float) -> dict[str, Any]:
    out = run_dir.with_suffix(".json")
    t0 = time.monotonic()
    res = subprocess.run(_cli("run", f"load={load}", f"run_dir={run_dir}", f"out={out}", *extra),
                         capture_output=True, text=True, timeout=timeout_s)
    row = _row(out, res.returncode, time.monotonic() - t0)
    if not out.exists():
        row["reasons"] = [res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no summary"]
    return row


def _row(out: Path, rc: int, wall: float) -> dict[str, Any]:
    s = json.loads(out.read_text()) if out.exists() else {}
    up = [e for e in s.get("events", []) if e["event"] == "up"]
    return {
        "exit": rc,
        "ok": s.get("ok"),
        "episodes": s.get("episodes"),
        "asked": ASKED,
        "success_rate": s.get("success_rate"),
        "succeeded": sum(1 for r in s.get("episode_results") or [] if r.get("success")),
        "frame_to_command_ms_p50": s.get("frame_to_command_ms_p50"),
        "frame_to_command_ms_p99": s.get("frame_to_command_ms_p99"),
        "wall_s": round(wall, 1),
        "up_after_s": up[0]["after_s"] if up else None,
        "events": [f"{e['node']}:{e['event']}" for e in s.get("events", []) if e["event"] != "up"],
        "reasons": s.get("reasons", []),
        "warnings": s.get("warnings", []),
        "loadavg_max": s.get("loadavg_max"),
        "loadavg_1m_end": round(os.getloadavg()[0], 1),
        "controller_state_at_end": (s.get("node_figures", {}).get("controller") or {}).get("state_at_end"),
    }


def stop_run(run_dir: Path, load: int, node: str, timeout_s: float) -> dict[str, Any]:
    """SIGSTOP ``node`` 2 s after the graph is up; how long until the launcher finds it."""
    out = run_dir.with_suffix(".json")
    t0 = time.monotonic()
    proc = subprocess.Popen(_cli("run", f"load={load}", f"run_dir={run_dir}", f"out={out}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids_path = run_dir / "pids.json"
    stopped_at = None
    try:
        while time.monotonic() - t0 < timeout_s and proc.poll() is None:
            try:
                pids = json.loads(pids_path.read_text())
            except (OSError, ValueError):
                pids = {}
            if node in pids.get("up", []):
                time.sleep(2.0)
                stopped_at = time.time()
                os.kill(pids[node], signal.SIGSTOP)
                break
            time.sleep(0.1)
        proc.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    row = _row(out, proc.returncode, time.monotonic() - t0)
    s = json.loads(out.read_text()) if out.exists() else {}
    found = [e for e in s.get("events", []) if e["node"] == node and e["event"] in ("silent", "stalled")]
    row["stopped"] = node
    row["found_after_s"] = round(found[0]["wall"] - stopped_at, 3) if found and stopped_at else None
    row["found_as"] = found[0].get("why") if found else None
    return row


def main(argv: list[str]) -> int:
    global ASKED
    import reflexarc.runtime.launcher  # noqa: F401  (registers the run config)
    from reflexarc.runtime.config import load as load_config

    ASKED = load_config("run", check=False).episodes
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    runs, load = int(opts.get("runs", 10)), int(opts.get("load", 4))
    timeout_s = float(opts.get("timeout_s", 600))
    base = Path(opts.get("dir") or tempfile.mkdtemp(prefix="reflexarc-bench-liveness-"))
    rows = []
    for i in range(runs):
        row = {"run": i + 1, **one_run(base / f"run-{i + 1}", load, [], timeout_s)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if opts.get("stop"):
        row = {"run": "stop", **stop_run(base / "stop", load, opts["stop"], timeout_s)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = sum(1 for r in rows if r["run"] != "stop" and r["ok"] is True)
    print(f"ok True in {ok} of {runs} runs with load={load} on {os.cpu_count()} CPUs", flush=True)
    if opts.get("out"):
        Path(opts["out"]).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
