"""The ``reflexarc`` command: ``reflexarc <verb> [positional] [key=value hydra overrides]``.

Each verb has a config (``configs/<verb>.yaml`` selecting a dataclass schema) and a
function ``fn(cfg) -> summary``. The summary (a dict, or a list of row dicts) is printed
as a table; with ``out=FILE`` it is also written as JSON.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflexarc.runtime.errors import ConfigError, ReflexarcError


@dataclass(frozen=True)
class Verb:
    target: str  # "module:function"
    help: str
    positional: str | None = None  # config key that a bare positional argument sets
    many: bool = False  # the positional key is a list: every bare argument joins it


VERBS: dict[str, Verb] = {
    "run": Verb("reflexarc.runtime.launcher:run_verb", "run the configured node graph (default: the main job)"),
    "record": Verb("reflexarc.runtime.recorder:record_verb", "run the graph and record every topic to episode files"),
    "replay": Verb("reflexarc.runtime.recorder:replay_verb", "republish recorded episode files with their timing", "path"),
    "bench": Verb("reflexarc.tools.bench:bench_verb", "measure: bus | sim | control | plan | instruct | faults | arms | liveness", "what"),
    "load": Verb("reflexarc.runtime.load:load_verb", "keep N CPU-bound background processes busy (a loaded machine on demand)", "processes"),
    "keys": Verb("reflexarc.runtime.bus:keys_verb", "make CURVE keys for a graph across hosts", "dir"),
    "estop": Verb("reflexarc.robot.operator:estop_verb", "e-stop: engage | release (signed) | keygen", "action"),
    "collect": Verb("reflexarc.policies.collect:collect_verb", "collect exploration episodes for world-model training"),
    "train": Verb("reflexarc.policies.train:train_verb", "train the latent world model from episode files"),
    "eval": Verb("reflexarc.tools.evaluate:eval_verb", "evaluate a policy on a task, or a world model on episodes"),
    "say": Verb("reflexarc.planner.instruct:say_verb", "turn a plain-language instruction into a task spec", "text"),
    "export": Verb("reflexarc.tools.export:export_verb", "write episodes as a LeRobot dataset, MCAP or rerun .rrd", "episodes", many=True),
    "view": Verb("reflexarc.tools.export:view_verb", "open an episode in the rerun viewer (headless: write its .rrd)", "path"),
}


def _usage() -> str:
    lines = ["usage: reflexarc <verb> [positional] [key=value ...]", "", "verbs:"]
    lines += [f"  {name:<8} {v.help}" for name, v in VERBS.items()]
    lines += ["", "reflexarc <verb> --help: every key of the verb, its value, what it is and what is "
              "allowed;", "reflexarc run --help also lists the graphs and the chosen graph's nodes.",
              "From a script: import reflexarc; reflexarc.run(graph=..., ...) (docs/python-api.md)."]
    return "\n".join(lines)


def _function(verb: Verb) -> Any:
    """Import the verb's module (which registers its config schema) and return its function."""
    module, fn = verb.target.split(":")
    return getattr(importlib.import_module(module), fn)


def _config_help(name: str, overrides: list[str]) -> str:
    """A verb's keys, one line each: value, what it is, what is allowed; for a verb that
    runs a graph, the shipped graphs and the arguments of the chosen graph's nodes."""
    from reflexarc.runtime.config import describe, graph_names, load

    verb = VERBS[name]
    _function(verb)
    cfg = load(name, overrides, check=False)
    positional = f"[{verb.positional}] " if verb.positional else ""
    lines = [f"reflexarc {name}: {verb.help}", f"usage: reflexarc {name} {positional}[key=value ...]",
             "", "keys (key=value):"]
    lines += _columns(describe(cfg, skip=("graph",)))
    graph = getattr(cfg, "graph", None)
    if graph is not None and hasattr(graph, "nodes"):
        lines += ["", "graphs (graph=NAME, or graph=path/to/graph.yaml: docs/python-api.md):"]
        names = graph_names()
        width = max(map(len, names))
        lines += [f"  {n:<{width}}  {what}" for n, what in names.items()]
        lines += ["", "nodes of this graph (graph.nodes.NAME.rate_hz=..., "
                  "graph.nodes.NAME.args.KEY=...):"]
        for node, entry in graph.nodes.items():
            state = "" if entry.enabled else " (disabled)"
            lines.append(f"  {node}: {entry.target} at {entry.rate_hz:g} Hz{state}")
            lines += _columns(_node_args(node, entry), indent=4)
        from reflexarc.runtime.launcher import NodeEntry

        lines += ["", "every node also takes (graph.nodes.NAME.KEY=...):"]
        lines += _columns(describe(NodeEntry(target=""), skip=("target", "args")))
    return "\n".join(lines)


