"""Sampling-based latent MPC: what CEM and MPPI share.

A planner searches action sequences ``(H, A)`` whose predicted latents reach the goal
latent. Every iteration draws ``samples`` sequences around a Gaussian (mean, std) over
the horizon, rolls all of them through the world model in one batched call, scores them,
and refits the Gaussian (CEM: elite mean/std; MPPI: cost-weighted mean/std). The mean is
kept between calls and shifted by the control steps that elapsed: the warm start.

Search happens in normalised action space ``u in [-1, 1]^A`` (``a = mid + half * u``
per dimension), so noise, smoothness and bounds are scale-free across metres and the
gripper. Bounds are hard: every sample is clipped to them before the model sees it, so
every evaluated and returned sequence is feasible.

Cost of a sequence, with ``d_t = dist(z_t, z_goal)`` (``l1``: mean |.| over D; ``l2``:
mean squared difference over D) and ``w_t`` = ``running_weight`` for ``t < H - 1`` and
``terminal_weight`` at ``t = H - 1``::

    cost = sum_t w_t d_t + smoothness_weight * sum_{t>0} mean_A (u_t - u_{t-1})^2

Defaults are for MPC: a few iterations per control step from the warm start, which a
5 ms solve on a 2-core CPU allows (``reflexarc bench plan``). For long one-off solves set
``std_momentum`` near 0.5 and ``min_std`` to 0 so the std does not collapse early.

Goals: :meth:`SamplingPlanner.set_goal` holds one goal latent with the world-model
version that encoded it. Planning without a goal raises :class:`NoGoalError`; with a goal
from another model version (the latent space changed under a hot-swap) or older than
``goal_max_age_s`` raises :class:`StaleGoalError`. Both are :class:`PlannerError`.
A planner with a ``latent_cost`` (a task's target read from the predicted latents,
:mod:`reflexarc.planner.task_cost`) scores with it instead and needs no goal latent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from reflexarc.planner.protocol import LatentModel
from reflexarc.runtime.config import bounded, choice, validate
from reflexarc.runtime.errors import ConfigError, ReflexarcError

EE_ACTION_LOW = (-0.05, -0.05, -0.05, -1.0)
"""Default lower bounds of an end-effector action (dx, dy, dz [m/step], gripper)."""
EE_ACTION_HIGH = (0.05, 0.05, 0.05, 1.0)
"""Default upper bounds of an end-effector action."""

_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


class PlannerError(ReflexarcError):
    """The planner cannot produce a plan from what it was given (goal, latent, model)."""


class NoGoalError(PlannerError):
    """``plan()`` was called before any goal was set (or after it was cleared)."""


class StaleGoalError(PlannerError):
    """The goal latent no longer matches the world model, or is older than allowed."""


@dataclass
class SamplingConfig:
    """Settings shared by the sampling planners. Std values are in half-ranges of each
    action dimension (1.0 = half the bound interval)."""

    samples: int = bounded(128, 2, 1 << 20)  # action sequences per iteration (N)
    horizon: int = bounded(5, 1, 1024)  # control steps per sequence (H)
    iterations: int = bounded(3, 1, 1000)  # refits of the sampling Gaussian per plan()
    elites: int = bounded(16, 1, 1 << 20)  # best samples used to refit (<= samples)
    noise_std: float = bounded(0.5, 0.0, 10.0)  # std at the start of every plan()
    min_std: float = bounded(0.02, 0.0, 10.0)  # floor of the refitted std
    momentum: float = bounded(0.0, 0.0, 1.0)  # mean <- m * old + (1 - m) * refit
    std_momentum: float = bounded(0.0, 0.0, 1.0)  # std <- m * old + (1 - m) * refit
    cost: str = choice("l1", "l2")  # latent distance: mean |dz| or mean dz^2 over D
    terminal_weight: float = bounded(1.0, 0.0, None)  # weight of d_{H-1}
    running_weight: float = bounded(1.0, 0.0, None)  # weight of each d_t, t < H - 1
    smoothness_weight: float = bounded(0.0, 0.0, None)  # weight of squared u differences
    action_low: list[float] = field(default_factory=lambda: list(EE_ACTION_LOW))
    action_high: list[float] = field(default_factory=lambda: list(EE_ACTION_HIGH))
    device: str = "cpu"  # cpu | auto (cuda when available) | cuda | cuda:N
    compile: bool = False  # torch.compile the rollout + cost (CUDA graphs on CUDA)
    seed: int = 0  # of the planner's torch.Generator
    goal_max_age_s: float = bounded(0.0, 0.0, None)  # 0: a goal never ages out

    def validate(self) -> None:
        if self.elites > self.samples:
            raise ConfigError("elites", f"got {self.elites}; must be <= samples ({self.samples})")
        if self.min_std > self.noise_std:
            raise ConfigError(
                "min_std", f"got {self.min_std}; must be <= noise_std ({self.noise_std})"
            )
        if not self.action_low:
            raise ConfigError("action_low", "must name at least one action dimension")
        if len(self.action_high) != len(self.action_low):
            raise ConfigError(
                "action_high",
                f"has {len(self.action_high)} entries; action_low has {len(self.action_low)}",
            )
        for i, (lo, hi) in enumerate(zip(self.action_low, self.action_high, strict=True)):
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ConfigError(f"action_high.{i}", f"got {hi}; must be finite and > {lo}")
        if self.terminal_weight + self.running_weight <= 0.0:
            raise ConfigError(
                "terminal_weight", "terminal_weight and running_weight are both 0: no goal cost"
            )
        if not _DEVICE.match(self.device):
            raise ConfigError("device", f"got {self.device!r}; allowed: cpu, auto, cuda, cuda:N")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ConfigError for unavailable CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", f"got {name!r} but CUDA is not available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", f"got {name!r}; {torch.cuda.device_count()} CUDA devices")
    return device


@dataclass(frozen=True)
class Solution:
    """One solve. Tensors are on the planner's device; read them after ``plan()`` returns.

    ``actions[0]`` is the action to apply now, ``actions[t]`` the one ``t`` control steps
    later: ``(dx, dy, dz, gripper)`` within the configured bounds.
    """

    actions: Tensor  # (H, A)
    latents: Tensor  # (H, D) predicted latents under ``actions``; (0, D) without evaluate
    cost: Tensor  # () cost of ``actions``; without evaluate, of the best last sample
    iterations: int


@dataclass
class _Goal:
    z: Tensor  # (D,)
    model_version: int
    stamp_ns: int


class SamplingPlanner:
    """Base of CEM and MPPI: sampling, batched scoring, warm start and goals.

    Subclasses implement :meth:`_refit` only. All buffers are allocated once; the loop in
    :meth:`plan` has no per-sample Python and no host synchronisation.
    """

    Config: type[SamplingConfig] = SamplingConfig

    def __init__(self, model: LatentModel, cfg: SamplingConfig) -> None:
        """Args:
        model: the world model (its tensors already on ``cfg.device``).
        cfg: the planner's config; validated here (ConfigError naming the key).
        """
        validate(cfg)
        self.cfg = cfg
        self.model = model
        self.device = resolve_device(cfg.device)
        n_act = len(cfg.action_low)
        if getattr(model, "action_dim", n_act) != n_act:
            raise ConfigError(
                "action_low",
                f"has {n_act} dimensions; the world model takes {model.action_dim}-dim actions",
            )
        param = _first_parameter(model)
        if param is not None and param.device != self.device:
            raise PlannerError(
                f"world model is on {param.device} but the planner on {self.device}; "
                "move the model or set device"
            )
        self.latent_dim: int | None = getattr(model, "latent_dim", None)
        dev, f32 = self.device, torch.float32
        n, h = cfg.samples, cfg.horizon
        low = torch.tensor(cfg.action_low, dtype=f32, device=dev)
        high = torch.tensor(cfg.action_high, dtype=f32, device=dev)
        self.action_low, self.action_high = low, high
        self._mid = (high + low) / 2  # (A,)
        self._half = (high - low) / 2  # (A,)
        weights = torch.full((h,), cfg.running_weight, dtype=f32, device=dev)
        weights[-1] = cfg.terminal_weight
        self._weights = weights  # (H,)
        self._mean = torch.zeros(h, n_act, dtype=f32, device=dev)  # (H, A) warm start, in u
        self._std = torch.empty(h, n_act, dtype=f32, device=dev)  # (H, A)
        self._eps = torch.empty(n, h, n_act, dtype=f32, device=dev)  # (N, H, A)
        self._u = torch.empty(n, h, n_act, dtype=f32, device=dev)  # (N, H, A) in [-1, 1]
        self._a = torch.empty(n, h, n_act, dtype=f32, device=dev)  # (N, H, A) actions
        self._generator = torch.Generator(device=dev)
        self._warm = False
        self._goal: _Goal | None = None
        # an optional extra cost of the action sequences, (B, H, A) -> (B,): constraints
        # known outside the latent space (the planner node keeps the hand in a box with it)
        self.action_cost: Callable[[Tensor], Tensor] | None = None
        # a cost of the predicted latents (B, H, D) -> (B,) that replaces the distance to a
        # goal latent (no goal latent is needed then): a task's target read from the latents
        # by a probe (reflexarc.planner.task_cost)
        self.latent_cost: Callable[[Tensor], Tensor] | None = None
        self._score = self._score_eager
        self._graphs = cfg.compile and dev.type == "cuda"  # CUDA graphs replay the scoring
        if cfg.compile:
            mode = "reduce-overhead" if dev.type == "cuda" else "default"
            self._score = torch.compile(self._score_eager, mode=mode, dynamic=False)
        self.reset(seed=cfg.seed)

    # -- state ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None) -> None:
        """Forget the warm start and the goal; reseed the generator when ``seed`` is given."""
        self._mean.zero_()
        self._warm = False
        self._goal = None
        if seed is not None:
            self._generator.manual_seed(seed)

    @property
    def has_goal(self) -> bool:
        return self._goal is not None

    @property
    def warm_start(self) -> Tensor:
        """(H, A) the sequence the next ``plan()`` starts from (before its shift), in action
        units. A copy."""
        return self._mid + self._half * self._mean

    def set_bounds(self, low: Sequence[float], high: Sequence[float]) -> None:
        """Change the action bounds, (A,) each, in place (compiled scoring keeps its buffers).

        The warm start stays in normalised units, so it rescales with the bounds: call
        :meth:`reset` when it should not carry over. Raises PlannerError for bounds of
        another length, non-finite, or with ``low >= high``.
        """
        lo = torch.as_tensor(np.asarray(low, dtype=np.float32), device=self.device)
        hi = torch.as_tensor(np.asarray(high, dtype=np.float32), device=self.device)
        if lo.shape != self.action_low.shape or hi.shape != self.action_high.shape:
            raise PlannerError(
                f"bounds must have {self.action_low.shape[0]} values, got {len(low)} and {len(high)}"
            )
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo < hi).all()):
            raise PlannerError(f"bounds must be finite with low < high, got {low} and {high}")
        self.action_low.copy_(lo)
        self.action_high.copy_(hi)
        self._mid.copy_((hi + lo) / 2)
        self._half.copy_((hi - lo) / 2)

    def set_goal(
        self, z_goal: Tensor | np.ndarray, *, model_version: int = 0, stamp_ns: int = 0
    ) -> None:
        """Hold the goal latent ``z_goal`` (D,) or (1, D), encoded by ``model_version``.

        Raises PlannerError for a wrong shape or non-finite values.
        """
        z = self._latent(z_goal, "goal latent")
        self._goal = _Goal(z.clone(), int(model_version), int(stamp_ns))

    def clear_goal(self) -> None:
        self._goal = None

    def warmup(self) -> None:
        """Run one solve on zero latents, then restore the state (goal, warm start, random
        stream). Call at start-up with ``compile=True``: the first solve compiles (seconds
        on CUDA, tens of seconds on CPU)."""
        if self.latent_dim is None:
            raise PlannerError("warmup needs the model's latent_dim")
        goal, warm = self._goal, self._warm
        mean, rng = self._mean.clone(), self._generator.get_state()
        self._goal = _Goal(torch.zeros(self.latent_dim, device=self.device), 0, 0)
        try:
            self.plan(torch.zeros(self.latent_dim, device=self.device))
        finally:
            self._goal, self._warm = goal, warm
            self._mean.copy_(mean)
            self._generator.set_state(rng)

    def _latent(self, z: Tensor | np.ndarray, what: str) -> Tensor:
        if isinstance(z, np.ndarray):  # e.g. a read-only view of a received message: copy
            z = torch.tensor(z, dtype=torch.float32, device=self.device)
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.ndim == 2 and z.shape[0] == 1:
            z = z[0]
        if z.ndim != 1:
            raise PlannerError(f"{what} must be (D,) or (1, D), got shape {tuple(z.shape)}")
        if self.latent_dim is not None and z.shape[0] != self.latent_dim:
            raise PlannerError(
                f"{what} has {z.shape[0]} dims; the world model's latents have {self.latent_dim}"
            )
        if not bool(torch.isfinite(z).all()):
            raise PlannerError(f"{what} has non-finite values")
        return z

    def _checked_goal(self, z0: Tensor, model_version: int, now_ns: int | None) -> Tensor:
        goal = self._goal
        if goal is None:
            raise NoGoalError("no goal: call set_goal(z_goal) before plan()")
        if goal.model_version != model_version:
            raise StaleGoalError(
                f"goal latent is from world-model version {goal.model_version}, the current "
                f"latent from version {model_version}; re-encode the goal with the new model"
            )
        max_age = self.cfg.goal_max_age_s
        if max_age > 0 and now_ns is not None and now_ns - goal.stamp_ns > max_age * 1e9:
            age = (now_ns - goal.stamp_ns) / 1e9
            raise StaleGoalError(f"goal is {age:.3f} s old; goal_max_age_s is {max_age}")
        if goal.z.shape != z0.shape:
            raise PlannerError(
                f"goal latent has shape {tuple(goal.z.shape)}, latent {tuple(z0.shape)}"
            )
        return goal.z

    # -- solve ---------------------------------------------------------------------------

    def plan(
        self,
        z0: Tensor | np.ndarray,
        *,
        model_version: int = 0,
        now_ns: int | None = None,
        shift: int = 1,
        iterations: int | None = None,
        evaluate: bool = True,
        deadline_ns: int | None = None,
    ) -> Solution:
        """Solve for the action sequence from latent ``z0`` (D,) toward the held goal.

        Args:
            z0: current latent (D,) or (1, D).
            model_version: version of the world model that encoded ``z0``.
            now_ns: current time on the graph clock, for ``goal_max_age_s``.
            shift: control steps applied since the previous solve; the warm start is
                shifted by that many (0 when re-planning within one control step).
            iterations: overrides ``cfg.iterations`` for this call (anytime planning).
            evaluate: roll the returned sequence out once more for its own cost and
                latents. Without it (a controller that needs only the actions) the
                solution's cost is the lowest sampled in the last iteration, latents are
                (0, D), and the solve is a rollout shorter; the actions are the same.
            deadline_ns: a real-time budget on ``time.monotonic_ns()``: after each
                iteration, stop refining if one more, as long as the longest so far,
                would end after it (the solution says how many ran; at least one
                always does). On CUDA this synchronises once per iteration.

        Raises:
            NoGoalError, StaleGoalError, PlannerError (bad latent).
        """
        cfg = self.cfg
        z0 = self._latent(z0, "latent")
        z_goal = z0 if self.latent_cost is not None else self._checked_goal(
            z0, model_version, now_ns)
        n_iter = cfg.iterations if iterations is None else int(iterations)
        if n_iter < 1:
            raise PlannerError(f"iterations must be >= 1, got {n_iter}")
        if shift < 0:
            raise PlannerError(f"shift must be >= 0 control steps, got {shift}")
        with torch.no_grad():
            mean, std = self._mean, self._std
            if not self._warm:
                mean.zero_()
            elif shift > 0:
                _shift_in_place(mean, shift)
            std.fill_(cfg.noise_std)
            z0b = z0.expand(cfg.samples, -1)  # (N, D) no copy
            timer = None if deadline_ns is None else _IterationTimer(deadline_ns, self.device)
            done = 0
            while done < n_iter:
                u = self._sample(mean, std)  # (N, H, A)
                torch.addcmul(self._mid, self._half, u, out=self._a)
                if self._graphs:  # the previous replay's outputs are no longer read
                    torch.compiler.cudagraph_mark_step_begin()
                costs, _ = self._score(z0b, self._a, u, z_goal)  # (N,)
                self._refit(u, costs, mean, std)
                done += 1
                if timer is not None and done < n_iter and not timer.another_fits():
                    break
            actions = (self._mid + self._half * mean).unsqueeze(0)  # (1, H, A)
            if evaluate:
                cost, latents = self._score_eager(
                    z0.unsqueeze(0), actions, mean.unsqueeze(0), z_goal
                )
                cost, latents = cost[0], latents[0]
            else:
                cost, latents = costs.min(), z0.new_empty(0, z0.shape[0])
        self._warm = True
        return Solution(actions=actions[0], latents=latents, cost=cost, iterations=done)

    def _sample(self, mean: Tensor, std: Tensor) -> Tensor:
        """(N, H, A) clipped samples around (mean, std); sample 0 is the mean itself."""
        eps, u = self._eps, self._u
        torch.randn(eps.shape, generator=self._generator, device=self.device, out=eps)
        torch.addcmul(mean, std, eps, out=u)
        u[0] = mean
        return u.clamp_(-1.0, 1.0)

    def _score_eager(
        self, z0: Tensor, a: Tensor, u: Tensor, z_goal: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Costs (B,) and predicted latents (B, H, D) of action sequences ``a`` (B, H, A)
        (``u`` the same in normalised units) from latents ``z0`` (B, D)."""
        zs = self.model.rollout(z0, a)  # (B, H, D)
        if self.latent_cost is not None:
            cost = self.latent_cost(zs)  # (B,)
        else:
            diff = zs - z_goal
            dist = diff.abs().mean(-1) if self.cfg.cost == "l1" else diff.square().mean(-1)
            cost = dist @ self._weights  # (B,) from (B, H)
        if self.cfg.smoothness_weight > 0 and u.shape[1] > 1:
            du = (u[:, 1:] - u[:, :-1]).square().mean(-1).sum(-1)  # (B,)
            cost = cost + self.cfg.smoothness_weight * du
        if self.action_cost is not None:
            cost = cost + self.action_cost(a)
        return cost, zs

    def _refit(self, u: Tensor, costs: Tensor, mean: Tensor, std: Tensor) -> None:
        """Update ``mean`` and ``std`` (H, A) in place from samples ``u`` (N, H, A) and
        their ``costs`` (N,)."""
        raise NotImplementedError

    def _blend(self, mean: Tensor, std: Tensor, new_mean: Tensor, new_std: Tensor) -> None:
        """Momentum update of the Gaussian in place, std clamped to [min_std, noise_std].

        ``std_momentum`` slows the collapse of the std, the usual failure of CEM-like
        refits with a diagonal Gaussian (the mean stalls in correlated valleys).
        """
        cfg = self.cfg
        mean.mul_(cfg.momentum).add_(new_mean, alpha=1.0 - cfg.momentum)
        std.mul_(cfg.std_momentum).add_(new_std, alpha=1.0 - cfg.std_momentum)
        std.clamp_(cfg.min_std, cfg.noise_std)


class _IterationTimer:
    """Whether one more iteration, as long as the longest so far, ends by a deadline."""

    def __init__(self, deadline_ns: int, device: torch.device) -> None:
        self.deadline_ns = deadline_ns
        self.cuda = device if device.type == "cuda" else None
        self.last_ns = time.monotonic_ns()
        self.longest_ns = 0

    def another_fits(self) -> bool:
        if self.cuda is not None:
            torch.cuda.synchronize(self.cuda)
        now = time.monotonic_ns()
        self.longest_ns = max(self.longest_ns, now - self.last_ns)
        self.last_ns = now
        return now + self.longest_ns <= self.deadline_ns


def _shift_in_place(mean: Tensor, shift: int) -> None:
    """Drop the first ``shift`` steps of ``mean`` (H, A); repeat the old last step at the end."""
    h = mean.shape[0]
    last = mean[-1].clone()
    if shift < h:
        mean[: h - shift] = mean[shift:].clone()
    mean[max(h - shift, 0) :] = last


def _first_parameter(model: object) -> Tensor | None:
    params = getattr(model, "parameters", None)
    return next(iter(params()), None) if callable(params) else None
