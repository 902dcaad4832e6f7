"""Fast-path latency: ``python -m planner.instruct.bench`` prints p50/p99 per instruction.

Times :meth:`Instructor.quick` (parse + resolve + TaskSpec, memory disabled) over a set of
instructions, each repeated, one call per sample (``time.perf_counter_ns``).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Sequence

import numpy as np

from planner.instruct.instructor import InstructConfig, Instructor
from planner.instruct.scene import SceneInfo

SAMPLE = (
    "push the red block to the left",
    "nudge the blue block a bit towards the robot",
    "put the red block on top of the blue block",
    "pick up the green block and put it in the back left corner",
    "move the gripper to the red block",
    "slide the crimson one 5 cm to the right",
    "push the red block next to the green block",
    "don't push the red block",
    "put the red block between the green and blue blocks",
    "go to the center of the table",
)


def bench_fast(
    texts: Sequence[str] = SAMPLE, scene: SceneInfo | None = None, repeats: int = 200
) -> dict[str, float | int | str]:
    """Latency of the fast path (no memory, no LLM) in microseconds: p50, p99, max."""
    scene = SceneInfo() if scene is None else scene
    inst = Instructor(InstructConfig(memory=False), llm=None, memory=None)
    for t in texts:  # warm up
        inst.quick(t, scene)
    samples = np.empty(len(texts) * repeats, dtype=np.int64)
    k = 0
    clock = time.perf_counter_ns
    for _ in range(repeats):
        for t in texts:
            t0 = clock()
            inst.quick(t, scene)
            samples[k] = clock() - t0
            k += 1
    us = samples / 1e3
    return {
        "what": "instruct fast path",
        "n": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
    }


def main(argv: Sequence[str] = ()) -> int:
    repeats = int(argv[0]) if argv else 200
    print(json.dumps(bench_fast(repeats=repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
