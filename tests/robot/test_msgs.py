"""Messages: every type round-trips exactly; malformed frames raise MalformedMessage."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest
import zmq

from reflexarc.runtime.errors import MalformedMessage
from reflexarc.runtime.msgs import (
    SCHEMA_VERSION,
    TOPIC_PREFIXES,
    TOPICS,
    Image,
    JointState,
    message_types,
)
from reflexarc.runtime.wire import PACK_BYTES, decode, encode


def _random_message(cls: type, rng: np.random.Generator, big: bool = False):
    kwargs = {"seq": int(rng.integers(0, 1 << 40)), "stamp_ns": int(rng.integers(0, 1 << 62))}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            continue
        spec = f.metadata.get("array")
        if spec is not None:
            shape = tuple(int(x) for x in rng.integers(1, 5, spec.ndim))
            if big and spec.ndim == 3:
                shape = (224, 224, 3)
            if spec.dtype.kind == "u":
                kwargs[f.name] = rng.integers(0, 255, shape).astype(spec.dtype)
            else:
                kwargs[f.name] = rng.normal(size=shape).astype(spec.dtype)
            continue
        t = f.type if isinstance(f.type, type) else str(f.type)
        if "dict" in str(t):
            kwargs[f.name] = {"joint_state": int(rng.integers(0, 100)), "plan": 3}
        elif "bool" in str(t):
            kwargs[f.name] = bool(rng.integers(0, 2))
        elif "int" in str(t):
            kwargs[f.name] = int(rng.integers(-1000, 1000))
        elif "float" in str(t):
            kwargs[f.name] = float(rng.normal())
        else:
            kwargs[f.name] = "text-" + str(rng.integers(0, 1000)) + "-é"
    return cls(**kwargs)


def _topic_for(cls: type) -> str:
    for topic, t in TOPICS.items():
        if t is cls:
            return topic
    for prefix, t in TOPIC_PREFIXES.items():
        if t is cls:
            return prefix + "front"
    raise KeyError(cls)


def _sample(name: str, big: bool):
    """A random message of type ``name`` (seeded by the name) and a topic carrying it."""
    cls = message_types()[name]
    return _topic_for(cls), _random_message(cls, np.random.default_rng(abs(hash(name)) % 2**32), big)


@pytest.mark.parametrize("name", sorted(message_types()))
@pytest.mark.parametrize("big", [False, True])
def test_every_message_round_trips_exactly(name: str, big: bool) -> None:
    topic, msg = _sample(name, big)
    cls = type(msg)
    frames = encode(topic, msg)
    # through real ZeroMQ frames, not just Python objects
    got_topic, got = decode([zmq.Frame(memoryview(f).tobytes()) for f in frames])
    assert got_topic == topic
    assert type(got) is cls
    assert got == msg
    for f in dataclasses.fields(cls):
        a, b = getattr(msg, f.name), getattr(got, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape


def _js_frames() -> list[bytes]:
    z = np.arange(7.0)
    msg = JointState(seq=1, stamp_ns=2, position=z, velocity=z, effort=z, gripper=0.1)
    return [memoryview(f).tobytes() for f in encode("joint_state", msg)]


def _header(frames: list[bytes]) -> dict:
    return msgpack.unpackb(frames[1])


def _with_header(frames: list[bytes], **changes) -> list[bytes]:
    h = _header(frames)
    h.update(changes)
    return [frames[0], msgpack.packb(h), *frames[2:]]


MALFORMED = {
    "truncated": lambda f: f[:2],
    "only_topic": lambda f: f[:1],
    "version": lambda f: _with_header(f, v=SCHEMA_VERSION + 1),
    "dtype": lambda f: _with_header(f, a=[["<f4", [7], 0, 0]] + _header(f)["a"][1:]),
    "shape": lambda f: _with_header(f, a=[["<f8", [9], 0, 0]] + _header(f)["a"][1:]),
    "ndim": lambda f: _with_header(f, a=[["<f8", [7, 1], 0, 0]] + _header(f)["a"][1:]),
    "random_header": lambda f: [f[0], bytes(np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8)), *f[2:]],
    "random_frames": lambda f: [bytes(np.random.default_rng(2).integers(0, 256, 32, dtype=np.uint8)) for _ in range(3)],
    "unknown_topic": lambda f: [b"no_such_topic", *f[1:]],
    "wrong_type_for_topic": lambda f: [b"plan", *f[1:]],
    "oversize_header": lambda f: [f[0], b"\x00" * (70 * 1024), *f[2:]],
    "oversize_array": lambda f: _with_header(f, a=[["<f8", [1 << 30], 1, 0]] + _header(f)["a"][1:]),
    "missing_field": lambda f: _with_header(f, f={}),
    "bad_field_type": lambda f: _with_header(f, f={"gripper": "wide"}),
    "bad_seq": lambda f: _with_header(f, seq="one"),
    "short_buffer": lambda f: [*f[:2], f[2][:-8]],
    "extra_buffer": lambda f: [*f, b"\x00" * 8],
}


@pytest.mark.parametrize("seen", [False, True], ids=["new_layout", "known_layout"])
@pytest.mark.parametrize("as_zmq_frames", [False, True], ids=["bytes", "zmq_frames"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frames_raise_with_a_kind(case: str, as_zmq_frames: bool, seen: bool) -> None:
    if seen:  # a good message of the same layout first: decode's fast path takes the next
        decode(_js_frames())
    frames = MALFORMED[case](_js_frames())
    if as_zmq_frames:  # as a Subscriber receives them
        frames = [zmq.Frame(f) for f in frames]
    with pytest.raises(MalformedMessage) as err:
        decode(frames)
    assert err.value.kind
    assert err.value.kind in str(err.value)


def test_decoded_arrays_are_views_not_copies() -> None:
    frames = [zmq.Frame(f) for f in _js_frames()]
    _, msg = decode(frames)
    assert not msg.position.flags.owndata  # a view over the received frame


def test_strided_arrays_small_and_large_round_trip() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (160, 240, 3), dtype=np.uint8)[::2, ::2]  # 80x120x3, > PACK_BYTES
    depth = rng.random((4, 6), dtype=np.float32).T  # small, Fortran order
    msg = Image(camera="front", rgb=rgb, depth=depth)
    assert not rgb.flags.c_contiguous and not depth.flags.c_contiguous
    assert rgb.nbytes >= PACK_BYTES > depth.nbytes  # one large buffer, one packed
    _, got = decode([zmq.Frame(memoryview(f).tobytes()) for f in encode("camera/front", msg)])
    assert got == msg


@pytest.mark.parametrize("name", sorted(message_types()))
@pytest.mark.parametrize("big", [False, True])
def test_encoded_frames_decode_as_they_are(name: str, big: bool) -> None:
    # encode's frames may be arrays themselves (a lone small array is buffer 0, a large
    # one its own buffer); decode takes them without a trip through bytes
    topic, msg = _sample(name, big)
    assert decode(encode(topic, msg)) == (topic, msg)


def test_a_frame_changed_after_publish_arrives_as_it_was_sent(pub_sub) -> None:
    # a 64x64 frame is the publisher's buffer 0 with no copy of its own: the socket's copy
    # must be taken at publish, so a camera driver may refill its array at once
    pub, sub = pub_sub(["camera/"])
    rgb = np.full((64, 64, 3), 7, np.uint8)
    got = None
    for _ in range(100):  # the subscription reaches the publisher after the connect
        pub.publish("camera/front", Image(camera="front", rgb=rgb, depth=np.zeros((0, 0), np.float32)))
        rgb[:] = 200  # the driver's next frame, into the same array
        if sub.wait(0.05):
            got = sub.recv()
            break
        rgb[:] = 7
    assert got is not None
    assert got[1].rgb.shape == (64, 64, 3) and (got[1].rgb == 7).all()


def _wire(topic: str, msg) -> list[bytes]:
    return [memoryview(f).tobytes() for f in encode(topic, msg)]


@pytest.mark.parametrize("name", sorted(message_types()))
@pytest.mark.parametrize("big", [False, True])
def test_the_wire_bytes_do_not_depend_on_how_the_arrays_are_held(name: str, big: bool) -> None:
    # each type's own encoder takes contiguous arrays of the declared dtype; lists and
    # strided views go the general way. Both must put the same bytes on the wire.
    topic, msg = _sample(name, big)
    arrays = [f.name for f in dataclasses.fields(msg) if "array" in f.metadata]
    wire = _wire(topic, msg)
    as_lists = msg.replace(**{n: getattr(msg, n).tolist() for n in arrays})
    strided = msg.replace(**{n: np.stack([getattr(msg, n)] * 2, -1)[..., 0] for n in arrays})
    assert all(not a.flags.c_contiguous for a in (getattr(strided, n) for n in arrays) if a.size > 1)
    assert _wire(topic, as_lists) == wire
    assert _wire(topic, strided) == wire
    assert decode(wire) == (topic, msg)


def test_a_graph_of_ever_new_topics_decodes_them_all_in_bounded_memory() -> None:
    from reflexarc.runtime import wire

    rgb = np.zeros((2, 2, 3), np.uint8)
    for i in range(600):
        topic = f"camera/cam{i}"
        frames = encode(topic, Image(camera=f"cam{i}", rgb=rgb, depth=np.zeros((0, 0), np.float32)))
        got_topic, got = decode(frames)
        assert got_topic == topic and got.camera == f"cam{i}"
    assert len(wire._BY_TOPIC) <= 256


@pytest.mark.parametrize("name", sorted(message_types()))
def test_a_message_made_positionally_is_the_one_its_keywords_make(name: str) -> None:
    """msgs.maker: every type, every field set in declaration order; equal, same wire bytes."""
    from reflexarc.runtime.msgs import maker

    topic, msg = _sample(name, False)
    names = [f.name for f in dataclasses.fields(msg)]
    order = ["seq", "stamp_ns", *(n for n in names if n not in ("seq", "stamp_ns"))]
    made = maker(type(msg))(*(getattr(msg, n) for n in order))
    assert type(made) is type(msg) and made == msg
    assert [bytes(f) for f in encode(topic, made)] == [bytes(f) for f in encode(topic, msg)]
    with pytest.raises(TypeError):
        maker(type(msg))(*(getattr(msg, n) for n in order[:-1]))  # a field left out
