"""``reflexarc say "push the red block to the left"``: an instruction into a task spec.

``dry_run=true`` prints the spec as JSON (task, object, target, target_pos, confidence,
source = fast | llm | memory, refusal) and sends nothing. Without it, the spec is
published into a running graph (needs the node runtime, robot/node.py).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from planner.instruct.errors import InstructionRefused
from planner.instruct.instructor import InstructConfig, Instructor
from planner.instruct.scene import SceneInfo
from planner.instruct.spec import spec_dict
from robot.config import register
from robot.errors import ConfigError, ReflexarcError


@dataclass
class SayConfig(InstructConfig):
    """``reflexarc say`` (see :class:`InstructConfig` for how instructions are understood)."""

    text: str = ""  # the instruction (the positional argument)
    dry_run: bool = False  # print the task spec as JSON and send nothing
    out: str = ""  # also write the spec as JSON to this file


register("say_schema", SayConfig)


def say_verb(cfg: SayConfig) -> None:
    """Understand ``cfg.text`` in the default scene; print (dry run) or publish the spec.

    Raises InstructionRefused (exit status 1) when the instruction is refused; the JSON
    with the refusal is printed first.
    """
    if not cfg.text.strip():
        raise ConfigError("text", 'an instruction is required: reflexarc say "push the red block to the left"')
    if not cfg.dry_run:
        raise ReflexarcError(
            "publishing into a running graph needs the node runtime (robot/node.py), which "
            "is not available yet; use dry_run=true to see the task spec"
        )
    instructor = Instructor(cfg)
    try:
        spec = instructor.understand(cfg.text, SceneInfo())
    finally:
        instructor.close()
    summary = spec_dict(spec)
    print(json.dumps(summary))
    if cfg.out:
        from robot.cli import write_json

        write_json(cfg.out, summary)
    if spec.refusal:
        raise InstructionRefused(f"refused: {spec.refusal}")
    sys.stdout.flush()
