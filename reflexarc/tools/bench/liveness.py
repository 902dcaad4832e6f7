"""Liveness under load: the default ``reflexarc run`` beside N CPU-bound processes.

    reflexarc bench liveness runs=10 load=4 stop=planner out=rows.json
    python -m reflexarc.tools.bench.liveness runs=10 load=4 stop=planner out=rows.json

Runs the default job (``reflexarc run``: pixels graph, MuJoCo push, 3 episodes, realtime)
``runs`` times in a row with ``load=N`` (reflexarc.runtime.load), one row per run: ok,
episodes run of those asked, pushes that succeeded, frame-to-command p50/p99, the largest
1-minute load average, the videos written, what happened at the stop (nodes slow to stop or
killed there, the recorder's dropped and lost messages), the liveness events, the first
reason. With ``stop=NODE``, one more run SIGSTOPs that node 2 s after the graph is up and
reports how long the launcher took to find it (``found_after_s``, to be at most 3 s).
The ``python -m`` form also prints the rows as a markdown table, for docs/benchmarks.md.
Figures and how to read them: docs/liveness.md.
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

RUN_TIMEOUT_S = 600.0  # one default run; on a quiet 2-core machine it takes about a minute


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reflexarc.runtime.cli", *args]


def one_run(run_dir: Path, load: int, asked: int, timeout_s: float) -> dict[str, Any]:
    """One default run with ``load`` background processes; its row."""
    out = run_dir.with_suffix(".json")
    t0 = time.monotonic()
    try:
        res = subprocess.run(_cli("run", f"load={load}", f"run_dir={run_dir}", f"out={out}"),
                             capture_output=True, text=True, timeout=timeout_s)
        rc, err = res.returncode, res.stderr
    except subprocess.TimeoutExpired:
        rc, err = -1, f"did not end within {timeout_s:g} s"
    row = _row(out, run_dir, rc, time.monotonic() - t0, asked)
    if not out.exists():
        row["first_reason"] = err.strip().splitlines()[-1] if err.strip() else "no summary"
    return row


def _at_stop(s: dict[str, Any]) -> str:
    """What happened at the stop: the warnings about it, the recorder's losses."""
    words = [w.split(" (")[0] for w in s.get("warnings", [])
             if w.startswith(("slow to stop", "killed at stop"))]
    rec = (s.get("node_figures") or {}).get("recorder") or {}
    if rec.get("dropped") or rec.get("lost"):
        words.append(f"recorder dropped {rec.get('dropped', 0)}, lost {rec.get('lost', 0)}")
    bad = [f"{r['node']} exit {r['exit']}" for r in s.get("nodes", []) if r.get("exit") not in (0, None)]
    return "; ".join(words + bad)


def _row(out: Path, run_dir: Path, rc: int, wall: float, asked: int) -> dict[str, Any]:
    s = json.loads(out.read_text()) if out.exists() else {}
    results = s.get("episode_results") or []
    p50, p99 = s.get("frame_to_command_ms_p50"), s.get("frame_to_command_ms_p99")
    return {
        "ok": s.get("ok"),
        "episodes": f"{s.get('episodes', 0)}/{asked}",
        "pushes": f"{sum(1 for r in results if r.get('success'))}/{len(results)}",
        "f2c_ms_p50_p99": f"{p50:.1f} / {p99:.1f}" if p50 is not None and p99 is not None else "-",
        "load_max": s.get("loadavg_max"),
        "videos": len(list(run_dir.glob("episode-*.mp4"))),
        "at_stop": _at_stop(s),
        "events": ", ".join(f"{e['node']}:{e['event']}" for e in s.get("events", [])
                            if e["event"] not in ("up", "finished")),
        "first_reason": (s.get("reasons") or [""])[0],
        "wall_s": round(wall, 1),
        "exit": rc,
    }


def stop_run(run_dir: Path, load: int, node: str, asked: int, timeout_s: float) -> dict[str, Any]:
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
            nodes = {k for k, v in pids.items() if isinstance(v, int)} - {"launcher"}
            if node in nodes and nodes <= set(pids.get("up", [])):  # the whole graph is up
                time.sleep(2.0)
                stopped_at = time.time()
                os.kill(pids[node], signal.SIGSTOP)
                break
            time.sleep(0.1)
        proc.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    row = _row(out, run_dir, proc.returncode, time.monotonic() - t0, asked)
    s = json.loads(out.read_text()) if out.exists() else {}
    found = [e for e in s.get("events", []) if e["node"] == node and e["event"] in ("silent", "stalled")]
    row["stopped"] = node
    row["found_after_s"] = round(found[0]["wall"] - stopped_at, 3) if found and stopped_at else None
    row["found_as"] = found[0].get("why") if found else None
    return row


def liveness_rows(runs: int, load: int, stop: str = "", out: str = "", folder: str = "",
                  timeout_s: float = RUN_TIMEOUT_S) -> list[dict[str, Any]]:
    """``runs`` default runs in a row, then the SIGSTOP run when ``stop`` names a node;
    each row printed as one JSON line as it ends, all of them written to ``out``."""
    import reflexarc.runtime.launcher  # noqa: F401  (registers the run config)
    from reflexarc.runtime.config import load as load_config

    asked = load_config("run", check=False).episodes
    base = Path(folder or tempfile.mkdtemp(prefix="reflexarc-bench-liveness-"))
    rows: list[dict[str, Any]] = []
    todo: list[tuple[str, Any]] = [(str(i + 1), None) for i in range(runs)]
    if stop:
        todo.append(("stop", stop))
    for name, node in todo:
        if node is None:
            row = {"run": name, **one_run(base / f"run-{name}", load, asked, timeout_s)}
        else:
            row = {"run": name, **stop_run(base / "stop", load, node, asked, timeout_s)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if out:  # the rows so far, in case a later run cannot finish
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    ok = sum(1 for r in rows if r["run"] != "stop" and r["ok"] is True)
    print(f"ok True in {ok} of {runs} runs with load={load} on {os.cpu_count()} CPUs "
          f"(runs in {base})", file=sys.stderr, flush=True)
    return rows


def bench_liveness(cfg: Any) -> list[dict[str, Any]]:
    """``reflexarc bench liveness``: the rows, printed as a table by the CLI."""
    return liveness_rows(cfg.runs, cfg.load, cfg.stop, cfg.out)


COLUMNS = ("run", "ok", "episodes", "pushes", "f2c_ms_p50_p99", "load_max", "videos", "at_stop",
           "found_after_s", "first_reason")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (docs/benchmarks.md)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = ["" if r.get(c) is None else str(r.get(c)) for c in COLUMNS]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    rows = liveness_rows(int(opts.get("runs", 10)), int(opts.get("load", 4)), opts.get("stop", ""),
                         opts.get("out", ""), opts.get("dir", ""),
                         float(opts.get("timeout_s", RUN_TIMEOUT_S)))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
