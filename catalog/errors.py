"""Catalog errors. Each also inherits the builtin that names its meaning, so callers
(and pyarrow's Flight error mapping) treat them right without knowing this module:

    CatalogError
    ├── NotFound(KeyError)          no dataset/file/column by that name (message lists the closest)
    └── Conflict(ValueError)        a write that contradicts what is stored
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CatalogError(Exception):
    """Base of every catalog error."""


class NotFound(CatalogError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Conflict(CatalogError, ValueError):
    pass


def closest(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """', '-joined close matches of ``name``, for 'did you mean' messages."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return ", ".join(repr(m) for m in matches)


def not_found(what: str, name: str, candidates: Iterable[str]) -> NotFound:
    near = closest(name, candidates)
    hint = f"; closest: {near}" if near else ""
    return NotFound(f"no {what} named {name!r}{hint}")
