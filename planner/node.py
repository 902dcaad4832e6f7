"""The planner node: latent MPC from pixels toward a goal (docs/architecture.md, "The nodes").

Inputs: ``latent/<camera>`` (the newest latent of one camera, from the perception node),
``goal`` (a :class:`~reflexarc.runtime.msgs.Goal`: a task as a person states it, or a goal
latent), ``goal_latent`` (a goal image encoded by the perception node, with its model
version), ``objects/<camera>`` (the blocks perception placed in the base frame),
``joint_state`` (the hand by forward kinematics, the finger opening), ``weights`` (hot
swap). Output: ``plan``, end-effector setpoints over time for the controller.

The planner holds no image encoder and reads no privileged simulator state
(docs/senses.md): the perception node is the only encoder.

One step:

1. **Weights.** New weights load in a background thread
   (:class:`reflexarc.perception.encoding.ModelSlot`); the loaded model becomes a second "brain"
   (model + planner). Each latent is planned with the brain whose model version encoded
   it, so the perception node and the planner may swap at different steps without ever
   mixing latent spaces; the older brain is dropped once latents of the newer version
   arrive.
2. **Goal.** Two kinds:

   - **A task** (``Goal`` with ``task``, ``object``, ``target``; no image, no latent): the
     task layer (:mod:`reflexarc.planner.tasks`) decides each frame's stage from the
     blocks perception sees, the measured hand and the finger opening, and gives the
     stage's hand target, gripper and speed. The latent MPC then searches actions whose
     predicted latents show the hand at that target, the hand read by the hand probe
     relative to the measured hand (:mod:`reflexarc.planner.task_cost`); the hand moves
     at most the stage's speed. Needs ``hand_probe``.
   - **A goal latent**: from ``goal_latent`` (the perception node encodes a goal image a
     person shows, a goal message's image or its ``goal_image`` file, and re-encodes it
     after a weight swap), or a ``goal`` carrying ``z``. Each brain plans with the latent
     of its own model version; until one comes the state is "goal_wait", a latent of
     another version only is "stale_goal". The latent distance is the cost, with a pull
     toward the hand the probe reads from the goal latent (:class:`HandBox`).

   A goal with a new stamp is a new episode: the warm start is reset. No goal, or a
   goal not heard of for ``goal_max_age_s``, gives the state "no_goal" / "stale_goal"
   (heartbeat and summary) and no plan: the controller's watchdog then holds the arm.
3. **End effector.** The hand position comes from proprioception: forward kinematics of
   the measured joint positions (:class:`reflexarc.robot.kinematics.ArmKinematics`). As in
   the envs' tracker (:mod:`reflexarc.sim.ee_control`), a plan starts from where the
   previous plan commands the hand now, kept within ``windup`` of the measured hand, so
   displacements add up as the world model learnt.
4. **Solve.** On each new latent (taken after the goal's stamp) CEM or MPPI
   (:mod:`reflexarc.planner.mpc`) searches ``horizon`` end-effector actions, warm-started and
   shifted by the control periods elapsed, with :class:`HandBox` keeping the predicted
   hand where the world model has seen it. In realtime the solve runs in a worker thread,
   so the loop keeps its rate (``solve: inline`` runs it in the step, as the ``pixels``
   graph does), with its own budget (``realtime_samples``, ``realtime_iterations``) and
   ``realtime_deadline_ms``: no more iterations than end that long after the frame was
   ready; in lockstep it runs inline (deterministic) with the full budget. The newest
   plan is resent after ``keepalive_s`` without a new one, for a controller that missed
   it; a resent plan (its stamp unchanged) does not refresh the controller's plan
   watchdog (docs/safety.md, "Holds"): the arm holds when new latents stop.
5. **Plan.** Action ``k`` is the displacement over control period ``k``, so the plan's
   setpoints are the hand position plus the cumulative displacements, ``dt`` apart from
   ``t0`` = the step that started the solve, clipped to the workspace, hand pointing down,
   gripper from the actions (a task's stage: its gripper command); ``stamp_ns`` is the
   source frame's stamp.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from reflexarc.perception.block_head import BlockHead, BlockHeadError, head_path
from reflexarc.perception.encoding import LoadedModel, ModelSlot, load_model
from reflexarc.perception.hand import HandProbe, ProbeError, probe_path
from reflexarc.planner.cem import CEMConfig
from reflexarc.planner.mpc import PlannerError, SamplingPlanner, StaleGoalError
from reflexarc.planner.mppi import MPPIConfig
from reflexarc.planner.planners import make_planner
from reflexarc.planner.task_cost import HandTargetCost
from reflexarc.planner.tasks import Stage, TaskError, TaskLayer, TaskLayerConfig
from reflexarc.policies.checkpoint import CheckpointError, verify_checkpoint, weights_path
from reflexarc.robot.description import robot_description
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.plan import sample_plan
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Goal, JointState, Latent, Objects, Plan, empty, frame_ready_ns
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring

log = logging.getLogger(__name__)



def plan_setpoints(
    base: np.ndarray, actions: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Setpoints of an action sequence: positions (T, 3) and gripper (T,), T = H + 1.

    ``base`` (3,): the hand position at the plan's start; ``actions`` (H, 4): per control
    period a displacement (dx, dy, dz) and a gripper command. Position ``k`` is ``base``
    plus the first ``k`` displacements, each step clipped into the box [lo, hi] (as the
    envs' tracker clips its target); the gripper at setpoint ``k`` is the command of the
    period that ends there (setpoint 0: the first period's, applied at once).
    """
    h = actions.shape[0]
    pos = np.empty((h + 1, 3))
    pos[0] = np.clip(base, lo, hi)
    for k in range(h):  # H is small (5-10): a loop is cheaper than cumsum + clip twice
        pos[k + 1] = np.clip(pos[k] + actions[k, :3], lo, hi)
    grip = np.empty(h + 1, dtype=np.float32)
    grip[0] = actions[0, 3]
    grip[1:] = actions[:, 3]
    return pos, np.clip(grip, -1.0, 1.0)