def _node_args(node: str, entry: Any) -> list[tuple[str, str, str]]:
    """(key, value, what) of a node's arguments, from its class's Config."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from reflexarc.runtime.config import describe
    from reflexarc.runtime.node import node_class

    try:
        cls = node_class(entry.target, entry.args)
        args = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), entry.args))
    except (ReflexarcError, OmegaConfBaseException) as e:
        return [(f"graph.nodes.{node}.args", "?", f"cannot show: {e}")]
    return describe(args, prefix=f"graph.nodes.{node}.args.")


def _columns(rows: list[tuple[str, str, str]], indent: int = 2) -> list[str]:
    if not rows:
        return []
    kw = max(len(k) for k, _, _ in rows)
    vw = max(len(v) for _, v, _ in rows)
    return [f"{' ' * indent}{k:<{kw}}  {v:<{vw}}  {w}".rstrip() for k, v, w in rows]


def print_summary(summary: Any, title: str) -> None:
    """Print a summary as a table: a list of rows, or a dict of key -> value."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if isinstance(summary, list):
        _print_rows(console, [r for r in summary if isinstance(r, dict)], title)
        return
    if not isinstance(summary, dict):
        return
    reasons, warnings = summary.get("reasons") or [], summary.get("warnings") or []
    if reasons:  # why the run is not ok comes before any figure
        console.print(f"{title}: NOT OK: " + "; ".join(map(str, reasons)), markup=False)
    table = Table(title=title)
    table.add_column("key")
    table.add_column("value", justify="right")
    nested = {}
    for k, v in summary.items():
        if k in ("reasons", "warnings") and isinstance(v, list):
            continue  # printed as lines
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            nested[k] = v
        elif isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values()):
            nested[k] = [{"": name, **r} for name, r in v.items()]
        else:
            table.add_row(_cell(k), _cell(v))
    for k, rows in nested.items():
        _print_rows(console, rows, k)
    console.print(table)
    if warnings:  # what degraded the run, and what to change
        console.print("warnings: " + "; ".join(map(str, warnings)), markup=False)


WIDE_COLUMNS = 16  # rows with more keys than this print as key-value text, not columns


def _print_rows(console: Any, rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    if not rows:
        return
    table = Table(title=title)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    if len(cols) > WIDE_COLUMNS:  # e.g. node figures: one wrapped "key value" cell per row
        first = cols[0]
        table.add_column(str(first), justify="right")
        table.add_column("figures", overflow="fold")
        for r in rows:
            figures = "  ".join(f"{k} {_fmt(v)}" for k, v in r.items() if k != first)
            table.add_row(_cell(r.get(first, "")), _cell(figures))
        console.print(table)
        return
    for c in cols:
        table.add_column(str(c), justify="right")
    for r in rows:
        table.add_row(*(_cell(r.get(c, "")) for c in cols))
    console.print(table)


def _cell(v: Any) -> str:
    """A table cell: the value as text, with rich's markup escaped (a list of names such
    as ``[camera/front, joint_state]`` would otherwise be read as a style tag and vanish)."""
    from rich.markup import escape

    return escape(v if isinstance(v, str) else _fmt(v))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple) and len(v) > 6:
        return "[" + ", ".join(_fmt(x) for x in v[:6]) + ", ...]"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def write_json(path: str | Path, summary: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.getcwd() not in sys.path:  # as `python -m` does: node targets from the working dir
        sys.path.insert(0, os.getcwd())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    verb = VERBS.get(name)
    if verb is None:
        from difflib import get_close_matches

        close = get_close_matches(name, list(VERBS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"reflexarc: unknown verb {name!r}{hint}; verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    try:
        helping = "-h" in rest or "--help" in rest
        rest = [a for a in rest if a not in ("-h", "--help")]
        overrides = []
        many: list[str] = []
        for arg in rest:
            if arg.startswith(("+", "~")):
                overrides.append(arg)
            elif "=" in arg.split(" ", 1)[0]:
                # node arguments are open maps in the graph config; their schema is the
                # node's own Config, checked by the launcher (so add-or-override here)
                overrides.append(f"++{arg}" if ".args." in arg.split("=", 1)[0] else arg)
            elif verb.positional is not None:
                value = arg.replace("'", "\\'")
                if verb.many:
                    many.append(f"'{value}'")
                else:
                    overrides.append(f"{verb.positional}='{value}'")
            else:
                raise ConfigError(arg, f"'reflexarc {name}' takes only key=value overrides")
        if many:
            overrides.append(f"{verb.positional}=[{','.join(many)}]")
        if helping:
            print(_config_help(name, overrides))
            return 0
        from reflexarc.runtime.config import load

        fn = _function(verb)
        cfg = load(name, overrides)
        summary = fn(cfg)
    except ConfigError as e:
        print(f"reflexarc {name}: {e}", file=sys.stderr)
        return 2
    except ReflexarcError as e:
        print(f"reflexarc {name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if summary is not None:
        print_summary(summary, f"reflexarc {name}")
        out = getattr(cfg, "out", "")
        if out and not getattr(cfg, "OUT_IS_DATA", False):  # export: out= is the data
            write_json(out, summary)
            print(f"wrote {out}")
    ok = not (isinstance(summary, dict) and summary.get("ok") is False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
