"""``reflexarc export EPISODE... format=lerobot|mcap|rerun out=PATH`` and ``reflexarc view``.

Recorded episodes (runtime/episode.py) leave the project in the formats others read:

- ``lerobot``: a LeRobot dataset directory (format v3.0: parquet + H.264 mp4 + meta/);
- ``mcap``: one ``.mcap`` file that Foxglove opens;
- ``rerun``: one ``.rrd`` file for the rerun viewer.

``reflexarc view EPISODE`` opens the rerun viewer on an episode, or, with no display (or
``spawn=false``), writes ``EPISODE.rrd`` to open later. The libraries are the optional
extra ``pip install reflexarc[export]`` (docs/data.md).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from reflexarc.runtime.config import choice, register
from reflexarc.runtime.errors import ConfigError

FORMATS = {  # format -> (module, writer, the package it needs, the extension of ``out``)
    "lerobot": ("lerobot", "write_lerobot", "pyarrow", ""),
    "mcap": ("mcap", "write_mcap", "mcap", ".mcap"),
    "rerun": ("rerun", "write_rrd", "rerun", ".rrd"),
}


def _need(package: str, what: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            "format", f"{what} needs the {package!r} package: pip install 'reflexarc[export]'")


def _check_episodes(key: str, paths: list[str]) -> None:
    if not paths:
        raise ConfigError(key, "give at least one episode directory: "
                               "reflexarc export runs/<run>/episode format=lerobot out=PATH")
    for p in paths:
        if not Path(p).exists() or not (Path(p).is_file() or any(Path(p).glob("part-*.h5"))):
            raise ConfigError(key, f"{p!r} is not an episode (a directory of part-*.h5 files)")


@dataclass
class ExportConfig:
    """``reflexarc export EPISODE... format=lerobot|mcap|rerun out=PATH``."""

    episodes: list[str] = field(default_factory=list)  # recorded episode directories
    format: str = choice("lerobot", "lerobot", "mcap", "rerun")
    out: str = ""  # lerobot: a directory; mcap/rerun: a file (default beside the first episode)
    camera: str = ""  # lerobot: the camera whose frames make the rows; empty: the first
    OUT_IS_DATA: ClassVar[bool] = True  # out= is what is exported, not the summary's JSON

    def validate(self) -> None:
        _check_episodes("episodes", self.episodes)


register("export_schema", ExportConfig)


def default_out(episode: str, fmt: str) -> Path:
    """``<episode>-lerobot/``, ``<episode>.mcap`` or ``<episode>.rrd`` beside the episode."""
    p = Path(episode)
    return p.with_name(p.name + "-lerobot") if fmt == "lerobot" else p.with_suffix(FORMATS[fmt][3])


def export(episodes: list[str], fmt: str, out: str | Path = "", camera: str = ""
           ) -> dict[str, Any]:
    """Write ``episodes`` in format ``fmt``; returns what was written (counts, path)."""
    module, fn, package, _ = FORMATS[fmt]
    _need(package, f"format={fmt}")
    import importlib

    writer = getattr(importlib.import_module(f"reflexarc.tools.export.{module}"), fn)
    target = Path(out) if out else default_out(episodes[0], fmt)
    if fmt == "lerobot":
        return writer(episodes, target, camera=camera)
    return writer(episodes, target)


def export_verb(cfg: ExportConfig) -> dict[str, Any]:
    summary = export(cfg.episodes, cfg.format, cfg.out, cfg.camera)
    summary.pop("per_topic", None)
    summary.pop("per_entity", None)
    return summary


@dataclass
class ViewConfig:
    """``reflexarc view EPISODE``: the rerun viewer, or the ``.rrd`` when headless."""

    path: str = ""  # the recorded episode directory
    spawn: bool = True  # open the viewer when a display is there; false: only write the .rrd
    rrd: str = ""  # where the .rrd goes; default <episode>.rrd

    def validate(self) -> None:
        _check_episodes("path", [self.path] if self.path else [])


register("view_schema", ViewConfig)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def view_verb(cfg: ViewConfig) -> dict[str, Any]:
    _need("rerun", "reflexarc view")
    from reflexarc.tools.export.rerun import write_rrd

    rrd = Path(cfg.rrd) if cfg.rrd else default_out(cfg.path, "rerun")
    summary = write_rrd([cfg.path], rrd)
    summary.pop("per_entity", None)
    summary["viewer"] = False
    if cfg.spawn and has_display():
        import subprocess
        import sys

        # the viewer is its own process (rerun's binary, shipped in the wheel): the
        # command returns, the window stays
        subprocess.Popen([sys.executable, "-m", "rerun", str(rrd)])
        summary["viewer"] = True
    else:
        summary["hint"] = f"open it with: rerun {rrd}"
    return summary