class HandBox:
    """Extra planning costs on the predicted hand: a box, and a pull toward the goal's hand.

    The hand's position after ``k`` actions is known without the world model: the plan's
    start plus the first ``k`` displacements. Sequences that leave the box pay
    ``weight * sum_k (distance outside the box)^2`` (m^2): it keeps the search where the
    world model has seen the arm (its exploration data) instead of letting it chase
    latent errors out of the workspace. When ``goal`` is set (the hand position a goal
    image shows, read by a :class:`reflexarc.perception.hand.HandProbe`), sequences also pay
    ``prior_weight * sum_k max(0, |hand_k - goal| - radius)^2``: a smooth pull from far
    away, where latent distances to the goal are flat. The probe's reading can be off by
    several centimetres (more where its data were thin), so the pull lets go once the
    hand has come within ``radius`` of it and the latent cost alone decides; it takes
    hold again only if the hand strays a ``radius`` farther than where it let go
    (:meth:`update`). Where the probe errs by more than ``radius`` the hand never comes
    that close: the pull would pin it on the sphere around the wrong reading, with the
    latent cost pulling outward. So the pull also lets go when, while it holds, the hand
    has come no closer (by ``STALL_M``) for ``stall_s``: it has brought the hand as near
    as the latent cost lets it, and the latent cost decides from there.

    Once the pull has let go, an optional fine pull (``servo``, ``servo_radius``) takes
    over with the same weight: toward the goal's hand read *relative* to the measured
    hand, ``hand + probe(z_goal) - probe(z_now)``. Near the goal both readings share most
    of the probe's error, so this estimate sharpens as the hand closes in, where the
    predicted latent cost alone can settle several centimetres off (reach targets high
    above the table, which the push exploration data rarely show).
    """

    STALL_M = 0.01  # m of progress toward the goal's hand that counts as not stalled

    def __init__(self, lo: np.ndarray, hi: np.ndarray, weight: float, device: torch.device,
                 prior_weight: float = 0.0, radius: float = 0.07, stall_s: float = 0.0) -> None:
        self.lo = torch.as_tensor(lo, dtype=torch.float32, device=device)  # (3,)
        self.hi = torch.as_tensor(hi, dtype=torch.float32, device=device)  # (3,)
        self.weight = float(weight)
        self.prior_weight = float(prior_weight)
        self.radius = float(radius)
        self.stall_s = float(stall_s)  # 0: the pull never lets go for a stall
        self.base = torch.zeros(3, device=device)  # (3,) the hand where the plan starts
        self._goal: torch.Tensor | None = None  # (3,) the goal's hand position, if known
        self._goal_np = np.zeros(3)
        self.pulling = False
        self.released_at = self.radius  # m from the goal's hand where the pull let go
        self.best = float("inf")  # closest the hand came while pulling (m), and when
        self.best_ns: int | None = None
        self.stalls = 0  # times the pull let go for a stall
        # once the pull has let go: a fine pull toward ``servo`` (3,), the goal's hand as
        # the probe reads it relative to the measured hand (PlannerNode: hand_servo_radius)
        self.servo: torch.Tensor | None = None
        self.servo_radius = 0.0

    @property
    def goal(self) -> torch.Tensor | None:
        return self._goal

    @goal.setter
    def goal(self, hand: torch.Tensor | None) -> None:
        self._goal = hand
        if hand is not None:
            self._goal_np = hand.detach().cpu().numpy().astype(float)
        self.pulling = hand is not None
        self.released_at = self.radius
        self.best, self.best_ns = float("inf"), None
        self.servo = None

    def update(self, hand: np.ndarray, now_ns: int | None = None) -> None:
        """The hand is at ``hand`` (3,) at ``now_ns`` (graph clock; None: no stall test): let
        go of the pull near the goal's hand or once it stalls, take hold again when the hand
        strays a ``radius`` beyond where it let go."""
        if self._goal is None:
            return
        d = float(np.linalg.norm(np.asarray(hand) - self._goal_np))
        if not self.pulling:
            if d > self.released_at + self.radius:
                self.pulling = True
                self.best, self.best_ns = d, now_ns
            return
        if d < self.radius:
            self.pulling = False
            self.released_at = self.radius
        elif now_ns is not None and self.stall_s > 0:
            if self.best_ns is None or d < self.best - self.STALL_M:
                self.best, self.best_ns = d, now_ns
            elif now_ns - self.best_ns > self.stall_s * 1e9:
                self.pulling = False
                self.released_at = d
                self.stalls += 1

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """Cost (B,) of action sequences (B, H, A)."""
        pos = self.base + torch.cumsum(actions[..., :3], dim=1)  # (B, H, 3)
        out = torch.relu(self.lo - pos) + torch.relu(pos - self.hi)
        cost = self.weight * out.square().sum((1, 2))
        if self._goal is not None and self.pulling and self.prior_weight > 0:
            far = torch.relu((pos - self._goal).norm(dim=-1) - self.radius)  # (B, H)
            cost = cost + self.prior_weight * far.square().sum(1)
        elif self.servo is not None and self.prior_weight > 0:
            far = torch.relu((pos - self.servo).norm(dim=-1) - self.servo_radius)  # (B, H)
            cost = cost + self.prior_weight * far.square().sum(1)
        return cost


