"""Every message of the graph: one frozen, typed struct per message, and the topic table.

Each message carries ``seq`` (per topic, per publisher, starting at 0) and ``stamp_ns``:
the time of the sensor reading it derives from, on the graph's one clock
(``time.monotonic_ns()`` in realtime, simulated time in lockstep). Derived messages carry
their source frame's stamp forward (Image -> Latent -> Plan -> JointCommand), so
frame-to-command latency is known on every tick.

This module declares what a message holds; :mod:`reflexarc.runtime.wire` puts it on the
wire and takes it off (docs/wire-format.md). A field is a scalar (``int``, ``float``,
``str``, ``bool``, ``dict``) or an array declared with :func:`array` (fixed dtype and
number of dimensions; its shape travels with each message).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

M = TypeVar("M")

SCHEMA_VERSION = 2
"""Version of the message schemas, sent in every header; a receiver drops other versions.

2: ``Goal.subgoals`` removed; ``SceneState`` carries the plant's reset and start
(``reset_ns``, ``started_ns``, ``sim_time_s``); ``Reset`` (topic ``reset``) added.
"""


@dataclass(frozen=True)
class ArraySpec:
    """Declared dtype and number of dimensions of an array field."""

    dtype: np.dtype
    ndim: int


def array(dtype: str, ndim: int, optional: bool = False) -> Any:
    """Declare an array field: its dtype is fixed, its shape travels in the header.

    ``optional``: the field defaults to an empty array (every dimension 0), so code
    written before the field existed keeps constructing the message.
    """
    # little-endian on the wire; through its string, numpy's own instance of the dtype on
    # a little-endian host, so that the encoder's ``a.dtype is dtype`` holds for native arrays
    meta = {"array": ArraySpec(np.dtype(np.dtype(dtype).newbyteorder("<").str), ndim)}
    if not optional:
        return field(metadata=meta)
    return field(default_factory=lambda: np.zeros((0,) * ndim, dtype=dtype), metadata=meta)


def empty(dtype: str, *shape: int) -> np.ndarray:
    """An empty array for optional array fields (``empty('f4', 0)``)."""
    return np.zeros(shape or (0,), dtype=dtype)


class Message:
    """Base of every message: equality compares arrays by value."""

    __slots__ = ()
    seq: int
    stamp_ns: int
    TYPE: ClassVar[str]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    def replace(self, **changes: Any) -> Message:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Schema:
    """What a message type holds, beside ``seq`` and ``stamp_ns``, in declaration order."""

    name: str
    scalars: tuple[tuple[str, type], ...]  # field name, python type (int, float, str, bool, dict)
    hints: tuple[tuple[str, Any], ...]  # field name, full annotation (``dict[str, int]``)
    arrays: tuple[tuple[str, ArraySpec], ...]


_SCALAR_TYPES = (int, float, str, bool, dict)
_TYPES: dict[str, type] = {}
_SCHEMAS: dict[type, Schema] = {}
_ON_REGISTER: list[Callable[[type, Schema], None]] = []


def maker(cls: type[M]) -> Callable[..., M]:
    """A positional constructor of message type ``cls``: ``make(seq, stamp_ns, *fields)``,
    every field in declaration order, none left out.

    It sets the slots directly, as the wire decoder does: a frozen dataclass's keyword
    ``__init__`` costs a few microseconds, which a 1 kHz loop that makes one message a tick
    feels. The message is the same as ``cls(seq=..., stamp_ns=..., ...)`` makes.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    order = ["seq", "stamp_ns", *(n for n in names if n not in ("seq", "stamp_ns"))]
    slots = {n: d for k in reversed(cls.__mro__) for n, d in vars(k).items()
             if isinstance(d, types.MemberDescriptorType)}
    args = ", ".join(order)
    src = [f"def make({args}):", "    m = _new(_cls)"]
    src += [f"    _set_{n}(m, {n})" for n in order]
    src.append("    return m")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope |= {f"_set_{n}": slots[n].__set__ for n in order}
    exec("\n".join(src), scope)  # noqa: S102 - our own source, from the field names
    make = scope["make"]
    make.__doc__ = f"{cls.__name__}({args}), positional"
    return make  # type: ignore[no-any-return]


