"""Follow a dataset: stream what matches now, then each new entry as the indexer adds it.

A follow is a read (``ReadRequest.follow``) whose GetFlightInfo answers one endpoint on the
coordinator: a signed *follow ticket* carrying the request. Its DoGet runs :meth:`Follows.run`:
plan the request against the catalog, send the tasks whose entries the follower has not had,
wait for the indexer to change the catalog (``Indexer.wait_change``), plan again — the same
planner, so the same columns, cut, slices, file filters and time range — and so on. While
nothing comes, an empty batch with ``{"heartbeat": ...}`` is sent every ``follow_heartbeat`` s.

**Data or tickets.** Without data nodes the coordinator runs each new task itself through the one
read path (``reads.py``: same checks, same slot). With live data nodes it sends each new task as
an *endpoint* instead — an empty batch whose app_metadata holds the signed ticket and its node
locations — and the client fetches it there, as it does a FlightInfo's endpoints: the data of a
popular live channel leaves from the node that owns (and caches) its chunks, once per follower,
and the coordinator only plans. Tasks are marked ``growing``: a file appended to after planning
is read as of its planned entries.

**Position.** Every message carries ``{"resume": TOKEN}``. The server keeps, per part (file,
object, channel), the local entry up to which everything was sent. The token compresses that:
a *watermark* in the dataset's order (every part before it was sent in full), the exact counts of
the parts from there on (at least those of the newest file, which may still grow), and the rows
already sent of a part in progress. A new follow with ``resume=TOKEN`` continues exactly there —
after a reconnect or a server restart (the token holds no server state). While a stream is open,
late files and growth anywhere are sent; after a resume, files older than the watermark that
appeared or grew while nobody followed are not (the newest file's growth is).

**Bounds.** A follow holds one stream slot (the server's and the user's caps) for its life, and a
follow count of its own (``max_follows``). Nothing is buffered for a follower: batches are read
when the client pulls them; one that stops pulling fills gRPC's window and is dropped after
``stream_idle_timeout`` with DEADLINE_EXCEEDED, and resumes with its last token.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from google.protobuf.message import DecodeError

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import (FileChanged, InvalidRequest, NotFound, ResourceExhausted, TimedOut,
                                                Unavailable, Unimplemented)
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.core.task import PartRead, ReadTask
from arrowroot.flight_server.datasets.config import ATTR_KEYS
from arrowroot.flight_server.datasets.derive import natural_key
from arrowroot.flight_server.plan.planner import Plan
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.membership import locations_for
from arrowroot.flight_server.service.requests import decode_command
from arrowroot.flight_server.service.streams import Stream
from arrowroot.protos import arrowroot_pb2 as pb

log = logging.getLogger("arrowroot.follow")

PREFIX = b"\xffarrowroot-follow\x00"
TICKET_VERSION = 1
TOKEN_VERSION = 1
MAX_TOKEN_BYTES = 1 << 20
Key = tuple[str, str, str | None]


def part_key(p: PartRead) -> Key:
    return (p.path, p.object_path, p.channel)


def order_keys(rec: DatasetRecord) -> dict[Key, list]:
    """Each part's place in the dataset's order, as a JSON-able list that compares like the order
    ``datasets/derive.py`` builds (file keys in template order, then path, then channel)."""
    fields = list(rec.attributes.get(ATTR_KEYS) or {}) if rec.origin == "declared" else []
    out: dict[Key, list] = {}
    for p in rec.parts:
        keys = [[p.keys.get(f) is None, p.keys.get(f) if p.keys.get(f) is not None else 0] for f in fields]
        out[(p.path, p.object_path, p.channel)] = [keys, [list(t) for t in natural_key(p.path)],
                                                   [list(t) for t in natural_key(p.channel or "")]]
    return out


def _before(a: list, b: list | None) -> bool:
    if b is None:
        return False
    try:
        return a < b
    except TypeError:  # keys of another type than the token's: never skip on a guess
        return False


# ---------------------------------------------------------------- resume tokens


@dataclass(frozen=True)
class Token:
    dataset: str
    watermark: list | None = None               # every part ordered before it was sent in full
    counts: dict[Key, int] = dataclasses.field(default_factory=dict)  # local entries sent, per part
    skip: tuple[Key, int] | None = None         # rows of this part's next task already sent

    def encode(self) -> str:
        body = {"v": TOKEN_VERSION, "d": self.dataset, "w": self.watermark,
                "c": [[k[0], k[1], k[2], n] for k, n in self.counts.items()]}
        if self.skip is not None:
            k, n = self.skip
            body["s"] = [k[0], k[1], k[2], n]
        raw = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, dataset: str) -> Token:
        """A token as a stream sent it, or ``TOKEN~ROWS``: ROWS more rows of its part in progress."""
        text, _, extra = text.strip().partition("~")
        try:
            more = int(extra) if extra else 0
            if more < 0:
                raise ValueError("rows")
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            inflater = zlib.decompressobj()
            data = inflater.decompress(raw, MAX_TOKEN_BYTES)
            if inflater.unconsumed_tail:
                raise ValueError("too large")
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("v") != TOKEN_VERSION:
                raise ValueError("version")
            counts = {(str(c[0]), str(c[1]), None if c[2] is None else str(c[2])): int(c[3]) for c in body["c"]}
            skip = body.get("s")
            skip_at = ((str(skip[0]), str(skip[1]), None if skip[2] is None else str(skip[2])), int(skip[3]) + more) \
                if skip else None
            if more and skip_at is None:
                raise ValueError("rows without a part in progress")
            watermark = body.get("w")
            if watermark is not None and not isinstance(watermark, list):
                raise ValueError("watermark")
            token = cls(str(body["d"]), watermark, counts, skip_at)
        except (ValueError, KeyError, IndexError, TypeError, zlib.error) as exc:
            raise InvalidRequest(f"resume: not a resume token of a follow stream ({type(exc).__name__}); use the "
                                 "last 'resume' value a follow stream sent, unchanged") from None
        if token.dataset != dataset:
            raise InvalidRequest(f"resume: the token is for {token.dataset!r}, not {dataset!r}")
        return token


# ---------------------------------------------------------------- the follower's position


@dataclass
class _Entry:
    order: list
    key: Key
    stop: int


class Cursor:
    """Exactly what one follow stream has sent (per part, the local entry up to which everything
    went), the new tasks of each plan, and the compact token of that position."""

    def __init__(self, dataset: str, token: Token | None = None):
        self.dataset = dataset
        self.token_in = token
        self.done: dict[Key, int] = {}
        self.skip: tuple[Key, int] | None = token.skip if token else None
        self.watermark: list | None = token.watermark if token else None
        self.cycles = 0
        self._order: list[_Entry] = []
        self._okeys: dict[Key, list] = {}
        self._i = 0            # first part, in order, not sent in full
        self._last_file = 0    # first part of the newest file in order
        self._ahead: dict[Key, int] = {}

    def new_tasks(self, plan: Plan, mark_before: bool = False) -> list[ReadTask]:
        """The tasks of ``plan`` carrying entries not yet sent (parts cut to the new range).

        ``mark_before`` (the first plan of a follow with an entry range): the parts ordered before the
        first planned entry, and the entries of its part before it, count as sent."""
        okeys = order_keys(plan.dataset)
        stops: dict[Key, int] = {}
        firsts: dict[Key, int] = {}
        for task in plan.tasks:
            p = task.parts[0]
            if p.fill:
                continue
            k = part_key(p)
            stops[k] = max(stops.get(k, 0), p.stop)
            firsts.setdefault(k, p.start)
        if self.cycles == 0:
            self._start(plan, okeys, stops, firsts, mark_before)
        self.cycles += 1
        self._okeys = okeys
        self._order = sorted((_Entry(okeys[k], k, s) for k, s in stops.items() if k in okeys),
                             key=lambda e: e.order)
        self._i = 0
        last_path = self._order[-1].key[0] if self._order else None
        self._last_file = next((i for i, e in enumerate(self._order) if e.key[0] == last_path), 0)
        self._move_watermark(rebuild=True)
        out = []
        for task in plan.tasks:
            p = task.parts[0]
            if p.fill:
                continue
            a = max(p.start, self.done.get(part_key(p), 0))
            if a >= p.stop:
                continue
            part = p if a == p.start else dataclasses.replace(
                p, start=a, boundaries=tuple(b for b in p.boundaries if a < b < p.stop))
            out.append(dataclasses.replace(task.with_parts((part,)), growing=True))
        return out

    def _start(self, plan: Plan, okeys: dict[Key, list], stops: dict[Key, int], firsts: dict[Key, int],
               mark_before: bool) -> None:
        token = self.token_in
        if token is not None:
            for k, stop in stops.items():
                if k in token.counts:
                    self.done[k] = token.counts[k]
                elif _before(okeys[k], token.watermark):
                    self.done[k] = stop
            for k, n in token.counts.items():   # parts not in this plan yet keep their counts
                self.done.setdefault(k, n)
            return
        if not mark_before:
            return
        if not plan.tasks:  # the range starts at the end: only what comes from now on
            for p in plan.dataset.parts:
                self.done[(p.path, p.object_path, p.channel)] = p.entries
            return
        first = part_key(plan.tasks[0].parts[0])
        for p in plan.dataset.parts:
            k = (p.path, p.object_path, p.channel)
            if k != first and _before(okeys[k], okeys[first]):
                self.done[k] = p.entries
        self.done[first] = firsts[first]

    def _move_watermark(self, rebuild: bool = False) -> None:
        order = self._order
        moved = rebuild
        while self._i < len(order) and self.done.get(order[self._i].key, 0) >= order[self._i].stop:
            self._i += 1
            moved = True
        if not order:
            return
        w = order[min(self._i, self._last_file)].order
        if w != self.watermark:
            self.watermark, moved = w, True
        if rebuild:
            self._ahead = {k: n for k, n in self.done.items() if k in self._okeys
                           and not _before(self._okeys[k], self.watermark)}
        elif moved:
            self._ahead = {k: n for k, n in self._ahead.items() if not _before(self._okeys[k], self.watermark)}

    def sent(self, task: ReadTask) -> None:
        """All of ``task`` reached the follower."""
        p = task.parts[0]
        k = part_key(p)
        self.done[k] = max(self.done.get(k, 0), p.stop)
        if self.skip is not None and self.skip[0] == k:
            self.skip = None
        if k in self._okeys and not _before(self._okeys[k], self.watermark):
            self._ahead[k] = self.done[k]
        self._move_watermark()

    def take_skip(self, task: ReadTask) -> int:
        """Rows of ``task`` a resumed follower already has (its interrupted part's)."""
        p = task.parts[0]
        if self.skip is not None and self.skip[0] == part_key(p):
            return self.skip[1]
        return 0

    def token(self, task: ReadTask | None = None, rows: int = 0) -> str:
        """The resume token now; ``rows`` of ``task`` were sent beyond it (a client fetching ``task`` from
        a data node adds its own count as ``TOKEN~ROWS``)."""
        skip = (part_key(task.parts[0]), rows) if task is not None else None
        counts = dict(self._ahead)
        if task is not None:  # the part in progress: its count as it was before the task
            k = part_key(task.parts[0])
            if k in self.done:
                counts[k] = self.done[k]
        return Token(self.dataset, self.watermark, counts, skip).encode()


# ---------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Message:
    """One message of a follow stream: a batch (empty for heartbeats and endpoints) and its
    app_metadata (always ``resume``; ``heartbeat`` or ``endpoint`` when there is no data)."""

    batch: pa.RecordBatch
    meta: dict[str, Any]

    def metadata(self) -> bytes:
        return json.dumps(self.meta, separators=(",", ":")).encode()


@dataclass(frozen=True)
class FollowRead:
    """A follow ticket, verified: the request, and the schema its stream carries."""

    spec: ReadSpec
    schema: pa.Schema
    request_id: str


def check_spec(spec: ReadSpec) -> None:
    """What a follow cannot be combined with (the request decoder checks the rest)."""
    bad = [name for name, on in (("entry_stop", spec.entry_stop is not None), ("time_stop", spec.time_stop is not None),
                                 ("fill_gaps", spec.fill_gaps), ("dq", bool(spec.dq))) if on]
    if bad:
        raise InvalidRequest(f"follow: a follow stream keeps going at the end of the data; it cannot be combined "
                             f"with {', '.join(bad)}")


class Follows:
    """Follow tickets and follow streams of one coordinator."""

    def __init__(self, service: Any):
        self.service = service   # service.Service (which builds this; typed loosely: no import cycle)
        ctx = service.ctx
        self.key = ctx.keys.key("follow")
        self.heartbeat = max(0.05, float(ctx.settings.follow_heartbeat))
        self.limit = int(ctx.settings.max_follows)
        self.open = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End every follow stream (the server stops): each ends with Unavailable within ~0.25 s, and its
        client resumes with its token elsewhere or later. New follows are refused."""
        self._stopped.set()
        indexer = self.service.ctx.indexer
        if indexer is not None:
            indexer.wake()

    @staticmethod
    def claims(ticket: bytes) -> bool:
        return ticket.startswith(PREFIX)

    def _catalog(self) -> None:
        if self.service.ctx.catalog is None or self.service.ctx.indexer is None:
            raise Unimplemented("follow: a data node serves the tickets a follow stream hands out; follow on the "
                                "coordinator")

    @staticmethod
    def _first_spec(spec: ReadSpec) -> ReadSpec:
        if spec.resume:
            return dataclasses.replace(spec, entry_start=None, follow=False, resume="")
        return dataclasses.replace(spec, follow=False, resume="")

    def plan(self, caller: Caller, spec: ReadSpec, command: bytes) -> tuple[Plan, bytes]:
        """GetFlightInfo of a follow: what matches now (checked as any read is) and the follow ticket."""
        self._catalog()
        check_spec(spec)
        if spec.resume:
            Token.decode(spec.resume, spec.dataset)
        plan = self.service.plan(caller, self._first_spec(spec))
        msg = pb.FollowTicket(version=TICKET_VERSION, request=command, principal=caller.principal,
                              expires=self.service.ctx.tickets.expiry(), request_id=caller.request_id)
        body = PREFIX + msg.SerializeToString()
        return plan, body + hmac.digest(self.key, body, "sha256")

    def open_ticket(self, caller: Caller, ticket: bytes) -> FollowRead:
        """Verify a follow ticket (signature, expiry, owner) and plan its schema."""
        self._catalog()
        body, sig = ticket[:-32], ticket[-32:]
        if len(ticket) <= len(PREFIX) + 32 or not hmac.compare_digest(sig, hmac.digest(self.key, body, "sha256")):
            raise InvalidRequest("ticket: a follow ticket that does not match; use the ticket of the follow "
                                 "FlightInfo unchanged, on the server that issued it")
        msg = pb.FollowTicket()
        try:
            msg.ParseFromString(body[len(PREFIX):])
        except DecodeError:
            raise InvalidRequest("ticket: malformed follow ticket") from None
        if msg.version != TICKET_VERSION:
            raise InvalidRequest("ticket: follow ticket version not supported; ask for a new FlightInfo")
        if msg.expires and time.time() > msg.expires:
            raise InvalidRequest("ticket: the follow ticket expired; ask for a new FlightInfo (with resume=TOKEN "
                                 "to continue)")
        if msg.principal != caller.principal:
            raise NotFound("ticket: issued to another user; ask for your own FlightInfo")
        spec = decode_command(msg.request)
        plan = self.service.plan(caller, self._first_spec(spec))
        return FollowRead(spec, plan.schema, msg.request_id[:64])

    def open_spec(self, caller: Caller, spec: ReadSpec) -> FollowRead:
        """A follow asked for without a ticket (HTTP): checked and planned as GetFlightInfo does."""
        self._catalog()
        check_spec(spec)
        if spec.resume:
            Token.decode(spec.resume, spec.dataset)
        plan = self.service.plan(caller, self._first_spec(spec))
        return FollowRead(spec, plan.schema, caller.request_id)

    def run(self, caller: Caller, read: FollowRead, record: CallRecord | None = None,
            cancelled: Callable[[], bool] | None = None, endpoints: bool = True) -> Iterator[Message]:
        """The follow stream (see the module docstring). ``endpoints``: hand new tasks out as endpoints
        when data nodes are live (Flight); False runs every task here (HTTP)."""
        self._catalog()
        ctx = self.service.ctx
        with self._lock:
            if self._stopped.is_set():
                raise Unavailable("shutting down: this server takes no new follow streams; follow again (with "
                                  "the resume token) once it is back")
            if self.open >= self.limit:
                raise ResourceExhausted(f"{self.open} follow streams are open, the server's limit; retry shortly")
            self.open += 1
        try:
            slot = ctx.streams.acquire(caller.principal)
        except BaseException:
            with self._lock:
                self.open -= 1
            raise
        try:
            yield from self._run(caller, read, record, cancelled or (lambda: False), endpoints, slot)
        except TimedOut:
            raise TimedOut(f"follow: the client read nothing for {ctx.streams.idle_s:g} s; a slow follower is "
                           "dropped rather than buffered — follow again with the last resume token") from None
        finally:
            slot.release()
            with self._lock:
                self.open -= 1

    def _run(self, caller: Caller, read: FollowRead, record: CallRecord | None, cancelled: Callable[[], bool],
             endpoints: bool, slot: Stream) -> Iterator[Message]:
        ctx = self.service.ctx
        indexer, catalog = ctx.indexer, ctx.catalog
        assert indexer is not None and catalog is not None
        spec = read.spec
        token = Token.decode(spec.resume, spec.dataset) if spec.resume else None
        cursor = Cursor(spec.dataset, token)
        first_spec = self._first_spec(spec)
        later_spec = dataclasses.replace(first_spec, entry_start=None)
        mark = spec.entry_start is not None and token is None
        empty = pa.RecordBatch.from_pylist([], schema=read.schema)
        seen: tuple[int, int] | None = None
        beat = time.monotonic() + self.heartbeat
        missing = False
        while True:
            slot.pulling()  # raises when the reaper or a drain ended the stream
            if cancelled():
                return
            if self._stopped.is_set():
                raise Unavailable("shutting down: the server stopped this follow stream; follow again with the "
                                  "last resume token (another server, or this one once it is back)")
            now_seen = (indexer.version, catalog.generation)
            if now_seen != seen:
                seen = now_seen
                try:
                    plan = self.service.plan(caller, first_spec if cursor.cycles == 0 else later_spec)
                except NotFound:
                    if cursor.cycles == 0:
                        raise
                    missing = True   # all its files gone (for now): keep following, say so in heartbeats
                    plan = None
                if plan is not None:
                    missing = False
                    if not plan.schema.remove_metadata().equals(read.schema.remove_metadata()):
                        raise InvalidRequest("follow: the dataset's columns changed (a new file brought other "
                                             "types); follow again to get the new schema")
                    tasks = cursor.new_tasks(plan, mark_before=mark)
                    placement = ctx.membership.placement() if endpoints and ctx.membership is not None else None
                    for task in tasks:
                        if placement is not None and len(placement):
                            yield from self._endpoint(task, cursor, placement, empty, slot)
                        else:
                            try:
                                yield from self._data(task, cursor, record, cancelled, slot)
                            except FileChanged as exc:  # deleted or rewritten meanwhile: plan again after it
                                log.info("follow %s: %s; waiting for the index", spec.dataset, exc)
                                seen = None
                                break
                        beat = time.monotonic() + self.heartbeat
                    if tasks:
                        continue  # more may have come meanwhile
            now = time.monotonic()
            if now >= beat:
                meta: dict[str, Any] = {"heartbeat": round(time.time(), 3), "resume": cursor.token()}
                if missing:
                    meta["missing"] = True
                slot.waiting()
                yield Message(empty, meta)
                beat = time.monotonic() + self.heartbeat
                continue
            if seen is None:  # a read failed on a changing file: wait for the indexer, not in a loop
                indexer.wait_change(indexer.version, min(0.25, beat - now))
                seen = (-1, -1)
                continue
            indexer.wait_change(seen[0], min(0.25, beat - now))

    def _data(self, task: ReadTask, cursor: Cursor, record: CallRecord | None, cancelled: Callable[[], bool],
              slot: Stream) -> Iterator[Message]:
        reads = self.service.reads
        opened = reads.prepare(task)
        skip = cursor.take_skip(task)
        rows = skip
        for item in reads.stream(opened, None, cancelled, slot=slot):
            batch = item[0] if isinstance(item, tuple) else item
            if not batch.num_rows:
                continue
            if skip:
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            rows += batch.num_rows
            if record is not None:
                record.add(batch.num_rows, batch.nbytes)
            yield Message(batch, {"resume": cursor.token(task, rows)})
        cursor.sent(task)

    def _endpoint(self, task: ReadTask, cursor: Cursor, placement: Any, empty: pa.RecordBatch,
                  slot: Stream) -> Iterator[Message]:
        ctx = self.service.ctx
        task = dataclasses.replace(task, expires=ctx.tickets.expiry())
        ticket = ctx.tickets.sign([task])[0]
        skip = cursor.take_skip(task)
        before = cursor.token(task, skip)   # the client appends ~ROWS while it fetches the endpoint
        cursor.sent(task)
        meta = {"endpoint": {"ticket": base64.b64encode(ticket).decode(), "locations": locations_for(task, placement),
                             "entries": task.entries, "skip": skip, "resume": before},
                "resume": cursor.token()}
        slot.waiting()
        yield Message(empty, meta)


__all__ = ["Follows", "FollowRead", "Message", "Cursor", "Token", "check_spec", "PREFIX"]
