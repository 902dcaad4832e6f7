"""Episode store: where collected episodes live, a local directory or any fsspec URL.

An episode is a directory ``<root>/ep-<i:06d>`` of HDF5 parts (reflexarc/runtime/episode.py).
Writers build it in a private staging directory and :meth:`EpisodeStore.commit` moves it
into place in one step, so a reader never sees half an episode and a writer that dies
mid-episode leaves nothing under the episode's name. When the name is already taken
(another attempt of the same episode finished first), the newcomer is dropped: an
episode is written once, however many times it was attempted.

- A local path (or ``file://``): staging under ``<root>/.staging/<name>.<token>`` on the
  same file system, committed by ``rename`` (atomic; refused when the name exists).
- Any other fsspec URL (``s3://``, ``gs://``, ``memory://``, ...): staged in a local
  temporary directory, uploaded to ``<root>/.staging/<name>.<token>`` and moved to the
  final name. An object store moves file by file, but an episode written by collection
  is one part file, so readers see it whole or not at all. The existence check and the
  move are two calls: two writers must not commit the same name at the same moment (the
  Ray executor never runs two attempts of one episode at once).

Readers of a URL (:func:`local_root`) copy the episodes into a local cache once and read
them from there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from reflexarc.runtime.errors import ConfigError

STAGING = ".staging"


def episode_name(index: int) -> str:
    return f"ep-{index:06d}"


def is_url(root: str | Path) -> bool:
    """Whether ``root`` names an fsspec location other than the local file system."""
    s = str(root)
    return "://" in s and not s.startswith("file://")


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise ConfigError("root", f"{url} is a URL: reading or writing it needs fsspec (pip install fsspec)") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ConfigError("root", f"cannot open episode store {url}: {e}") from None
    return fs, path.rstrip("/")


class EpisodeStore:
    """Complete episodes by name under ``root`` (a local path or an fsspec URL)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self.remote = is_url(self.root)
        if self.remote:
            self.fs, self.path = _fs(self.root)
            self.fs.makedirs(self.path, exist_ok=True)
        else:
            local = self.root[len("file://"):] if self.root.startswith("file://") else self.root
            self.local = Path(local)
            self.local.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"EpisodeStore({self.root!r})"

    def has(self, name: str) -> bool:
        if self.remote:
            return bool(self.fs.exists(f"{self.path}/{name}/part-000000.h5"))
        return (self.local / name).is_dir()

    def names(self) -> list[str]:
        """Sorted names of the complete episodes."""
        if not self.remote:
            return sorted(p.name for p in self.local.iterdir() if p.is_dir() and any(p.glob("part-*.h5")))
        out = []
        for entry in self.fs.ls(self.path, detail=True):
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            complete = entry["type"] == "directory" and not name.startswith(".")
            if complete and self.fs.exists(f"{self.path}/{name}/part-000000.h5"):
                out.append(name)
        return sorted(out)

    def staging(self, name: str) -> Path:
        """A fresh local directory to write episode ``name`` into before :meth:`commit`."""
        token = uuid.uuid4().hex[:8]
        if self.remote:
            return Path(tempfile.mkdtemp(prefix=f"{name}.{token}."))
        path = self.local / STAGING / f"{name}.{token}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, staged: Path, name: str) -> bool:
        """Move the finished episode ``staged`` in as ``name``. False: it was there already
        (the staged copy is discarded)."""
        if not self.remote:
            final = self.local / name
            try:
                if final.exists():
                    raise FileExistsError(final)
                os.rename(staged, final)  # refused if final appeared meanwhile (not empty)
                return True
            except OSError:
                shutil.rmtree(staged, ignore_errors=True)
                return False
        try:
            if self.has(name):
                return False
            tmp = f"{self.path}/{STAGING}/{staged.name}"
            self.fs.put(str(staged), tmp, recursive=True)
            self.fs.mv(tmp, f"{self.path}/{name}", recursive=True)
            return True
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def clean_staging(self) -> int:
        """Remove what dead or interrupted writers left in staging; returns how many."""
        if self.remote:
            tmp = f"{self.path}/{STAGING}"
            if not self.fs.exists(tmp):
                return 0
            n = len(self.fs.ls(tmp))
            self.fs.rm(tmp, recursive=True)
            return n
        staging = self.local / STAGING
        if not staging.is_dir():
            return 0
        n = 0
        for p in staging.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
        staging.rmdir()
        return n


def cache_dir(url: str) -> Path:
    """The local directory that holds the copy of the store at ``url``."""
    base = Path(os.environ.get("REFLEXARC_CACHE", Path.home() / ".cache" / "reflexarc"))
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return base / "episodes" / digest


def local_root(root: str | Path, cache: Path | None = None) -> Path:
    """A local directory holding the store's episodes: ``root`` itself when it is local;
    for a URL, a cache (:func:`cache_dir`) that gets the episodes it lacks. Safe for
    several processes at once (each episode arrives by rename)."""
    if not is_url(root):
        s = str(root)
        return Path(s[len("file://"):] if s.startswith("file://") else s)
    store = EpisodeStore(root)
    dest = cache or cache_dir(str(root))
    dest.mkdir(parents=True, exist_ok=True)
    for name in store.names():
        if (dest / name).is_dir():
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest))
        store.fs.get(f"{store.path}/{name}/", str(tmp) + "/", recursive=True)
        try:
            os.rename(tmp, dest / name)
        except OSError:  # another process brought it first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
