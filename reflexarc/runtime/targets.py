"""``package.module:Name`` strings, as graphs and configs name node classes and drivers."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(target: str, error: type[Exception], what: str) -> Any:
    """The object ``target`` names; ``error`` (naming it as ``what``) when the string is not of
    that form or does not import."""
    module, _, name = target.partition(":")
    if not name:
        raise error(f"{what} {target!r} must look like 'package.module:Class'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise error(f"cannot import {what} {target!r}: {e}") from None
