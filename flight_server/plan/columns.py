"""Columns of a request: names and globs resolved against a dataset's schema, and the bytes an
entry of them costs (endpoint and read sizes). Shared by every planner (``planner``, ``levels``)."""

from __future__ import annotations

import functools

import pyarrow as pa

from arrowroot.catalog.errors import not_found
from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.shapes import META_PARENT
from arrowroot.flight_server.core.unreadable import column_text, with_reasons
from arrowroot.flight_server.lang import glob

GLOB_CHARS = set("*?[")


@functools.lru_cache(maxsize=4096)
def _schema_of(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def dataset_schema(rec: DatasetRecord) -> pa.Schema:
    """The readable columns, decoded once per catalog record (keyed by its IPC bytes); the unreadable
    ones with their reasons in the metadata (``core/unreadable``), for doors that see only schemas (SQL)."""
    unreadable = tuple((c.name, c.reason) for c in rec.columns if not c.readable)
    return _with_reasons(rec.schema, unreadable)


@functools.lru_cache(maxsize=4096)
def _with_reasons(data: bytes, unreadable: tuple[tuple[str, str], ...]) -> pa.Schema:
    return with_reasons(_schema_of(data), list(unreadable)) if unreadable else _schema_of(data)


def resolve_columns(requested: tuple[str, ...], rec: DatasetRecord, schema: pa.Schema) -> tuple[str, ...]:
    """Exact names first, then shell globs; unreadable columns only when named exactly.
    Parent branches (records of their leaves) only when named exactly, too."""
    readable = [f.name for f in schema if META_PARENT not in (f.metadata or {})]
    if not requested:
        return tuple(readable)
    everything = {c.name: c for c in rec.columns}
    out: list[str] = []
    for want in requested:
        if want in everything:
            col = everything[want]
            if not col.readable or want not in schema.names:
                raise InvalidRequest(f"columns: {column_text(want, col.reason)}")
            matches = [want]
        elif GLOB_CHARS & set(want):
            pattern = glob.compile(want)  # linear; at most glob.MAX_PATTERN characters
            matches = [n for n in readable if pattern.match(n)]
            if not matches:
                raise not_found(f"column matching the pattern (in {rec.name!r})", want, readable)
        else:
            raise not_found(f"column in {rec.name!r}", want, readable)
        out.extend(m for m in matches if m not in out)
    return tuple(out)


def bytes_per_entry(rec: DatasetRecord, columns: tuple[str, ...]) -> float:
    total = 0.0
    for name in columns:
        col = rec.column(name)
        if col is not None and col.uncompressed_bytes and rec.entries:
            total += col.uncompressed_bytes / rec.entries
        else:
            total += 8.0
    return max(total, 1.0)