@dataclass
class _Brain:
    """One world-model version with its planner and its encoding of the current goal."""

    loaded: LoadedModel
    planner: SamplingPlanner
    # task goals: the predicted hand against the stage's target (None: no probe of this model)
    task_cost: HandTargetCost | None = None
    goal_id: int = -1  # which goal (PlannerNode.goal_id) the planner holds; -1: none
    goal_z: np.ndarray | None = None  # (D,) that goal's latent

    @property
    def version(self) -> int:
        return self.loaded.version


@dataclass
class _Job:
    """A solve: inputs captured at submission, outputs filled by whoever runs it."""

    brain: _Brain
    z: np.ndarray  # (D,)
    goal_id: int
    latent: Latent
    t0_ns: int  # graph time the solve started (the plan's t0)
    base: np.ndarray  # (3,) hand position at t0
    shift: int
    actions: np.ndarray | None = None  # (H, A)
    cost: float = float("nan")
    solve_us: float = 0.0
    error: str = ""
    stale: bool = False  # the planner found the goal stale (another model version)
    servo: np.ndarray | None = None  # (3,) the fine pull's target, if any
    stage: Stage | None = None  # a task goal: the stage planned toward
    # the block term of this solve: (head row, block as seen (3,), its target (3,)), or None
    block: tuple[int, np.ndarray, np.ndarray] | None = None
    deadline_ns: int | None = None  # realtime_deadline_ms after the frame was ready
    iterations: int = 0  # run (fewer than the budget when the deadline cut it short)


