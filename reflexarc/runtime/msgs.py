"""Every message of the graph, and the wire format.

One frozen, typed struct per message. Each carries ``seq`` (per topic, per publisher,
starting at 0) and ``stamp_ns``: the time of the sensor reading it derives from, on the
graph's one clock (``time.monotonic_ns()`` in realtime, simulated time in lockstep).
Derived messages carry their source frame's stamp forward (Image -> Latent -> Plan ->
JointCommand), so frame-to-command latency is known on every tick.

Wire format (see docs in README.md, "Wire format"): a ZeroMQ multipart message

    frame 0: topic, UTF-8 (used by SUB prefix filtering)
    frame 1: header, a msgpack map
             {"v": SCHEMA_VERSION, "type": "JointState", "seq": int, "stamp_ns": int,
              "f": {scalar fields},
              "a": [[dtype, [shape...], buffer_index, byte_offset], ...]}  # per array field
    frame 2..: raw buffers. Buffer 0 packs every array under PACK_BYTES back to back
             (8-byte aligned); each larger array is a buffer of its own (index >= 1).

Arrays are received zero-copy (numpy views over the ZeroMQ frames).
Nothing is ever pickled.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import msgspec
import numpy as np
import zmq

from reflexarc.runtime.errors import MalformedMessage

SCHEMA_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAY_BYTES = 64 * 1024 * 1024


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
    # a little-endian host, so that encode's ``a.dtype is dtype`` holds for native arrays
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


def message(cls: type) -> type:
    """Class decorator: a frozen, slotted, keyword-only message struct registered by name."""
    cls = dataclass(frozen=True, slots=True, kw_only=True, eq=False)(cls)
    cls.TYPE = cls.__name__
    _register(cls)
    return cls


# --------------------------------------------------------------------------------------
# Graph infrastructure
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Base(Message):
    seq: int = 0
    stamp_ns: int = 0


# a header's array layout: per array (dtype string, shape, buffer index, byte offset)
_Metas = tuple[tuple[str, tuple[int, ...], int, int], ...]
_METAS = msgspec.msgpack.Decoder(_Metas)
_NO_ARRAYS = b"\x90"  # an empty msgpack array

_TYPES: dict[str, type] = {}
_SPECS: dict[type, _TypeSpec] = {}
_ENCODERS: dict[type, Any] = {}  # type -> its own encode (see _encoder)
_DECODERS: dict[type, Any] = {}  # type -> its own decode after the topic (see _decoder)


@dataclass(frozen=True)
class _TypeSpec:
    name: str
    scalars: tuple[tuple[str, type], ...]  # field name, python type checked on decode
    arrays: tuple[tuple[str, ArraySpec], ...]
    # per array: name, dtype, dtype string, ndim, itemsize (precomputed for decode)
    fast_arrays: tuple[tuple[str, np.dtype, str, int, int], ...] = ()
    header_decoder: Any = None  # msgspec decoder validating this type's header in C
    scalar_names: tuple[str, ...] = ()
    header_type: Any = None  # msgspec Struct of the header: encoded as the same map
    fields_of: Any = None  # msg -> the header's "f" struct
    layouts: dict[bytes, Any] = field(default_factory=dict)  # validated array layouts (decode)
    setters: dict[str, Any] = field(default_factory=dict)  # field name -> its slot's setter


_SCALAR_TYPES = {int: (int,), float: (float, int), str: (str,), bool: (bool,), dict: (dict,)}


def _register(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    scalars, arrays, hinted = [], [], []
    for f in dataclasses.fields(cls):
        if f.name in ("seq", "stamp_ns"):
            continue
        spec = f.metadata.get("array")
        if spec is not None:
            arrays.append((f.name, spec))
        else:
            origin = typing.get_origin(hints[f.name]) or hints[f.name]
            if origin not in _SCALAR_TYPES:
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {hints[f.name]}")
            scalars.append((f.name, origin))
            hinted.append((f.name, hints[f.name]))
    _TYPES[cls.__name__] = cls
    fast = tuple((n, a.dtype, a.dtype.str, a.ndim, a.dtype.itemsize) for n, a in arrays)
    fields_t = msgspec.defstruct(f"{cls.__name__}Fields", hinted)
    head = [("v", int), ("type", str), ("seq", int), ("stamp_ns", int), ("f", fields_t)]
    header_t = msgspec.defstruct(f"{cls.__name__}Header", [*head, ("a", _Metas)])
    # decoding leaves the array layout as raw bytes: the key of the validated layouts
    # (decoding it into nested tuples and hashing them costs more than all the rest)
    decoder = msgspec.msgpack.Decoder(
        msgspec.defstruct(f"{cls.__name__}HeaderIn", [*head, ("a", msgspec.Raw)])
    )
    names = tuple(n for n, _ in scalars)
    slots = {n: d for k in reversed(cls.__mro__) for n, d in vars(k).items()
             if isinstance(d, types.MemberDescriptorType)}
    spec = _TypeSpec(
        cls.__name__, tuple(scalars), tuple(arrays), fast, decoder, names, header_t,
        _fields_of(fields_t, names),
        setters={f.name: slots[f.name].__set__ for f in dataclasses.fields(cls)},
    )
    _SPECS[cls] = spec
    _ENCODERS[cls] = _encoder(spec)
    _DECODERS[cls] = _decoder(spec, cls)


def _fields_of(fields_t: type, names: tuple[str, ...]) -> Any:
    """A function msg -> the header's scalar-field struct (encoded by msgspec in C)."""
    if not names:
        return lambda msg: fields_t()
    get = operator.attrgetter(*names)
    if len(names) == 1:
        return lambda msg: fields_t(get(msg))
    return lambda msg: fields_t(*get(msg))


