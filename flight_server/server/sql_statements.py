"""Flight SQL statements between calls: signed statement tickets and the prepared-statement store.

Statement tickets are stateless: the query's plan (text, result schema, the columns each scan
reads), the bound parameters (Arrow IPC), the principal, the catalog generation and an expiry,
signed with HMAC-SHA256 under the key derived for statements. DoGet runs the plan it carries, so a
query is planned once per GetFlightInfo, never again at DoGet (unless the catalog changed since).

Prepared statements are server-side handles (random, bound to the principal) that expire after
``ttl_s`` idle seconds, at most ``cap`` open per principal and ``MAX_PREPARED_BYTES`` of query
text and parameters per principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, ResourceExhausted
from arrowroot.flight_server.sql.engine import PreparedQuery

__all__ = ["StatementTickets", "Statement", "Prepared", "PreparedStore", "HANDLE_TTL_S", "MAX_HANDLES_PER_PRINCIPAL",
           "MAX_PREPARED_BYTES", "ipc_bytes", "ipc_table"]

HANDLE_TTL_S = 600.0             # prepared statements and statement tickets
MAX_HANDLES_PER_PRINCIPAL = 1024
MAX_PREPARED_BYTES = 64 << 20    # per principal: query texts + bound parameters of open statements
_MAGIC = b"ARSQL2"


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


@dataclass(frozen=True)
class Statement:
    """What a statement ticket carries: the plan to run, its parameters, the catalog it was made for."""

    plan: PreparedQuery
    parameters: pa.Table | None
    generation: int
    digest: bytes  # identifies the ticket (CancelFlightInfo names running queries by it)


class StatementTickets:
    """Signs and opens TicketStatementQuery handles."""

    def __init__(self, key: bytes, ttl_s: float = HANDLE_TTL_S) -> None:
        self._key, self.ttl_s = key, ttl_s

    def sign(self, principal: str, plan: PreparedQuery, parameters: pa.Table | None, generation: int) -> bytes:
        body = {
            "p": principal,
            "x": time.time() + self.ttl_s,
            "g": generation,
            "q": plan.query,
            "s": _b64(plan.schema.serialize().to_pybytes()),
            "ps": _b64(plan.parameter_schema.serialize().to_pybytes()),
            "b": plan.bound is not None,
            "sc": plan.scans,
            "c": plan.uses_catalog,
            "pd": list(plan.pushdown) if plan.pushdown is not None else None,
            "ag": [plan.aggregates[0], [list(i) for i in plan.aggregates[1]]] if plan.aggregates is not None else None,
            "a": _b64(ipc_bytes(parameters)) if parameters is not None else None,
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        return _MAGIC + self._mac(payload) + payload

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _MAGIC + payload, hashlib.sha256).digest()

    def open(self, handle: bytes, principal: str) -> Statement:
        """The statement of a handle this server signed for ``principal``, unexpired."""
        handle = bytes(handle)
        n = len(_MAGIC)
        if len(handle) < n + 32 or not handle.startswith(_MAGIC):
            raise InvalidRequest("TicketStatementQuery: not a ticket of this server; use the one from GetFlightInfo")
        mac, payload = handle[n:n + 32], handle[n + 32:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidRequest("TicketStatementQuery: signature does not match; tickets are only valid, "
                                 "unaltered, on the server that issued them")
        body = json.loads(payload)
        if body["p"] != principal:
            raise NotFound("ticket: issued to another user; ask for your own FlightInfo")
        if time.time() > body["x"]:
            raise NotFound(f"ticket: expired (valid for {self.ttl_s:g} s); ask for a new FlightInfo")
        params_schema = _schema(body["ps"])
        pushed, aggregates = body.get("pd"), body.get("ag")
        plan = PreparedQuery(query=body["q"], schema=_schema(body["s"]), parameter_schema=params_schema,
                             scans=body["sc"], uses_catalog=body["c"], bound=params_schema if body["b"] else None,
                             pushdown=tuple(pushed) if pushed else None,
                             aggregates=(aggregates[0], [tuple(i) for i in aggregates[1]]) if aggregates else None)
        params = ipc_table(base64.b64decode(body["a"])) if body.get("a") else None
        return Statement(plan, params, int(body["g"]), hashlib.sha256(mac).digest()[:16])

    def digest(self, handle: bytes) -> bytes | None:
        """A handle's identity (without checking it), or None when it is not one of ours."""
        handle = bytes(handle)
        n = len(_MAGIC)
        if len(handle) < n + 32 or not handle.startswith(_MAGIC):
            return None
        return hashlib.sha256(handle[n:n + 32]).digest()[:16]


@dataclass
class Prepared:
    """One open prepared statement: its plan, and once parameters are bound, their plan."""

    handle: bytes
    principal: str
    query: PreparedQuery
    parameters: pa.Table | None = None
    bound: PreparedQuery | None = None  # planned with the bound parameters' types
    last_used: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        return len(self.query.query) + (self.parameters.nbytes if self.parameters is not None else 0)

    @property
    def plan(self) -> PreparedQuery:
        """What GetFlightInfo answers: the bound query's plan once parameters are bound."""
        return self.bound if self.bound is not None else self.query


class PreparedStore:
    """Open prepared statements: idle TTL, a cap per principal, handles bound to principals."""

    def __init__(self, ttl_s: float = HANDLE_TTL_S, cap: int = MAX_HANDLES_PER_PRINCIPAL) -> None:
        self.ttl_s, self.cap = ttl_s, cap
        self._items: dict[bytes, Prepared] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        dead = [h for h, p in self._items.items() if now - p.last_used > self.ttl_s]
        for h in dead:
            del self._items[h]

    def add(self, principal: str, query: PreparedQuery) -> Prepared:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            mine = [p for p in self._items.values() if p.principal == principal]
            if len(mine) >= self.cap:
                raise ResourceExhausted(
                    f"{len(mine)} prepared statements are open (the limit is {self.cap}); close some first"
                )
            self._check_bytes(mine, len(query.query))
            entry = Prepared(secrets.token_bytes(16), principal, query, last_used=now)
            self._items[entry.handle] = entry
            return entry

    @staticmethod
    def _check_bytes(mine: list[Prepared], extra: int) -> None:
        held = sum(p.nbytes for p in mine)
        if held + extra > MAX_PREPARED_BYTES:
            raise ResourceExhausted(f"open prepared statements would hold {held + extra} bytes of queries and "
                                    f"parameters (the limit is {MAX_PREPARED_BYTES}); close some first")

    def bind(self, entry: Prepared, parameters: pa.Table | None, bound: PreparedQuery | None) -> None:
        """Attach DoPut parameters and their plan, within the principal's byte budget."""
        with self._lock:
            mine = [p for p in self._items.values() if p.principal == entry.principal and p is not entry]
            self._check_bytes(mine, len(entry.query.query) + (parameters.nbytes if parameters is not None else 0))
            entry.parameters, entry.bound = parameters, bound

    def get(self, handle: bytes, principal: str) -> Prepared:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._items.get(bytes(handle))
            if entry is None or entry.principal != principal:
                raise NotFound(
                    "prepared statement handle is unknown or expired (idle for more than "
                    f"{self.ttl_s:g} s); prepare the query again"
                )
            entry.last_used = now
            return entry

    def close(self, handle: bytes, principal: str) -> bool:
        with self._lock:
            entry = self._items.get(bytes(handle))
            if entry is None or entry.principal != principal:
                return False
            del self._items[entry.handle]
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
