"""Memory of understood instructions: recalled instantly, so they never reach the LLM again.

A small sqlite file (``instructions.sqlite`` under ``cache_dir``, default
``~/.cache/reflexarc/instructions``) maps (normalised text, scene signature) to the intent
the instruction was understood as: task, object and target *as text*, not a position, so
a recalled instruction is resolved against where things are now. The scene signature
(object names and colours, target area, places) keeps an intent from being recalled in a
scene where its words mean something else. Refusals are never stored.

Every entry is loaded into a dict when the memory opens, so :meth:`get` is a dict look-up
(no I/O: safe inside a node's ``step``); :meth:`put` writes through to the file.
Several processes may share the file (sqlite locking); entries another process adds are
seen after :meth:`reload`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reflexarc.planner.instruct.errors import InvalidInstruction
from reflexarc.planner.instruct.spec import Intent, Target

log = logging.getLogger(__name__)

DEFAULT_DIR = "~/.cache/reflexarc/instructions"
FILENAME = "instructions.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS instructions (
    text TEXT NOT NULL, scene TEXT NOT NULL, task TEXT NOT NULL, object TEXT NOT NULL,
    target TEXT NOT NULL, confidence REAL NOT NULL, source TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (text, scene))"""


@dataclass(frozen=True, slots=True)
class Memory:
    """A remembered instruction: its intent, how sure we were and who understood it."""

    intent: Intent
    confidence: float
    source: str  # who understood it first: llm (or fast)


class InstructionMemory:
    """Persistent map (normalised text, scene signature) -> :class:`Memory`."""

    def __init__(self, cache_dir: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        self.dir = Path(os.path.expanduser(os.fspath(cache_dir)))
        self.path = self.dir / FILENAME
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], Memory] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self.reload()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute(_SCHEMA)
            db.commit()
            return db
        except sqlite3.DatabaseError as e:
            # a damaged file must not stop the robot: keep it aside and start afresh
            aside = self.path.with_suffix(f".corrupt-{int(time.time())}")
            log.warning("instruction memory %s is unreadable (%s); moved to %s", self.path, e, aside)
            self.path.replace(aside)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute(_SCHEMA)
            db.commit()
            return db

    def reload(self) -> None:
        """Re-read every entry from the file (entries other processes added)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT text, scene, task, object, target, confidence, source FROM instructions"
            ).fetchall()
        entries = {}
        for text, scene, task, obj, target, conf, source in rows:
            try:
                entries[(text, scene)] = Memory(Intent(task, obj, Target.parse(target)), conf, source)
            except InvalidInstruction:
                log.warning("skipping unreadable memory entry for %r", text)
        self._entries = entries

    def get(self, text: str, scene: str) -> Memory | None:
        """The remembered intent of normalised ``text`` in a scene with signature ``scene``."""
        return self._entries.get((text, scene))

    def put(self, text: str, scene: str, intent: Intent, confidence: float, source: str) -> None:
        """Remember ``intent`` for ``text`` in ``scene`` (replacing any older entry)."""
        mem = Memory(intent, float(confidence), source)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO instructions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (text, scene, intent.task, intent.object, intent.target.text, mem.confidence,
                 source, time.time()),
            )
            self._db.commit()
        self._entries[(text, scene)] = mem

    def forget(self, text: str, scene: str) -> bool:
        """Drop one entry; True if there was one."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM instructions WHERE text = ? AND scene = ?", (text, scene)
            )
            self._db.commit()
        return self._entries.pop((text, scene), None) is not None or cur.rowcount > 0

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"InstructionMemory({str(self.path)!r}, entries={len(self)})"
