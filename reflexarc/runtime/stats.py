"""Small running statistics for nodes' summaries."""

from __future__ import annotations

import numpy as np


class Ring:
    """The last ``n`` float samples, for percentiles (no allocation per sample)."""

    def __init__(self, n: int = 1 << 15) -> None:
        self.buf = np.zeros(n)
        self.n = 0

    def add(self, x: float) -> None:
        self.buf[self.n % len(self.buf)] = x
        self.n += 1

    def percentiles(self, ps: list[float]) -> list[float]:
        """Percentiles of the kept samples; NaN for each when there is none."""
        k = min(self.n, len(self.buf))
        if k == 0:
            return [float("nan")] * len(ps)
        return [float(v) for v in np.percentile(self.buf[:k], ps)]
