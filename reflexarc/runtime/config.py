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
import difflib
import inspect
import os
import re
import tempfile
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml
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


def field_docs(schema: type) -> dict[str, str]:
    """Field name -> what it is, from the dataclass's source: the comment at the end of the
    field's line, else the comment lines right above it (first sentence). For ``--help``."""
    out: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        start = next((i + 1 for i, ln in enumerate(lines) if ln.lstrip().startswith("class ")), 1)
        body = [ln for ln in lines[start:] if ln.strip()]
        indent = len(body[0]) - len(body[0].lstrip()) if body else 4
        above: list[str] = []
        for line in lines[start:]:
            stripped = line.strip()
            if stripped.startswith("#") and len(line) - len(line.lstrip()) == indent:
                above.append(stripped.lstrip("#").strip())
                continue
            m = _FIELD_LINE.match(line)
            if m is None or len(m.group(1)) != indent:
                above = [] if not stripped or len(line) - len(line.lstrip()) <= indent else above
                continue
            trailing = _trailing_comment(line)
            text = trailing or " ".join(above)
            above = []
            if text:
                out[m.group(2)] = _first_sentence(text)
    return out


_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z(])")
_FIELD_LINE = re.compile(r"^(\s*)([A-Za-z_]\w*)\s*:\s*[^=]")


def _trailing_comment(line: str) -> str:
    """The ``# comment`` ending a line of code (a '#' inside a string does not count)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[i + 1:].strip()
    return ""


def _first_sentence(text: str, limit: int = 110) -> str:
    end = _SENTENCE_END.search(text)
    text = text if end is None else text[: end.start() + 1]
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def describe(obj: Any, prefix: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(key, value, "what it is; what is allowed") for every field of a config object,
    nested dataclasses flattened (``bus.transport``); keys in ``skip`` are left out."""
    out: list[tuple[str, str, str]] = []
    if not dataclasses.is_dataclass(obj):
        return out
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        if key in skip:
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += describe(value, key + ".", skip)
            continue
        what = docs.get(f.name, "")
        if "choices" in f.metadata:
            what += f" [{', '.join(map(str, f.metadata['choices']))}]"
        if "range" in f.metadata:
            lo, hi = f.metadata["range"]
            what += f" [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        out.append((key, _short(value), what.strip()))
    return out


