"""The one read path: every door streams a task through :meth:`Reads.stream`.

Flight DoGet on a coordinator or a data node, HTTP downloads and plots, Flight SQL scans and
skims all come here, so they share the ticket and file-identity checks (fill parts of time reads
included), the stream slots and idle timeout, cancellation, the served counters and the call
record behind the access-log line. The door only chooses how batches travel (gRPC with the
task's IPC compression, an HTTP body, a DuckDB scan).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from arrowroot.flight_server.core.errors import FileChanged, NotFound
from arrowroot.flight_server.core.task import ReadTask
from arrowroot.flight_server.execute.executor import Execution, Held, StreamStats, stream_task
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.counters import Counters
from arrowroot.flight_server.service.streams import Stream, StreamSlots
from arrowroot.flight_server.service.tickets import TicketSigner

Item = pa.RecordBatch | tuple[pa.RecordBatch, bytes]


@dataclass(frozen=True)
class OpenRead:
    """A verified task, its cut compiled: ready to stream (its schema is known before the first batch)."""

    task: ReadTask
    execution: Execution

    @property
    def schema(self) -> pa.Schema:
        return self.execution.schema


def _never() -> bool:
    return False


class Reads:
    """Opens tickets and streams tasks, for one process (coordinator or data node)."""

    def __init__(self, tickets: TicketSigner, readers: ReaderCache, streams: StreamSlots, served: Counters,
                 *, bind_principal: bool = True, on_changed: Callable[[str], None] | None = None):
        self.tickets = tickets
        self.readers = readers
        self.streams = streams
        self.served = served
        #: coordinator: a ticket is good only for the user it was issued to; a data node cannot
        #: authenticate users, so there a ticket is a capability (signed, expiring)
        self.bind_principal = bind_principal
        self.on_changed = on_changed

    def open(self, ticket: bytes, caller: Caller) -> OpenRead:
        """Verify a ticket (signature, expiry, owner) and that its files are the ones planned."""
        task = self.tickets.open(ticket)
        if self.bind_principal and task.principal != caller.principal:
            raise NotFound("ticket: issued to another user; ask for your own FlightInfo")
        return self.prepare(task)

    def prepare(self, task: ReadTask) -> OpenRead:
        """Check a task planned in this process (or opened from a ticket) and compile its cut."""
        try:
            for part in task.parts:
                if not part.fill:  # filled gaps of time reads read no file
                    self.readers.check(part, task.growing)
                for tier in {t.path: t for t in part.tiers if t.path != part.path}.values():
                    self.readers.check(tier.part())  # a level's other tier files
        except FileChanged as exc:
            self._changed(exc)
            raise
        return OpenRead(task, Execution(task))

    def _changed(self, exc: FileChanged) -> None:
        if self.on_changed is not None:
            self.on_changed(exc.path)

    def stream(self, read: OpenRead, record: CallRecord | None = None,
               cancelled: Callable[[], bool] = _never,
               on_expired: Callable[[], None] | None = None, read_ahead: bool = True,
               slot: Stream | None = None) -> Iterator[Item]:
        """The batches of one task (with cut metadata when it has a cut), under a stream slot.

        The slot is taken when the first batch is asked for (a stream never started holds
        nothing) and released exactly once however the stream ends; a stream whose client reads
        nothing for ``stream_idle_timeout`` is ended by the slots' reaper (TimedOut), which
        also calls ``on_expired`` (the door's way to free what waits on the client).
        ``read_ahead=False`` reads in the caller's thread (the HTTP door's bounded pool). A follow
        stream (``follow.py``) passes the one ``slot`` it holds for its whole life."""
        task, ex = read.task, read.execution
        stats = StreamStats()
        if record is not None:
            record.dataset = record.dataset or task.dataset
            record.request_id = task.request_id or record.request_id
        own_slot = slot is None
        slot = self.streams.acquire(task.principal) if slot is None else slot
        if on_expired is not None:
            slot.when_expired(on_expired)
        held = Held()
        slot.when_quiet(held.drop)  # a quiet client's read-ahead and chunk are let go
        stopped = slot.cancelled
        batches = stream_task(task, self.readers, stats, ex, cancelled=lambda: cancelled() or stopped(),
                              read_ahead=read_ahead, held=held)
        try:
            while True:
                slot.pulling()
                try:
                    item = next(batches)
                except StopIteration:
                    break
                slot.waiting()
                if record is not None:
                    record.rows, record.bytes = stats.rows, stats.bytes
                yield item
        except FileChanged as exc:
            self._changed(exc)
            raise
        finally:
            batches.close()
            if own_slot:
                slot.release()
            else:
                slot.forget_quiet(held.drop)
            if record is not None:
                record.rows, record.bytes = stats.rows, stats.bytes
            self.served.add(task.dataset, requests=1, rows=stats.rows, bytes=stats.bytes,
                            cut_requests=int(ex.cut is not None),
                            entries_scanned=stats.entries_scanned if ex.cut is not None else 0,
                            entries_passed=stats.entries_passed if ex.cut is not None else 0)

    def run(self, tasks: list[ReadTask], record: CallRecord | None = None,
            cancelled: Callable[[], bool] = _never,
            on_expired: Callable[[], None] | None = None, read_ahead: bool = True) -> Iterator[pa.RecordBatch]:
        """Every batch of tasks planned in this process, in order (HTTP, SQL scans, skims):
        the same checks and limits as a DoGet, empty batches and cut metadata dropped."""
        for task in tasks:
            read = self.prepare(task)
            for item in self.stream(read, record, cancelled, on_expired, read_ahead):
                batch = item[0] if isinstance(item, tuple) else item
                if batch.num_rows:
                    yield batch


__all__ = ["Reads", "OpenRead"]
