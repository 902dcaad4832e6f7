"""Exceptions of the instruct subpackage (all are :class:`reflexarc.runtime.errors.ReflexarcError`)."""

from __future__ import annotations

from reflexarc.runtime.errors import ReflexarcError


class InstructionError(ReflexarcError):
    """Base of every error raised while turning an instruction into a task spec."""


class InvalidInstruction(InstructionError):
    """An intent (from the fast parser, memory or an LLM) does not fit the scene.

    ``field`` names what was wrong (``object``, ``target``, ``task``...), ``problem`` says
    what was wrong and what is allowed. Turned into a refusal, never into a goal.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class LLMError(InstructionError):
    """The LLM could not be asked or its reply could not be read.

    ``kind`` is a short stable category: ``not_configured``, ``timeout``, ``http``,
    ``connection``, ``malformed``. Messages never contain the API key.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"LLM {kind}: {detail}")


class InstructionRefused(InstructionError):
    """Raised by ``reflexarc say`` when the instruction was refused (exit status 1)."""
