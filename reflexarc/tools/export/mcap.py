"""Episodes as MCAP, the log format Foxglove opens, written with the ``mcap`` package.

One channel per recorded topic, JSON-encoded with a JSON schema (Foxglove's
``jsonschema``/``json`` encodings), log time = the message's ``stamp_ns``:

- ``/camera/<name>``: ``foxglove.CompressedImage`` (PNG, base64 as Foxglove's JSON
  encoding wants bytes), with the goal image likewise on ``/goal/image``;
- every other topic: its message type's fields, arrays as nested lists, under a schema
  named ``reflexarc.<Type>``.

The episode's metadata goes in an MCAP metadata record named ``reflexarc`` (docs/data.md).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reflexarc.runtime.episode import Episode

IMAGE_SCHEMA = {
    "title": "foxglove.CompressedImage",
    "type": "object",
    "properties": {
        "timestamp": {"type": "object", "properties": {
            "sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
        "frame_id": {"type": "string"},
        "data": {"type": "string", "contentEncoding": "base64"},
        "format": {"type": "string"},
    },
}


def _png(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError(f"cannot PNG-encode an image of shape {rgb.shape}")
    return base64.b64encode(buf.tobytes()).decode()


def _image(stamp_ns: int, frame_id: str, rgb: np.ndarray) -> dict[str, Any]:
    return {"timestamp": {"sec": stamp_ns // 1_000_000_000, "nsec": stamp_ns % 1_000_000_000},
            "frame_id": frame_id, "data": _png(rgb), "format": "png"}


def _json_type(value: Any) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        inner: dict[str, Any] = {"type": "number"}
        for _ in range(value.ndim):
            inner = {"type": "array", "items": inner}
        return inner
    if isinstance(value, bool | np.bool_):
        return {"type": "boolean"}
    if isinstance(value, int | np.integer):
        return {"type": "integer"}
    if isinstance(value, float | np.floating):
        return {"type": "number"}
    if isinstance(value, dict):
        return {"type": "object"}
    return {"type": "string"}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_mcap(episodes: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write every topic of ``episodes`` into one MCAP file ``out``; returns counts."""
    from mcap.writer import Writer

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with out.open("wb") as f:
        writer = Writer(f)
        writer.start(profile="", library="reflexarc")
        channels: dict[str, int] = {}

        def channel(name: str, schema_name: str, schema: dict[str, Any]) -> int:
            if name not in channels:
                sid = writer.register_schema(name=schema_name, encoding="jsonschema",
                                             data=json.dumps(schema).encode())
                channels[name] = writer.register_channel(topic=name, message_encoding="json",
                                                         schema_id=sid)
            return channels[name]

        def emit(name: str, cid: int, stamp_ns: int, seq: int, payload: dict[str, Any]) -> None:
            writer.add_message(channel_id=cid, log_time=stamp_ns, publish_time=stamp_ns,
                               sequence=seq % (1 << 32), data=json.dumps(payload).encode())
            counts[name] = counts.get(name, 0) + 1

        for path in episodes:
            ep = Episode(path)
            writer.add_metadata("reflexarc", {"source": str(ep.path),
                                              "meta": json.dumps(ep.meta, default=str)})
            for _, topic, msg in ep.all_messages():
                stamp, seq = int(msg.stamp_ns), int(msg.seq)
                if topic.startswith("camera/"):
                    name = f"/{topic}"
                    emit(name, channel(name, "foxglove.CompressedImage", IMAGE_SCHEMA), stamp,
                         seq, _image(stamp, topic.split("/", 1)[1], np.asarray(msg.rgb)))
                    continue
                fields = {k: getattr(msg, k) for k in msg.__dataclass_fields__}
                if topic == "goal" and np.asarray(fields.get("image", ())).size:
                    name = "/goal/image"
                    emit(name, channel(name, "foxglove.CompressedImage", IMAGE_SCHEMA), stamp,
                         seq, _image(stamp, "goal", np.asarray(fields["image"])))
                fields = {k: v for k, v in fields.items()
                          if not (isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim >= 2)}
                schema = {"title": f"reflexarc.{msg.TYPE}", "type": "object",
                          "properties": {k: _json_type(v) for k, v in fields.items()}}
                name = f"/{topic}"
                emit(name, channel(name, f"reflexarc.{msg.TYPE}", schema), stamp, seq,
                     {k: _plain(v) for k, v in fields.items()})
        writer.finish()
    return {"format": "mcap", "out": str(out), "messages": sum(counts.values()),
            "channels": len(counts), "per_topic": counts}


def read_mcap(path: str | Path) -> dict[str, Any]:
    """Read an MCAP back with the ``mcap`` reader: per-topic counts and decoded messages."""
    from mcap.reader import make_reader

    counts: dict[str, int] = {}
    messages: dict[str, list[dict[str, Any]]] = {}
    with Path(path).open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {s.id: s.name for s in summary.schemas.values()} if summary else {}
        for schema, channel, message in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            messages.setdefault(channel.topic, []).append(
                {"log_time": message.log_time, "schema": schema.name if schema else "",
                 **json.loads(message.data)})
        metadata = [m.metadata for m in reader.iter_metadata()]
    return {"counts": counts, "messages": messages, "schemas": schemas, "metadata": metadata}
