"""Episode files: every topic of a run in HDF5, readable while being written.

An episode is a directory of parts, ``part-000000.h5``, ``part-000001.h5``... Each part
is closed (hence complete and consistent on disk) after ``part_seconds`` of recording,
so a SIGKILL of the writer loses at most the part that was open: the last second.

Inside a part, one group per topic (``/topics/<topic>``, with ``/`` in topic names
replaced by ``|``), with attribute ``type`` (message type name) and one dataset per
message field, first axis = message index:

    seq (N,) int64, stamp_ns (N,) int64, recv_ns (N,) int64 (when it was recorded)
    <scalar field> (N,)             numbers, or variable-length UTF-8 strings
    <array field>  (N, *shape)      fixed shape within a part; when a message's array
                                    shape differs, the field is stored flattened as
                                    ``<field>.ragged`` (vlen) with ``<field>.shape``

Numeric datasets (camera frames, goal images, joint states...) are stored gzip-compressed
at level 1, which costs little CPU: a 64x64 frame shrinks about 4x, and the unfilled end
of each part's last chunk costs nothing. HDF5 readers decompress transparently.

File attributes: ``format = "reflexarc-episode"``, ``version``, ``part``, and on part 0
``meta`` (JSON: what was known when recording started: task, backend, robot, the run's
config, the project's version). ``meta.json`` beside the parts adds what is known only
as recording goes on (camera calibration, messages and rate per topic), rewritten by the
recorder with every part and at the end;
:attr:`Episode.meta` merges both (docs/data.md). Standard HDF5: h5py, MATLAB, HDFView
read it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reflexarc.runtime.msgs import Message, message_types

log = logging.getLogger(__name__)

FORMAT = "reflexarc-episode"
VERSION = 1
META_FILE = "meta.json"
_STR = h5py.string_dtype("utf-8")
_GZIP: dict[str, Any] = {"compression": "gzip", "compression_opts": 1}


def _group_name(topic: str) -> str:
    return topic.replace("/", "|")


def _topic_name(group: str) -> str:
    return group.replace("|", "/")


class _TopicBuffer:
    """Messages of one topic waiting to be written, column by column."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.columns: dict[str, list[Any]] = defaultdict(list)
        self.count = 0

    def add(self, msg: Message, recv_ns: int) -> None:
        cols = self.columns
        for f in dataclasses.fields(msg):  # type: ignore[arg-type]
            cols[f.name].append(getattr(msg, f.name))
        cols["recv_ns"].append(recv_ns)
        self.count += 1


class EpisodeWriter:
    """Append messages of any topic; parts rotate every ``part_seconds``.

    Use as a context manager, or call :meth:`close`. ``flush()`` writes buffered messages
    into the open part; :meth:`maybe_rotate` (called by the recorder at 1 Hz) closes the
    open part when it is older than ``part_seconds``.
    """

    def __init__(
        self, path: str | Path, meta: dict[str, Any] | None = None, part_seconds: float = 1.0
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.path.glob("part-*.h5"))
        self.part_index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self.meta = meta or {}
        self.part_seconds = part_seconds
        self.buffers: dict[str, _TopicBuffer] = {}
        self.file: h5py.File | None = None
        self.opened_at = 0.0
        self.messages_written = 0

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, topic: str, msg: Message, recv_ns: int | None = None) -> None:
        buf = self.buffers.get(topic)
        if buf is None:
            buf = self.buffers[topic] = _TopicBuffer(msg.TYPE)
        buf.add(msg, time.monotonic_ns() if recv_ns is None else recv_ns)

    def _open_part(self) -> h5py.File:
        name = self.path / f"part-{self.part_index:06d}.h5"
        tmp = name.with_suffix(".h5.tmp")
        f = h5py.File(tmp, "w")
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["part"] = self.part_index
        if self.part_index == 0 or not (self.path / "part-000000.h5").exists():
            f.attrs["meta"] = json.dumps(self.meta, default=str)
        f.create_group("topics")
        self.opened_at = time.monotonic()
        self._tmp_name, self._final_name = tmp, name
        return f

    def flush(self) -> None:
        """Write buffered messages to the open part (opening one if needed)."""
        if not any(b.count for b in self.buffers.values()):
            return
        if self.file is None:
            self.file = self._open_part()
        for topic, buf in self.buffers.items():
            if buf.count:
                _append(self.file["topics"], topic, buf)
                self.messages_written += buf.count
                buf.columns.clear()
                buf.count = 0
        self.file.flush()

    def maybe_rotate(self) -> None:
        """Flush, and close the open part if it is older than ``part_seconds``."""
        self.flush()
        if self.file is not None and time.monotonic() - self.opened_at >= self.part_seconds:
            self._close_part()

    def _close_part(self) -> None:
        if self.file is None:
            return
        self.file.close()
        self._tmp_name.rename(self._final_name)  # a part is visible only once complete
        self.file = None
        self.part_index += 1

    def close(self) -> None:
        self.flush()
        self._close_part()