def _short(value: Any, limit: int = 28) -> str:
    text = repr(value) if isinstance(value, str) and not value else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_of(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    return str(key) if key else "?"


def did_you_mean(word: str, candidates: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` to ``word``, or ''."""
    close = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_UNKNOWN_KEY = re.compile(r"Key '([^']+)' (?:not in|is not in struct)")


def _unknown_key_hint(reason: str, key: str, fields: Any) -> str:
    """A "did you mean" for an unknown key, from the names allowed where it was given."""
    m = _UNKNOWN_KEY.search(reason)
    if m is None:
        return ""
    return did_you_mean(m.group(1), fields) or did_you_mean(key.rsplit(".", 1)[-1], fields)


def _keys(obj: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config object (dataclasses and dicts), recursively."""
    out: list[str] = []
    if isinstance(obj, dict):
        items = obj.items()
    elif dataclasses.is_dataclass(obj):
        items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    else:
        return out
    for k, v in items:
        out.append(f"{prefix}{k}")
        out += _keys(v, f"{prefix}{k}.")
    return out


def _yaml_error(path: Path | str, e: yaml.YAMLError) -> ConfigError:
    """A YAML syntax error as one line: the file, the line and column, what is wrong."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return ConfigError("graph", f"{where}: not valid YAML ({problem}); allowed: a YAML mapping "
                       "with 'nodes' (docs/python-api.md)")


def _omegaconf_cause(e: BaseException) -> OmegaConfBaseException | None:
    """The OmegaConf error (with the full key) under a hydra composition error, if any."""
    seen = 0
    c: BaseException | None = e
    while c is not None and seen < 20:
        if isinstance(c, OmegaConfBaseException) and getattr(c, "full_key", None):
            return c
        c, seen = c.__cause__ or c.__context__, seen + 1
    return None


def from_mapping(schema: type[T], values: Any, prefix: str = "") -> T:
    """Build and validate a ``schema`` dataclass from a plain mapping (or DictConfig).

    Used for node arguments: unknown keys, wrong types and out-of-range values raise
    ConfigError naming ``prefix + key``.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values or {})
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        reason = _reason(e)
        if dataclasses.is_dataclass(schema):
            reason += _unknown_key_hint(reason, _key_of(e), [f.name for f in dataclasses.fields(schema)])
        raise ConfigError(prefix + _key_of(e), reason) from None
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


def load(name: str, overrides: list[str] | tuple[str, ...] = (), check: bool = True,
         hints: bool = True) -> Any:
    """Compose ``configs/<name>.yaml`` with ``overrides`` into validated dataclass objects.

    ``check=False`` skips validation (to show a config that is not complete yet);
    ``hints=False`` leaves the "did you mean" out of errors (it composes the config again).
    ``+graph.nodes.NAME={target:...,rate_hz:...}`` (or ``+graph.nodes.NAME.KEY=...``) adds
    a node: merged after the other overrides, since hydra cannot add an entry to a typed
    dict of dataclasses.
    """
    given = list(overrides)
    overrides, additions = _split_additions(given)
    overrides, graph_file = _graph_file(overrides)
    if graph_file is not None:
        try:  # a syntax error names the user's file, not the copy hydra reads
            yaml.safe_load(graph_file.read_text())
        except yaml.YAMLError as e:
            raise _yaml_error(graph_file, e) from None
    try:
        with tempfile.TemporaryDirectory(prefix="reflexarc-graph-") as tmp:
            if graph_file is not None:
                # the file becomes the graph group's option GRAPH_FROM_FILE in a second
                # search path, so it composes exactly as a shipped graph does (${task}...)
                (Path(tmp) / "graph").mkdir()
                (Path(tmp) / "graph" / f"{GRAPH_FROM_FILE}.yaml").write_text(
                    graph_file.read_text())
                overrides = [f"hydra.searchpath=[file://{tmp}]", f"graph={GRAPH_FROM_FILE}",
                             *overrides]
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose(config_name=name, overrides=overrides)
        if additions:
            # hydra composes in struct mode (no new keys); a typed dict still checks the
            # new entries against its dataclass
            OmegaConf.set_struct(cfg, False)
            cfg = OmegaConf.merge(cfg, *additions)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_key_of(e), _reason(e) + _hint(name, e, given, hints)) from None
    except yaml.YAMLError as e:
        raise _yaml_error(getattr(getattr(e, "problem_mark", None), "name", name), e) from None
    except HydraException as e:
        cause = _omegaconf_cause(e)
        if cause is not None:  # the key and the reason, not hydra's "while composing config:"
            where = f" (in {graph_file})" if graph_file is not None else ""
            hint = _hint(name, cause, given, hints)
            raise ConfigError(_key_of(cause), _reason(cause) + hint + where) from None
        text = str(e)
        key = "?"
        for override in overrides:
            k = override.split("=", 1)[0].lstrip("+~")
            if f"'{k}'" in text or f" {k} " in text or f"'{k}" in text or f"{k}=" in text:
                key = k
        reason = _reason(e)
        if e.__cause__ is not None:
            reason = f"{reason}: {_reason(e.__cause__)}"
        raise ConfigError(key, reason + _hint(name, e, given, hints, key)) from None
    if graph_file is not None:
        _resolve_graph_paths(obj.graph, graph_file.parent)
    if check:
        validate(obj)
    return obj


def _hint(name: str, e: BaseException, given: list[str], hints: bool, key: str = "") -> str:
    """A "did you mean" for an unknown key of config ``name``: the closest of the keys of
    the config the user composed (``graph=counter`` suggests the counter graph's keys, not
    the default graph's). That config is composed again from the overrides that select
    (``graph=...``, ``task=...``: no dot in the key), without the one that failed; if even
    those do not compose, from none."""
    if not hints:
        return ""
    text = str(e)
    m = _UNKNOWN_KEY.search(text) or re.search(r"Could not override '([^']+)'", text)
    if m is None:
        return ""
    wrong = key if key and key != "?" else m.group(1)
    full = getattr(e, "full_key", None)
    if full:
        wrong = str(full)
    selecting = [o for o in given if "=" in o and "." not in o.split("=", 1)[0]
                 and o.split("=", 1)[0].lstrip("+~") != wrong]
    for base in (selecting, []) if selecting else ([],):
        try:
            keys = _keys(load(name, base, check=False, hints=False))
        except ConfigError:
            continue
        return did_you_mean(wrong, keys)
    return ""


#: the name a graph file (``graph=path/to/graph.yaml``) composes under
GRAPH_FROM_FILE = "from_file"


def graph_names() -> dict[str, str]:
    """The shipped graphs (``configs/graph/*.yaml``) by name, each with its first comment
    line: what it runs."""
    out = {}
    for path in sorted((CONFIG_DIR / "graph").glob("*.yaml")):
        words: list[str] = []
        for line in path.read_text().splitlines():
            if not line.startswith("#") or line.startswith("#  "):  # the end, or examples
                break
            words.append(line.lstrip("#").strip())
        text = " ".join(words)
        end = text.find(". ")
        text = (text if end < 0 else text[:end]).rstrip(".:")
        out[path.stem] = text if len(text) <= 120 else text[:117].rstrip() + "..."
    return out


def _graph_file(overrides: list[str]) -> tuple[list[str], Path | None]:
    """Take out a ``graph=`` override that names a YAML file rather than a shipped graph."""
    for i, override in enumerate(overrides):
        key, sep, value = override.partition("=")
        value = value.strip().strip("'\"")
        if key.strip() != "graph" or not sep:
            continue
        if not (value.endswith((".yaml", ".yml")) or os.sep in value):
            return overrides, None
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError("graph", f"no graph file {str(path)!r}; allowed: a YAML file "
                              f"or a shipped graph ({', '.join(graph_names())})")
        return overrides[:i] + overrides[i + 1:], path.resolve()
    return overrides, None


def _resolve_graph_paths(graph: Any, folder: Path) -> None:
    """A graph file's relative paths are the file's: every node argument that starts with
    ``./`` or ``../`` is made absolute against ``folder``, and so is each entry of
    ``pythonpath``; the file's folder itself joins ``pythonpath`` (its nodes' modules)."""
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("./", "../")):
            return str((folder / value).resolve())
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    for entry in graph.nodes.values():
        entry.args = resolve(entry.args)
    paths = [str((folder / p).resolve()) for p in getattr(graph, "pythonpath", [])]
    if hasattr(graph, "pythonpath"):
        graph.pythonpath = list(dict.fromkeys([str(folder), *paths]))


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
