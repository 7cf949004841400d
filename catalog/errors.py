"""Catalog errors: the project's one error tree (``flight_server/core/errors.py``), plus the
"did you mean" helper every NOT_FOUND message uses.

    NotFound(KeyError)              no dataset/file/column by that name (message lists the closest)
    Conflict(InvalidRequest)        a write that contradicts what is stored
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from arrowroot.flight_server.core.errors import ArrowrootError, InvalidRequest, NotFound, Unavailable, quote

CatalogError = ArrowrootError


class Conflict(InvalidRequest):
    pass


class CatalogInUse(Unavailable):
    """Another process holds the catalog file (DuckDB allows one writer)."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """', '-joined close matches of ``name``, for 'did you mean' messages."""
    matches = difflib.get_close_matches(name[:1000], list(candidates), n=n, cutoff=0.5)
    return ", ".join(repr(m) for m in matches)


def not_found(what: str, name: str, candidates: Iterable[str]) -> NotFound:
    near = closest(name, candidates) if len(name) <= 200 else ""  # difflib is O(n*m)
    hint = f"; closest: {near}" if near else ""
    return NotFound(f"no {what} named {quote(name)}{hint}")


__all__ = ["CatalogError", "CatalogInUse", "Conflict", "NotFound", "closest", "not_found"]
