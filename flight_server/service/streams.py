"""Open streams — reads (DoGet, data nodes, HTTP downloads) and uploads (DoPut, SQL ingest) —
under one cap per principal, one in total, and one idle timeout.

Each held-open stream costs memory (a chunk read ahead, a batch in gRPC) and a thread; 32
clients that opened streams and read nothing held 1.67 GB. A stream takes a slot when it
starts (a read: its first batch; an upload: its first message) and gives it back when it ends.
A stream whose client has not acted for ``idle_s`` (read nothing, or sent nothing) is timed out
by a reaper thread: its read-ahead stops (the chunk it held is dropped), its slot is freed, the
door's ``when_expired`` callbacks run (the Flight doors cut the client's connection, which
frees the gRPC thread blocked on it; an upload deletes its temporary file), and its next step
raises TimedOut.

Stopping the server drains them (``server/drain.py``): ``drain()`` refuses new streams, open
ones go on until ``stop_all()`` at the deadline, after which each one's next pull raises
Unavailable "shutting down" and its read-ahead stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from arrowroot.flight_server.core.errors import ResourceExhausted, TimedOut, Unavailable
from arrowroot.flight_server.service.allocator import give_back

__all__ = ["StreamSlots", "Stream"]

log = logging.getLogger("arrowroot")


class Stream:
    """One open stream's slot: touch it on every pull; ``expired`` says the reaper ended it."""

    def __init__(self, owner: StreamSlots, principal: str, upload: bool = False) -> None:
        self.owner, self.principal, self.upload = owner, principal, upload
        self.last = time.monotonic()
        self.busy = True       # the server is working on the next batch: never idle then
        self.expired = False
        self.stopped = False   # cut at the drain deadline
        self.released = False
        self.parked = False    # the client has been quiet for park_s: what it held was let go
        self._on_expire: list[Callable[[], None]] = []
        self._on_park: list[Callable[[], None]] = []

    def when_expired(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (in the reaper's thread) if the stream is ever timed out."""
        self._on_expire.append(fn)

    def when_quiet(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (in the reaper's thread) each time the client goes quiet for ``park_s``: the
        stream lets go of what it holds for it (executor.Held.drop)."""
        self._on_park.append(fn)

    def forget_quiet(self, fn: Callable[[], None]) -> None:
        """Drop a ``when_quiet`` callback: a follow stream's slot outlives each task read under it."""
        try:
            self._on_park.remove(fn)
        except ValueError:
            pass

    def pulling(self) -> None:
        """The client asked for the next batch (an upload: the client's next message arrived)."""
        if self.stopped:
            raise Unavailable("shutting down: the server stopped before this stream ended; read the rest "
                              "again (from another server, or once it is back)")
        with self.owner._lock:  # either this or the reaper wins: never a timed-out stream at work
            if not self.expired:
                self.busy = True
                self.parked = False
                return
        if self.upload:
            raise TimedOut(f"upload idle for more than {self.owner.idle_s:g} s (the client sent nothing); "
                           "nothing was stored")
        raise TimedOut(f"stream idle for more than {self.owner.idle_s:g} s (the client read nothing); "
                       "ask for the ticket again")

    def waiting(self) -> None:
        """A batch was handed over (an upload: the server waits for the next); the client acts next."""
        with self.owner._lock:
            self.busy = False
            self.last = time.monotonic()

    def cancelled(self) -> bool:
        """For the read-ahead thread: stop reading once the stream is timed out or cut."""
        return self.expired or self.stopped

    def _park(self) -> None:
        for fn in list(self._on_park):
            try:
                fn()
            except Exception:  # a callback's failure must not stop the reaper
                log.exception("stream parking: a clean-up step failed")

    def _expire(self) -> None:
        self.owner._release(self)
        for fn in self._on_expire:
            try:
                fn()
            except Exception:  # a callback's failure must not stop the reaper
                log.exception("stream timeout: a clean-up step failed")

    def release(self) -> None:
        self.owner._release(self)


class StreamSlots:
    def __init__(self, total: int, per_principal: int, idle_s: float, park_s: float | None = None) -> None:
        self.total, self.per_principal, self.idle_s = total, per_principal, idle_s
        #: a client quiet this long has what its stream holds let go (read again if it comes back)
        self.park_s = park_s if park_s is not None else min(5.0, idle_s / 4)
        self._open: set[Stream] = set()
        self._by_principal: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last stream ends
        self._reaper: threading.Thread | None = None
        self._freed = False   # a stream ended or let go of its chunks since the reaper last gave memory back
        self.draining = False
        # counters for the metrics (server/metrics.py)
        self.refused = {"server_limit": 0, "user_limit": 0, "draining": 0}
        self.timed_out = 0
        self.stopped = 0

    def acquire(self, principal: str, upload: bool = False) -> Stream:
        with self._lock:
            if self.draining:
                self.refused["draining"] += 1
                raise Unavailable("shutting down: this server takes no new streams; ask again (another "
                                  "server, or this one once it is back)")
            if len(self._open) >= self.total:
                self.refused["server_limit"] += 1
                raise ResourceExhausted(f"the server is sending {len(self._open)} streams, its limit; "
                                        "retry shortly")
            # anonymous callers (auth off, or public data) are one principal for everybody:
            # only the total bounds them, or 16 anonymous clients would lock out the rest
            if principal and self._by_principal[principal] >= self.per_principal:
                self.refused["user_limit"] += 1
                raise ResourceExhausted(f"{self._by_principal[principal]} streams are open for this user "
                                        f"(the limit is {self.per_principal}); read or close them first")
            stream = Stream(self, principal, upload)
            self._open.add(stream)
            self._by_principal[principal] += 1
            if self._reaper is None and self.idle_s > 0:
                self._reaper = threading.Thread(target=self._reap, name="stream-reaper", daemon=True)
                self._reaper.start()
            return stream

    def _release(self, stream: Stream) -> None:
        with self._lock:
            if stream.released:
                return
            stream.released = True
            self._freed = True
            self._open.discard(stream)
            self._by_principal[stream.principal] -= 1
            if self._by_principal[stream.principal] <= 0:
                del self._by_principal[stream.principal]
            if not self._open:
                self._idle.notify_all()

    def open_count(self, principal: str | None = None) -> int:
        with self._lock:
            return len(self._open) if principal is None else self._by_principal[principal]

    def snapshot(self) -> dict:
        """Counts for the metrics: open streams, users holding them, refusals, time-outs."""
        with self._lock:
            return {"open": len(self._open), "users": len(self._by_principal),
                    "per_user_max": max(self._by_principal.values(), default=0),
                    "refused": dict(self.refused), "timed_out": self.timed_out, "stopped": self.stopped}

    # ------------------------------------------------------------ draining

    def drain(self) -> None:
        """Take no new streams; open ones go on."""
        with self._lock:
            self.draining = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no stream is open (True) or ``timeout`` seconds passed (False)."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._open, timeout)

    def stop_all(self) -> int:
        """Cut every open stream: its next pull raises Unavailable, its read-ahead stops.
        Returns how many were cut."""
        with self._lock:
            streams = list(self._open)
            self.stopped += len(streams)
        for s in streams:
            s.stopped = True
        return len(streams)

    def _reap(self) -> None:
        while True:
            time.sleep(min(1.0, max(min(self.idle_s, self.park_s) / 4, 0.05)))
            now = time.monotonic()
            with self._lock:
                idle = [s for s in self._open if not s.busy and now - s.last > self.idle_s]
                quiet = [s for s in self._open if not s.busy and not s.parked and now - s.last > self.park_s]
                for s in quiet:
                    s.parked = True
            for s in quiet:
                s._park()
                self._freed = True
            for s in idle:
                with self._lock:
                    if s.busy or s.released or now - s.last <= self.idle_s:
                        continue
                    s.expired = True
                    self.timed_out += 1
                s._expire()
            if self._freed:
                self._freed = False
                give_back()
