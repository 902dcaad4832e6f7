"""CEM and MPPI against known linear latent models: optimum, warm start, bounds,
determinism, goals, configuration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from reflexarc.planner.cem import CEMConfig, CEMPlanner
from reflexarc.planner.mpc import (
    NoGoalError,
    PlannerError,
    SamplingConfig,
    SamplingPlanner,
    StaleGoalError,
    _shift_in_place,
)
from reflexarc.planner.mppi import MPPIConfig, MPPIPlanner
from reflexarc.planner.planners import make_planner
from reflexarc.planner.protocol import LinearLatentModel
from reflexarc.planner.reach import latent_reach_episode
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError

PLANNERS = {"cem": (CEMPlanner, CEMConfig), "mppi": (MPPIPlanner, MPPIConfig)}
HALF = torch.tensor([0.05, 0.05, 0.05, 1.0], dtype=torch.float64)  # default bounds' half-range


def build(kind: str, model: LinearLatentModel, **cfg: object) -> SamplingPlanner:
    cls, config = PLANNERS[kind]
    return cls(model, config(**cfg))


@dataclass
class Quadratic:
    """An unconstrained quadratic problem with its least-squares optimum.

    Cost in normalised actions u (a = HALF * u, bounds symmetric): the planner's ``l2``
    cost, written as ``J(u) = |M u - r|^2``.
    """

    model: LinearLatentModel
    z0: Tensor  # (D,)
    z_goal: Tensor  # (D,)
    M: Tensor
    r: Tensor
    u_opt: Tensor  # (H * A,)

    def J(self, u: Tensor) -> float:
        return float(((self.M @ u.double() - self.r) ** 2).sum())


def quadratic(
    D: int = 12, H: int = 3, running: float = 1.0, terminal: float = 1.0, smooth: float = 0.1
) -> Quadratic:
    A_ = 4
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    Am = 0.9 * q
    Bm = torch.randn(D, A_, generator=g, dtype=torch.float64) / HALF  # u has unit effect
    z0 = torch.randn(D, generator=g, dtype=torch.float64)
    # zs (H*D) = f + G u
    G = torch.zeros(H * D, H * A_, dtype=torch.float64)
    f = torch.zeros(H * D, dtype=torch.float64)
    for t in range(H):
        f[t * D : (t + 1) * D] = torch.linalg.matrix_power(Am, t + 1) @ z0
        for k in range(t + 1):
            block = torch.linalg.matrix_power(Am, t - k) @ Bm @ torch.diag(HALF)
            G[t * D : (t + 1) * D, k * A_ : (k + 1) * A_] = block
    u_true = (torch.rand(H * A_, generator=g, dtype=torch.float64) - 0.5) * 0.8
    z_goal = (f + G @ u_true)[-D:] + 0.1 * torch.randn(D, generator=g, dtype=torch.float64)
    w = torch.full((H,), running, dtype=torch.float64)
    w[-1] = terminal
    W = torch.repeat_interleave((w / D).sqrt(), D)  # l2 cost is the mean over D
    S = torch.zeros((H - 1) * A_, H * A_, dtype=torch.float64)
    for t in range(1, H):
        for j in range(A_):
            S[(t - 1) * A_ + j, t * A_ + j] = 1.0
            S[(t - 1) * A_ + j, (t - 1) * A_ + j] = -1.0
    S *= (smooth / A_) ** 0.5  # smoothness is the mean over A of squared u differences
    M = torch.cat([W[:, None] * G, S])
    r = torch.cat([W * (z_goal.repeat(H) - f), torch.zeros((H - 1) * A_, dtype=torch.float64)])
    u_opt = torch.linalg.lstsq(M, r).solution
    model = LinearLatentModel(Am.float(), Bm.float())
    return Quadratic(model, z0.float(), z_goal.float(), M, r, u_opt)


# -- optimum ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PLANNERS)
def test_cost_and_latents_are_those_of_the_returned_actions(kind: str) -> None:
    """The reported cost is the closed-form objective at the returned actions (l2), and
    the reported latents are the model's rollout of them."""
    prob = quadratic()
    planner = build(kind, prob.model, horizon=3, cost="l2", smoothness_weight=0.1, iterations=2)
    planner.set_goal(prob.z_goal)
    sol = planner.plan(prob.z0)
    assert sol.actions.shape == (3, 4) and sol.latents.shape == (3, 12) and sol.cost.shape == ()
    u = (sol.actions.double() / HALF).reshape(-1)
    assert float(sol.cost) == pytest.approx(prob.J(u), rel=1e-4)
    torch.testing.assert_close(sol.latents, prob.model.rollout(prob.z0[None], sol.actions[None])[0])
    # l1: terminal and running weights over mean |dz|
    planner = build(kind, prob.model, horizon=3, running_weight=0.3, terminal_weight=2.0)
    planner.set_goal(prob.z_goal)
    sol = planner.plan(prob.z0)
    d = (sol.latents - prob.z_goal).abs().mean(-1)
    assert float(sol.cost) == pytest.approx(float(0.3 * d[0] + 0.3 * d[1] + 2.0 * d[2]), rel=1e-5)


