"""``reflexarc say "push the red block to the left"``: an instruction into a task spec.

``dry_run=true`` understands the instruction here, in the default scene (objects
``objects``), prints the spec as a table (task, object, target, target_pos, confidence,
source = fast | llm | memory, refusal; as JSON with ``out=FILE``) and sends nothing. Without it, the instruction goes
to the instruct node of a running graph (``address``, REQ/REP), which understands it in
the live scene, publishes the TaskSpec (and Goal) into the graph and answers with the
spec, printed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reflexarc.planner.instruct.errors import InstructionRefused
from reflexarc.planner.instruct.instructor import DEFAULT_ADDRESS, InstructConfig, Instructor
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.spec import spec_dict
from reflexarc.runtime.config import bounded, register
from reflexarc.runtime.errors import ConfigError, ReflexarcError


@dataclass
class SayConfig(InstructConfig):
    """``reflexarc say`` (see :class:`InstructConfig` for how instructions are understood)."""

    text: str = ""  # the instruction (the positional argument)
    dry_run: bool = False  # understand it here and print the spec; send nothing
    objects: list[str] = field(default_factory=lambda: ["red", "green", "blue"])  # dry-run scene
    address: str = DEFAULT_ADDRESS  # the running graph's instruct node
    curve_keys_dir: str = ""  # tcp: the CURVE keys the node was given (docs/safety.md)
    timeout_s: float = bounded(10.0, 0.1, 600.0)  # wait for the node's answer
    out: str = ""  # also write the spec as JSON to this file

    def validate(self) -> None:
        known = SceneInfo().names
        for name in self.objects:
            if name not in known:
                raise ConfigError("objects", f"got {name!r}; allowed: {', '.join(known)}")


register("say_schema", SayConfig)


def say_verb(cfg: SayConfig) -> None:
    """Understand ``cfg.text``; print the spec as a table (and write it to ``cfg.out`` as JSON).

    Raises InstructionRefused (exit status 1) when the instruction is refused, after
    printing the spec with the refusal; ReflexarcError when no graph answers.
    """
    if not cfg.text.strip():
        raise ConfigError("text", 'an instruction is required: reflexarc say "push the red block to the left"')
    if cfg.dry_run:
        default = SceneInfo()
        scene = SceneInfo(objects=tuple(o for o in default.objects if o.name in cfg.objects))
        instructor = Instructor(cfg)
        try:
            spec = instructor.understand(cfg.text, scene)
        finally:
            instructor.close()
    else:
        from reflexarc.planner.instruct.node import ask  # needs zmq and the node runtime

        spec = ask(cfg.address, cfg.text, cfg.timeout_s, cfg.curve_keys_dir)
        if spec is None:
            raise ReflexarcError(
                f"no instruct node answered at {cfg.address} within {cfg.timeout_s:g} s: is a graph "
                "with an instruct node running? (dry_run=true understands it here without sending)"
            )
    from reflexarc.runtime.cli import print_summary, write_json

    summary = spec_dict(spec)
    print_summary(summary, "reflexarc say")
    if cfg.out:
        write_json(cfg.out, summary)
    if spec.refusal:
        raise InstructionRefused(f"refused: {spec.refusal}")