def message(cls: type) -> type:
    """Class decorator: a frozen, slotted, keyword-only message struct registered by name."""
    cls = dataclass(frozen=True, slots=True, kw_only=True, eq=False)(cls)
    cls.TYPE = cls.__name__
    hints = typing.get_type_hints(cls)
    scalars, hinted, arrays = [], [], []
    for f in dataclasses.fields(cls):
        if f.name in ("seq", "stamp_ns"):
            continue
        spec = f.metadata.get("array")
        if spec is not None:
            arrays.append((f.name, spec))
            continue
        origin = typing.get_origin(hints[f.name]) or hints[f.name]
        if origin not in _SCALAR_TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {hints[f.name]}")
        scalars.append((f.name, origin))
        hinted.append((f.name, hints[f.name]))
    schema = Schema(cls.__name__, tuple(scalars), tuple(hinted), tuple(arrays))
    _TYPES[cls.__name__] = cls
    _SCHEMAS[cls] = schema
    for callback in _ON_REGISTER:
        callback(cls, schema)
    return cls


def on_register(callback: Callable[[type, Schema], None]) -> None:
    """Call ``callback(cls, schema)`` for every message type, registered now or later.

    The wire codec builds each type's encoder and decoder this way, so that this module
    needs nothing of it.
    """
    _ON_REGISTER.append(callback)
    for cls, schema in list(_SCHEMAS.items()):
        callback(cls, schema)


def schema(cls: type) -> Schema:
    """The schema of a registered message type."""
    return _SCHEMAS[cls]


def message_types() -> dict[str, type]:
    """Every registered message type by name."""
    return dict(_TYPES)


# --------------------------------------------------------------------------------------
# Graph infrastructure
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Base(Message):
    seq: int = 0
    stamp_ns: int = 0


@message
class Heartbeat(_Base):
    """A node's liveness and loop figures, published at ``heartbeat_hz``."""

    node: str = ""
    pid: int = 0
    state: str = "running"  # starting | running | holding | fault | stopped | done (work finished)
    ticks: int = 0
    rate_hz: float = 0.0  # achieved loop rate over the last heartbeat period
    misses: int = 0  # total missed deadlines
    drops: int = 0  # total malformed messages dropped
    jitter_p50_us: float = 0.0
    jitter_p99_us: float = 0.0
    step_p50_us: float = 0.0
    step_p99_us: float = 0.0


@message
class Tick(_Base):
    """Lockstep clock: advance to ``tick``; ``stamp_ns`` is the simulated time.

    ``required`` maps topic -> the last seq published on it before this tick: a node due
    at this tick first receives every message up to those seqs on its subscribed topics,
    which makes what it sees independent of socket scheduling. ``final`` ends the run.
    """

    tick: int = 0
    required: dict[str, int] = field(default_factory=dict)
    final: bool = False


@message
class Ack(_Base):
    """A node finished lockstep ``tick``; ``published`` is topic -> last seq it has sent."""

    node: str = ""
    tick: int = 0
    published: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Robot and sensors
# --------------------------------------------------------------------------------------


@message
class JointState(_Base):
    """Measured joint state of the arm. Position in rad, velocity in rad/s, effort in N m.

    ``gripper`` is the finger opening in metres (0 closed, 0.08 open).
    """

    position: np.ndarray = array("f8", 1)  # (n,)
    velocity: np.ndarray = array("f8", 1)  # (n,)
    effort: np.ndarray = array("f8", 1)  # (n,)
    gripper: float = 0.0


@message
class Image(_Base):
    """A camera frame. ``rgb`` is (H, W, 3) uint8; ``depth`` (H, W) float32 in metres or empty.

    ``stamp_ns`` is the time of the state the frame shows; ``render_us`` how long making
    the frame took after that (a simulator's render; 0 from a camera driver, whose stamp
    is the capture). Latents and plans carry it forward, so frame-to-command latency can
    be told with and without rendering.
    """

    camera: str = ""
    rgb: np.ndarray = array("u1", 3)
    depth: np.ndarray = array("f4", 2)
    render_us: float = 0.0