@pytest.mark.parametrize("kind", PLANNERS)
def test_without_evaluate_the_actions_are_the_same_and_the_cost_is_the_best_sampled(
    kind: str,
) -> None:
    prob = quadratic()
    planners = [build(kind, prob.model, horizon=3, iterations=2, seed=3) for _ in range(2)]
    for p in planners:
        p.set_goal(prob.z_goal)
    scored = []  # the sample costs of every iteration of the lean planner
    score = planners[1]._score
    planners[1]._score = lambda *args: scored.append(score(*args)) or scored[-1]
    z = prob.z0
    for _ in range(3):  # warm-started solves: the random stream stays in step
        full = planners[0].plan(z)
        lean = planners[1].plan(z, evaluate=False)
        torch.testing.assert_close(lean.actions, full.actions, rtol=0, atol=0)
        assert lean.latents.shape == (0, 12) and lean.cost.shape == ()
        assert float(lean.cost) == float(scored[-1][0].min())
        z = full.latents[0]


@pytest.mark.parametrize("kind", PLANNERS)
def test_a_deadline_stops_refining_when_another_iteration_would_not_fit(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reflexarc.planner.mpc as mpc

    prob = quadratic()
    clock = [0]  # a fake monotonic clock: each scoring of the samples takes 10 ms
    monkeypatch.setattr(mpc.time, "monotonic_ns", lambda: clock[0])
    planner = build(kind, prob.model, horizon=3, iterations=10, seed=1)
    score = planner._score

    def slow_score(*args: object) -> tuple[Tensor, Tensor]:
        clock[0] += 10_000_000
        return score(*args)

    planner._score = slow_score
    planner.set_goal(prob.z_goal)
    # 35 ms: after 3 iterations (30 ms) a fourth would end at 40 ms
    assert planner.plan(prob.z0, deadline_ns=35_000_000).iterations == 3
    planner.reset(seed=1)
    planner.set_goal(prob.z_goal)
    assert planner.plan(prob.z0, deadline_ns=10**15).iterations == 10
    # a deadline already past: one iteration, the same as asking for one
    planner.reset(seed=1)
    planner.set_goal(prob.z_goal)
    late = planner.plan(prob.z0, deadline_ns=0)
    planner.reset(seed=1)
    planner.set_goal(prob.z_goal)
    one = planner.plan(prob.z0, iterations=1)
    assert late.iterations == 1
    torch.testing.assert_close(late.actions, one.actions, rtol=0, atol=0)


@pytest.mark.parametrize("kind", PLANNERS)
def test_converges_to_the_least_squares_optimum(kind: str) -> None:
    prob = quadratic()
    assert float(prob.u_opt.abs().max()) < 0.95  # the bounds are not active: unconstrained
    planner = build(
        kind,
        prob.model,
        samples=1024,
        elites=32,
        horizon=3,
        iterations=40,
        cost="l2",
        smoothness_weight=0.1,
        min_std=0.0,
        std_momentum=0.5,
    )
    planner.set_goal(prob.z_goal)
    sol = planner.plan(prob.z0)
    u = (sol.actions.double() / HALF).reshape(-1)
    j_opt = prob.J(prob.u_opt)
    assert prob.J(u) - j_opt < 1e-4 * j_opt
    assert float((u - prob.u_opt).abs().max()) < 0.02  # 1 % of each action range


@pytest.mark.parametrize("kind", PLANNERS)
def test_reaches_an_exactly_reachable_goal_latent(kind: str) -> None:
    model = LinearLatentModel.random(8, 4, seed=2)
    z0 = torch.randn(8, generator=torch.Generator().manual_seed(2))
    u_true = torch.tensor([[0.6, -0.4, 0.2, -0.5], [0.3, 0.5, -0.6, 0.4], [-0.2, 0.1, 0.4, 0.2]])
    z_goal = model.rollout(z0[None], (u_true * HALF.float())[None])[0, -1]
    planner = build(
        kind,
        model,
        horizon=3,
        running_weight=0.0,
        samples=512,
        elites=32,
        iterations=40,
        min_std=0.0,
        std_momentum=0.5,  # slows the std collapse: long solves converge further
    )
    planner.set_goal(z_goal)
    sol = planner.plan(z0)
    scale = float((z_goal - z0).abs().mean())
    assert float((sol.latents[-1] - z_goal).abs().mean()) < 5e-3 * scale


@pytest.mark.parametrize("kind", PLANNERS)
def test_closed_loop_reaches_the_goal_at_default_settings(kind: str) -> None:
    """MPC loop (plan, apply the first action, shift) on a latent integrator: the end
    effector ends within 1 cm of a goal given only as a latent."""
    cfg = PLANNERS[kind][1]()
    for seed in range(2):
        result = latent_reach_episode(kind, cfg, seed)
        assert result["success"], f"seed {seed}: {result}"


# -- warm start -------------------------------------------------------------------------


def test_shift_drops_applied_steps_and_repeats_the_last() -> None:
    base = torch.arange(5.0)[:, None].repeat(1, 2)  # (H=5, A=2), row t = t
    for shift, expect in [(1, [1, 2, 3, 4, 4]), (2, [2, 3, 4, 4, 4]), (7, [4, 4, 4, 4, 4])]:
        m = base.clone()
        _shift_in_place(m, shift)
        assert m[:, 0].tolist() == expect and m[:, 1].tolist() == expect


@pytest.mark.parametrize("kind", PLANNERS)
def test_warm_start_needs_fewer_iterations_on_the_shifted_problem(kind: str) -> None:
    """Solve, apply the first action, solve the shifted problem: one warm iteration beats
    three cold ones."""
    from reflexarc.planner.reach import latent_reach_model

    model = latent_reach_model(latent_dim=32)
    E = model.B
    s0 = torch.tensor([0.3, -0.2, 0.1, 1.0])
    goal = torch.tensor([0.6, 0.2, 0.3, -1.0])
    kw = {"horizon": 8, "samples": 128, "cost": "l2"}
    warm, cold_1, cold_3 = [], [], []
    for seed in range(4):
        p = build(kind, model, seed=seed, **kw)
        p.set_goal(E @ goal)
        first = p.plan(E @ s0, iterations=20)
        torch.testing.assert_close(p.warm_start, first.actions)
        s1 = s0 + first.actions[0]
        warm.append(float(p.plan(E @ s1, shift=1, iterations=1).cost))
        for iterations, out in [(1, cold_1), (3, cold_3)]:
            p = build(kind, model, seed=seed, **kw)
            p.set_goal(E @ goal)
            out.append(float(p.plan(E @ s1, iterations=iterations).cost))
    w1, c1, c3 = np.mean(warm), np.mean(cold_1), np.mean(cold_3)
    assert w1 < c3 < c1, (w1, c3, c1)


# -- bounds -----------------------------------------------------------------------------


class RecordingModel(LinearLatentModel):
    """Records the range of every action batch the planner rolls out."""

    def __init__(self, base: LinearLatentModel) -> None:
        super().__init__(base.A, base.B)
        self.lows: list[Tensor] = []
        self.highs: list[Tensor] = []

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        self.lows.append(actions.amin(dim=(0, 1)))
        self.highs.append(actions.amax(dim=(0, 1)))
        return super().rollout(z0, actions)


@pytest.mark.parametrize("kind", PLANNERS)
def test_every_sample_and_the_plan_respect_asymmetric_bounds(kind: str) -> None:
    low, high = [-0.01, -0.05, 0.0, -1.0], [0.03, 0.02, 0.02, 0.5]
    model = RecordingModel(LinearLatentModel.random(6, 4, seed=4))
    planner = build(kind, model, action_low=low, action_high=high, noise_std=2.0, horizon=4)
    z0 = torch.zeros(6)
    z_goal = model.B @ torch.tensor([10.0, -10.0, 10.0, -10.0])  # far out of reach
    planner.set_goal(z_goal)
    for _ in range(3):
        sol = planner.plan(z0)
    lo, hi = torch.tensor(low), torch.tensor(high)
    assert torch.all(torch.stack(model.lows) >= lo) and torch.all(torch.stack(model.highs) <= hi)
    assert torch.all(sol.actions >= lo) and torch.all(sol.actions <= hi)
    assert torch.equal(torch.stack(model.lows).amin(0), lo)  # samples do reach the bounds
    assert torch.equal(torch.stack(model.highs).amax(0), hi)


@pytest.mark.parametrize("kind", PLANNERS)
def test_set_bounds_narrows_every_sample_in_place(kind: str) -> None:
    model = RecordingModel(LinearLatentModel.random(6, 4, seed=4))
    planner = build(kind, model, noise_std=2.0, horizon=4)
    z_goal = model.B @ torch.tensor([10.0, -10.0, 10.0, -10.0])  # far out of reach
    planner.set_goal(z_goal)
    planner.plan(torch.zeros(6))
    low, high = [-0.02, -0.03, -0.01, -1.0], [0.01, 0.03, 0.02, 1.0]
    planner.set_bounds(low, high)
    model.lows.clear()
    model.highs.clear()
    sol = planner.plan(torch.zeros(6))
    lo, hi = torch.tensor(low), torch.tensor(high)
    assert torch.equal(torch.stack(model.lows).amin(0), lo)  # the new bounds, reached
    assert torch.equal(torch.stack(model.highs).amax(0), hi)
    assert torch.all(sol.actions >= lo) and torch.all(sol.actions <= hi)
    for bad in (([0.0] * 3, [1.0] * 3), ([0.0] * 4, [0.0] * 4), ([float("nan")] * 4, [1.0] * 4)):
        with pytest.raises(PlannerError):
            planner.set_bounds(*bad)
    assert torch.equal(planner.action_low, lo)  # a refused change leaves the bounds


# -- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PLANNERS)
def test_deterministic_for_a_seed(kind: str) -> None:
    model = LinearLatentModel.random(8, 4, seed=5)
    g = torch.Generator().manual_seed(5)
    zs = torch.randn(3, 8, generator=g)
    z_goal = torch.randn(8, generator=g)

    def run(planner: SamplingPlanner) -> list[Tensor]:
        planner.set_goal(z_goal)
        return [planner.plan(z).actions.clone() for z in zs]

    a = run(build(kind, model, seed=11))
    b = run(build(kind, model, seed=11))
    c = run(build(kind, model, seed=12))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    planner = build(kind, model, seed=12)
    run(planner)
    planner.reset(seed=11)
    assert all(torch.equal(x, y) for x, y in zip(a, run(planner), strict=True))


# -- goals ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PLANNERS)
def test_missing_stale_or_malformed_goals_raise_planner_errors(kind: str) -> None:
    model = LinearLatentModel.random(4, 4, seed=6)
    planner = build(kind, model, goal_max_age_s=0.5)
    z = torch.zeros(4)
    with pytest.raises(NoGoalError, match="no goal"):
        planner.plan(z)
    planner.set_goal(torch.ones(4), model_version=3, stamp_ns=1_000_000_000)
    with pytest.raises(StaleGoalError, match="version 3"):
        planner.plan(z, model_version=4)
    with pytest.raises(StaleGoalError, match="old"):
        planner.plan(z, model_version=3, now_ns=2_000_000_000)
    sol = planner.plan(z, model_version=3, now_ns=1_400_000_000)  # still usable
    assert torch.isfinite(sol.actions).all()
    with pytest.raises(PlannerError, match="dims"):
        planner.plan(torch.zeros(5), model_version=3)
    with pytest.raises(PlannerError, match="non-finite"):
        planner.plan(torch.tensor([0.0, float("nan"), 0.0, 0.0]), model_version=3)
    with pytest.raises(PlannerError, match="dims"):
        planner.set_goal(torch.zeros(3))
    planner.clear_goal()
    with pytest.raises(NoGoalError):
        planner.plan(z)
    planner.set_goal(np.ones((1, 4), dtype=np.float32))  # numpy, (1, D): accepted
    planner.reset()
    assert not planner.has_goal
    assert issubclass(NoGoalError, PlannerError) and issubclass(StaleGoalError, PlannerError)


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"elites": 300}, "planner.elites"),
        ({"samples": 1}, "planner.samples"),
        ({"cost": "l3"}, "planner.cost"),
        ({"momentum": 1.5}, "planner.momentum"),
        ({"min_std": 0.9}, "planner.min_std"),
        ({"action_high": [0.05, -0.05, 0.05, 1.0]}, "planner.action_high.1"),
        ({"action_high": [0.05, 0.05]}, "planner.action_high"),
        ({"terminal_weight": 0.0, "running_weight": 0.0}, "planner.terminal_weight"),
        ({"device": "tpu"}, "planner.device"),
    ],
)
def test_config_errors_name_the_key(values: dict, key: str) -> None:
    for schema in (CEMConfig, MPPIConfig):
        with pytest.raises(ConfigError) as err:
            from_mapping(schema, values, "planner.")
        assert err.value.key == key


