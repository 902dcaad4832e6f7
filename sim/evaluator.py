"""The evaluator: the task manager and judge of a simulated graph, and the only node of an
acting graph that reads privileged simulator state.

The rule of the senses (docs/architecture.md; docs/senses.md): no node that perceives, plans
or acts reads the simulator's truth. Episodes and their scores need it, so they happen
here, beside the graph, never inside it; the sim node is only the plant
(:mod:`reflexarc.sim.node`).

**Episodes.** Episode ``i`` is seeded with ``ctx.seed + i``: the evaluator samples its
layout with the task (:meth:`reflexarc.sim.tasks.Task.sample`: the arm's initial joints,
the blocks, the target; the same as ``env.reset(seed=ctx.seed + i)``) and asks the plant
to lay it out (a ``reset`` message, repeated every ``reset_period_s`` until the plant's
``scene_state`` says it did). Then, as the person running the evaluation would, it states
the task: the ``goal`` (task, block, target; the image of the goal state only with
``goal_images``, which renders it with a scene of its own: privileged, for reference
graphs and datasets), and ``instruction`` (the text said at the episode's start, when
given). The episode's clock starts when the plant's physics does (``started_ns``: at the
first command after the reset); it ends at the task's first success in a ``scene_state``,
or after ``episode_s`` (default: the task's ``max_steps`` at 10 Hz). Success, time to
success and the final error are taken from the truth at that state's stamp. After
``episodes`` episodes :meth:`done` is true and the launcher ends the run; the results are
the summary's ``run`` (episodes, success_rate, episode_results: docs/run-output.md).

**Instructions** (``follow_spec``): the episode's task, block and target are not the
sample's but those of the newest accepted ``task_spec`` stamped after the plant's reset
(the instruct node's, resolved against this episode's scene); the episode's clock starts
no earlier than its adoption. Once adopted it is the episode's ``goal`` (source
"instruction") when ``publish_goal``. A refusal, or no spec within ``spec_timeout_s``,
ends the episode unsuccessfully with the reason. Success then also needs the other
blocks to have moved at most ``others_tolerance``; each result says which block moved
from where to where, and the text said (``instruction``, or ``instructions`` in turn:
one run evaluates a set).

**Object perception accuracy.** Each ``objects/<camera>`` message (stamped with its frame)
is matched with the ``scene_state`` of the same stamp (the sim publishes one at every frame
it renders with ``frame_state``); each detected block's error is the distance from its
true centre. Reported as p50 / p95 / max per camera and per object (and apart for the
detections at least ``confident``), and how often an object of the scene was not found
(``missed``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, NodeError
from reflexarc.runtime.msgs import Goal, Instruction, Objects, Reset, SceneState, TaskSpec, empty
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

OBJECTS_PREFIX = "objects/"
DEFAULT_EPISODE_STEPS_HZ = 10.0  # tasks' max_steps are counted at the envs' 10 Hz


@dataclass
class EvaluatorConfig:
    """Arguments of :class:`EvaluatorNode` (``graph.nodes.<evaluator>.args``)."""

    # the episodes (module docstring); false: perception's score only (a graph whose plant
    # lays itself out, or a real arm)
    episodes_on: bool = True
    task: str = choice("push", "reach", "push", "pick_place")
    # the plant's scene, as its arguments say it (the layout is sampled for these blocks)
    backend: str = choice("mujoco", "mujoco", "pybullet")
    robot: str = "panda"
    objects: list[str] = field(default_factory=lambda: ["red"])  # block colours; first = task's
    episodes: int = bounded(1, 0, None)  # then done(); 0: until stopped
    episode_s: float = bounded(0.0, 0.0, None)  # time limit; 0: the task's (max_steps at 10 Hz)
    reset_period_s: float = bounded(0.5, 0.001, None)  # ask again until the plant has reset
    publish_goal: bool = True
    # the goal carries the image of the goal state, rendered with the evaluator's own scene:
    # privileged, for the reference graphs and datasets (docs/senses.md). False: the goal
    # says only the task, the block's name and the target, as a person would
    goal_images: bool = False
    goal_camera: str = "front"
    image_size: int = bounded(64, 16, 512)  # of the goal image
    goal_period_s: float = bounded(1.0, 0.0, None)  # republish the episode's goal; 0: once
    # instructions: task, block and target from the instruct node's task_spec (module docstring)
    follow_spec: bool = False
    spec_timeout_s: float = bounded(60.0, 0.1, None)  # follow_spec: wait this long for one
    others_tolerance: float = bounded(0.02, 0.0, 1.0)  # follow_spec: other blocks may move, m
    # follow_spec: the instructed block's success radius, m; 0: the task's (push 4 cm), which
    # is as long as a short instructed move ("5 cm to the right")
    spec_tolerance: float = bounded(0.0, 0.0, 0.1)
    # said on topic "instruction" at the start of every episode, as a person would tell the
    # robot its task (the instruct node understands it against what perception sees); ""
    # says nothing
    instruction: str = ""
    # one instruction per episode, in turn (episode i says instructions[i % n]): a set of
    # instructions evaluated in one run; instead of ``instruction``
    instructions: list[str] = field(default_factory=list)
    # perception's score: a detection is matched with the scene_state of its frame's stamp;
    # a frame whose state is not among the newest ``history`` ones is not scored
    history: int = bounded(64, 1, 10_000)
    min_confidence: float = bounded(0.0, 0.0, 1.0)  # detections below it are not scored
    # the figures are given for every detection and, apart, for those at least this
    # confident (a block half hidden by the hand is placed off by its visible part)
    confident: float = bounded(0.75, 0.0, 1.0)

    def validate(self) -> None:
        from reflexarc.robot.description import robot_description
        from reflexarc.sim.assets import CAMERAS

        robot_description(self.robot)  # a ConfigError on "robot" naming the known ones
        if self.publish_goal and self.goal_images and self.goal_camera not in CAMERAS:
            raise ConfigError("goal_camera",
                              f"got {self.goal_camera!r}; allowed: {', '.join(CAMERAS)}")
        if self.instruction and self.instructions:
            raise ConfigError("instructions", f"got {len(self.instructions)} together with "
                              f"instruction={self.instruction!r}; give one or the other")
        if any(not str(t).strip() for t in self.instructions):
            raise ConfigError("instructions", f"got {self.instructions!r}; an empty "
                              "instruction says nothing: every item must be a text")


@dataclass
class EpisodeResult:
    """How one episode went."""

    episode: int
    seed: int
    success: bool
    time_to_success_s: float | None  # graph clock, from the episode's start
    duration_s: float  # graph clock
    physics_s: float  # simulated time stepped
    final_distance_m: float  # task error at the end
    # follow_spec only (None otherwise): the instructed block, where it went, the others
    object: str | None = None
    object_from: list[float] | None = None  # (3,) at the episode's start
    object_to: list[float] | None = None  # (3,) at its end
    target: list[float] | None = None  # (3,)
    others_moved_m: float | None = None  # largest xy displacement of another block
    tolerance_m: float | None = None  # the success radius the block was held to
    task_success: bool | None = None  # the task's own test (success also needs the others still)
    refusal: str | None = None  # why the episode had no task (refused instruction, no spec)
    instruction: str | None = None  # what was said at the episode's start (if anything)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (the follow_spec fields only when set)."""
        return {k: v for k, v in self.__dict__.items() if v is not None or k not in _FOLLOW_KEYS}