def _encoder(spec: _TypeSpec) -> Any:
    """This type's own encode: the general one unrolled over its fields, as dataclasses
    writes ``__init__``.

    Between messages a graph's caches go cold, and then every bytecode the general loop
    runs costs: on the 2-core CI VM, 1 ms asleep between calls, this straight-line
    version took a JointState in 16-22 us p50 against 23-33 us. It covers the usual
    message, every array native, of its declared dimensions and under PACK_BYTES;
    anything else goes to :func:`_encode_any`, and the bytes on the wire are the same
    either way.
    """
    k = len(spec.fast_arrays)
    header = "_packb(_H(SCHEMA_VERSION, _NAME, msg.seq, msg.stamp_ns, _F(msg), ({}{})))"
    if not k:
        body = [f"return [topic.encode(), {header.format('', '')}]"]
    else:
        body, metas, pieces = [], [], []
        for i, (field_name, _, _, ndim, _) in enumerate(spec.fast_arrays):
            body += [f"a{i} = msg.{field_name}",
                     f"if type(a{i}) is not _ndarray or a{i}.dtype is not _d{i} or a{i}.ndim != {ndim}:",
                     "    return _encode_any(topic, msg)",
                     f"n{i} = a{i}.nbytes"]
        body += ["if " + " or ".join(f"n{i} >= PACK_BYTES" for i in range(k)) + ":",
                 "    return _encode_any(topic, msg)"]
        for i, (_, _, dstr, _, itemsize) in enumerate(spec.fast_arrays):
            metas.append(f"({dstr!r}, a{i}.shape, 0, {f'o{i}' if i else 0})")
            pieces.append(f"a{i}")
            pad = ""
            if itemsize % 8:  # each array's end padded to 8 bytes, as _encode_any does
                body.append(f"p{i} = -n{i} & 7")
                pieces.append(f"_PAD[p{i}]")
                pad = f" + p{i}"
            body.append(f"o{i + 1} = {f'o{i} + ' if i else ''}n{i}{pad}")
        body.append(f"header = {header.format(', '.join(metas), ',' if k == 1 else '')}")
        # one array holding all of buffer 0 (a camera frame) is buffer 0 itself
        for i in range(k):
            body += [f"{'el' if i else ''}if o{k} and n{i} == o{k} and a{i}.flags.c_contiguous:",
                     f"    return [topic.encode(), header, a{i}]"]
        body += ["try:",
                 f"    return [topic.encode(), header, b''.join(({', '.join(pieces)},))]",
                 "except TypeError:  # a strided array",
                 "    return _encode_any(topic, msg)"]
    consts = {"_H": spec.header_type, "_NAME": spec.name, "_F": spec.fields_of}
    consts |= {f"_d{i}": dtype for i, (_, dtype, *_) in enumerate(spec.fast_arrays)}
    return _compile(f"encode_{spec.name}", "topic, msg", consts, body)


