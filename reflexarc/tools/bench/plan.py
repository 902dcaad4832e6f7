"""``reflexarc bench plan``: planner solve time against samples, horizon and iterations.

The world model is a stand-in with the size of the shipped checkpoints
(``policies/checkpoints/``): latent D = 128, a residual predictor MLP
``[z, a] -> 256 -> 256 -> D`` with LayerNorm and SiLU. The planner's time is almost all
predictor time, so this is what a real solve costs. Weights are random:
the time of a solve does not depend on them.

Each row is one setting: solves timed after warm-up, p50/p99 in ms, and model steps per
second (samples x horizon x iterations / p50). Sweeps vary one of samples, horizon,
iterations around the default config, on CPU (1 torch thread unless ``cfg.threads``
says otherwise; a ``threads`` sweep compares 1 thread with all cores) and on CUDA when
present. Settings are timed in interleaved rounds, so load changes spread over all. A PNG of time
against each swept value is written beside ``cfg.out`` (or to ``runs/bench/plan.png``).

Plan quality against budget on the real tasks needs the trained world model and the
simulated scenes; :func:`reflexarc.planner.reach.success_vs_budget` is the hook for it: it runs any episode
function for every planner setting. :func:`~reflexarc.planner.reach.latent_reach_episode` is a synthetic episode
(a latent integrator with a known linear model) that exercises the same closed loop;
``bench plan model=CKPT episodes=N`` runs it on the real reach and push tasks from pixels
(:func:`pixel_episode_fn`: the gym envs, the world model's encoder, MPPI with the planner
node's hand box) and plots success against samples and iterations.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from reflexarc.planner.cem import CEMConfig, CEMPlanner
from reflexarc.planner.mpc import SamplingConfig, SamplingPlanner, resolve_device
from reflexarc.planner.mppi import MPPIConfig, MPPIPlanner
from reflexarc.planner.reach import (
    EpisodeFn,
    MLPPredictor,
    success_vs_budget,
)
from reflexarc.runtime.progress import Progress

PLANNERS: dict[str, tuple[type[SamplingPlanner], type[SamplingConfig]]] = {
    "cem": (CEMPlanner, CEMConfig),
    "mppi": (MPPIPlanner, MPPIConfig),
}
BUDGET_MS = 10.0  # target p50 of one solve at the default config on a 2-core CPU
DEFAULT_PLOT = Path("runs/bench/plan.png")


def time_solves(
    planner: SamplingPlanner,
    z0: Tensor,
    *,
    warmup: int = 3,
    solves: int = 100,
    max_s: float = 2.0,
    min_solves: int = 5,
) -> np.ndarray:
    """Wall time (ms) of up to ``solves`` warm-started ``plan()`` calls, within ``max_s``
    (at least ``min_solves``).

    Each solve ends with the host reading the cost, so queued CUDA work is included.
    """
    for _ in range(warmup):
        float(planner.plan(z0).cost)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < solves and (time.perf_counter() - start < max_s or len(times) < min_solves):
        t = time.perf_counter()
        float(planner.plan(z0).cost)  # the sync point a planner node has too
        times.append((time.perf_counter() - t) * 1e3)
    return np.asarray(times)


@dataclass
class _Case:
    """One timed setting of the sweep and the samples gathered for it."""

    sweep: str
    name: str
    device: torch.device
    cfg: SamplingConfig
    threads: int  # torch CPU threads while it runs (0: leave as is)
    planner: SamplingPlanner
    z0: Tensor
    times: list[float] = field(default_factory=list)

    def row(self) -> dict:
        times = np.asarray(self.times)
        p50 = float(np.percentile(times, 50))
        cfg = self.cfg
        return {
            "sweep": self.sweep,
            "planner": self.name,
            "device": str(self.device),
            "samples": cfg.samples,
            "horizon": cfg.horizon,
            "iterations": cfg.iterations,
            "threads": self.threads if self.device.type == "cpu" else 0,
            "solves": int(times.size),
            "p50_ms": p50,
            "p99_ms": float(np.percentile(times, 99)),
            "steps_per_s": cfg.samples * cfg.horizon * cfg.iterations / (p50 / 1e3),
        }


def _devices(name: str) -> list[torch.device]:
    devices = [torch.device("cpu")]
    wanted = resolve_device(name)
    if wanted.type == "cuda":
        devices.append(wanted)
    elif torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def _new_case(
    sweep: str, name: str, cfg: SamplingConfig, threads: int, model: nn.Module, z0: Tensor
) -> _Case:
    planner = PLANNERS[name][0](model, cfg)  # type: ignore[arg-type]
    planner.set_goal(torch.zeros_like(z0))
    return _Case(sweep, name, z0.device, cfg, threads, planner, z0)


def _cases(cfg: Any, sweeps: dict[str, list[int]], base: dict, threads: int) -> list[_Case]:
    cases = []
    for device in _devices(str(getattr(cfg, "device", "cpu"))):
        model = MLPPredictor().to(device)
        z0 = torch.randn(model.latent_dim, generator=torch.Generator().manual_seed(0))
        z0 = z0.to(device)

        def case(sweep: str, name: str, pcfg: SamplingConfig, n: int) -> _Case:
            return _new_case(sweep, name, pcfg, n, model, z0)  # noqa: B023 - called at once

        for name, (_, config_cls) in PLANNERS.items():
            default = config_cls(device=str(device), **base)
            cases.append(case("default", name, default, threads))
            if device.type == "cpu":
                for n in sorted({1, os.cpu_count() or 1}):
                    cases.append(case("threads", name, default, n))
            for key, values in sweeps.items():
                if name != "cem" and key != "samples":
                    continue  # MPPI costs the same per model step; one sweep shows it
                for value in values:
                    pcfg = dataclasses.replace(default, **{key: value})
                    pcfg.elites = min(pcfg.elites, pcfg.samples)
                    cases.append(case(key, name, pcfg, threads))
    return cases


def bench_plan(cfg: Any) -> list[dict]:
    """Solve-time sweeps. ``cfg`` fields: ``out`` (JSON path; the PNG goes beside it),
    ``quick`` (a tiny sweep for tests), optionally ``device`` (CUDA is added when present)
    and ``threads`` (torch CPU threads for the sweeps, default 1; 0 keeps torch's choice).

    Settings are timed in interleaved rounds, so a change of machine load during the run
    spreads over all of them instead of biasing one. One torch thread is the default
    because a planner node is one process among several on a 2-core machine: with 2
    threads under load a solve can take 100x longer (the ``threads`` rows show it).
    Returns one row per (sweep, planner, device, setting).
    """
    if getattr(cfg, "quick", False):
        sweeps = {"samples": [16, 32], "horizon": [2, 3], "iterations": [1, 2]}
        base = {"samples": 16, "horizon": 2, "iterations": 1, "elites": 4}
        rounds, solves, max_s = 1, 5, 0.5
    else:
        sweeps = {
            "samples": [64, 128, 256, 512, 1024, 2048, 4096],
            "horizon": [2, 4, 6, 8, 12, 16],
            "iterations": [1, 2, 3, 4, 6, 8],
        }
        base, rounds, solves, max_s = {}, 5, 200, 3.0
    threads = int(getattr(cfg, "threads", 1)) or torch.get_num_threads()
    cases = _cases(cfg, sweeps, base, threads)
    before = torch.get_num_threads()
    progress = Progress("bench plan", rounds * len(cases), "solve series")
    try:
        for r in range(rounds):
            for k, case in enumerate(cases):
                progress.update(r * len(cases) + k)
                torch.set_num_threads(case.threads if case.threads > 0 else before)
                case.times += time_solves(
                    case.planner,
                    case.z0,
                    warmup=3 if r == 0 else 1,
                    solves=-(-solves // rounds),
                    max_s=max_s / rounds,
                    min_solves=1 if rounds > 1 else 5,
                ).tolist()
    finally:
        torch.set_num_threads(before)
    progress.update(rounds * len(cases))
    rows = [case.row() for case in cases]
    out = str(getattr(cfg, "out", "") or "")
    plot(rows, Path(out).with_suffix(".png") if out else DEFAULT_PLOT)
    if getattr(cfg, "model", ""):
        quality = success_rows(cfg)
        plot_success(quality, Path(out).with_name(Path(out).stem + "-success.png") if out
                     else DEFAULT_PLOT.with_name("plan-success.png"))
        rows += quality
    return rows


def plot(rows: Sequence[dict], path: Path) -> Path:
    """Time per solve (p50 solid, p99 dashed) against each swept setting; one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["samples", "horizon", "iterations"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for ax, key in zip(axes, keys, strict=True):
        series = sorted({(r["planner"], r["device"]) for r in rows if r["sweep"] == key})
        for planner, device in series:
            sel = sorted(
                (
                    r
                    for r in rows
                    if r["sweep"] == key and (r["planner"], r["device"]) == (planner, device)
                ),
                key=lambda r: r[key],
            )
            x = [r[key] for r in sel]
            line = ax.plot(x, [r["p50_ms"] for r in sel], "o-", label=f"{planner} {device} p50")[0]
            ax.plot(
                x,
                [r["p99_ms"] for r in sel],
                "--",
                color=line.get_color(),
                label=f"{planner} {device} p99",
            )
        ax.axhline(BUDGET_MS, color="grey", lw=0.8, ls=":", label=f"{BUDGET_MS:g} ms budget")
        ax.set_xlabel(key)
        ax.set_ylabel("ms per solve")
        if key == "samples":
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        fixed = [k for k in keys if k != key]
        ref = next((r for r in rows if r["sweep"] == key), None)
        if ref is not None:
            ax.set_title(f"vs {key} (" + ", ".join(f"{k}={ref[k]}" for k in fixed) + ")")
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- quality against budget -------------------------------------------------------------



# -- quality against budget on the real tasks, from pixels ----------------------------------


def pixel_episode_fn(task: str, backend: str, checkpoint: str) -> EpisodeFn:
    """Closed-loop episodes of a gymnasium task from pixels, for :func:`success_vs_budget`.

    The world model (``checkpoint``) encodes the env's camera frame and its imagined goal
    image; the planner (the given kind and settings, plus the planner node's hand box)
    picks each 10 Hz action; the env's built-in joint controller tracks it. Success is
    the env's ``is_success``, at most the task's step limit.
    """
    import gymnasium as gym

    from reflexarc import sim
    from reflexarc.perception.encoding import FrameEncoder, load_model
    from reflexarc.planner.node import HandBox, PlannerNode
    from reflexarc.planner.planners import make_planner

    loaded = load_model(checkpoint)
    encoder = FrameEncoder(loaded)
    env = gym.make(sim.ENV_IDS[task], backend=backend, image_size=loaded.image_size)
    box = PlannerNode.Config()

    def episode(name: str, pcfg: SamplingConfig, seed: int) -> dict:
        planner = make_planner(name, loaded.model, dataclasses.replace(pcfg, seed=seed))
        hand = HandBox(np.asarray(box.hand_box_lo), np.asarray(box.hand_box_hi),
                       box.hand_box_weight, planner.device)
        planner.action_cost = hand
        obs, info = env.reset(seed=seed)
        planner.set_goal(encoder.encode([obs["goal_image"]])[0])
        steps = sim.MAX_EPISODE_STEPS[task]
        for step in range(1, steps + 1):
            hand.base = torch.as_tensor(obs["proprio"][:3], dtype=torch.float32)  # FK, not state
            action = planner.plan(encoder.encode([obs["image"]])[0]).actions[0]
            obs, _, _, _, info = env.step(action.numpy())
            if info["is_success"]:
                return {"success": True, "steps": step}
        return {"success": False, "steps": steps}

    return episode


def success_rows(cfg: Any) -> list[dict]:
    """``bench plan model=CKPT``: success of MPPI against samples and iterations on reach
    and push from pixels (``cfg.episodes`` seeded episodes per setting; ``quick``: one
    tiny setting, one episode)."""
    if getattr(cfg, "quick", False):
        grid, tasks, episodes = [(16, 1)], ("reach",), 1
    else:
        grid = [(s, i) for i in (1, 3) for s in (32, 128, 512)]
        tasks, episodes = ("reach", "push"), int(getattr(cfg, "episodes", 10))
    backend = str(getattr(cfg, "backend", "mujoco"))
    settings = [("mppi", MPPIConfig(samples=s, elites=min(32, s // 2), iterations=i))
                for s, i in grid]
    rows = []
    for task in tasks:
        fn = pixel_episode_fn(task, backend, str(cfg.model))
        for row in success_vs_budget(fn, settings, episodes):
            rows.append({"sweep": "success", "task": task, "backend": backend, **row})
    return rows


def plot_success(rows: Sequence[dict], path: Path) -> Path:
    """Success rate against samples, one line per (task, iterations); one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for task, iters in sorted({(r["task"], r["iterations"]) for r in rows}):
        sel = sorted((r for r in rows if (r["task"], r["iterations"]) == (task, iters)),
                     key=lambda r: r["samples"])
        ax.plot([r["samples"] for r in sel], [r["success"] for r in sel], "o-",
                label=f"{task}, {iters} iteration(s)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per iteration")
    ax.set_ylabel(f"success rate ({rows[0]['episodes'] if rows else 0} episodes)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("MPPI from pixels: success against planner budget")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
