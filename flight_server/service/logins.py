"""Failed-login throttling: per user name and for the whole server.

A guesser made 1,000 wrong-password attempts at 14/s and slowed every legitimate login to
~0.6 s (scrypt is the cost). Per user name (known or not, so an unknown name answers exactly
like a wrong password): the first ``free`` failures cost nothing extra; after that each
failure locks the name for an exponentially growing time (1 s, 2 s, 4 s ... at most
``max_lock_s``), and a locked name is refused at once, without hashing anything. Server-wide:
at most ``burst`` failures per ``window_s``; beyond that, names with a recent failure are
refused at once until the window moves on, so a guesser spraying many names cannot keep the
hashing slots busy while users who type their password right still get in.

pyarrow's server middleware sees headers but not the peer address, so the limits are keyed by
user name and server-wide rather than by client address.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["LoginLimiter", "LockedOut"]


class LockedOut(Exception):
    """Refused without checking the password; the message says for how long."""


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginLimiter:
    def __init__(self, free: int = 5, max_lock_s: float = 300.0, forget_s: float = 900.0,
                 burst: int = 50, window_s: float = 10.0, max_names: int = 10_000) -> None:
        self.free, self.max_lock_s, self.forget_s = free, max_lock_s, forget_s
        self.burst, self.window_s, self.max_names = burst, window_s, max_names
        self._names: OrderedDict[str, _Record] = OrderedDict()
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        # for the metrics (server/metrics.py)
        self.failures = 0   # wrong name or password
        self.lockouts = 0   # a name became locked
        self.refused = 0    # attempts refused unchecked

    def check(self, name: str, now: float | None = None) -> None:
        """Raise LockedOut when ``name`` may not try a password now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._names.get(name)
            if rec is not None and now - rec.last > self.forget_s:
                del self._names[name]
                rec = None
            if rec is None:
                return
            if rec.locked_until > now:
                self.refused += 1
                wait = rec.locked_until - now
                raise LockedOut(f"too many failed logins for {name[:64]!r}; try again in {wait:.0f} s"
                                if wait >= 1 else
                                f"too many failed logins for {name[:64]!r}; try again in a second")
            self._trim(now)
            if len(self._recent) >= self.burst:
                self.refused += 1
                raise LockedOut(f"too many failed logins on this server; try again in {self.window_s:g} s")

    def failed(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._names.pop(name, None) or _Record()
            rec.failures += 1
            rec.last = now
            self.failures += 1
            extra = rec.failures - self.free
            if extra > 0:
                self.lockouts += 1
                rec.locked_until = now + min(self.max_lock_s, 2.0 ** (extra - 1))
            self._names[name] = rec  # most recent last
            while len(self._names) > self.max_names:
                self._names.popitem(last=False)
            self._recent.append(now)
            self._trim(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Failures, lock-outs and refusals so far, and how many names are locked now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            locked = sum(1 for r in self._names.values() if r.locked_until > now)
            return {"failures": self.failures, "lockouts": self.lockouts, "refused": self.refused, "locked": locked}

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