def _decoder(spec: _TypeSpec, cls: type) -> Any:
    """This type's own decode after the topic, unrolled as :func:`_encoder` is.

    It takes the usual message, whose array layout was validated before and is all in
    buffer 0; anything else, a malformed message included, goes to :func:`_decode_any`,
    which raises the error or decodes it the same. Measured as :func:`_encoder` was, a
    JointState took 23-26 us p50 against 29-33 us.
    """
    k = len(spec.fast_arrays)
    slow = "return _decode_any(topic, frames, _T)"
    body = ["hbuf = frames[1]",
            "if len(hbuf) > MAX_HEADER_BYTES:",
            f"    {slow}",
            "try:",
            "    h = _header(hbuf)",
            "except msgspec.DecodeError:",
            f"    {slow}",
            "if h.v != SCHEMA_VERSION or h.type != _NAME:",
            f"    {slow}"]
    if k:
        body += ["lay = _layouts.get(bytes(h.a))",
                 "if lay is None or lay[1] or len(frames) != 3:  # new, or with large arrays",
                 f"    {slow}",
                 "buf = frames[2]",
                 "if (len(buf) if type(buf) is not _ndarray else buf.nbytes) != lay[2][0]:",
                 f"    {slow}",
                 ", ".join(f"(_, _, c{i}, o{i}, sh{i})" for i in range(k)) + f"{',' if k == 1 else ''} = lay[0]"]
    else:
        body += ["if bytes(h.a) != _NO_ARRAYS:", f"    {slow}"]
    body += ["msg = _new(_T)", "_seq(msg, h.seq)", "_stamp(msg, h.stamp_ns)"]
    if spec.scalar_names:
        body.append("f = h.f")
        body += [f"_s{i}(msg, f.{n})" for i, n in enumerate(spec.scalar_names)]
    for i, (_, _, _, ndim, _) in enumerate(spec.fast_arrays):
        view = f"_frombuffer(buf, _d{i}, c{i}, o{i})"
        body.append(f"_a{i}(msg, {view if ndim == 1 else f'{view}.reshape(sh{i})'})")
    body.append("return topic, msg")
    setters = spec.setters
    consts = {"_T": cls, "_NAME": spec.name, "_header": spec.header_decoder.decode,
              "_layouts": spec.layouts, "_frombuffer": np.frombuffer, "_seq": setters["seq"],
              "_stamp": setters["stamp_ns"]}
    consts |= {f"_s{i}": setters[n] for i, n in enumerate(spec.scalar_names)}
    consts |= {f"_a{i}": setters[n] for i, (n, *_) in enumerate(spec.fast_arrays)}
    consts |= {f"_d{i}": dtype for i, (_, dtype, *_) in enumerate(spec.fast_arrays)}
    return _compile(f"decode_{spec.name}", "topic, frames", consts, body)


def _compile(name: str, args: str, consts: dict[str, Any], body: list[str]) -> Any:
    """A function ``name(args)`` running ``body``, with ``consts`` bound in its closure;
    other names are this module's."""
    src = "\n".join([f"def make({', '.join(consts)}):",
                     f"    def {name}({args}):",
                     *(f"        {line}" for line in body),
                     f"    return {name}"])
    made: dict[str, Any] = {}
    exec(src, globals(), made)  # noqa: S102 - our own source, from the field declarations
    return made["make"](**consts)


@message
class Heartbeat(_Base):
    """A node's liveness and loop figures, published at ``heartbeat_hz``."""

    node: str = ""
    pid: int = 0
    state: str = "running"  # starting | running | holding | fault | stopping
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
    """Privileged simulator state (simulation only): for experts, probes and success tests.

    ``objects`` is (k, 7): position xyz and quaternion wxyz of each object in ``names``
    (comma-separated, e.g. "red,green,blue").
    """

    ee_pos: np.ndarray = array("f8", 1)  # (3,)
    ee_quat: np.ndarray = array("f8", 1)  # (4,) wxyz
    objects: np.ndarray = array("f8", 2)  # (k, 7)
    names: str = ""
    target: np.ndarray = array("f8", 1)  # (3,) task target
    success: bool = False
    episode: int = 0


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
    source: str = ""  # imagined | file | memory | instruction
    # images of the states the task passes through on its way to ``image``, in order
    # (K, H, W, 3); empty: ``image`` alone. The planner takes them as consecutive goals.
    subgoals: np.ndarray = array("u1", 4, optional=True)


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
    "ee_action": EEAction,
    "plan": Plan,
    "joint_command": JointCommand,
    "safety": SafetyEvent,
    "estop": EStop,
    "goal": Goal,
    "instruction": Instruction,
    "task_spec": TaskSpec,
    "weights": Weights,
}
"""Exact topic name -> message type."""

