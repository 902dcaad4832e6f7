"""A progress line with an ETA for the long verbs (eval, bench, a lockstep run).

``Progress("eval push mujoco", total=50, unit="episodes")`` then ``update(k)`` after each
of them writes, at most every ``every_s`` (and always for the last)::

    eval push mujoco: 12/50 episodes, 4.1 s, ETA 13 s (success 12/12)

to stderr, so that the verb's table on stdout stays clean. On a terminal the line is
rewritten in place; otherwise each update is a line of its own.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def eta_text(done: int, total: int, elapsed_s: float) -> str:
    """``"ETA 13 s"`` from the mean time per item so far; ``""`` before the first."""
    if done <= 0 or total <= done:
        return ""
    left = elapsed_s / done * (total - done)
    if left >= 120:
        return f"ETA {left / 60:.0f} min"
    return f"ETA {left:.0f} s"


class Progress:
    """Progress of ``total`` items of ``unit`` (see module docstring)."""

    def __init__(self, what: str, total: int, unit: str = "episodes", every_s: float = 2.0,
                 stream: TextIO | None = None) -> None:
        self.what = what
        self.total = int(total)
        self.unit = unit
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self.last = -float("inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, done: int, note: str = "") -> str:
        elapsed = time.monotonic() - self.t0
        parts = [f"{self.what}: {done}/{self.total} {self.unit}", f"{elapsed:.1f} s"]
        eta = eta_text(done, self.total, elapsed)
        if eta:
            parts.append(eta)
        text = ", ".join(parts)
        return f"{text} ({note})" if note else text

    def update(self, done: int, note: str = "") -> None:
        """Report ``done`` items finished (written if ``every_s`` has passed, or at the end)."""
        now = time.monotonic()
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        text = self.line(done, note)
        if self.tty:
            end = "\n" if done >= self.total else ""
            self.stream.write(f"\r\x1b[2K{text}{end}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