_FOLLOW_KEYS = ("object", "object_from", "object_to", "target", "others_moved_m", "tolerance_m",
                "task_success", "refusal", "instruction")


class EvaluatorNode(Node):
    """Runs the episodes on the plant and scores them and perception (module docstring)."""

    Config = EvaluatorConfig
    subscribes = {"scene_state": "all", OBJECTS_PREFIX: "all"}
    publishes = ("reset", "goal", "instruction")

    @classmethod
    def subscribes_for(cls, cfg: EvaluatorConfig) -> dict[str, str]:
        """Topics subscribed to with ``cfg``."""
        subs = dict(cls.subscribes)
        if cfg.episodes_on and cfg.follow_spec:
            subs["task_spec"] = "all"
        return subs

    @classmethod
    def publishes_for(cls, cfg: EvaluatorConfig) -> tuple[str, ...]:
        """Topics published with ``cfg`` (the launcher's one-publisher-per-topic check)."""
        if not cfg.episodes_on:
            return ()
        optional = {"goal": cfg.publish_goal, "instruction": bool(cfg.instruction or cfg.instructions)}
        return tuple(t for t in cls.publishes if optional.get(t, True))

    @classmethod
    def privileged_for(cls, cfg: EvaluatorConfig) -> tuple[str, ...]:
        """Topics that carry the simulator's truth with ``cfg`` (reflexarc.tools.senses):
        ``reset`` (the layout), and ``goal`` when it carries the rendered goal state."""
        if not cfg.episodes_on:
            return ()
        return ("reset", "goal") if cfg.publish_goal and cfg.goal_images else ("reset",)

    def __init__(self, ctx: NodeContext, cfg: EvaluatorConfig) -> None:
        super().__init__(ctx, cfg)
        self.log = ctx.log
        self.subscribes = self.subscribes_for(cfg)
        # perception's score
        self.states: deque[SceneState] = deque(maxlen=cfg.history)
        self.pending: list[Objects] = []  # detections whose frame's state has not come yet
        self.errors: dict[str, dict[str, list[float]]] = {}  # camera -> object -> m
        self.confident_errors: dict[str, list[float]] = {}  # camera -> m (confident ones)
        self.missed: dict[str, int] = {}  # camera -> objects of the scene not found
        self.frames: dict[str, int] = {}  # camera -> frames scored
        self.unmatched = 0  # detections whose frame's state never came
        # episodes
        self.phase = "off"  # off | reset (asked, not done yet) | laid | running | done
        self.results: list[EpisodeResult] = []
        if not cfg.episodes_on:
            return
        from reflexarc.robot.description import robot_description
        from reflexarc.robot.kinematics import ArmKinematics
        from reflexarc.sim.tasks import make_task

        self.started_wall = time.monotonic()  # for the episode lines' ETA
        self.kin = ArmKinematics(robot_description(cfg.robot))
        self.task = make_task(cfg.task, self.kin)
        self.episode_ns = self._episode_ns()
        self.goal_scene: Any = None  # goal_images: a scene of the evaluator's own, to render
        self.episode = 0
        self.reset_msg: Reset | None = None
        self.next_reset_ns = 0
        self.reset_ns = 0  # when the plant performed this episode's reset (its stamp)
        self.laid_ns = 0  # when the evaluator saw it
        self.start_ns: int | None = None  # the episode's clock started (graph clock)
        self.start_objects = np.zeros((0, 3))  # (k, 3) block positions at the episode's start
        self.spec: TaskSpec | None = None  # follow_spec: the episode's adopted task spec
        self.adopted_ns = 0
        self.specs_stale = 0
        self.goal: Goal | None = None
        self.next_goal_ns = 0
        self.repeats = 0  # reset requests sent again (the plant had not done it yet)
        self._sample()  # the first layout here, before the heartbeats (IK)

    def _episode_ns(self) -> int:
        return int(1e9 * (self.cfg.episode_s or self.task.max_steps / DEFAULT_EPISODE_STEPS_HZ))

    # ---- the tick ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        states = inbox.new("scene_state")
        self._perception(states, inbox)
        out: list[tuple[str, Any]] = []
        if self.phase in ("off", "done"):
            return out
        if self.phase == "reset":
            self._ask_reset(now_ns, out)
        for ss in states:
            if self.phase == "reset" and ss.episode == self.episode:
                self._laid(now_ns, ss, out)
            judged = self.phase in ("laid", "running") and ss.episode == self.episode
            if judged and self._judge(ss):
                self._next(now_ns, out)
                if self.phase == "done":
                    return out
        if self.cfg.follow_spec and self.phase in ("laid", "running") and self._follow(
                now_ns, inbox, out):
            self._next(now_ns, out)
        if (self.phase in ("laid", "running") and self.goal is not None and self.cfg.goal_period_s
                and now_ns >= self.next_goal_ns):
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", self.goal))
        return out

    # ---- episodes ------------------------------------------------------------------------

    def _sample(self) -> None:
        """Sample episode ``self.episode``'s layout (seeded) and ask for it at the next step."""
        seed = self.ctx.seed + self.episode
        layout = self.task.sample(np.random.default_rng(seed), len(self.cfg.objects))
        self.reset_msg = Reset(stamp_ns=0, episode=self.episode, seed=seed, q=layout.q,
                               gripper=layout.gripper, objects=layout.objects, target=layout.target)
        self.phase = "reset"
        self.next_reset_ns = 0
        self.start_ns = None
        self.spec = None
        self.adopted_ns = 0
        self.goal = None
        self.log.info("episode %d (seed %d): target %s", self.episode, seed,
                      np.round(self.task.target, 3).tolist())

    def _ask_reset(self, now_ns: int, out: list[tuple[str, Any]]) -> None:
        """Ask the plant for the episode's layout, again every ``reset_period_s`` until done."""
        if now_ns < self.next_reset_ns or self.reset_msg is None:
            return
        if self.next_reset_ns:
            self.repeats += 1
        self.next_reset_ns = now_ns + int(1e9 * self.cfg.reset_period_s)
        out.append(("reset", replace(self.reset_msg, stamp_ns=now_ns)))

    def _laid(self, now_ns: int, ss: SceneState, out: list[tuple[str, Any]]) -> None:
        """The plant laid the episode out: state the task."""
        names = [n for n in ss.names.split(",") if n]
        if names != list(self.cfg.objects):
            raise NodeError(f"{self.ctx.name}: the plant's blocks are {names}, the evaluator's "
                            f"objects {list(self.cfg.objects)}: give both the same list")
        self.phase = "laid"
        self.reset_ns = ss.reset_ns
        self.laid_ns = now_ns
        self.start_objects = np.asarray(ss.objects, np.float64)[:, :3].copy()
        if self.cfg.publish_goal and not self.cfg.follow_spec:
            self.goal = Goal(
                stamp_ns=now_ns,
                task=self.task.name,
                object=names[0] if names and self.task.needs_object else "",
                target=self.task.target.copy(),
                image=self._goal_image(ss),
                z=empty("f4", 0),
                source="imagined" if self.cfg.goal_images else "task",
            )
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", self.goal))
        text = self._said()
        if text:
            # the evaluator's voice: a person telling the robot its task for this episode
            out.append(("instruction", Instruction(stamp_ns=now_ns, text=text)))

    def _goal_image(self, ss: SceneState) -> np.ndarray:
        """The goal state's image (H, W, 3) with ``goal_images``, else an empty one: the
        evaluator's own scene put where ``ss`` says, then in the task's goal state."""
        if not self.cfg.goal_images:
            return empty("u1", 0, 0, 3)
        if self.goal_scene is None:
            from reflexarc.sim.scene import SceneConfig
            from reflexarc.sim.scenes import make_scene

            self.goal_scene = make_scene(SceneConfig(
                backend=self.cfg.backend, robot=self.cfg.robot, objects=list(self.cfg.objects),
                cameras=[self.cfg.goal_camera], physics_hz=1000))
        q = self.reset_msg.q if self.reset_msg is not None else None
        self.goal_scene.reset(q, gripper=1.0, object_poses=np.asarray(ss.objects, np.float64))
        return self.task.goal_image(self.goal_scene, self.cfg.goal_camera, self.cfg.image_size)

    def _said(self) -> str:
        """The instruction said at this episode's start ('' none)."""
        said = self.cfg.instructions
        return said[self.episode % len(said)] if said else self.cfg.instruction

    def _judge(self, ss: SceneState) -> bool:
        """Score one state of the episode; True when the episode ends with it."""
        if self.start_ns is None:
            if ss.started_ns < 0 or (self.cfg.follow_spec and self.spec is None):
                return False
            self.start_ns = max(ss.started_ns, self.adopted_ns if self.cfg.follow_spec else 0)
            self.phase = "running"
        if ss.stamp_ns < self.start_ns:
            return False
        ee = np.asarray(ss.ee_pos, np.float64)
        pos = np.asarray(ss.objects, np.float64)[:, :3]
        success = self.task.success(ee, pos)
        elapsed = ss.stamp_ns - self.start_ns
        if not success and elapsed < self.episode_ns:
            return False
        follow: dict[str, Any] = {}
        if self.cfg.follow_spec and self.spec is not None:
            others = np.arange(len(pos)) != self.task.obj
            moved = np.linalg.norm(pos[:, :2] - self.start_objects[:, :2], axis=1)
            others_moved = float(moved[others].max()) if others.any() else 0.0
            follow = {
                "object": self.spec.object,
                "object_from": self.start_objects[self.task.obj].round(4).tolist() if len(pos) else None,
                "object_to": pos[self.task.obj].round(4).tolist() if len(pos) else None,
                "target": self.task.target.round(4).tolist(),
                "others_moved_m": others_moved,
                "tolerance_m": self.task.tolerance,
                "task_success": bool(success),
            }
            success = success and others_moved <= self.cfg.others_tolerance
        r = EpisodeResult(
            episode=self.episode,
            seed=self.ctx.seed + self.episode,
            success=bool(success),
            time_to_success_s=elapsed / 1e9 if success else None,
            duration_s=elapsed / 1e9,
            physics_s=float(ss.sim_time_s),
            final_distance_m=self.task.distance(ee, pos),
            instruction=self._said() or None,
            **follow,
        )
        self.results.append(r)
        self.log.info("episode %d: %s after %.2f s%s", r.episode,
                      "success" if r.success else "time limit", r.duration_s, self._progress())
        return True

    def _next(self, now_ns: int, out: list[tuple[str, Any]]) -> None:
        """The episode ended: the next one's reset, or done."""
        if self.cfg.episodes and self.episode + 1 >= self.cfg.episodes:
            self.phase = "done"
            return
        self.episode += 1
        self._sample()
        self._ask_reset(now_ns, out)

    def _progress(self) -> str:
        """`` (2/5 episodes, 14.2 s, ETA 21 s)`` in wall time since the node started."""
        from reflexarc.runtime.progress import eta_text

        if not self.cfg.episodes:
            return ""
        done, total = len(self.results), self.cfg.episodes
        elapsed = time.monotonic() - self.started_wall
        eta = eta_text(done, total, elapsed)
        return f" ({done}/{total} episodes, {elapsed:.1f} s{', ' + eta if eta else ''})"

    def _follow(self, now_ns: int, inbox: Inbox, out: list[tuple[str, Any]]) -> bool:
        """follow_spec: adopt the newest task spec of this episode (as its goal); True when
        the episode ends here without a task (a refusal, or no spec in time)."""
        for spec in inbox.new("task_spec"):
            if spec.stamp_ns < self.reset_ns:
                self.specs_stale += 1  # resolved against an earlier episode's scene
                continue
            problem = spec.refusal or self._adopt(now_ns, spec, out)
            if not problem:
                continue
            if self.spec is None:
                return self._no_task(problem)
            self.log.info("%s: keeps its task; ignoring a task spec: %s", self.ctx.name, problem)
        if self.spec is None and now_ns - self.laid_ns >= int(1e9 * self.cfg.spec_timeout_s):
            return self._no_task(f"no task spec within {self.cfg.spec_timeout_s:g} s")
        return False

    def _adopt(self, now_ns: int, spec: TaskSpec, out: list[tuple[str, Any]]) -> str:
        """Retarget the episode to ``spec`` and publish it as the goal; '' or the problem."""
        from reflexarc.sim.tasks import TASKS, make_task

        names = list(self.cfg.objects)
        target = np.asarray(spec.target_pos, dtype=float)
        if spec.task not in TASKS:
            return f"task {spec.task!r} is not one of {', '.join(TASKS)}"
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            return f"target_pos must be 3 finite numbers, got {target.tolist()}"
        if spec.task != "reach" and spec.object not in names:
            return f"no block {spec.object!r} in the scene (blocks: {', '.join(names) or 'none'})"
        if spec.task != self.task.name:
            init_q = self.task.init_q
            self.task = make_task(spec.task, self.kin)
            self.task.init_q = init_q
            self.episode_ns = self._episode_ns()
        self.task.retarget(names.index(spec.object) if spec.object in names else 0, target,
                           self.cfg.spec_tolerance)
        if self.spec is None:
            self.adopted_ns = now_ns
        self.spec = spec
        if self.cfg.publish_goal:  # else the instruct node gives the planner its goal
            latest = self.states[-1] if self.states else None
            image = (self._goal_image(latest) if latest is not None and self.cfg.goal_images
                     else empty("u1", 0, 0, 3))
            self.goal = Goal(stamp_ns=now_ns, task=spec.task, object=spec.object,
                             target=self.task.target.copy(), image=image, z=empty("f4", 0),
                             source="instruction")
            self.next_goal_ns = now_ns + int(1e9 * self.cfg.goal_period_s)
            out.append(("goal", self.goal))
        self.log.info("episode %d: %s %s to %s (instruction)", self.episode, spec.task,
                      spec.object, np.round(target, 3).tolist())
        return ""

    def _no_task(self, reason: str) -> bool:
        """End the waiting episode unsuccessfully: the instruction gave it no task."""
        self.results.append(EpisodeResult(
            episode=self.episode, seed=self.ctx.seed + self.episode, success=False,
            time_to_success_s=None, duration_s=0.0, physics_s=0.0, final_distance_m=float("nan"),
            refusal=reason, instruction=self._said() or None,
        ))
        self.log.warning("episode %d: no task: %s", self.episode, reason)
        return True

    # ---- perception ----------------------------------------------------------------------

    def _perception(self, states: list[SceneState], inbox: Inbox) -> None:
        self.states.extend(states)
        for topic in inbox.topics():
            if topic.startswith(OBJECTS_PREFIX):
                self.pending.extend(inbox.new(topic))
        if self.pending and self.states:
            by_stamp = {s.stamp_ns: s for s in self.states}
            oldest = self.states[0].stamp_ns
            keep = []
            for objs in self.pending:
                state = by_stamp.get(objs.stamp_ns)
                if state is not None:
                    self._score(objs, state)
                elif objs.stamp_ns < oldest:
                    self.unmatched += 1
                else:
                    keep.append(objs)
            self.pending = keep[-self.cfg.history:]

    def _score(self, objs: Objects, state: SceneState) -> None:
        cam = objs.camera or "front"
        names = state.names.split(",") if state.names else []
        seen = objs.as_dict()
        per = self.errors.setdefault(cam, {})
        self.frames[cam] = self.frames.get(cam, 0) + 1
        for i, name in enumerate(names):
            hit = seen.get(name)
            if hit is None or hit[1] < self.cfg.min_confidence:
                self.missed[cam] = self.missed.get(cam, 0) + 1
                continue
            err = float(np.linalg.norm(np.asarray(hit[0]) - state.objects[i, :3]))
            per.setdefault(name, []).append(err)
            if hit[1] >= self.cfg.confident:
                self.confident_errors.setdefault(cam, []).append(err)

    # ---- node interface ------------------------------------------------------------------

    def state(self) -> str:
        return "done" if self.phase == "done" else "running"

    def done(self) -> bool:
        return self.phase == "done"

    def summary(self) -> dict[str, Any]:
        """The episodes' figures and perception's error against the truth (cm, per camera);
        "run" is merged into the run summary's top level by the launcher."""
        out: dict[str, Any] = {}
        for cam, per in self.errors.items():
            allerr = np.concatenate([np.asarray(v) for v in per.values()]) if per else np.zeros(0)
            conf = np.asarray(self.confident_errors.get(cam, []))
            out[cam] = {
                "frames": self.frames.get(cam, 0),
                "detections": int(allerr.size),
                "missed": self.missed.get(cam, 0),
                **_cm(allerr),
                "confident": {"detections": int(conf.size), **_cm(conf)},
                "per_object": {n: _cm(np.asarray(v)) for n, v in per.items()},
            }
        run: dict[str, Any] = {}
        if self.cfg.episodes_on:
            successes = [r.time_to_success_s for r in self.results if r.success]
            n = len(self.results)
            run = {
                "task": self.task.name,  # follow_spec: the last episode's (the spec's)
                "backend": self.cfg.backend,
                "episodes": n,
                "success_rate": len(successes) / n if n else 0.0,
                "mean_time_to_success_s": float(np.mean(successes)) if successes else None,
                "episode_results": [r.as_dict() for r in self.results],
            }
        first = next(iter(out.values()), None)
        if first is not None:
            run |= {"perception_error_cm_p50": first["error_cm_p50"],
                    "perception_error_cm_p95": first["error_cm_p95"],
                    "perception_confident_cm_p50": first["confident"]["error_cm_p50"],
                    "perception_confident_cm_p95": first["confident"]["error_cm_p95"],
                    "perception_confident_share": round(
                        first["confident"]["detections"] / max(1, first["detections"]), 3)}
        extra = {"reset_repeats": self.repeats, "stale_specs": self.specs_stale} \
            if self.cfg.episodes_on else {}
        return {"run": run, "perception": out, "unmatched": self.unmatched, **extra}

    def close(self) -> None:
        if self.cfg.episodes_on and self.goal_scene is not None:
            self.goal_scene.close()


def _cm(errors_m: np.ndarray) -> dict[str, float | None]:
    if errors_m.size == 0:
        return {"error_cm_p50": None, "error_cm_p95": None, "error_cm_max": None}
    p50, p95 = np.percentile(errors_m, [50, 95])
    return {"error_cm_p50": round(100 * float(p50), 3), "error_cm_p95": round(100 * float(p95), 3),
            "error_cm_max": round(100 * float(errors_m.max()), 3)}
