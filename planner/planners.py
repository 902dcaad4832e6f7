"""The sampling planners by name: a registry, and :func:`make_planner`.

``mpc.py`` holds the base (:class:`~reflexarc.planner.mpc.SamplingPlanner`); each
planner module (``cem.py``, ``mppi.py``) builds on it, and this module, above them all,
maps the names a config uses (``planner: mppi``) to their classes. A new planner is one
more module plus one :func:`register_planner` call (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reflexarc.planner.cem import CEMPlanner
from reflexarc.planner.mpc import SamplingConfig, SamplingPlanner
from reflexarc.planner.mppi import MPPIPlanner
from reflexarc.planner.protocol import LatentModel
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError

PLANNERS: dict[str, type[SamplingPlanner]] = {"cem": CEMPlanner, "mppi": MPPIPlanner}


def register_planner(name: str, cls: type[SamplingPlanner]) -> None:
    """Make ``cls`` buildable as ``name`` (a later registration of the name replaces it)."""
    PLANNERS[name] = cls


def make_planner(
    kind: str, model: LatentModel, cfg: SamplingConfig | Mapping[str, Any] | None = None
) -> SamplingPlanner:
    """Build a planner by name (``cem`` | ``mppi`` | registered) from its config dataclass
    or a plain mapping of its fields (node arguments; validated, ConfigError naming the key)."""
    if kind not in PLANNERS:
        raise ConfigError("planner", f"got {kind!r}; allowed: {', '.join(PLANNERS)}")
    cls = PLANNERS[kind]
    if not isinstance(cfg, SamplingConfig):
        cfg = from_mapping(cls.Config, dict(cfg or {}))
    elif not isinstance(cfg, cls.Config):
        raise ConfigError(
            "planner", f"{kind} takes a {cls.Config.__name__}, got {type(cfg).__name__}"
        )
    return cls(model, cfg)