TOPIC_PREFIXES: dict[str, type] = {"camera/": Image, "latent/": Latent}
"""Topic families: ``camera/<name>`` -> Image, ``latent/<camera>`` -> Latent."""

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


def message_types() -> dict[str, type]:
    """Every registered message type by name."""
    return dict(_TYPES)


# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------

_packb = msgspec.msgpack.Encoder().encode
_new = object.__new__
_Frame = zmq.Frame
_ndarray = np.ndarray


def encode(topic: str, msg: Message) -> list[Any]:
    """Frames for ``msg`` on ``topic``: [topic, header, *buffers].

    Arrays smaller than PACK_BYTES are packed, 8-byte aligned, into the first buffer
    (one frame for all the small arrays: each ZeroMQ frame costs microseconds); larger
    arrays travel as their own frame, not copied.
    """
    return _ENCODERS[type(msg)](topic, msg)


def _encode_any(topic: str, msg: Message) -> list[Any]:
    """:func:`encode` for every message: any array-like, any size, any layout."""
    spec = _SPECS[type(msg)]
    meta = []
    packed: list[Any] = []
    packed_len = 0
    big: list[np.ndarray] = []
    for name, dtype, dstr, ndim, _ in spec.fast_arrays:
        a = getattr(msg, name)
        if type(a) is not np.ndarray or (a.dtype is not dtype and a.dtype != dtype) or a.ndim != ndim:
            a = np.asarray(a, dtype=dtype)
            if a.ndim != ndim:
                raise ValueError(f"{spec.name}.{name}: expected {ndim}-d array, got shape {a.shape}")
        nbytes = a.nbytes
        if nbytes < PACK_BYTES:
            meta.append((dstr, a.shape, 0, packed_len))
            if nbytes:  # an empty array takes no bytes, nor a piece to join
                packed.append(a)
                pad = -nbytes % 8
                packed_len += nbytes + pad
                if pad:
                    packed.append(_PAD[pad])
        else:
            big.append(a if a.flags.c_contiguous else np.ascontiguousarray(a))
            meta.append((dstr, a.shape, len(big), 0))
    header = _packb(
        spec.header_type(SCHEMA_VERSION, spec.name, msg.seq, msg.stamp_ns, spec.fields_of(msg), meta)
    )
    if not spec.arrays:
        return [topic.encode(), header]
    if len(packed) == 1 and packed[0].flags.c_contiguous:
        # one small array (a 64x64 camera frame) is buffer 0 itself: joining it would copy
        # it once more before the socket copies it
        buf0 = packed[0]
    else:
        try:
            buf0 = b"".join(packed)
        except TypeError:  # a strided small array (rare): join takes contiguous buffers only
            buf0 = b"".join([np.ascontiguousarray(x) for x in packed])
    return [topic.encode(), header, buf0, *big]


PACK_BYTES = 16 * 1024
_PAD = tuple(bytes(n) for n in range(8))  # padding of n bytes


def decode(frames: Sequence[Any]) -> tuple[str, Message]:
    """Parse and validate frames into (topic, message). Raises MalformedMessage.

    Arrays are zero-copy views of the received frames. This runs for every message
    of the graph, so it is written for speed: the header is decoded and type-checked
    in C (msgspec), and the array layout it declares is validated once per distinct
    layout and then looked up (a stream's shapes rarely change), leaving one size
    check per buffer and one view per array.
    """
    if len(frames) < 2:
        raise MalformedMessage("truncated", f"{len(frames)} frame(s), need topic and header")
    f0 = frames[0]
    t = type(f0)  # a received frame's own bytes are cheaper than its buffer's copy
    key = f0 if t is bytes else f0.bytes if t is _Frame else bytes(f0)
    known = _BY_TOPIC.get(key)
    if known is None:
        known = _topic_decoder(key)
    return known[1](known[0], frames)


