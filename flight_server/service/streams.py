"""Open DoGet streams: a cap per principal and in total, and an idle timeout.

Each held-open stream costs memory (a chunk read ahead, a batch in gRPC) and threads; 32
clients that opened streams and read nothing held 1.67 GB. A stream takes a slot when it
starts sending (so a stream that never starts holds nothing) and gives it back when it ends.
A stream whose client has not pulled a batch for ``idle_s`` is timed out by a reaper thread:
its read-ahead stops (the chunk it held is dropped), its slot is freed, and its next pull
raises TimedOut.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from arrowroot.flight_server.core.errors import ResourceExhausted, TimedOut

__all__ = ["StreamSlots", "Stream"]


class Stream:
    """One open stream's slot: touch it on every pull; ``expired`` says the reaper ended it."""

    def __init__(self, owner: StreamSlots, principal: str) -> None:
        self.owner, self.principal = owner, principal
        self.last = time.monotonic()
        self.busy = True       # the server is working on the next batch: never idle then
        self.expired = False
        self.released = False

    def pulling(self) -> None:
        """The client asked for the next batch."""
        if self.expired:
            raise TimedOut(f"stream idle for more than {self.owner.idle_s:g} s (the client read nothing); "
                           "ask for the ticket again")
        self.busy = True

    def waiting(self) -> None:
        """A batch was handed over; from now on the client is the one to act."""
        self.busy = False
        self.last = time.monotonic()

    def cancelled(self) -> bool:
        """For the read-ahead thread: stop reading once the stream is timed out."""
        return self.expired

    def release(self) -> None:
        self.owner._release(self)


class StreamSlots:
    def __init__(self, total: int, per_principal: int, idle_s: float) -> None:
        self.total, self.per_principal, self.idle_s = total, per_principal, idle_s
        self._open: set[Stream] = set()
        self._by_principal: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def acquire(self, principal: str) -> Stream:
        with self._lock:
            if len(self._open) >= self.total:
                raise ResourceExhausted(f"the server is sending {len(self._open)} streams, its limit; "
                                        "retry shortly")
            # anonymous callers (auth off, or public data) are one principal for everybody:
            # only the total bounds them, or 16 anonymous clients would lock out the rest
            if principal and self._by_principal[principal] >= self.per_principal:
                raise ResourceExhausted(f"{self._by_principal[principal]} streams are open for this user "
                                        f"(the limit is {self.per_principal}); read or close them first")
            stream = Stream(self, principal)
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
            self._open.discard(stream)
            self._by_principal[stream.principal] -= 1
            if self._by_principal[stream.principal] <= 0:
                del self._by_principal[stream.principal]

    def open_count(self, principal: str | None = None) -> int:
        with self._lock:
            return len(self._open) if principal is None else self._by_principal[principal]

    def _reap(self) -> None:
        while True:
            time.sleep(min(1.0, max(self.idle_s / 4, 0.05)))
            now = time.monotonic()
            with self._lock:
                idle = [s for s in self._open if not s.busy and now - s.last > self.idle_s]
            for s in idle:
                s.expired = True
                self._release(s)
