"""What a failed query tells its caller: the sandbox's outcomes as the project's errors.

The worker reports DuckDB's errors by kind; a worker that went away is a deadline, a cancel, the
memory bound or a crash. Each becomes one error of ``core/errors.py``, which every door maps
through the one table (``ResourceExhausted`` → "resource exhausted: …", ``TimedOut`` →
DEADLINE_EXCEEDED, ...).
"""

from __future__ import annotations

import re

import pyarrow as pa

from arrowroot.flight_server.core.errors import (Cancelled, InvalidRequest, PermissionDenied, ResourceExhausted,
                                                TimedOut, Unavailable)
from arrowroot.flight_server.core.unreadable import column_text, reasons_of
from arrowroot.flight_server.sql.sandbox import SandboxError, WorkerGone

__all__ = ["QueryCancelled", "failure", "parse_bytes", "timed_out"]


class QueryCancelled(Cancelled):
    """The query was cancelled (its client went away, or asked: CancelFlightInfo)."""


_MISSING_COLUMN = re.compile(r'Referenced column "((?:[^"]|"")+)" not found')


def timed_out(timeout_s: float) -> TimedOut:
    return TimedOut(f"query exceeded its {timeout_s:g} s time limit (sql_timeout); it was stopped")


def failure(exc: BaseException, *, timeout_s: float, memory: str,
            schemas: dict[str, pa.Schema] | None = None) -> BaseException:
    """The error to raise for a sandbox outcome (anything else is returned unchanged)."""
    if isinstance(exc, WorkerGone):
        if exc.reason == "timeout":
            return timed_out(timeout_s)
        if exc.reason == "cancel":
            return QueryCancelled("query cancelled")
        if exc.reason == "shutdown":
            return Unavailable("the server is stopping; the query was stopped")
        if exc.reason == "memory":
            return ResourceExhausted(f"the query needed more than its memory bound ({memory}, sql_memory_limit)")
        return RuntimeError(f"the SQL worker stopped unexpectedly ({exc}); the query did not finish")
    if not isinstance(exc, SandboxError):
        return exc
    text = str(exc)
    if exc.kind == "permission":
        return PermissionDenied(text)
    if exc.kind == "interrupt":
        return QueryCancelled("query interrupted")
    if exc.kind == "memory":
        return ResourceExhausted(f"the query needed more than its memory bound ({memory}, sql_memory_limit): {text}")
    if schemas:
        unreadable = _unreadable_column(text, schemas)
        if unreadable is not None:
            return unreadable
    return InvalidRequest(text)


def _unreadable_column(text: str, schemas: dict[str, pa.Schema]) -> InvalidRequest | None:
    """A query naming a column the catalog lists as unreadable: say why, not "not found"."""
    m = _MISSING_COLUMN.search(text)
    if m is None:
        return None
    wanted = m.group(1).replace('""', '"')
    for schema in schemas.values():
        for name, reason in reasons_of(schema):
            if name == wanted or name.lower() == wanted.lower():
                return InvalidRequest("columns: " + column_text(name, reason))
    return None


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def parse_bytes(text: str) -> int:
    """DuckDB-style sizes ("2GB", "500MiB") in bytes."""
    t = text.strip().upper().replace(" ", "")
    digits = len(t) - len(t.lstrip("0123456789."))
    number, unit = t[:digits], t[digits:]
    if not number or unit not in _UNITS:
        raise InvalidRequest(f"not a size: {text!r}")
    return int(float(number) * _UNITS[unit])
