"""A node's argument names read from its source, without importing it.

Importing a node's module can take seconds (torch, a simulator). A misspelled argument
should be reported before that: :func:`argument_names` finds the node class's ``Config``
dataclass in the module's source (its syntax tree, not its execution) and returns the
names of its fields. The launcher checks a graph's argument names with it before any
import, and then validates everything (types, ranges) with the imported classes as before
(docs/liveness.md, "Honest outcomes").

It answers only what the source says plainly: ``class Config`` in the node class, or
``Config = Name`` naming a dataclass of the same module or one imported with
``from module import Name``, and fields declared with annotations, bases included. A node
that picks its class from its arguments (``select_class``), or a Config it cannot follow,
gives None: those nodes are checked after the import only.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

MAX_DEPTH = 8  # imports and bases followed before giving up


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found without running it or its package's
    ``__init__`` (only the top two levels are asked of the import system, which runs the
    top-level package's ``__init__``, ``reflexarc``'s: it is light)."""
    parts = module.split(".")
    head = ".".join(parts[:2]) if len(parts) > 2 else module
    try:
        spec = importlib.util.find_spec(head)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    rest = parts[2:] if len(parts) > 2 else []
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder, *rest[:-1])
        for cand in (path / f"{rest[-1]}.py", path / rest[-1] / "__init__.py"):
            if cand.is_file():
                return cand
    return None


@lru_cache(maxsize=64)
def _tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _resolve(module: str, name: str, depth: int) -> tuple[str, ast.ClassDef] | None:
    """The class ``name`` as visible in ``module``: defined there, or imported by name."""
    if depth > MAX_DEPTH:
        return None
    path = _module_file(module)
    tree = _tree(path) if path is not None else None
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _resolve(node.module, alias.name, depth + 1)
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Name):
                return _resolve(module, node.value.id, depth + 1)
    return None


def _fields(module: str, cls: ast.ClassDef, depth: int) -> set[str] | None:
    """Annotated field names of dataclass ``cls`` and of its bases; None if a base cannot
    be followed."""
    names = {
        n.target.id for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        and not _is_classvar(n.annotation)
    }
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            return None
        found = _resolve(module, base.id, depth + 1)
        if found is None:
            return None
        more = _fields(*found, depth + 1)
        if more is None:
            return None
        names |= more
    return names


def _is_classvar(annotation: ast.expr) -> bool:
    text = ast.unparse(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _config_of(module: str, cls: ast.ClassDef, depth: int) -> set[str] | None:
    """The fields of node class ``cls``'s ``Config`` (its own, or its bases')."""
    if depth > MAX_DEPTH:
        return None
    if any(isinstance(n, ast.FunctionDef) and n.name == "select_class" for n in cls.body):
        return None  # the class that runs depends on the arguments
    for node in cls.body:
        if isinstance(node, ast.ClassDef) and node.name == "Config":
            return _fields(module, node, depth + 1)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "Config" for t in node.targets
        ):
            if not isinstance(node.value, ast.Name):
                return None
            found = _resolve(module, node.value.id, depth + 1)
            return None if found is None else _fields(*found, depth + 1)
    for base in cls.bases:  # inherited Config
        if isinstance(base, ast.Name):
            found = _resolve(module, base.id, depth + 1)
            if found is not None and found[1].name != "Node":
                return _config_of(*found, depth + 1)
        return None
    return None


def argument_names(target: str) -> set[str] | None:
    """The argument names node ``target`` (``package.module:Class``) accepts, read from
    its source without importing it; None when the source does not say plainly."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        return None
    found = _resolve(module, name, 0)
    if found is None:
        return None
    return _config_of(*found, 0)