_BY_TOPIC: dict[bytes, tuple[str, Any]] = {}  # topic as sent -> (topic, its type's decode)


def _topic_decoder(key: bytes) -> tuple[str, Any]:
    """The topic ``key`` names and its type's decode; raises for a topic no type has.
    Cached, as the layouts are (bounded)."""
    try:
        topic = key.decode()
    except UnicodeDecodeError as e:
        raise MalformedMessage("topic", "topic is not UTF-8") from e
    expected = TOPICS.get(topic) or topic_type(topic)
    if expected is None:
        raise MalformedMessage("unknown_topic", f"unknown topic {topic!r}")
    if len(_BY_TOPIC) >= 256:  # a graph whose topics keep changing: keep the cache bounded
        _BY_TOPIC.clear()
    known = _BY_TOPIC[key] = (topic, _DECODERS[expected])
    return known


def _decode_any(topic: str, frames: Sequence[Any], expected: type) -> tuple[str, Message]:
    """:func:`decode` after the topic, for every message: it raises what is malformed."""
    hbuf = frames[1]
    if len(hbuf) > MAX_HEADER_BYTES:
        raise MalformedMessage("oversize", f"header of {len(hbuf)} bytes > {MAX_HEADER_BYTES}")
    spec = _SPECS[expected]
    try:
        header = spec.header_decoder.decode(hbuf)  # types of every header field checked in C
    except msgspec.ValidationError as e:
        raise _header_error(hbuf, spec, e) from None
    except msgspec.DecodeError as e:
        raise MalformedMessage("header", f"header is not msgpack: {e}") from None
    if header.v != SCHEMA_VERSION:
        raise MalformedMessage("version", f"schema version {header.v!r}, expected {SCHEMA_VERSION}")
    if header.type != spec.name:
        raise MalformedMessage("type", f"topic {topic!r} carries {spec.name}, got {header.type!r}")
    # every field is set here (header scalars, layout arrays), so the struct is filled
    # through its slots rather than its generated __init__: a third of the decode time
    msg = _new(expected)
    setters = spec.setters
    setters["seq"](msg, header.seq)
    setters["stamp_ns"](msg, header.stamp_ns)
    fields = header.f
    for name in spec.scalar_names:
        setters[name](msg, getattr(fields, name))
    raw = bytes(header.a)
    if spec.arrays:
        layout = spec.layouts.get(raw)
        if layout is None:
            layout = _layout(spec, raw)
        packed, big, needs = layout
        if len(frames) != len(needs) + 2:
            raise MalformedMessage(
                "truncated", f"{spec.name}: {len(frames) - 2} buffers, header needs {len(needs)}"
            )
        for i, need in enumerate(needs, 2):
            f = frames[i]  # bytes and zmq.Frame have len(); encode's own frames can be arrays
            size = len(f) if type(f) is not _ndarray else f.nbytes
            if size != need:
                raise MalformedMessage(
                    "shape", f"{spec.name}: buffer {i - 2} has {size} bytes, "
                    f"the header's arrays need {need}"
                )
        # zero-copy views of buffer 0, one frombuffer each: on a machine whose caches go
        # cold between messages, cheaper than slicing one view (or np.ndarray)
        buf = frames[2]
        frombuffer = np.frombuffer
        for name, dtype, count, offset, shape in packed:
            a = frombuffer(buf, dtype, count, offset)
            setters[name](msg, a if shape is None else a.reshape(shape))
        for name, shape, dtype, index in big:
            setters[name](msg, np.ndarray(shape, dtype, frames[index]))
    elif raw != _NO_ARRAYS and (n := len(_metas(spec, raw))):
        raise MalformedMessage("truncated", f"{spec.name} has no arrays; header lists {n}")
    return topic, msg


# a validated array layout: buffer 0's arrays (name, dtype, element count, byte offset,
# shape or None for 1-d), the large arrays (name, shape, dtype, frame index), and the
# byte size of every buffer
_Layout = tuple[
    tuple[tuple[str, np.dtype, int, int, tuple[int, ...] | None], ...],
    tuple[tuple[str, tuple[int, ...], np.dtype, int], ...],
    tuple[int, ...],
]


