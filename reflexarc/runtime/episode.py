"""Episode files: every topic of a run in HDF5, readable while being written.

An episode is a directory of parts, ``part-000000.h5``, ``part-000001.h5``... A part
gathers ``part_seconds`` of messages in memory and is then written whole, under a
temporary name renamed once it is complete and consistent on disk, so a SIGKILL of the
writer loses at most what it had not yet written: the last second. (Writing a part once,
each dataset made with its data, costs a fraction of appending to it as messages come:
a compressed chunk is rewritten at every append.)

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
from collections import defaultdict, deque
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
        self.first_stamp = 0  # stamp_ns of the first and the last message held
        self.last_stamp = 0
        self._names: tuple[str, ...] = ()

    def add(self, msg: Message, recv_ns: int) -> None:
        names = self._names
        if not names:  # one message type per topic: its field names, once
            names = self._names = tuple(f.name for f in dataclasses.fields(msg))  # type: ignore[arg-type]
        cols = self.columns
        for name in names:
            cols[name].append(getattr(msg, name))
        cols["recv_ns"].append(recv_ns)
        if not self.count:
            self.first_stamp = msg.stamp_ns
        self.last_stamp = msg.stamp_ns
        self.count += 1


class _Part:
    """A part whose messages are all gathered (sealed), written topic by topic."""

    def __init__(self, index: int, buffers: dict[str, _TopicBuffer], file: h5py.File | None,
                 names: tuple[Path, Path] | None) -> None:
        self.index = index
        self.buffers = buffers
        self.todo = [t for t, b in buffers.items() if b.count]  # topics not yet in the file
        self.file = file  # open already when flush() wrote into it
        self.names = names  # (temporary name, final name) of its file once opened

    @property
    def started(self) -> bool:
        return self.file is not None

    def messages(self) -> dict[str, int]:
        return {t: b.count for t, b in self.buffers.items() if b.count}


class EpisodeWriter:
    """Append messages of any topic; a part is gathered in memory for ``part_seconds`` and
    then written whole.

    Use as a context manager, or call :meth:`close`. :meth:`maybe_rotate` writes the part
    in memory once it is older than ``part_seconds``. A writer on a time budget (the
    recorder, docs/liveness.md "Recordings") splits that: :meth:`seal` ends the part in
    memory, :meth:`write_sealed` writes sealed parts topic by topic until a deadline,
    :meth:`drop_sealed` gives up parts it cannot keep. ``flush()`` writes what is in
    memory into the open part's file at once. ``kept`` counts, per topic, the messages in
    closed parts (complete on disk).
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
        self.file: h5py.File | None = None  # the open part's file, when flush() made it
        self._names: tuple[Path, Path] | None = None
        self.gathering_since: float | None = None  # when the part in memory got its first message
        self.sealed: deque[_Part] = deque()
        self.messages_written = 0
        # topic -> [messages, first stamp_ns, last stamp_ns] in closed parts
        self.kept: dict[str, list[int]] = {}
        self.parts_closed = 0

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, topic: str, msg: Message, recv_ns: int | None = None) -> None:
        buf = self.buffers.get(topic)
        if buf is None:
            buf = self.buffers[topic] = _TopicBuffer(msg.TYPE)
        if self.gathering_since is None:
            self.gathering_since = time.monotonic()
        buf.add(msg, time.monotonic_ns() if recv_ns is None else recv_ns)

    @property
    def buffered(self) -> int:
        """Messages in memory, not yet sealed."""
        return sum(b.count for b in self.buffers.values())

    def _open_part(self, index: int) -> tuple[h5py.File, tuple[Path, Path]]:
        name = self.path / f"part-{index:06d}.h5"
        tmp = name.with_suffix(".h5.tmp")
        f = h5py.File(tmp, "w")
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["part"] = index
        if index == 0 or not (self.path / "part-000000.h5").exists():
            f.attrs["meta"] = json.dumps(self.meta, default=str)
        f.create_group("topics")
        return f, (tmp, name)

    def flush(self) -> None:
        """Write the messages in memory to the open part's file (opening one if needed)."""
        if not self.buffered:
            return
        if self.file is None:
            self.file, self._names = self._open_part(self.part_index)
        for topic, buf in self.buffers.items():
            if buf.count:
                _append(self.file["topics"], topic, buf)
                self._count_kept(topic, buf)
                buf.columns.clear()
                buf.count = 0
        self.file.flush()

    def _count_kept(self, topic: str, buf: _TopicBuffer) -> None:
        self.messages_written += buf.count
        kept = self.kept.get(topic)
        if kept is None:
            self.kept[topic] = [buf.count, buf.first_stamp, buf.last_stamp]
        else:
            kept[0] += buf.count
            kept[2] = buf.last_stamp

    def part_due(self, now: float | None = None) -> bool:
        """Whether the part in memory (or the open part) is ``part_seconds`` old."""
        since = self.gathering_since
        if since is None:
            return False
        return (time.monotonic() if now is None else now) - since >= self.part_seconds

    def seal(self) -> None:
        """End the part in memory (and the open part's file, if flush() made one): it is
        written next, by :meth:`write_sealed`; new messages gather in the next part."""
        if not self.buffered and self.file is None:
            self.gathering_since = None
            return
        self.sealed.append(_Part(self.part_index, self.buffers, self.file, self._names))
        self.part_index += 1
        self.buffers, self.file, self._names, self.gathering_since = {}, None, None, None

    def write_sealed(self, deadline: float = float("inf")) -> bool:
        """Write sealed parts, oldest first, one topic at a time, closing each part when it
        is whole, until ``time.monotonic()`` passes ``deadline`` (at least one topic per
        call, so a starved writer still moves). True when no sealed part is left."""
        while self.sealed:
            part = self.sealed[0]
            if part.file is None:
                part.file, part.names = self._open_part(part.index)
            if part.todo:
                topic = part.todo.pop(0)
                buf = part.buffers[topic]
                _append(part.file["topics"], topic, buf)
                buf.columns.clear()  # the count and stamps stay, for when the part closes
            if not part.todo:
                self._close_part(part)
                for topic, buf in part.buffers.items():
                    if buf.count:
                        self._count_kept(topic, buf)
                self.sealed.popleft()
            if time.monotonic() >= deadline:
                break
        return not self.sealed

    def drop_sealed(self, keep: int, started: bool = False) -> dict[str, int]:
        """Give up the sealed parts not yet started beyond ``keep`` waiting, oldest first
        (the writer is too far behind), and with ``started`` the one being written too (its
        file removed); returns the messages given up, per topic."""
        dropped: dict[str, int] = {}
        while len(self.sealed) > keep:
            i = next((k for k, part in enumerate(self.sealed) if started or not part.started), None)
            if i is None:
                break
            part = self.sealed[i]
            del self.sealed[i]
            if part.file is not None and part.names is not None:
                part.file.close()
                part.names[0].unlink(missing_ok=True)
            for topic, n in part.messages().items():
                dropped[topic] = dropped.get(topic, 0) + n
        return dropped

    def maybe_rotate(self) -> None:
        """Write the part in memory (and close it) once it is ``part_seconds`` old."""
        if self.part_due():
            self.seal()
        self.write_sealed()

    def _close_part(self, part: _Part) -> None:
        if part.file is None or part.names is None:  # never opened: nothing to close
            return
        part.file.close()
        part.names[0].rename(part.names[1])  # a part is visible only once complete
        part.file = None
        self.parts_closed += 1

    def close(self) -> None:
        """Write everything held (the part in memory, sealed parts) and close the files."""
        self.seal()
        self.write_sealed()


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
