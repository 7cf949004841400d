"""One access-log line per call, on every door, success or failure.

A door opens a :class:`CallRecord` when a call starts (the Flight middleware, the HTTP middleware),
the service layer fills in what it learns (dataset, rows, bytes, the request id a ticket carries)
and the door finishes it when the call ends — after the last batch of a stream, or with the status
of the error that ended it. ``finish`` writes exactly one line, to the ``arrowroot.access`` logger:

    flight DoGet user=alice dataset=hep/events.root:events rows=2000 bytes=52000 0.004s OK request=3f9c0a1b2c4d

or, with ``--log-format json``, one JSON object per line for log shippers. Listeners get every
finished record; a record's ``sink`` (its server's metrics, ``service/metrics.py``) gets its own.
Credentials never reach a record: only the user name.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("arrowroot.access")

_format = "text"
_listeners: list[Callable[["CallRecord"], None]] = []


def set_format(fmt: str) -> None:
    """``text`` (default) or ``json`` for every access-log line of this process."""
    global _format
    if fmt not in ("text", "json"):
        raise ValueError(f"log format: {fmt!r} is not 'text' or 'json'")
    _format = fmt


def add_listener(fn: Callable[["CallRecord"], None]) -> None:
    """Call ``fn(record)`` for every finished call (e.g. Prometheus counters)."""
    _listeners.append(fn)


def remove_listener(fn: Callable[["CallRecord"], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


@dataclass
class CallRecord:
    door: str                      # flight, flight_sql, http, node, workspace
    method: str                    # DoGet, GetFlightInfo, GET /api/data, ...
    user: str | None = None
    peer: str = ""
    dataset: str = ""
    rows: int = 0
    bytes: int = 0
    status: str = "OK"             # the error table's gRPC status name (service/errors.py)
    http: int | None = None        # HTTP status, on the HTTP door
    request_id: str = ""           # shared by a FlightInfo and its DoGets (carried in the ticket)
    detail: str = ""               # a short extra: endpoints=3, where=..., action name
    sink: Callable[[CallRecord], None] | None = field(default=None, repr=False)  # this server's metrics
    started: float = field(default_factory=time.perf_counter)
    _done: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def add(self, rows: int = 0, nbytes: int = 0) -> None:
        self.rows += rows
        self.bytes += nbytes

    def finish(self, status: str | None = None) -> bool:
        """Write the line (once); later calls do nothing and return False."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        if status is not None:
            self.status = status
        secs = self.seconds
        if log.isEnabledFor(logging.INFO):
            log.info(self.line(secs))
        for fn in list(_listeners) + ([self.sink] if self.sink is not None else []):
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a listener must never break a call
                log.exception("access-log listener failed")
        return True

    def line(self, secs: float | None = None) -> str:
        secs = self.seconds if secs is None else secs
        if _format == "json":
            out = {"door": self.door, "method": self.method, "user": self.user or "", "peer": self.peer,
                   "dataset": self.dataset, "rows": self.rows, "bytes": self.bytes, "seconds": round(secs, 6),
                   "status": self.status, "request": self.request_id}
            if self.http is not None:
                out["http"] = self.http
            if self.detail:
                out["detail"] = self.detail
            return json.dumps(out, separators=(",", ":"))
        parts = [self.door, self.method, f"user={self.user or '-'}"]
        if self.dataset:
            parts.append(f"dataset={self.dataset}")
        parts += [f"rows={self.rows}", f"bytes={self.bytes}", f"{secs:.4f}s", self.status]
        if self.http is not None:
            parts.append(f"http={self.http}")
        parts.append(f"request={self.request_id}")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)


__all__ = ["CallRecord", "set_format", "add_listener", "remove_listener"]