def _metas(spec: _TypeSpec, raw: bytes) -> Any:
    """The array layout of a header, from its raw msgpack (typed in C)."""
    try:
        return _METAS.decode(raw)
    except msgspec.ValidationError as e:
        raise MalformedMessage("shape", f"{spec.name} header: array layout {e}") from None
    except msgspec.DecodeError as e:  # pragma: no cover - the header decode parsed it
        raise MalformedMessage("header", f"header is not msgpack: {e}") from None


def _layout(spec: _TypeSpec, raw: bytes) -> _Layout:
    """Validate an array layout declared by a header (its raw msgpack); cached per type
    (bounded)."""
    metas = _metas(spec, raw)
    arrays = spec.fast_arrays
    if len(metas) != len(arrays):
        raise MalformedMessage(
            "truncated", f"{spec.name} has {len(arrays)} arrays; header lists {len(metas)}"
        )
    packed: list[tuple[str, np.dtype, int, int, tuple[int, ...] | None]] = []
    big: list[tuple[str, tuple[int, ...], np.dtype, int]] = []
    sizes: dict[int, int] = {0: 0}
    packed_end = 0  # arrays in buffer 0 tile it exactly, 8-byte aligned, in declaration order
    for (name, dtype, dstr, ndim, itemsize), (dtype_str, shape, index, offset) in zip(
        arrays, metas, strict=True
    ):
        if dtype_str != dstr:
            raise MalformedMessage("dtype", f"{spec.name}.{name} must be {dstr}, got {dtype_str!r}")
        if len(shape) != ndim:
            raise MalformedMessage(
                "shape", f"{spec.name}.{name} must be {ndim}-d, got shape {list(shape)}"
            )
        nbytes = itemsize
        for d in shape:
            if d < 0:
                raise MalformedMessage("shape", f"{spec.name}.{name}: bad shape {list(shape)}")
            nbytes *= d
        if nbytes > MAX_ARRAY_BYTES:
            raise MalformedMessage("oversize", f"{spec.name}.{name}: {nbytes} bytes")
        if index == 0:
            if offset != packed_end:
                raise MalformedMessage(
                    "shape", f"{spec.name}.{name}: offset {offset}, expected {packed_end}"
                )
            packed_end += nbytes + (-nbytes % 8)
            packed.append((name, dtype, nbytes // itemsize, offset, None if ndim == 1 else shape))
        elif index != len(sizes) or offset != 0:
            raise MalformedMessage(
                "shape", f"{spec.name}.{name}: buffer {index} at offset {offset}; large arrays "
                f"take buffers 1, 2, ... in order, each whole"
            )
        else:
            sizes[index] = nbytes
            big.append((name, shape, dtype, 2 + index))
    sizes[0] = packed_end
    layout = (
        tuple(packed),
        tuple(big),
        tuple(sizes[i] for i in range(len(sizes))),
    )
    if len(spec.layouts) >= 64:  # a stream whose shapes keep changing: keep the cache bounded
        spec.layouts.clear()
    spec.layouts[raw] = layout
    return layout


def _header_error(hbuf: Any, spec: _TypeSpec, e: Exception) -> MalformedMessage:
    """Name what is wrong with a header that failed typed decoding (error path only)."""
    try:
        raw = msgpack.unpackb(hbuf, raw=False, strict_map_key=False)
    except Exception:  # msgpack raises several unrelated types on garbage
        return MalformedMessage("header", f"header is not msgpack: {e}")
    if not isinstance(raw, dict):
        return MalformedMessage("header", "header is not a map")
    if raw.get("v") != SCHEMA_VERSION:
        return MalformedMessage("version", f"schema version {raw.get('v')!r}, expected {SCHEMA_VERSION}")
    if raw.get("type") != spec.name:
        return MalformedMessage("type", f"expected {spec.name}, got {raw.get('type')!r}")
    # the array layout ("a") is decoded as raw bytes here; its errors come from _metas
    kind = "field" if "$.f" in str(e) else "header"
    return MalformedMessage(kind, f"{spec.name} header: {e}")