def _append(root: h5py.Group, topic: str, buf: _TopicBuffer) -> None:
    gname = _group_name(topic)
    group = root.get(gname)
    if group is None:
        group = root.create_group(gname)
        group.attrs["type"] = buf.type_name
    for name, values in buf.columns.items():
        _append_column(group, name, values)


def _append_column(group: h5py.Group, name: str, values: list[Any]) -> None:
    n = len(values)
    first = values[0]
    if isinstance(first, np.ndarray):
        if f"{name}.ragged" not in group and all(v.shape == first.shape for v in values):
            data = np.stack(values)
            ds = group.get(name)
            if ds is None:
                chunk_rows = max(1, min(256, (1 << 20) // max(1, data[0].nbytes)))
                group.create_dataset(
                    name, data=data, maxshape=(None, *(d or None for d in first.shape)),
                    chunks=(chunk_rows, *(max(1, d) for d in first.shape)), **_GZIP,
                )
                return
            if ds.shape[1:] == first.shape:
                ds.resize(ds.shape[0] + n, axis=0)
                ds[-n:] = data
                return
        _append_ragged(group, name, values)
        return
    if isinstance(first, str):
        data = np.array(values, dtype=object)
        dtype: Any = _STR
    elif isinstance(first, dict):
        data = np.array([json.dumps(v) for v in values], dtype=object)
        dtype = _STR
    else:
        data = np.asarray(values)
        dtype = data.dtype
    ds = group.get(name)
    if ds is None:
        group.create_dataset(name, data=data, dtype=dtype, maxshape=(None,), chunks=(1024,),
                             **_GZIP)
        if isinstance(first, dict):
            group[name].attrs["json"] = True
    else:
        ds.resize(ds.shape[0] + n, axis=0)
        ds[-n:] = data


def _append_ragged(group: h5py.Group, name: str, values: list[np.ndarray]) -> None:
    """Store arrays of changing shape flattened, with their shapes beside them."""
    rname, sname = f"{name}.ragged", f"{name}.shape"
    if rname not in group:
        dtype = values[0].dtype
        old = list(group[name][...]) if name in group else []
        if name in group:
            del group[name]
        group.create_dataset(rname, shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(dtype))
        group.create_dataset(sname, shape=(0, values[0].ndim), maxshape=(None, values[0].ndim),
                             dtype="i8")
        values = old + values
    r, s = group[rname], group[sname]
    n = len(values)
    r.resize(r.shape[0] + n, axis=0)
    s.resize(s.shape[0] + n, axis=0)
    for i, v in enumerate(values):
        r[r.shape[0] - n + i] = v.ravel()
        s[s.shape[0] - n + i] = v.shape


def _part_number(path: Path) -> int | None:
    try:
        return int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return None


class Episode:
    """Read an episode directory (or a single part file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_file():
            self.parts = [self.path]
        else:
            self.parts = sorted(self.path.glob("part-*.h5"))
        if not self.parts:
            raise FileNotFoundError(f"no episode parts (part-*.h5) under {self.path}")
        # a damaged episode reads what it can and names what is missing: parts absent from
        # the numbering, and parts HDF5 cannot open (cut short, overwritten)
        self.unreadable: list[str] = []
        readable = []
        for p in self.parts:
            try:
                with h5py.File(p, "r") as f:
                    f["topics"]  # noqa: B018  (a part without its topics group is damaged)
                readable.append(p)
            except (OSError, KeyError):
                self.unreadable.append(p.name)
        self.parts = readable
        if not self.parts:
            raise FileNotFoundError(f"no readable episode part under {self.path} "
                                    f"(unreadable: {', '.join(self.unreadable)})")
        numbers = [_part_number(p) for p in self.parts]
        known = {n for n in numbers if n is not None} | {
            n for n in map(_part_number, map(Path, self.unreadable)) if n is not None}
        self.missing: list[str] = [
            f"part-{n:06d}.h5" for n in range(min(known), max(known) + 1) if n not in known
        ] if known else []
        if self.missing or self.unreadable:
            log.warning("episode %s is damaged: %s; reading the %d other parts", self.path,
                        self.damage(), len(self.parts))

    def damage(self) -> str:
        """What is missing or unreadable, in words ('' when the episode is whole)."""
        words = []
        if self.missing:
            words.append(f"missing {', '.join(self.missing)}")
        if self.unreadable:
            words.append(f"unreadable {', '.join(self.unreadable)}")
        return "; ".join(words)

    @property
    def meta(self) -> dict[str, Any]:
        """Part 0's ``meta``, updated with ``meta.json`` (the recorder's, as of its last part)."""
        with h5py.File(self.parts[0], "r") as f:
            meta = json.loads(f.attrs.get("meta", "{}"))
        end = self.parts[0].parent / META_FILE
        if end.is_file():
            meta.update(json.loads(end.read_text()))
        return meta

    def topics(self) -> dict[str, str]:
        """topic -> message type name, over all parts."""
        out: dict[str, str] = {}
        for p in self.parts:
            with h5py.File(p, "r") as f:
                for g, grp in f["topics"].items():
                    out[_topic_name(g)] = grp.attrs["type"]
        return out

    def read(self, topic: str) -> dict[str, Any]:
        """Every field of ``topic`` concatenated over parts: name -> array (or list)."""
        cols: dict[str, list[Any]] = defaultdict(list)
        for p in self.parts:
            with h5py.File(p, "r") as f:
                grp = f["topics"].get(_group_name(topic))
                if grp is None:
                    continue
                for name, ds in grp.items():
                    if name.endswith(".shape"):
                        continue
                    if name.endswith(".ragged"):
                        field = name[: -len(".ragged")]
                        shapes = grp[f"{field}.shape"][...]
                        cols[field].append(
                            [np.asarray(a).reshape(s) for a, s in zip(ds[...], shapes, strict=True)]
                        )
                        continue
                    data = ds[...]
                    if ds.attrs.get("json"):
                        data = [json.loads(x) for x in data]
                    elif data.dtype == object:
                        data = [x.decode() if isinstance(x, bytes) else x for x in data]
                    cols[name].append(data)
        out: dict[str, Any] = {}
        for name, chunks in cols.items():
            if isinstance(chunks[0], np.ndarray) and all(
                isinstance(c, np.ndarray) and c.shape[1:] == chunks[0].shape[1:] for c in chunks
            ):
                out[name] = np.concatenate(chunks)
            else:
                out[name] = [x for c in chunks for x in c]
        return out

    def messages(self, topic: str) -> Iterator[tuple[int, Message]]:
        """(recv_ns, message) of one topic, in recorded order."""
        types = self.topics()
        if topic not in types:
            return
        cls = message_types()[types[topic]]
        cols = self.read(topic)
        names = [f.name for f in dataclasses.fields(cls)]
        for i in range(len(cols["seq"])):
            kwargs = {n: _item(cols[n][i]) for n in names if n in cols}
            yield int(cols["recv_ns"][i]), cls(**kwargs)

    def all_messages(self) -> list[tuple[int, str, Message]]:
        """(recv_ns, topic, message) of every topic, merged in recorded order."""
        out = [(t, topic, m) for topic in self.topics() for t, m in self.messages(topic)]
        out.sort(key=lambda x: x[0])
        return out


def write_meta(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write an episode's closing metadata (``meta.json``), whole or not at all."""
    out = Path(path) / META_FILE
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str) + "\n")
    tmp.rename(out)
    return out


def _item(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def list_episodes(root: str | Path) -> list[Path]:
    """Episode directories under ``root`` (those holding at least one complete part)."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("part-*.h5")))