@message
class SceneState(_Base):
    """Privileged simulator state (simulation only): for the evaluator, experts and probes.

    ``objects`` is (k, 7): position xyz and quaternion wxyz of each object in ``names``
    (comma-separated, e.g. "red,green,blue"). ``episode`` and ``target`` are those of the
    newest :class:`Reset` the plant performed (the layout the evaluator asked for);
    ``reset_ns`` is when it performed it, ``started_ns`` when its physics started after it
    (-1 while it holds, frozen, waiting for a first command) and ``sim_time_s`` the time
    simulated since. ``success``: the sim node never scores (the evaluator does, in its
    ``episode_results``); datasets written from a gymnasium env fill it from the env.
    """

    ee_pos: np.ndarray = array("f8", 1)  # (3,)
    ee_quat: np.ndarray = array("f8", 1)  # (4,) wxyz
    objects: np.ndarray = array("f8", 2)  # (k, 7)
    names: str = ""
    target: np.ndarray = array("f8", 1)  # (3,) task target
    success: bool = False
    episode: int = 0
    reset_ns: int = 0
    started_ns: int = -1
    sim_time_s: float = 0.0


@message
class Reset(_Base):
    """The evaluator asks the plant to lay the scene out for episode ``episode`` (seeded
    with ``seed``): the arm at rest at ``q`` with the gripper at ``gripper`` ([-1, 1]), the
    blocks at ``objects`` ((k, 7): xyz and quaternion wxyz, in the plant's order), the
    task's ``target`` (3,). Privileged: it is the simulator's truth. On a real arm a person
    lays the scene out."""

    episode: int = 0
    seed: int = 0
    q: np.ndarray = array("f8", 1)
    gripper: float = 1.0
    objects: np.ndarray = array("f8", 2)
    target: np.ndarray = array("f8", 1)


@message
class EEAction(_Base):
    """End-effector displacement command: (dx, dy, dz, gripper) in metres and [-1, 1]."""

    action: np.ndarray = array("f4", 1)  # (4,)


@message
class Latent(_Base):
    """Embedding of one camera frame. ``stamp_ns`` is the frame's stamp."""

    camera: str = ""
    model_version: int = 0
    z: np.ndarray = array("f4", 1)  # (D,)
    encode_us: float = 0.0
    render_us: float = 0.0  # the source frame's (Image.render_us)


@message
class Objects(_Base):
    """The objects perception found in one camera frame, in the robot's base frame.

    ``stamp_ns`` is the frame's stamp. ``names`` are comma-separated (a block's colour),
    one per row of ``position`` (k, 3) m and ``confidence`` (k,) in [0, 1]; an object not
    seen in the frame is not listed.
    """

    camera: str = ""
    names: str = ""
    position: np.ndarray = array("f8", 2)  # (k, 3)
    confidence: np.ndarray = array("f4", 1)  # (k,)
    detect_us: float = 0.0
    render_us: float = 0.0  # the source frame's (Image.render_us)

    def as_dict(self) -> dict[str, tuple[np.ndarray, float]]:
        """name -> (position (3,), confidence)."""
        names = self.names.split(",") if self.names else []
        return {n: (self.position[i], float(self.confidence[i])) for i, n in enumerate(names)}


@message
class Plan(_Base):
    """End-effector setpoints over time, indexed from ``t0_ns`` in steps of ``dt_ns``.

    ``stamp_ns`` is the stamp of the frame the plan was computed from. The controller
    samples the plan at its own rate (MuJoCo MPC's policy-by-time contract).
    """

    t0_ns: int = 0
    dt_ns: int = 0
    ee_pos: np.ndarray = array("f8", 2)  # (T, 3) positions in the base frame
    ee_quat: np.ndarray = array("f8", 2)  # (T, 4) wxyz, or (0, 4) to keep orientation
    gripper: np.ndarray = array("f4", 1)  # (T,) in [-1 close, 1 open]
    solve_us: float = 0.0
    cost: float = 0.0  # the planner node sends the lowest cost sampled in its last iteration
    render_us: float = 0.0  # the source frame's (Image.render_us)


def frame_ready_ns(msg: Image | Latent | Plan) -> float:
    """When the camera frame ``msg`` derives from was ready, on the graph clock: its stamp
    plus its render time. Frame-to-plan and frame-to-command latency count from here."""
    return msg.stamp_ns + 1e3 * msg.render_us


