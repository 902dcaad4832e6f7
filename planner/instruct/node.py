"""The instruct node: instruction text -> validated TaskSpec (and Goal), on demand.

    instruction ─┐                         ┌─► task_spec (every instruction: a spec or a refusal)
    `say` (REQ) ─┼─► fast parser / memory ─┤
    config text ─┘        │ not sure       └─► goal (InstructGoalNode: accepted specs only)
                          ▼
                  LLM in a worker thread (never inside step)

Instructions come from the ``instruction`` topic, from ``reflexarc say`` over a local
REQ/REP socket (``listen``), and from ``Config.instruction`` (``reflexarc run
graph=instruction task=instruction instruction="..."``): once at start, and again at every
new episode of the ``scene_state`` (``every_episode``: a direction is relative to where the
block is now). The scene is the newest ``scene_state``; an instruction waits for the first
one up to ``scene_timeout_s`` (then it is refused, or resolved in the default scene with
``use_default_scene``). A spec of the configured instruction carries the stamp of the
scene state it was resolved against, so a simulator can tell which episode it is for.

**From the robot's own senses** (``scene_from: objects``, docs/senses.md): the scene is
the newest ``objects/<camera>`` (the blocks perception placed in the base frame) and the hand
by forward kinematics of ``joint_state``, never the simulator's ``scene_state``. An
instruction then waits for a frame taken after it was given, and its spec carries that
frame's stamp (the scene it was resolved in).

``step`` does the fast path and memory itself (tens of microseconds) and hands anything
else to a single worker thread; finished LLM answers are published by a later step. The
LLM therefore never blocks the loop, and in lockstep runs an LLM answer arrives after a
wall-clock delay (so runs that escalate are not bit-for-bit reproducible; the fast path
and memory are).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zmq

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.planner.instruct.instructor import DEFAULT_ADDRESS, InstructConfig, Instructor
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.spec import goal_from_spec, refusal, spec_dict
from reflexarc.robot.authority import AuthorityError, private_ipc, request_security, seal_ipc
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, MalformedMessage
from reflexarc.runtime.msgs import Instruction, JointState, Objects, SceneState, TaskSpec
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.wire import decode, encode

log = logging.getLogger(__name__)

_LOCAL = ("ipc://", "inproc://", "tcp://127.0.0.1:", "tcp://localhost:")



class _Reply:
    """A slot the request thread waits on for the spec of its instruction."""

    __slots__ = ("event", "spec")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.spec: TaskSpec | None = None

    def set(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.event.set()


@dataclass
class _Job:
    text: str
    stamp_ns: int
    since_ns: int  # when it arrived (node clock), for the scene timeout
    reply: _Reply | None = None
    configured: bool = False  # Config.instruction: stamped with the scene state it is resolved in


class InstructNode(Node):
    """Turns instructions into TaskSpecs; asks the LLM in a worker thread when unsure."""

    @dataclass
    class Config(InstructConfig):
        instruction: str = ""  # understood once at start
        # REP socket for `reflexarc say` ("" = none): ipc (a private directory, the socket
        # 0600), or tcp on this host with CURVE (curve_keys_dir, keys from `reflexarc keys`)
        listen: str = DEFAULT_ADDRESS
        curve_keys_dir: str = ""
        scene_timeout_s: float = bounded(5.0, 0.0, 600.0)
        use_default_scene: bool = False  # without scene_state: the default SceneInfo
        every_episode: bool = True  # `instruction` again at each new scene_state episode
        # where the objects are: "scene_state" (the simulator's truth: reference graphs
        # only) or "objects" (perception's objects/<camera> and the measured joints)
        scene_from: str = choice("scene_state", "scene_state", "objects")
        camera: str = "front"
        # the newest accepted goal again every this many seconds (same stamp: a planner
        # takes it once), for a planner that subscribed after it was first published (one
        # still loading its model); 0: once
        goal_repeat_s: float = bounded(0.0, 0.0, 3600.0)

        def validate(self) -> None:
            if self.listen and not self.listen.startswith(_LOCAL):
                raise ConfigError(
                    "listen",
                    f"got {self.listen!r}; instructions are taken on local addresses only "
                    "(ipc://..., tcp://127.0.0.1:PORT): an unauthenticated peer must not command the robot",
                )
            if self.listen.startswith("tcp://") and not self.curve_keys_dir:
                raise ConfigError(
                    "curve_keys_dir",
                    f"listen={self.listen!r} takes tasks from any local user without it; give "
                    "CURVE keys (`reflexarc keys DIR`) or listen on ipc:// (the default)",
                )

    subscribes = {"instruction": "all", "scene_state": "latest"}
    publishes: tuple[str, ...] = ("task_spec",)

    @classmethod
    def subscribes_for(cls, cfg: Config) -> dict[str, str]:
        """Topics subscribed to with ``cfg``: perception's objects instead of scene_state."""
        if cfg.scene_from == "objects":
            return {"instruction": "all", f"objects/{cfg.camera}": "latest",
                    "joint_state": "latest"}
        return dict(cls.subscribes)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.subscribes = self.subscribes_for(cfg)
        self.perceived = cfg.scene_from == "objects"
        self._kin: Any = None  # forward kinematics, for the hand (perceived scenes)
        self.instructor = Instructor(cfg)
        if self.instructor.llm is None:
            ctx.log.info("instruct: %s; only the fast path and memory are used", self.instructor.llm_problem)
        self.scene: SceneInfo | None = SceneInfo() if cfg.use_default_scene else None
        self._scene_msg: SceneState | Objects | None = None
        self._jobs: deque[_Job] = deque()
        self._pending: list[tuple[Future[TaskSpec], _Job]] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{ctx.name}-llm")
        self._requests: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._server: threading.Thread | None = None
        self._bound = threading.Event()
        self._bind_error = ""
        self._started = False
        self._episode: int | None = None  # the scene_state episode last seen
        self.published = 0
        self._goal: Any = None  # the newest accepted goal, and when it was last sent
        self._goal_sent_ns = 0
        self.goals_repeated = 0
        self.specs: deque[dict[str, Any]] = deque(maxlen=100)  # the last specs, for the summary
        if cfg.listen:
            self._server = threading.Thread(
                target=self._serve, name=f"{ctx.name}-rep", args=(cfg.listen,), daemon=True
            )
            self._server.start()
            self._bound.wait(5.0)
            if self._bind_error:
                raise ConfigError("listen", f"cannot bind {cfg.listen}: {self._bind_error}")

    # ------------------------------------------------------------------ the loop's step

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        if not self._started:
            self._started = True
            if self.cfg.instruction.strip():
                self._jobs.append(_Job(self.cfg.instruction, 0, now_ns, configured=True))
        latest = None if self.perceived else inbox.latest("scene_state")
        if latest is not None and latest.episode != self._episode:
            if self._episode is not None and self.cfg.every_episode and self.cfg.instruction.strip():
                self._jobs.append(_Job(self.cfg.instruction, 0, now_ns, configured=True))
            self._episode = latest.episode
        for ins in inbox.new("instruction"):
            self._jobs.append(_Job(ins.text, ins.stamp_ns or now_ns, now_ns))
        while True:
            try:
                job = self._requests.get_nowait()
            except queue.Empty:
                break
            job.stamp_ns = job.stamp_ns or now_ns
            job.since_ns = now_ns
            self._jobs.append(job)

        waiting: deque[_Job] = deque()
        if self._jobs and self.perceived:
            self._perceive(inbox)
        elif self._jobs:  # the scene is read only when there is something to understand
            msg = inbox.latest("scene_state")
            if msg is not None and msg is not self._scene_msg:
                self._scene_msg = msg
                try:
                    self.scene = SceneInfo.from_scene_state(msg)
                except InvalidInstruction as e:  # keep the previous scene; never die on input
                    self.ctx.log.warning("instruct: ignoring scene_state seq %d: %s", msg.seq, e)
        while self._jobs:
            job = self._jobs.popleft()
            scene = self.scene
            if self.perceived and (self._scene_msg is None
                                   or self._scene_msg.stamp_ns <= job.stamp_ns):
                scene = None  # no frame taken after the instruction yet
            if scene is None:
                if now_ns - job.since_ns < self.cfg.scene_timeout_s * 1e9:
                    waiting.append(job)
                    continue
                job.stamp_ns = job.stamp_ns or now_ns
                seen = f"objects/{self.cfg.camera}" if self.perceived else "scene_state"
                self._emit(out, job, refusal(
                    f"no {seen} received within {self.cfg.scene_timeout_s:g} s; cannot tell "
                    "where the objects are (use_default_scene=true resolves in the default scene)",
                    "fast", stamp_ns=job.stamp_ns,
                ))
                continue
            if job.configured or self.perceived:
                job.stamp_ns = self._scene_msg.stamp_ns if self._scene_msg is not None else now_ns
            spec = self.instructor.quick(job.text, scene, job.stamp_ns)
            if spec is not None:
                self._emit(out, job, spec)
            else:
                fut = self._worker.submit(self.instructor.escalate, job.text, scene, job.stamp_ns)
                self._pending.append((fut, job))
        self._jobs = waiting

        still = []
        for fut, job in self._pending:
            if fut.done():
                try:
                    spec = fut.result()
                except Exception as e:  # a bug in escalation must refuse, not kill the node
                    log.exception("instruct: escalation failed")
                    spec = refusal(f"internal error while asking the LLM: {type(e).__name__}", "llm",
                                   stamp_ns=job.stamp_ns)
                self._emit(out, job, spec)
            else:
                still.append((fut, job))
        self._pending = still
        repeat_ns = int(self.cfg.goal_repeat_s * 1e9)
        if any(t == "goal" for t, _ in out):
            self._goal_sent_ns = now_ns
        elif repeat_ns and self._goal is not None and now_ns - self._goal_sent_ns >= repeat_ns:
            out.append(("goal", self._goal))
            self._goal_sent_ns = now_ns
            self.goals_repeated += 1
        return out

    def _perceive(self, inbox: Inbox) -> None:
        """The scene from the newest objects message and the measured hand."""
        msg: Objects | None = inbox.latest(f"objects/{self.cfg.camera}")
        if msg is None or msg is self._scene_msg:
            return
        ee = None
        js: JointState | None = inbox.latest("joint_state")
        if js is not None and len(js.position) == 7:
            if self._kin is None:
                from reflexarc.robot.kinematics import ArmKinematics

                self._kin = ArmKinematics()
            ee = tuple(float(v) for v in self._kin.fk(js.position)[0])
        try:
            self.scene = SceneInfo.from_objects(msg, ee)  # type: ignore[arg-type]
            self._scene_msg = msg
        except InvalidInstruction as e:  # keep the previous scene; never die on input
            self.ctx.log.warning("instruct: ignoring objects seq %d: %s", msg.seq, e)

    def _emit(self, out: list[tuple[str, Any]], job: _Job, spec: TaskSpec) -> None:
        out.append(("task_spec", spec))
        self.published += 1
        if "goal" in self.publishes:
            goal = goal_from_spec(spec)
            if goal is not None:
                out.append(("goal", goal))
                self._goal = goal
        if job.reply is not None:
            job.reply.set(spec)
        self.specs.append({"instruction": job.text, "episode": self._episode, **spec_dict(spec)})
        if spec.refusal:
            self.ctx.log.info("instruct: refused %r: %s", job.text, spec.refusal)
        else:
            self.ctx.log.info("instruct: %r -> %s %s %s (%s)", job.text, spec.task, spec.object,
                              spec.target, spec.source)

    # ------------------------------------------------------------------ `reflexarc say`

    def _serve(self, address: str) -> None:
        """REP loop (its own thread and socket): an Instruction in, its TaskSpec out."""
        zctx = zmq.Context()
        sock = zctx.socket(zmq.REP)
        sock.linger = 0
        security = request_security(zctx, self.cfg.curve_keys_dir)
        security.server(sock)
        try:
            private_ipc(address)
            sock.bind(address)
            seal_ipc(address)  # this user only may connect
        except (zmq.ZMQError, AuthorityError, OSError) as e:
            self._bind_error = str(e)
            self._bound.set()
            sock.close()
            security.close()
            zctx.term()
            return
        self._bound.set()
        wait_s = self.cfg.scene_timeout_s + (self.cfg.llm.retries + 1) * self.cfg.llm.timeout_s + 5.0
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                frames = sock.recv_multipart()
                try:
                    topic, msg = decode(frames)
                    if topic != "instruction" or not isinstance(msg, Instruction):
                        raise MalformedMessage("type", f"expected an Instruction, got {topic!r}")
                    job = _Job(msg.text, msg.stamp_ns, 0, _Reply())
                    self._requests.put(job)
                    if job.reply is not None and job.reply.event.wait(wait_s) and job.reply.spec is not None:
                        spec = job.reply.spec
                    else:
                        spec = refusal(f"no answer within {wait_s:g} s", "fast", stamp_ns=msg.stamp_ns)
                except MalformedMessage as e:
                    spec = refusal(f"bad request: {e}", "fast")
                sock.send_multipart(encode("task_spec", spec))
        finally:
            sock.close()
            security.close()
            zctx.term()

    # ------------------------------------------------------------------ shutdown

    def summary(self) -> dict[str, Any]:
        """Counts; under "run" (the run summary's top level) the instruction and its specs."""
        out: dict[str, Any] = {
            "instructions": self.published,
            **({"goals_repeated": self.goals_repeated} if self.cfg.goal_repeat_s else {}),
            **{f"instruct_{k}": v for k, v in self.instructor.counts.items()},
        }
        if self.specs:
            # the configured text, else the last one heard (the sim says it on `instruction`)
            said = self.cfg.instruction or self.specs[-1]["instruction"]
            out["run"] = {"instruction": said, "specs": list(self.specs)}
        return out

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.join(timeout=2.0)
        self._worker.shutdown(wait=False, cancel_futures=True)
        self.instructor.close()


class InstructGoalNode(InstructNode):
    """An InstructNode that also publishes a planner ``goal`` for every accepted spec
    (use it where no other node publishes ``goal``: a topic has one publisher)."""

    publishes = ("task_spec", "goal")


def ask(address: str, text: str, timeout_s: float = 10.0, curve_keys_dir: str = "") -> TaskSpec | None:
    """Send ``text`` to the instruct node listening at ``address`` (over tcp with the
    CURVE keys in ``curve_keys_dir``); its TaskSpec, or None if no node answered within
    ``timeout_s``."""
    zctx = zmq.Context()
    sock = zctx.socket(zmq.REQ)
    sock.linger = 0
    security = request_security(zctx, curve_keys_dir)
    security.client(sock)
    try:
        sock.connect(address)
        sock.send_multipart(encode("instruction", Instruction(stamp_ns=time.monotonic_ns(), text=text)))
        if not sock.poll(int(timeout_s * 1000)):
            return None
        _, msg = decode(sock.recv_multipart())
        if not isinstance(msg, TaskSpec):
            raise MalformedMessage("type", f"expected a TaskSpec reply, got {type(msg).__name__}")
        return msg
    finally:
        sock.close()
        security.close()
        zctx.term()
