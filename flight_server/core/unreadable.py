"""Why a dataset or a column cannot be read: one text, whichever door asks.

The catalog keeps each unreadable column with its reason (LZO filter, an HDF5 time type,
float128, a class uproot cannot interpret, ...). Flight, Flight SQL, HTTP, the CLI and the
Python client all say it with these functions, so a user sees the same words everywhere.
A dataset's schema as the SQL engine sees it carries the list in its metadata
(``META_KEY``), since the engine knows schemas, not catalog records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import pyarrow as pa

META_KEY = b"arrowroot.unreadable"
UNSUPPORTED = "unsupported type"
MAX_LISTED = 10


def column_text(name: str, reason: str) -> str:
    """``'col' cannot be read: <reason>``."""
    return f"{name!r} cannot be read: {reason or UNSUPPORTED}"


def reasons_text(items: Sequence[tuple[str, str]]) -> str:
    """``a: why; b: why (and 3 more)``: the columns and their reasons, the first few named."""
    shown = "; ".join(f"{name}: {reason or UNSUPPORTED}" for name, reason in items[:MAX_LISTED])
    more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return shown + more


def no_columns_text(dataset: str, items: Sequence[tuple[str, str]]) -> str:
    """Why a dataset has nothing to read: its unreadable columns with their reasons."""
    if not items:
        return f"{dataset!r} has no columns"
    return f"{dataset!r} has no readable columns: {reasons_text(items)}"


def with_reasons(schema: pa.Schema, items: Iterable[tuple[str, str]]) -> pa.Schema:
    """``schema`` with the unreadable columns and reasons in its metadata."""
    pairs = [[n, r or UNSUPPORTED] for n, r in items]
    if not pairs:
        return schema
    return schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(pairs).encode()})


def without_reasons(schema: pa.Schema) -> pa.Schema:
    meta = schema.metadata or {}
    if META_KEY not in meta:
        return schema
    return schema.with_metadata({k: v for k, v in meta.items() if k != META_KEY})


def reasons_of(schema: pa.Schema) -> list[tuple[str, str]]:
    """The (column, reason) pairs ``with_reasons`` put on ``schema``."""
    raw = (schema.metadata or {}).get(META_KEY)
    if not raw:
        return []
    try:
        return [(str(n), str(r)) for n, r in json.loads(raw)]
    except (ValueError, TypeError):
        return []
