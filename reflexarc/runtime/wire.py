"""The wire codec: messages to ZeroMQ frames and back (docs/wire-format.md).

A message travels as a ZeroMQ multipart message

    frame 0: topic, UTF-8 (used by SUB prefix filtering)
    frame 1: header, a msgpack map
             {"v": SCHEMA_VERSION, "type": "JointState", "seq": int, "stamp_ns": int,
              "f": {scalar fields},
              "a": [[dtype, [shape...], buffer_index, byte_offset], ...]}  # per array field
    frame 2..: raw buffers. Buffer 0 packs every array under PACK_BYTES back to back
             (8-byte aligned); each larger array is a buffer of its own (index >= 1).

Arrays are received zero-copy (numpy views over the ZeroMQ frames). Nothing is ever
pickled. What a message holds is declared in :mod:`reflexarc.runtime.msgs`; for each
type registered there, this module builds its own encoder and decoder (straight-line
Python generated from the field declarations, see :func:`_encoder`), because this runs
for every message of the graph.

A malformed message raises :class:`MalformedMessage` with a short ``kind``; the bus counts
it, logs each kind once and drops it.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec
import numpy as np
import zmq

from reflexarc.runtime import msgs
from reflexarc.runtime.errors import MalformedMessage
from reflexarc.runtime.msgs import SCHEMA_VERSION, TOPICS, Message, Schema, topic_type

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_HEADER_BYTES",
    "PACK_BYTES",
    "SCHEMA_VERSION",
    "MalformedMessage",
    "decode",
    "encode",
]

MAX_HEADER_BYTES = 64 * 1024
"""A larger header is dropped unread (``oversize``)."""
MAX_ARRAY_BYTES = 64 * 1024 * 1024
"""A header declaring a larger array is dropped (``oversize``)."""
PACK_BYTES = 16 * 1024
"""Arrays under this size share buffer 0; larger ones travel as frames of their own."""

_PAD = tuple(bytes(n) for n in range(8))  # padding of n bytes

# a header's array layout: per array (dtype string, shape, buffer index, byte offset)
_Metas = tuple[tuple[str, tuple[int, ...], int, int], ...]
_METAS = msgspec.msgpack.Decoder(_Metas)
_NO_ARRAYS = b"\x90"  # an empty msgpack array

_SPECS: dict[type, _TypeSpec] = {}
_ENCODERS: dict[type, Any] = {}  # type -> its own encode (see _encoder)
_DECODERS: dict[type, Any] = {}  # type -> its own decode after the topic (see _decoder)

_packb = msgspec.msgpack.Encoder().encode
_new = object.__new__
_Frame = zmq.Frame
_ndarray = np.ndarray


@dataclass(frozen=True)
class _TypeSpec:
    """A message type as the codec needs it, computed once at registration."""

    name: str
    # per array: name, dtype, dtype string, ndim, itemsize (precomputed for decode)
    fast_arrays: tuple[tuple[str, np.dtype, str, int, int], ...]
    header_decoder: Any  # msgspec decoder validating this type's header in C
    scalar_names: tuple[str, ...]
    header_type: Any  # msgspec Struct of the header: encoded as the same map
    fields_of: Any  # msg -> the header's "f" struct
    layouts: dict[bytes, Any] = field(default_factory=dict)  # validated array layouts (decode)
    setters: dict[str, Any] = field(default_factory=dict)  # field name -> its slot's setter


def _register(cls: type, schema: Schema) -> None:
    """Build the header structs, the encoder and the decoder of a message type."""
    fast = tuple((n, a.dtype, a.dtype.str, a.ndim, a.dtype.itemsize) for n, a in schema.arrays)
    fields_t = msgspec.defstruct(f"{schema.name}Fields", list(schema.hints))
    head = [("v", int), ("type", str), ("seq", int), ("stamp_ns", int), ("f", fields_t)]
    header_t = msgspec.defstruct(f"{schema.name}Header", [*head, ("a", _Metas)])
    # decoding leaves the array layout as raw bytes: the key of the validated layouts
    # (decoding it into nested tuples and hashing them costs more than all the rest)
    decoder = msgspec.msgpack.Decoder(
        msgspec.defstruct(f"{schema.name}HeaderIn", [*head, ("a", msgspec.Raw)])
    )
    names = tuple(n for n, _ in schema.scalars)
    slots = {n: d for k in reversed(cls.__mro__) for n, d in vars(k).items()
             if isinstance(d, types.MemberDescriptorType)}
    spec = _TypeSpec(
        schema.name, fast, decoder, names, header_t, _fields_of(fields_t, names),
        setters={n: slots[n].__set__ for n in ("seq", "stamp_ns", *names, *(a[0] for a in fast))},
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
    runs costs, so straight-line code is markedly faster (docs/benchmarks.md, "The wire
    codec"). It covers the usual message, every array native, of its declared dimensions
    and under PACK_BYTES; anything else goes to :func:`_encode_any`, and the bytes on the
    wire are the same either way.
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
    which raises the error or decodes it the same.
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
    if not spec.fast_arrays:
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
    if spec.fast_arrays:
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


msgs.on_register(_register)