def test_make_planner_and_model_mismatch() -> None:
    model = LinearLatentModel.random(4, 4)
    assert isinstance(make_planner("cem", model), CEMPlanner)
    planner = make_planner("mppi", model, {"samples": 64, "temperature": 0.5})
    assert isinstance(planner, MPPIPlanner) and planner.cfg.temperature == 0.5
    with pytest.raises(ConfigError) as err:
        make_planner("mppi", model, {"temperature": 0.0})
    assert err.value.key == "temperature"
    with pytest.raises(ConfigError, match="allowed: cem, mppi"):
        make_planner("ilqr", model)
    with pytest.raises(ConfigError, match="MPPIConfig"):
        make_planner("mppi", model, CEMConfig())
    with pytest.raises(ConfigError) as err:
        CEMPlanner(LinearLatentModel.random(4, 3), CEMConfig())
    assert err.value.key == "action_low"
    with pytest.raises(ConfigError) as err:
        CEMPlanner(model, CEMConfig(elites=500))  # validated at construction too
    assert err.value.key == "elites"
    assert SamplingConfig().action_high == [0.05, 0.05, 0.05, 1.0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        CEMPlanner(LinearLatentModel.random(4, 4), CEMConfig(device="cuda"))
    planner = CEMPlanner(LinearLatentModel.random(4, 4), CEMConfig(device="auto"))
    assert planner.device.type == "cpu"


# -- compiled and CUDA paths -------------------------------------------------------------


@pytest.mark.slow
def test_compiled_scoring_matches_eager_on_cpu() -> None:
    """``compile=True`` must work on CPU (inductor) and give the eager plan."""
    model = LinearLatentModel.random(4, 4, seed=7)
    kw = {"samples": 32, "elites": 4, "horizon": 3, "iterations": 2}
    eager = CEMPlanner(model, CEMConfig(**kw))
    compiled = CEMPlanner(model, CEMConfig(compile=True, **kw))
    for p in (eager, compiled):
        p.set_goal(torch.ones(4))
    compiled.warmup()  # compiles, then restores the planner's state
    assert compiled.has_goal  # the goal survived warmup
    for z in torch.randn(2, 4, generator=torch.Generator().manual_seed(7)):
        a, b = eager.plan(z), compiled.plan(z)
        torch.testing.assert_close(a.actions, b.actions, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.cost, b.cost, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile_", [False, True])
def test_cuda_plans_on_the_configured_device(compile_: bool) -> None:
    model = LinearLatentModel.random(8, 4, seed=8, device="cuda")
    planners = [CEMPlanner(model, CEMConfig(device="cuda", compile=compile_)) for _ in range(2)]
    results = []
    for p in planners:
        p.set_goal(torch.ones(8))
        p.warmup()
        results.append([p.plan(torch.zeros(8)).actions for _ in range(3)])
    for a, b in zip(*results, strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b)
        assert torch.all(a.abs() <= torch.tensor([0.05, 0.05, 0.05, 1.0], device="cuda"))