@message
class JointCommand(_Base):
    """Joint-space command. ``mode`` is "torque" (effort used) or "position" (position used).

    ``stamp_ns`` is the stamp of the frame the command ultimately derives from.
    """

    mode: str = "torque"
    position: np.ndarray = array("f8", 1)  # (n,)
    velocity: np.ndarray = array("f8", 1)  # (n,)
    effort: np.ndarray = array("f8", 1)  # (n,)
    gripper: float = 1.0  # [-1 close, 1 open]


@message
class SafetyEvent(_Base):
    """A safety layer intervened: ``kind`` in joint_limit, velocity_limit, torque_limit,
    workspace, plan_timeout, state_timeout, estop, reset."""

    node: str = ""
    kind: str = ""
    detail: str = ""
    count: int = 0


@message
class EStop(_Base):
    """Engage (latching) or explicitly reset the emergency stop."""

    engage: bool = True
    reason: str = ""


@message
class GripperCommand(_Base):
    """Move the fingers to ``width`` (m between them) at ``speed`` (m/s), squeezing with at
    most ``force`` (N): a grasp when an object stops them; ``epsilon`` (m) is how far from
    ``width`` they may stop and still count as a grasp."""

    width: float = 0.0
    speed: float = 0.05
    force: float = 20.0
    epsilon: float = 0.005


@message
class GripperState(_Base):
    """The gripper as measured: opening (m), force (N), whether it moves, and whether the
    last :class:`GripperCommand` (``command_seq``) ended in a grasp."""

    width: float = 0.0
    force: float = 0.0
    moving: bool = False
    grasped: bool = False
    command_seq: int = -1


# --------------------------------------------------------------------------------------
# Goals, instructions, learning
# --------------------------------------------------------------------------------------


@message
class Goal(_Base):
    """A goal for the planner: an image and/or its latent, with the task it came from.

    Empty arrays mean "not given". ``target`` is the task's target position (3,) when known.
    """

    task: str = ""
    object: str = ""
    target: np.ndarray = array("f8", 1)
    image: np.ndarray = array("u1", 3)
    z: np.ndarray = array("f4", 1)
    model_version: int = 0
    source: str = ""  # imagined | task | file | memory | instruction


@message
class Instruction(_Base):
    """Plain-language task instruction."""

    text: str = ""


@message
class TaskSpec(_Base):
    """A validated task spec. ``target`` is a place, a direction or a relation, as text;
    ``target_pos`` (3,) the resolved position when known."""

    task: str = ""
    object: str = ""
    target: str = ""
    target_pos: np.ndarray = array("f8", 1)
    confidence: float = 0.0
    source: str = ""  # fast | llm | memory
    refusal: str = ""  # non-empty: the instruction was refused, and why


@message
class Weights(_Base):
    """New world-model weights are ready at ``path`` (written atomically)."""

    version: int = 0
    path: str = ""
    sha256: str = ""


# --------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------

TOPICS: dict[str, type] = {
    "heartbeat": Heartbeat,
    "tick": Tick,
    "ack": Ack,
    "joint_state": JointState,
    "scene_state": SceneState,
    "reset": Reset,
    "ee_action": EEAction,
    "plan": Plan,
    "joint_command": JointCommand,
    "safety": SafetyEvent,
    "estop": EStop,
    "gripper_command": GripperCommand,
    "gripper_state": GripperState,
    "goal": Goal,
    "goal_latent": Goal,  # a goal image encoded by the perception node, with the model version
    "instruction": Instruction,
    "task_spec": TaskSpec,
    "weights": Weights,
}
"""Exact topic name -> message type."""

TOPIC_PREFIXES: dict[str, type] = {"camera/": Image, "latent/": Latent, "objects/": Objects}
"""Topic families: ``camera/<name>`` -> Image, ``latent/<camera>`` -> Latent,
``objects/<camera>`` -> Objects."""

INFRA_TOPICS = frozenset({"heartbeat", "tick", "ack"})
"""Topics about the graph itself; not recorded by default."""


def topic_type(topic: str) -> type | None:
    """The message type carried by ``topic``, or None if the topic is unknown."""
    t = TOPICS.get(topic)
    if t is not None:
        return t
    for prefix, t in TOPIC_PREFIXES.items():
        if topic.startswith(prefix) and len(topic) > len(prefix):
            return t
    return None
