"""Named quantities of an env's observation, for probes of any scene (diagnosis only).

A spec names one quantity and where it is in the env's flattened observation (what the
gymnasium adapter records as ``joint_state.position``, docs/world-model.md, "Any scene")::

    name:obs[a:b]            entries a..b-1 (Python slice; negative indices count from the end)
    name:obs[i]              entry i
    name:obs[a:b]+obs[c:d]   a sum (or difference, with -) of slices of one width

For example Reacher-v5's fingertip and target (its observation: cos q (2), sin q (2),
target (2), joint velocities (2), fingertip - target (2))::

    'probe.targets=["fingertip:obs[4:6]+obs[8:10]","target:obs[4:6]"]'

Entries of ``info`` are not recorded in the episodes, so only ``obs`` can be named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from reflexarc.runtime.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_TERM = re.compile(r"^(?P<src>[A-Za-z_]+)\[(?P<a>-?\d*)(?P<colon>:?)(?P<b>-?\d*)\]$")
SOURCES = ("obs",)
SYNTAX = "'name:obs[a:b]', 'name:obs[i]' or 'name:obs[a:b]+obs[c:d]'"


@dataclass(frozen=True)
class Quantity:
    """One named quantity: the sum of signed slices of the observation."""

    name: str
    terms: tuple[tuple[int, slice], ...]  # (sign +1/-1, slice of obs)
    spec: str

    def width(self, obs_dim: int) -> int:
        return len(range(obs_dim)[self.terms[0][1]])

    def values(self, obs: Tensor, key: str = "probe.targets") -> Tensor:
        """(N, K) observations -> (N, width) values of this quantity."""
        k = obs.shape[-1]
        widths = {len(range(k)[s]) for _, s in self.terms}
        if 0 in widths:
            raise ConfigError(key, f"{self.spec!r} selects no entry of a {k}-entry observation")
        if len(widths) != 1:
            raise ConfigError(key, f"{self.spec!r}: its terms select {sorted(widths)} entries of "
                              f"the {k}-entry observation; a sum needs terms of one width")
        out = torch.zeros(*obs.shape[:-1], widths.pop(), dtype=obs.dtype)
        for sign, s in self.terms:
            out = out + sign * obs[..., s]
        return out


def parse_quantity(spec: str, key: str = "probe.targets") -> Quantity:
    """One spec (module docstring) -> :class:`Quantity`; ConfigError naming ``key``."""
    text = str(spec).strip()
    name, sep, expr = text.partition(":")
    name, expr = name.strip(), expr.replace(" ", "")
    if not sep or not _NAME.match(name) or not expr:
        raise ConfigError(key, f"got {spec!r}; allowed: {SYNTAX}")
    parts = re.split(r"([+-])(?=[A-Za-z_])", expr)  # keep the signs, not a slice's '-'
    signs = [1] + [1 if op == "+" else -1 for op in parts[1::2]]
    terms = []
    for sign, term in zip(signs, parts[0::2], strict=True):
        m = _TERM.match(term)
        if m is None:
            raise ConfigError(key, f"{spec!r}: cannot read {term!r}; allowed: {SYNTAX}")
        if m["src"] not in SOURCES:
            raise ConfigError(key, f"{spec!r}: unknown source {m['src']!r}; allowed: "
                              f"{', '.join(SOURCES)} (info entries are not recorded)")
        a = int(m["a"]) if m["a"] else None
        b = int(m["b"]) if m["b"] else None
        if m["colon"]:
            s = slice(a, b)
        elif a is None:
            raise ConfigError(key, f"{spec!r}: empty index in {term!r}; allowed: {SYNTAX}")
        else:
            s = slice(a, a + 1 if a != -1 else None)
        terms.append((sign, s))
    return Quantity(name=name, terms=tuple(terms), spec=text)


def parse_quantities(specs: list[str] | tuple[str, ...] | str, key: str = "probe.targets") -> list[Quantity]:
    """A list of specs (or one comma-free spec) -> quantities with distinct names."""
    if isinstance(specs, str):
        specs = [specs] if specs.strip() else []
    out = [parse_quantity(s, key) for s in specs]
    names = [q.name for q in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(key, f"names {dup} appear more than once; each quantity needs its own name")
    return out
