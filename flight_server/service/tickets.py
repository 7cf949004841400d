"""Read tasks ⇄ signed, expiring tickets.

A ticket is a serialised ``Task`` (protos/arrowroot.proto) followed by an HMAC-SHA256 of every
byte before it, as its last field. The fields every endpoint of one FlightInfo shares (schema,
columns, cut, principal, expiry, ...) are encoded once; each ticket appends its own parts and
signs, so hundreds of endpoints cost microseconds each. Any process holding the key — this
server, or a data node given the same key file — can verify and run a ticket; nobody else can
forge or alter one. Tickets name files relative to the served root, never absolute paths.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Sequence

import pyarrow as pa
from google.protobuf.message import DecodeError

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.request import COMPRESSIONS
from arrowroot.flight_server.core.task import LevelColumn, PartRead, ReadTask, TierRead
from arrowroot.flight_server.service.requests import slices_from_message, slices_to_message
from arrowroot.protos import arrowroot_pb2 as pb


class Keys:
    """One secret per deployment (or per process), and a key derived from it for each purpose
    — read tickets, SQL statement handles, node membership — so a value signed for one purpose
    is never valid for another."""

    PURPOSES = ("tickets", "sql-statements", "membership", "follow")

    def __init__(self, master: bytes | None = None):
        self.shared = master is not None
        self._master = master or secrets.token_bytes(32)

    def key(self, purpose: str) -> bytes:
        if purpose not in self.PURPOSES:
            raise ValueError(f"no key purpose {purpose!r}")
        return hmac.digest(self._master, b"arrowroot key\0" + purpose.encode(), "sha256")


@functools.lru_cache(maxsize=256)
def _schema(data: bytes) -> pa.Schema:
    """A ticket's read schema, decoded once per distinct schema (every endpoint of one FlightInfo
    carries the same bytes), so DoGets share the object and its compiled cut (executor)."""
    return pa.ipc.read_schema(pa.py_buffer(data))


def ticket_schema(schema: pa.Schema) -> pa.Schema:
    """What a ticket carries of the read schema: the fields with their types and column metadata
    (units, shapes), without the dataset's attributes — the schema metadata, often most of the
    bytes (an HDF5 group of 200 attributes made 61 KB tickets). A client has those from the
    FlightInfo; a DoGet stream does not repeat them."""
    return schema.remove_metadata() if schema.metadata else schema


TICKET_VERSION = 2
_SIGNATURE_FIELD = 18
_SIG_PREFIX = pb.Task(signature=b"\0" * 32).SerializeToString()[:-32]  # tag + length of the signature
_SIGNED_TAIL = len(_SIG_PREFIX) + 32


def _part_message(p: PartRead) -> pb.PartRead:
    msg = pb.PartRead(path=p.path, size=p.size, mtime=p.mtime, object_path=p.object_path,
                      entry_offset=p.entry_offset, start=p.start, stop=p.stop, boundaries=list(p.boundaries),
                      absent=list(p.absent), time0=p.time0, time0_ns=p.time0_ns, fill=p.fill)
    if p.channel is not None:
        msg.channel = p.channel
    for t in p.tiers:
        msg.tiers.append(pb.TierRead(tier=t.tier, path=t.path, size=t.size, mtime=t.mtime, object_path=t.object_path,
                                     entries=list(t.entries), channels=list(t.channels), absent=list(t.absent),
                                     absent_channels=list(t.absent_channels)))
    return msg


def _tier(t: pb.TierRead) -> TierRead:
    return TierRead(t.tier, t.path, t.size, t.mtime, t.object_path, tuple(t.entries), tuple(t.channels),
                    tuple(t.absent), tuple(t.absent_channels))


def _shared_message(t: ReadTask) -> pb.Task:
    msg = pb.Task(version=TICKET_VERSION, dataset=t.dataset, format=t.format, kind=t.kind,
                  read_schema=ticket_schema(t.read_schema).serialize().to_pybytes(), columns=list(t.columns), where=t.where,
                  with_entry_numbers=t.with_entry_numbers, channel_column=t.channel_column or "", cast=t.cast,
                  batch_rows=t.batch_rows, batch_bytes=t.batch_bytes, chunk_rows=t.chunk_rows,
                  principal=t.principal, expires=t.expires, time_scale=t.time_scale, time_rate=t.time_rate,
                  compression=t.compression, request_id=t.request_id, level=t.level, hit_where=t.hit_where,
                  mode=t.mode, orientation=t.orientation, tcm_layout=t.tcm_layout, drop_empty=t.drop_empty,
                  growing=t.growing)
    msg.level_columns.extend(pb.LevelColumn(column=c.column, tier=c.tier, source=c.source, role=c.role)
                             for c in t.level_columns)
    slices_to_message(t.slices, msg.slices)
    return msg


class TicketSigner:
    """Signs tasks into tickets and opens them again; one key per deployment (or per process)."""

    def __init__(self, key: bytes | None, ttl: float):  # ttl: Settings.ticket_ttl
        self.key = key or secrets.token_bytes(32)
        self.ttl = float(ttl)

    def sign(self, tasks: Sequence[ReadTask]) -> list[bytes]:
        """Tickets for tasks that share everything but their parts (one request's endpoints)."""
        if not tasks:
            return []
        shared = _shared_message(tasks[0]).SerializeToString(deterministic=True)
        out = []
        for t in tasks:
            body = shared + pb.Task(parts=[_part_message(p) for p in t.parts]).SerializeToString(deterministic=True)
            out.append(body + _SIG_PREFIX + hmac.digest(self.key, body, "sha256"))
        return out

    def expiry(self) -> float:
        """Expiry time for tickets issued now."""
        return time.time() + self.ttl if self.ttl > 0 else 0.0

    def open(self, data: bytes, now: float | None = None) -> ReadTask:
        """Verify signature and expiry, then decode. InvalidRequest says what is wrong."""
        if len(data) <= _SIGNED_TAIL or data[-_SIGNED_TAIL:-32] != _SIG_PREFIX:
            raise InvalidRequest("ticket: malformed or unsigned; use a ticket from get_flight_info unchanged")
        if not hmac.compare_digest(data[-32:], hmac.digest(self.key, data[:-_SIGNED_TAIL], "sha256")):
            raise InvalidRequest("ticket: signature does not match; tickets are valid only, unaltered, on the "
                                 "servers that share the key of the server that issued them")
        msg = pb.Task()
        try:
            msg.ParseFromString(data)
        except DecodeError:
            raise InvalidRequest("ticket: malformed; use a ticket from get_flight_info unchanged") from None
        if msg.version != TICKET_VERSION:
            raise InvalidRequest(f"ticket: version {msg.version} is not supported (this server writes "
                                 f"{TICKET_VERSION}); ask for a new FlightInfo")
        now = time.time() if now is None else now
        if msg.expires and now > msg.expires:
            ago = now - msg.expires
            raise InvalidRequest(f"ticket: expired {ago:.0f} s ago (tickets are valid for {self.ttl:g} s); "
                                 "ask for a new FlightInfo")
        try:
            schema = _schema(msg.read_schema)
        except (pa.ArrowInvalid, OSError):
            raise InvalidRequest("ticket: malformed schema; use a ticket from get_flight_info unchanged") from None
        parts = tuple(PartRead(p.path, p.size, p.mtime, p.object_path, p.entry_offset, p.start, p.stop,
                               tuple(p.boundaries), p.channel if p.HasField("channel") else None, tuple(p.absent),
                               p.time0, p.time0_ns, p.fill, tuple(_tier(t) for t in p.tiers))
                      for p in msg.parts)
        for p in parts:
            if not 0 <= p.start <= p.stop or p.fill < 0 or (p.fill and p.stop - p.start != p.fill):
                raise InvalidRequest("ticket: bad entry range")
        if msg.time_scale not in ("", "gps", "utc") or (msg.time_scale and not msg.time_rate > 0):
            raise InvalidRequest("ticket: bad time scale")
        if msg.compression not in COMPRESSIONS:
            raise InvalidRequest("ticket: unknown compression; ask for a new FlightInfo")
        if msg.level not in ("", "hit", "event") or msg.mode not in ("", "any", "only") \
                or msg.orientation not in ("", "hit"):
            raise InvalidRequest("ticket: unknown level read; ask for a new FlightInfo")
        return ReadTask(dataset=msg.dataset, format=msg.format, kind=msg.kind, read_schema=schema,
                        columns=tuple(msg.columns), parts=parts, where=msg.where,
                        slices=slices_from_message(msg.slices), with_entry_numbers=msg.with_entry_numbers,
                        channel_column=msg.channel_column or None, cast=msg.cast, batch_rows=msg.batch_rows,
                        batch_bytes=msg.batch_bytes, chunk_rows=msg.chunk_rows, principal=msg.principal,
                        expires=msg.expires, time_scale=msg.time_scale, time_rate=msg.time_rate,
                        compression=msg.compression, request_id=msg.request_id[:64], level=msg.level,
                        level_columns=tuple(LevelColumn(c.column, c.tier, c.source, c.role) for c in msg.level_columns),
                        hit_where=msg.hit_where, mode=msg.mode, orientation=msg.orientation,
                        tcm_layout=msg.tcm_layout, drop_empty=msg.drop_empty, growing=msg.growing)
