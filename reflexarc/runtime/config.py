"""Typed configuration: dataclasses next to the code they configure, composed by hydra.

A config is a dataclass. Fields declare what they allow with :func:`choice` and
:func:`bounded`; a dataclass may add a ``validate()`` method for cross-field rules,
raising :class:`ConfigError` with the local key. :func:`load` composes
``configs/<name>.yaml`` (which selects and overrides a schema registered in hydra's
ConfigStore) with command-line overrides, converts it once to plain dataclass objects
and validates every field, so a bad value fails before any process starts, naming the
full key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

import reflexarc.configs
from reflexarc.runtime.errors import ConfigError

#: The shipped configs, found through their package (in a checkout and in a wheel alike).
CONFIG_DIR = Path(reflexarc.configs.__file__).resolve().parent
T = TypeVar("T")


def choice(default: Any, *allowed: Any) -> Any:
    """A field whose value must be one of ``allowed`` (``default`` included)."""
    allowed = allowed if default in allowed else (default, *allowed)
    return field(default=default, metadata={"choices": tuple(allowed)})


def bounded(default: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """A numeric field that must lie in ``[lo, hi]`` (either bound may be None)."""
    return field(default=default, metadata={"range": (lo, hi)})


def check_cpus(key: str, cpus: list[int]) -> None:
    """CPU cores a process is to be pinned to must be ones this process may run on."""
    cores = sorted(os.sched_getaffinity(0))
    if any(c not in cores for c in cpus):
        raise ConfigError(key, f"got {list(cpus)}; allowed: CPUs {cores} (or empty: any)")


CPU_LATENCY_DEV = "/dev/cpu_dma_latency"  # Linux PM QoS: a 32-bit limit in microseconds


def check_cpu_latency(key: str, us: int) -> None:
    """A CPU latency limit to hold (``us`` >= 0) needs write access to the kernel's file."""
    if us >= 0 and not os.access(CPU_LATENCY_DEV, os.W_OK):
        raise ConfigError(key, f"got {us}: holding it needs write access to {CPU_LATENCY_DEV} "
                          "(Linux, root); allowed: -1 (leave the kernel's idle states alone)")


def register(name: str, schema: type, group: str | None = None) -> None:
    """Register ``schema`` with hydra's ConfigStore so YAML files can select it."""
    ConfigStore.instance().store(name=name, node=schema, group=group)


def validate(obj: Any, prefix: str = "") -> None:
    """Check every ``choice``/``bounded`` field and ``validate()`` hook, recursively.

    Raises ConfigError with the full dotted key.
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            validate(v, f"{prefix}{k}.")
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            validate(v, f"{prefix}{i}.")
        return
    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        allowed = f.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise ConfigError(key, f"got {value!r}; allowed: {', '.join(map(str, allowed))}")
        rng = f.metadata.get("range")
        if rng is not None:
            lo, hi = rng
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                raise ConfigError(key, f"got {value!r}; allowed range [{lo_s}, {hi_s}]")
        validate(value, key + ".")
    hook = getattr(obj, "validate", None)
    if callable(hook):
        try:
            hook()
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e.key}", e.problem) from None


def _key_of(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    return str(key) if key else "?"


def from_mapping(schema: type[T], values: Any, prefix: str = "") -> T:
    """Build and validate a ``schema`` dataclass from a plain mapping (or DictConfig).

    Used for node arguments: unknown keys, wrong types and out-of-range values raise
    ConfigError naming ``prefix + key``.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values or {})
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(prefix + _key_of(e), _reason(e)) from None
    validate(obj, prefix)
    return obj  # type: ignore[return-value]


def _reason(e: Exception) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return msg


def allowed_values(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(key, what is allowed) for every ``choice``/``bounded`` field, recursively."""
    out: list[tuple[str, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += allowed_values(v, f"{prefix}{k}.")
        return out
    if not dataclasses.is_dataclass(obj):
        return out
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        if "choices" in f.metadata:
            out.append((key, "one of " + ", ".join(map(str, f.metadata["choices"]))))
        if "range" in f.metadata:
            lo, hi = f.metadata["range"]
            out.append((key, f"in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"))
        out += allowed_values(getattr(obj, f.name), key + ".")
    return out


def load(name: str, overrides: list[str] | tuple[str, ...] = (), check: bool = True) -> Any:
    """Compose ``configs/<name>.yaml`` with ``overrides`` into validated dataclass objects.

    ``check=False`` skips validation (to show a config that is not complete yet).
    ``+graph.nodes.NAME={target:...,rate_hz:...}`` (or ``+graph.nodes.NAME.KEY=...``) adds
    a node: merged after the other overrides, since hydra cannot add an entry to a typed
    dict of dataclasses.
    """
    overrides, additions = _split_additions(list(overrides))
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=name, overrides=overrides)
        if additions:
            # hydra composes in struct mode (no new keys); a typed dict still checks the
            # new entries against its dataclass
            OmegaConf.set_struct(cfg, False)
            cfg = OmegaConf.merge(cfg, *additions)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_key_of(e), _reason(e)) from None
    except HydraException as e:
        text = str(e)
        key = "?"
        for override in overrides:
            k = override.split("=", 1)[0].lstrip("+~")
            if f"'{k}'" in text or f" {k} " in text or f"'{k}" in text or f"{k}=" in text:
                key = k
        reason = _reason(e)
        if e.__cause__ is not None:
            reason = f"{reason}: {_reason(e.__cause__)}"
        raise ConfigError(key, reason) from None
    if check:
        validate(obj)
    return obj


_ADD_NODE = "graph.nodes."


def _split_additions(overrides: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Overrides for hydra, and ``+graph.nodes....`` additions as nested dicts to merge."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [o for o in overrides if o.startswith("+" + _ADD_NODE)]
    if not candidates:
        return overrides, []
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except HydraException as e:
        raise ConfigError(candidates[0].split("=", 1)[0].lstrip("+"), _reason(e)) from None
    additions: list[dict[str, Any]] = []
    for override in parsed:
        value: Any = override.value()
        for part in reversed(override.key_or_group.split(".")):
            value = {part: value}
        additions.append(value)
    return [o for o in overrides if o not in candidates], additions
