"""The project's own exception types. Every message says what was wrong and what is allowed."""

from __future__ import annotations


class ReflexarcError(Exception):
    """Base class of every error raised on purpose by reflexarc."""


class ConfigError(ReflexarcError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range.

    The message names the full key (``graph.nodes.sim.rate_hz``) and what is allowed.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


class MalformedMessage(ReflexarcError):
    """A received frame set is not a valid reflexarc message.

    ``kind`` is a short stable category (``truncated``, ``version``, ``dtype``...) used to
    count drops and to log each category once.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"malformed message ({kind}): {detail}")


class NodeError(ReflexarcError):
    """A node failed to start or its graph is inconsistent."""
