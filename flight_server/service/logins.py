"""Failed-login throttling, keyed by (user name, client address) so a guesser cannot lock the owner out.

A guesser made 1,000 wrong-password attempts at 14/s and slowed every legitimate login to
~0.6 s (scrypt is the cost); a lockout by name alone then let anyone block a user's password
logins everywhere. So the limits are:

* per (name, address) — known or unknown name alike, so an unknown name answers exactly like a
  wrong password: the first ``free`` failures cost nothing extra; after that each failure locks
  that key for an exponentially growing time (1 s, 2 s, 4 s ... at most ``max_lock_s``), and a
  locked key is refused at once, without hashing anything. The owner logging in from another
  address has another key and gets in.
* per address (when known): more than ``free_per_address`` failures for any names locks the
  address the same way, so one client cannot spray guesses over many names.
* server-wide, a coarse backstop: at most ``burst`` failures per ``window_s``; beyond that, keys
  with a recent failure are refused until the window moves on. A key with no failure on record
  (a user who typed the password right from their own address) is never refused by it.

The address is the HTTP client's (``request.client.host``). On the Flight port it is unknown:
pyarrow's server middleware sees headers but not the peer, and the Handshake — the login of
pyarrow's ``authenticate_basic_token`` and ADBC — runs without a call context, so the token it
returns must be decided before any handler sees ``context.peer()``. Flight password logins
therefore share one address-less key per name: a guesser on the Flight port can delay the
owner's Flight *password* logins, but not their HTTP/web logins, nor session tokens and API
keys (Bearer), which are never throttled.

Memory is bounded: at most ``max_keys`` records, least recently failed dropped first, and a
record is forgotten ``forget_s`` after its last failure.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["LoginLimiter", "LockedOut", "UNKNOWN"]

#: the address of a login whose client address the door cannot see (Flight)
UNKNOWN = ""
#: characters of a name kept in a key: longer names share a record (refused together, never apart)
NAME_CHARS = 128


class LockedOut(Exception):
    """Refused without checking the password; the message says for how long."""


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


def _wait(seconds: float) -> str:
    return f"try again in {seconds:.0f} s" if seconds >= 1 else "try again in a second"


class LoginLimiter:
    def __init__(self, free: int = 5, max_lock_s: float = 300.0, forget_s: float = 900.0,
                 burst: int = 50, window_s: float = 10.0, max_keys: int = 10_000,
                 free_per_address: int = 30) -> None:
        self.free, self.max_lock_s, self.forget_s = free, max_lock_s, forget_s
        self.burst, self.window_s, self.max_keys = burst, window_s, max_keys
        self.free_per_address = free_per_address
        # (name, address) and, for a known address, (None, address): most recently failed last
        self._keys: OrderedDict[tuple[str | None, str], _Record] = OrderedDict()
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        # for the metrics (service/metrics.py)
        self.failures = 0   # wrong name or password
        self.lockouts = 0   # a key became locked
        self.refused = 0    # attempts refused unchecked

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, name: str, address: str = UNKNOWN, now: float | None = None) -> None:
        """Raise LockedOut when ``name`` may not try a password from ``address`` now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._current((name[:NAME_CHARS], address), now)
            if address != UNKNOWN:
                by_address = self._current((None, address), now)
                if by_address is not None and by_address.locked_until > now:
                    self.refused += 1
                    raise LockedOut(f"too many failed logins from this address; "
                                    f"{_wait(by_address.locked_until - now)}")
            if rec is None:
                return
            if rec.locked_until > now:
                self.refused += 1
                where = " from this address" if address != UNKNOWN else ""
                raise LockedOut(f"too many failed logins for {name[:64]!r}{where}; {_wait(rec.locked_until - now)}")
            self._trim(now)
            if len(self._recent) >= self.burst:
                self.refused += 1
                raise LockedOut(f"too many failed logins on this server; try again in {self.window_s:g} s")

    def failed(self, name: str, address: str = UNKNOWN, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.failures += 1
            self._fail((name[:NAME_CHARS], address), self.free, now)
            if address != UNKNOWN:
                self._fail((None, address), self.free_per_address, now)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            self._recent.append(now)
            self._trim(now)

    def succeeded(self, name: str, address: str = UNKNOWN) -> None:
        """The right password: forget that key's failures (not the address's: a guesser who also
        knows one password must not wipe the record of its other guesses)."""
        with self._lock:
            self._keys.pop((name[:NAME_CHARS], address), None)

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Failures, lock-outs and refusals so far, and how many keys are locked now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            locked = sum(1 for r in self._keys.values() if r.locked_until > now)
            return {"failures": self.failures, "lockouts": self.lockouts, "refused": self.refused, "locked": locked}

    def _current(self, key: tuple[str | None, str], now: float) -> _Record | None:
        rec = self._keys.get(key)
        if rec is not None and now - rec.last > self.forget_s:
            del self._keys[key]
            return None
        return rec

    def _fail(self, key: tuple[str | None, str], free: int, now: float) -> None:
        rec = self._keys.pop(key, None) or _Record()
        if now - rec.last > self.forget_s:
            rec = _Record()
        rec.failures += 1
        rec.last = now
        extra = rec.failures - free
        if extra > 0:
            self.lockouts += 1
            rec.locked_until = now + min(self.max_lock_s, 2.0 ** min(extra - 1, 30))
        self._keys[key] = rec  # most recent last

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