class PlannerNode(Node):
    """Latent MPC toward a task's stages or a goal latent; publishes end-effector plans
    (module docstring)."""

    @dataclass
    class Config:
        checkpoint: str = ""  # world-model checkpoint (directory or model.safetensors)
        camera: str = "front"  # plans from latent/<camera>
        planner: str = choice("mppi", "cem", "mppi")
        cem: CEMConfig = field(default_factory=CEMConfig)
        mppi: MPPIConfig = field(default_factory=MPPIConfig)
        control_dt_s: float = bounded(0.1, 1e-3, 10.0)  # time of one action (the model's step)
        plan_steps: int = bounded(0, 0, 1024)  # actions published per plan; 0: the horizon
        goal_max_age_s: float = bounded(0.0, 0.0, None)  # older goals are stale; 0: never
        max_latent_age_s: float = bounded(0.5, 0.0, None)  # no plan from older latents; 0: off
        windup: float = bounded(0.03, 0.0, 1.0)  # m the plan's start may lead the measured hand
        # the predicted hand pays for leaving this box (see HandBox); weight 0: off
        hand_box_lo: list[float] = field(default_factory=lambda: [0.3, -0.3, 0.0])
        hand_box_hi: list[float] = field(default_factory=lambda: [0.7, 0.3, 0.35])
        hand_box_weight: float = bounded(1e4, 0.0, None)  # per m^2 outside, per step
        # a hand probe (perception/hand.py) of this checkpoint: pull toward the goal's hand
        hand_probe: str = ""
        hand_prior_weight: float = bounded(100.0, 0.0, None)  # per m^2 beyond the radius
        hand_prior_radius: float = bounded(0.07, 0.0, 1.0)  # m left to the latent cost
        # the pull lets go when the hand has come no closer for this long (s); 0: never
        hand_prior_stall_s: float = bounded(0.5, 0.0, None)
        # > 0: once the pull toward the goal's hand has let go, a fine pull toward the goal's
        # hand read relative to the measured one (measured hand + probe(goal) - probe(now):
        # the probe's error mostly cancels near the goal), letting go within this radius (m)
        hand_servo_radius: float = bounded(0.0, 0.0, 1.0)
        # task goals: weight of the predicted hand's squared distance to the stage's
        # target (per m^2, per step; planner/task_cost.py), and the stages' geometry
        task_weight: float = bounded(100.0, 0.0, None)
        # task goals: a block head of this checkpoint (perception/block_head.py, trained on
        # perception's own detections; "": no block term): in ``block_stages`` the block
        # the world model predicts pays ``block_weight`` per m^2 per step off its target
        block_head: str = ""
        block_weight: float = bounded(100.0, 0.0, None)
        block_stages: list[str] = field(default_factory=lambda: ["push"])
        layer: TaskLayerConfig = field(default_factory=TaskLayerConfig)
        orientation: str = choice("down", "down", "keep")  # down: plans hold the hand down
        solve: str = choice("auto", "auto", "inline", "thread")  # auto: thread in realtime
        # the solve budget in realtime, where a plan's latency counts (frame-to-command):
        # samples and iterations per solve; 0: the planner's own (mppi/cem settings)
        realtime_samples: int = bounded(0, 0, 1 << 20)
        realtime_iterations: int = bounded(0, 0, 1000)
        # realtime: a solve stops refining when one more iteration would end later than
        # this long after its frame was ready (stamp + render): a frame that waited or
        # encoded slowly is planned with fewer iterations, not answered late. 0: never
        realtime_deadline_ms: float = bounded(0.0, 0.0, None)
        # resend the newest plan when none has gone out for this long (for a controller
        # that missed it: a resent plan does not feed its plan watchdog); 0: never
        keepalive_s: float = bounded(0.2, 0.0, None)
        robot: str = "panda"  # the arm (reflexarc.robot.description): hand FK, workspace
        # the plans' box, m (x, y, z); empty: the robot's workspace
        workspace_lo: list[float] = field(default_factory=list)
        workspace_hi: list[float] = field(default_factory=list)
        device: str = "cpu"
        threads: int = bounded(1, 1, 64)  # torch CPU threads (the node shares the machine)

        def validate(self) -> None:
            if not self.checkpoint:
                raise ConfigError("checkpoint", "give the world-model checkpoint to plan with")
            if not weights_path(self.checkpoint).is_file():
                raise ConfigError(
                    "checkpoint", f"{self.checkpoint!r} is not a checkpoint file or directory"
                )
            if self.hand_probe and not probe_path(self.hand_probe).is_file():
                raise ConfigError("hand_probe", f"{self.hand_probe!r} is not a file")
            if self.block_head and not head_path(self.block_head).is_file():
                raise ConfigError("block_head", f"{self.block_head!r} is not a file or a "
                                  "shipped head (python -m reflexarc.perception.block_head)")
            robot_description(self.robot)
            for key in ("workspace_lo", "workspace_hi", "hand_box_lo", "hand_box_hi"):
                if key.startswith("workspace") and not (self.workspace_lo or self.workspace_hi):
                    continue  # the robot's
                if len(getattr(self, key)) != 3:
                    raise ConfigError(key, f"needs 3 values (x, y, z), got {getattr(self, key)}")
            for lo_key, hi_key in (("workspace_lo", "workspace_hi"), ("hand_box_lo", "hand_box_hi")):
                lo, hi = getattr(self, lo_key), getattr(self, hi_key)
                if not (lo or hi):
                    continue
                if any(a >= b for a, b in zip(lo, hi, strict=True)):
                    raise ConfigError(hi_key, f"got {hi}; every value must exceed {lo_key} {lo}")
            if self.plan_steps > self.settings().horizon:
                raise ConfigError(
                    "plan_steps", f"got {self.plan_steps}; at most the horizon "
                    f"({self.settings().horizon})"
                )

        def settings(self, clock: str = "lockstep") -> CEMConfig | MPPIConfig:
            """The chosen planner's settings; on the ``realtime`` clock with the realtime
            budget (elites capped at the samples)."""
            base = self.cem if self.planner == "cem" else self.mppi
            if clock != "realtime" or not (self.realtime_samples or self.realtime_iterations):
                return base
            samples = self.realtime_samples or base.samples
            return replace(base, samples=samples, elites=min(base.elites, samples),
                           iterations=self.realtime_iterations or base.iterations)

    wakes_on = ("latent/",)  # realtime: solve the moment a latent arrives
    @classmethod
    def preflight(cls, cfg: Config) -> None:
        """Before any process starts: the checkpoint is whole (docs/world-model.md)."""
        verify_checkpoint(cfg.checkpoint)

    subscribes = {"latent/": "latest", "goal": "latest", "goal_latent": "all",
                  "objects/": "latest", "joint_state": "latest", "weights": "all"}
    publishes = ("plan",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        torch.set_num_threads(cfg.threads)
        self.robot = robot_description(cfg.robot)
        self.kin = ArmKinematics(self.robot)
        self.topic = f"latent/{cfg.camera}"
        self.objects_topic = f"objects/{cfg.camera}"
        box = self.robot.workspace_box
        self.lo = np.asarray(cfg.workspace_lo, dtype=float) if cfg.workspace_lo else box[:, 0]
        self.hi = np.asarray(cfg.workspace_hi, dtype=float) if cfg.workspace_hi else box[:, 1]
        self.dt_ns = int(round(cfg.control_dt_s * 1e9))
        self.threaded = cfg.solve == "thread" or (cfg.solve == "auto" and ctx.clock != "lockstep")
        self.wait_swap = ctx.clock == "lockstep"
        try:
            loaded = load_model(cfg.checkpoint, device=cfg.device)
        except CheckpointError as e:
            raise ConfigError("checkpoint", str(e)) from None
        self.probe: HandProbe | None = None
        if cfg.hand_probe:
            try:
                self.probe = HandProbe.load(cfg.hand_probe)
            except ProbeError as e:
                raise ConfigError("hand_probe", str(e)) from None
        self.probe_warned = False
        self.block_head: BlockHead | None = None
        if cfg.block_head:
            try:
                self.block_head = BlockHead.load(cfg.block_head)
            except BlockHeadError as e:
                raise ConfigError("block_head", str(e)) from None
            if self.block_head.checkpoint_sha256 != loaded.sha256:
                raise ConfigError("block_head", f"{cfg.block_head!r} was fitted for another "
                                  f"checkpoint than {cfg.checkpoint!r}")
        self.block_terms = 0  # solves with the block term
        self.slot = ModelSlot(cfg.device)
        self.brains: dict[int, _Brain] = {}
        self._add_brain(loaded)
        # goal
        self.goal_id = 0  # increases with every new goal; 0: none yet
        self.goal: Goal | None = None
        self.goal_kind = "none"  # none | task | latent
        self.goal_z: dict[int, np.ndarray] = {}  # latent goals: model version -> (D,)
        self.layer: TaskLayer | None = None  # task goals: the stages
        self.goal_stamp = 0
        self.goal_rx_ns = 0  # graph time the current goal arrived
        self.goal_seen_ns = 0  # graph time the current goal was last received
        self.goal_error = ""
        self.goal_hand: np.ndarray | None = None  # (3,) read from the goal by the probe
        self.servo_goal_id = -1  # the goal the servo estimate belongs to
        self.servo_est: np.ndarray | None = None
        self.last_objects_seq = -1
        self.stage_name = ""
        # solving
        self.job: _Job | None = None  # in flight (threaded)
        self.worker: threading.Thread | None = None
        self.last_latent_seq = -1
        self.last_t0: int | None = None
        self.shift_frac = 0.0
        self.last_plan: Plan | None = None
        self.last_sent_ns = 0
        self.ee_seq = -1
        self.ee = np.zeros(3)
        self.opening = 0.0  # m between the fingers, measured
        self.mode = "no_goal"
        # figures
        self.solve_ms = Ring()
        self.frame_to_plan_ms = Ring()
        self.solves = 0
        self.short_solves = 0  # cut short by realtime_deadline_ms
        self.solve_errors = 0
        self.late = 0  # keepalives sent while a solve was still running
        self.superseded = 0  # latents not planned: a newer one came first
        self.published = 0
        self.republished = 0
        self.goals = 0
        self.swaps = 0
        self.version_waits = 0
        self.mode_ticks: dict[str, int] = {}
        self.costs = Ring()
        self.stages: dict[str, int] = {}  # task goals: plans per stage
        self.replans = 0  # task goals: of finished tasks (the current layer's are added)
        self.regrasps = 0

    # -- brains (model versions) ---------------------------------------------------------------

    def _add_brain(self, loaded: LoadedModel) -> _Brain:
        settings = self.cfg.settings(self.ctx.clock)
        planner = make_planner(self.cfg.planner, loaded.model, settings)
        if self.cfg.hand_box_weight > 0 or self.probe is not None:
            planner.action_cost = HandBox(
                np.asarray(self.cfg.hand_box_lo), np.asarray(self.cfg.hand_box_hi),
                self.cfg.hand_box_weight, planner.device,
                self.cfg.hand_prior_weight, self.cfg.hand_prior_radius,
                self.cfg.hand_prior_stall_s,
            )
        planner.warmup()
        task_cost = None
        if self.probe is not None and self._probe_fits(loaded):
            head = self.block_head
            fits = head is not None and head.checkpoint_sha256 == loaded.sha256
            task_cost = HandTargetCost(
                self.probe, self.cfg.task_weight, planner.device,
                head.module(planner.device) if fits and head is not None else None,
                self.cfg.block_weight)
        brain = _Brain(loaded, planner, task_cost)
        self.brains[loaded.version] = brain
        return brain

    def _probe_fits(self, loaded: LoadedModel) -> bool:
        probe = self.probe
        return (probe is not None and probe.checkpoint_sha256 == loaded.sha256
                and probe.latent_dim == loaded.latent_dim)

    def _newest(self) -> _Brain:
        return self.brains[max(self.brains)]

    def _take_weights(self, inbox: Inbox) -> None:
        for w in inbox.new("weights"):
            self.slot.request(w)
            if self.wait_swap:
                self.slot.wait()
        loaded = self.slot.poll()
        if loaded is not None and loaded.version not in self.brains:
            self._add_brain(loaded)
            self.swaps += 1
            log.info("%s: world model v%d loaded in %.0f ms", self.ctx.name, loaded.version,
                     loaded.load_ms)

    def _drop_old_brains(self, version: int) -> None:
        """Latents of ``version`` arrive: brains of older versions are no longer needed."""
        busy = self.job.brain.version if self.job is not None else None
        for v in [v for v in self.brains if v < version and v != busy]:
            del self.brains[v]

    # -- goal ------------------------------------------------------------------------------------

    def _new_goal(self, g: Goal, kind: str, now_ns: int) -> None:
        """Start pursuing goal ``g`` (``kind`` task or latent): a new episode."""
        self._retire_layer()
        self.goal = g
        self.goal_kind = kind
        self.goal_z = {}
        self.layer = None
        self.goal_stamp = g.stamp_ns
        self.goal_rx_ns = now_ns
        self.goal_id += 1
        self.goals += 1
        self.goal_error = ""
        self.goal_hand = None
        self.stage_name = ""
        self.shift_frac = 0.0
        self.last_t0 = None
        self.last_plan = None

    def _retire_layer(self) -> None:
        if self.layer is not None:
            self.replans += self.layer.replans
            self.regrasps += self.layer.regrasps

    def _no_goal(self, why: str) -> None:
        self._retire_layer()
        self.goal_kind, self.layer, self.goal_z = "none", None, {}
        self.goal_error = why

    def _take_goal(self, inbox: Inbox, now_ns: int) -> None:
        new = inbox.new("goal")
        if new:
            g: Goal = new[-1]
            self.goal_seen_ns = now_ns
            if self.goal is None or g.stamp_ns != self.goal.stamp_ns:
                self._take_goal_message(g, now_ns)
        for gl in inbox.new("goal_latent"):
            self._take_goal_latent(gl, now_ns)

    def _take_goal_message(self, g: Goal, now_ns: int) -> None:
        """A new ``goal``: a task, a latent, or an image the perception node encodes."""
        if g.z.size:
            self._new_goal(g, "latent", now_ns)
            self.goal_z[g.model_version] = np.asarray(g.z, dtype=np.float32)
        elif g.image.size:
            self._new_goal(g, "latent", now_ns)  # its latent comes on goal_latent
        elif g.task:
            self._new_goal(g, "task", now_ns)
            if self.probe is None:
                self._no_goal("a task goal needs a hand_probe (the predicted hand is its cost)")
                return
            try:
                self.layer = TaskLayer(g.task, np.asarray(g.target, dtype=float), g.object,
                                       self.cfg.layer)
            except TaskError as e:
                self._no_goal(str(e))
        else:
            self.goal = g
            self._no_goal("goal has no task, image or latent")

    def _take_goal_latent(self, gl: Goal, now_ns: int) -> None:
        """A goal image the perception node encoded: the current goal's (its stamp), or a
        newer goal of its own (a goal image a person showed it)."""
        if gl.z.ndim != 1 or not gl.z.size:
            return
        if self.goal is None or gl.stamp_ns > self.goal_stamp or (
                gl.stamp_ns == self.goal_stamp and self.goal_kind == "none"):
            self._new_goal(gl, "latent", now_ns)
        elif gl.stamp_ns < self.goal_stamp or self.goal_kind != "latent":
            return  # an older goal's
        self.goal_seen_ns = now_ns
        self.goal_z[gl.model_version] = np.asarray(gl.z, dtype=np.float32)

    def _goal_ready(self, brain: _Brain) -> str:
        """Give ``brain``'s planner the current goal if it lacks it; "" or why not."""
        if self.goal_kind == "none":
            return "no_goal"
        if brain.goal_id == self.goal_id:
            return ""
        if self.job is not None and self.job.brain is brain:
            return "busy"  # the worker is using this planner: set the goal after it
        planner = brain.planner
        box = planner.action_cost
        if self.goal_kind == "task":
            if brain.task_cost is None:
                self.goal_error = (f"the hand probe was fitted for another model than "
                                   f"v{brain.version}: no task goal without it")
                return "stale_goal"
            planner.reset()
            planner.latent_cost = brain.task_cost
            if isinstance(box, HandBox):
                box.goal = None
            brain.goal_id, brain.goal_z = self.goal_id, None
            return ""
        z = self.goal_z.get(brain.version)
        if z is None:
            if not self.goal_z:
                return "goal_wait"  # the perception node has not encoded it yet
            self.goal_error = (
                f"goal latent is from model v{', v'.join(map(str, sorted(self.goal_z)))}, the "
                f"planner has v{brain.version}; waiting for the perception node to re-encode it"
            )
            return "stale_goal"
        planner.reset()
        planner.latent_cost = None
        planner.set_bounds(*self._bounds())
        try:
            planner.set_goal(z, model_version=brain.version, stamp_ns=self.goal_rx_ns)
        except PlannerError as e:
            self.goal_error = str(e)
            return "stale_goal"
        if isinstance(box, HandBox):
            box.radius = self.cfg.hand_prior_radius
            box.goal = self._goal_hand(brain, z, box.base.device)
        brain.goal_id = self.goal_id
        brain.goal_z = z
        self.goal_error = ""
        return ""

    def _goal_hand(self, brain: _Brain, z_goal: np.ndarray, device: torch.device
                   ) -> torch.Tensor | None:
        """The hand position the goal shows, by the hand probe of this brain's model."""
        probe = self.probe
        if probe is None:
            return None
        if not self._probe_fits(brain.loaded) or probe.latent_dim != z_goal.shape[0]:
            if not self.probe_warned:
                self.probe_warned = True
                log.warning("%s: the hand probe was fitted for another model than v%d: "
                            "planning without it", self.ctx.name, brain.version)
            return None
        hand = np.clip(probe(z_goal), self.lo, self.hi)
        self.goal_hand = hand
        return torch.as_tensor(hand, dtype=torch.float32, device=device)

    def _goal_stale(self, now_ns: int) -> bool:
        max_age = self.cfg.goal_max_age_s
        if not max_age:
            return False
        return now_ns - self.goal_seen_ns > max_age * 1e9

    # -- task goals ------------------------------------------------------------------------------

    def _bounds(self, stage: Stage | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The action bounds: the configured ones; for a task's stage the hand's step at
        most the stage's speed times ``control_dt_s``, the gripper at its command."""
        settings = self.cfg.settings()
        lo = np.array(settings.action_low, dtype=float)
        hi = np.array(settings.action_high, dtype=float)
        if stage is not None:
            lim = stage.speed * self.cfg.control_dt_s
            lo[:3], hi[:3] = np.maximum(lo[:3], -lim), np.minimum(hi[:3], lim)
            if lo.shape[0] > 3:
                g = float(np.clip(stage.gripper, lo[3], hi[3]))
                lo[3], hi[3] = max(lo[3], g - 0.01), min(hi[3], g + 0.01)
        return lo, hi

    def _stage(self, inbox: Inbox, ee: np.ndarray, now_ns: int) -> Stage | None:
        """The task layer's stage for this step, from the newest perceived blocks."""
        layer = self.layer
        if layer is None:
            return None
        objs: Objects | None = inbox.latest(self.objects_topic)
        if objs is not None and objs.seq != self.last_objects_seq \
                and objs.stamp_ns >= self.goal_stamp:
            self.last_objects_seq = objs.seq
            layer.see(objs.as_dict(), objs.stamp_ns)
        return layer.stage(ee, self.opening, now_ns)

    # -- end effector ----------------------------------------------------------------------------

    def _hand(self, inbox: Inbox) -> np.ndarray | None:
        js: JointState | None = inbox.latest("joint_state")
        if js is None:
            return None
        if js.seq != self.ee_seq:
            q = np.asarray(js.position, dtype=float)
            if q.shape != (self.robot.dof,) or not np.all(np.isfinite(q)):
                return None
            self.ee_seq = js.seq
            self.ee = self.kin.fk(q)[0]
            self.opening = float(js.gripper)
        return self.ee

    def _base(self, ee: np.ndarray, now_ns: int) -> np.ndarray:
        """Where the new plan starts: the previous plan's position now, within ``windup``."""
        if self.last_plan is None:
            return ee.copy()
        lead = sample_plan(self.last_plan, now_ns) - ee
        dist = float(np.linalg.norm(lead))
        if dist <= self.cfg.windup:
            return ee + lead
        return ee + lead * (self.cfg.windup / dist)

    # -- the step --------------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        self._take_weights(inbox)
        self._take_goal(inbox, now_ns)
        out: list[tuple[str, Plan]] = []
        finished = self._collect()
        if finished is not None:
            plan = self._plan_of(finished, now_ns)
            if plan is not None:
                out.append(("plan", plan))
        mode = self._solve_if_new(now_ns, inbox, out)
        self.mode = mode
        self.mode_ticks[mode] = self.mode_ticks.get(mode, 0) + 1
        keepalive = int(self.cfg.keepalive_s * 1e9)
        if out:
            self.last_sent_ns = now_ns
        elif (
            keepalive and self.last_plan is not None and now_ns - self.last_sent_ns >= keepalive
            and mode in ("running", "solving", "version_wait")
        ):
            out.append(("plan", self.last_plan))  # the same plan: the controller keeps its place
            self.last_sent_ns = now_ns
            self.republished += 1
            if self.job is not None:
                self.late += 1  # a solve has taken longer than the keepalive
        self.published += len(out)
        return out

    def _solve_if_new(self, now_ns: int, inbox: Inbox, out: list[tuple[str, Plan]]) -> str:
        """Start (or run) a solve on a new latent; returns the node's mode for this step."""
        if self.goal_kind == "none":
            return "no_goal"
        if self._goal_stale(now_ns):
            self.last_plan = None
            return "stale_goal"
        lat: Latent | None = inbox.latest(self.topic)
        if lat is None or lat.stamp_ns <= self.goal_stamp:
            return "no_latent"  # none yet, or only frames from before the goal (episode)
        max_age = self.cfg.max_latent_age_s
        if max_age and now_ns - lat.stamp_ns > max_age * 1e9:
            self.last_plan = None
            return "no_latent"
        ee = self._hand(inbox)
        if ee is None:
            return "no_state"
        if lat.seq == self.last_latent_seq:
            return "solving" if self.job is not None else "running"
        brain = self.brains.get(lat.model_version)
        if brain is None:
            self.version_waits += 1
            return "version_wait"  # the perception node swapped first: wait for our load
        self._drop_old_brains(lat.model_version)
        if self.job is not None:
            return "solving"  # the newest latent is taken when the worker is free
        why = self._goal_ready(brain)
        if why:
            return why
        if lat.z.shape != (brain.loaded.latent_dim,):
            self.solve_errors += 1
            self.last_latent_seq = lat.seq
            return "bad_latent"
        stage = None
        if self.goal_kind == "task":
            stage = self._stage(inbox, ee, now_ns)
            if stage is None:
                return "not_seen"  # the task's block has not been found yet
            if stage.name != self.stage_name:
                self.stage_name = stage.name
                brain.planner.reset()  # the warm start aimed at the previous stage
                brain.planner.latent_cost = brain.task_cost
            brain.planner.set_bounds(*self._bounds(stage))
        if self.last_latent_seq >= 0 and lat.seq > self.last_latent_seq + 1:
            self.superseded += lat.seq - self.last_latent_seq - 1
        self.last_latent_seq = lat.seq
        job = _Job(brain=brain, z=np.array(lat.z, dtype=np.float32), goal_id=self.goal_id,
                   latent=lat, t0_ns=now_ns, base=self._base(ee, now_ns),
                   shift=self._shift(now_ns),
                   servo=None if stage else self._servo(brain, lat.z, ee), stage=stage,
                   block=self._block_term(brain, stage),
                   deadline_ns=self._deadline(lat))
        if self.threaded:
            self.job = job
            self.worker = threading.Thread(target=self._run_job, args=(job,), daemon=True,
                                           name="planner-solve")
            self.worker.start()
            return "solving"
        self._run_job(job)
        plan = self._plan_of(job, now_ns)
        if plan is not None:
            out.append(("plan", plan))
        return "running"

    def _block_term(self, brain: _Brain, stage: Stage | None
                    ) -> tuple[int, np.ndarray, np.ndarray] | None:
        """The block term's inputs for a solve in ``stage``: the head's row of the task's
        block, where perception last placed it and the task's target; None when off."""
        layer, task_cost = self.layer, brain.task_cost
        if (stage is None or layer is None or task_cost is None or task_cost.head is None
                or stage.name not in self.cfg.block_stages or layer.block.position is None
                or self.block_head is None or layer.obj not in self.block_head.names):
            return None
        return (self.block_head.index(layer.obj), layer.block.position.copy(),
                layer.target.copy())

    def _servo(self, brain: _Brain, z: np.ndarray, ee: np.ndarray) -> np.ndarray | None:
        """The goal's hand read relative to the measured hand ``ee`` (3,): ``ee +
        probe(z_goal) - probe(z)``, averaged over the goal's latents (EMA 0.5); None
        without ``hand_servo_radius`` or a probe of this brain's model."""
        probe = self.probe
        if (self.cfg.hand_servo_radius <= 0 or probe is None or brain.goal_z is None
                or probe.checkpoint_sha256 != brain.loaded.sha256
                or probe.latent_dim != brain.goal_z.shape[0]):
            return None
        est = np.clip(ee + probe(brain.goal_z) - probe(np.asarray(z)), self.lo, self.hi)
        if self.servo_goal_id == self.goal_id and self.servo_est is not None:
            est = 0.5 * (self.servo_est + est)
        self.servo_goal_id, self.servo_est = self.goal_id, est
        return est

    def _deadline(self, lat: Latent) -> int | None:
        """When the solve of ``lat`` must end (monotonic ns), or None (no deadline)."""
        ms = self.cfg.realtime_deadline_ms
        if ms <= 0 or self.ctx.clock != "realtime":
            return None
        return int(frame_ready_ns(lat) + 1e6 * ms)

    def _shift(self, now_ns: int) -> int:
        """Control periods elapsed since the previous solve started (warm-start shift)."""
        if self.last_t0 is None:
            self.last_t0 = now_ns
            return 0
        self.shift_frac += (now_ns - self.last_t0) / self.dt_ns
        self.last_t0 = now_ns
        shift = int(self.shift_frac)
        self.shift_frac -= shift
        return shift

    def _run_job(self, job: _Job) -> None:
        """Solve ``job`` (in the worker thread, or inline)."""
        t0 = time.perf_counter_ns()
        box = job.brain.planner.action_cost
        if isinstance(box, HandBox):
            box.base = torch.as_tensor(job.base, dtype=torch.float32, device=box.base.device)
            box.update(job.base, job.t0_ns)
            if job.servo is not None:
                box.servo = torch.as_tensor(job.servo, dtype=torch.float32,
                                            device=box.base.device)
                box.servo_radius = self.cfg.hand_servo_radius
        if job.stage is not None and job.brain.task_cost is not None:
            job.brain.task_cost.prepare(
                job.brain.loaded.model, job.z, job.base, job.stage.hand,
                job.brain.planner.cfg.horizon, job.stage.gripper, job.block)
            self.block_terms += job.block is not None
        try:
            # no extra rollout of the chosen sequence: the plan needs only its actions,
            # and Plan.cost is then the lowest cost sampled in the last iteration
            sol = job.brain.planner.plan(
                job.z, model_version=job.brain.version, shift=job.shift, evaluate=False,
                deadline_ns=job.deadline_ns,
            )
            job.iterations = sol.iterations
            job.actions = sol.actions.detach().cpu().numpy()
            job.cost = float(sol.cost)
        except PlannerError as e:  # StaleGoalError, NoGoalError, a bad latent
            job.error = str(e)
            job.stale = isinstance(e, StaleGoalError)
        job.solve_us = (time.perf_counter_ns() - t0) / 1e3

    def _collect(self) -> _Job | None:
        """The worker's finished job, if any (threaded mode)."""
        job = self.job
        if job is None or (self.worker is not None and self.worker.is_alive()):
            return None
        self.job = None
        self.worker = None
        return job

    def _plan_of(self, job: _Job, now_ns: int) -> Plan | None:
        self.solves += 1
        self.solve_ms.add(job.solve_us / 1e3)
        if job.iterations and job.iterations < job.brain.planner.cfg.iterations:
            self.short_solves += 1
        if job.actions is None:
            self.solve_errors += 1
            if self.solve_errors == 1:
                log.warning("%s: solve failed: %s", self.ctx.name, job.error)
            if job.stale:
                job.brain.goal_id = -1  # re-encode the goal before the next solve
            return None
        if job.goal_id != self.goal_id:
            return None  # planned toward a goal that has been replaced meanwhile
        actions = job.actions
        if self.cfg.plan_steps:
            actions = actions[: self.cfg.plan_steps]
        pos, grip = plan_setpoints(job.base, actions, self.lo, self.hi)
        if job.stage is not None:
            grip[:] = job.stage.gripper
            self.stages[job.stage.name] = self.stages.get(job.stage.name, 0) + 1
        quat = (
            np.tile(self.robot.ee_down_quat, (pos.shape[0], 1)) if self.cfg.orientation == "down"
            else empty("f8", 0, 4)
        )
        plan = Plan(
            stamp_ns=job.latent.stamp_ns, t0_ns=job.t0_ns, dt_ns=self.dt_ns, ee_pos=pos,
            ee_quat=quat, gripper=grip, solve_us=job.solve_us, cost=job.cost,
            render_us=job.latent.render_us,
        )
        self.costs.add(job.cost)
        # from the frame being ready (its stamp plus the sim's render) to when the plan
        # leaves, on the graph clock: at collection (threaded), after the solve (inline;
        # in lockstep the solve takes no simulated time)
        late_ms = (now_ns - frame_ready_ns(job.latent)) / 1e6
        if not self.threaded and self.ctx.clock != "lockstep":
            late_ms += job.solve_us / 1e3
        self.frame_to_plan_ms.add(late_ms)
        self.last_plan = plan
        return plan

    # -- reporting ---------------------------------------------------------------------------------

    def state(self) -> str:
        return self.mode

    def summary(self) -> dict[str, Any]:
        s50, s99 = self.solve_ms.percentiles([50, 99])
        f50, f99 = self.frame_to_plan_ms.percentiles([50, 99])
        settings = self.cfg.settings(self.ctx.clock)
        return {
            "run": {"plan_ms_p50": s50, "plan_ms_p99": s99},
            "planner": self.cfg.planner,
            "samples": settings.samples,
            "horizon": settings.horizon,
            "iterations": settings.iterations,
            "solves": self.solves,
            "short_solves": self.short_solves,
            "solve_errors": self.solve_errors,
            "plans_published": self.published,
            "republished": self.republished,
            "late_steps": self.late,
            "superseded_latents": self.superseded,
            "frame_to_plan_ms_p50": f50,
            "frame_to_plan_ms_p99": f99,
            "goals": self.goals,
            "goal_error": self.goal_error,
            "goal_hand": None if self.goal_hand is None else self.goal_hand.tolist(),
            "goal_kind": self.goal_kind,
            "stages": dict(self.stages),  # task goals: plans per stage
            "block_terms": self.block_terms,  # solves with the block term (block_head)
            "replans": self.replans + (self.layer.replans if self.layer else 0),
            "regrasps": self.regrasps + (self.layer.regrasps if self.layer else 0),
            "pull_stalls": sum(getattr(b.planner.action_cost, "stalls", 0)
                               for b in self.brains.values()),
            "model_versions": sorted(self.brains),
            "swaps": self.swaps,
            "swap_failures": self.slot.failures,
            "version_waits": self.version_waits,
            "mode_ticks": dict(self.mode_ticks),
            "final_mode": self.mode,
            "threaded": self.threaded,
        }

    def close(self) -> None:
        if self.worker is not None:
            self.worker.join(5.0)
