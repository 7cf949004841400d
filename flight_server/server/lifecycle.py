"""Stopping and reloading a running server without dropping what it is doing.

SIGTERM (``docker stop``, a Kubernetes pod deletion) drains:

1. the health service turns NOT_SERVING (Kubernetes takes the pod out of its Service), a data
   node tells its coordinator it leaves (no new endpoints name it), and new calls are refused
   with UNAVAILABLE "shutting down" (the call middleware asks ``draining``, ``server/auth.py``) —
   clients retry at an endpoint's other locations;
2. open streams go on until they end or the drain deadline (``--drain-seconds``) passes;
3. then the streams still open are cut: their next batch is an UNAVAILABLE "shutting down".

SIGHUP reloads what can change under a running server (``reload`` of each server): the served
directory and ``arrowroot.toml`` are rescanned in the background, the identities (users, groups,
keys, grants) are re-read from the catalog; open streams go on untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow.flight as fl

log = logging.getLogger("arrowroot.lifecycle")

__all__ = ["Drain"]


class Drain:
    """The graceful stop of one Flight server (coordinator or data node).

    ``streams`` is its StreamSlots; ``health`` its HealthServer (or None); ``before`` runs first
    (a node's leave); ``also_stop`` are other listeners to close (the HTTP side).
    """

    def __init__(self, server: fl.FlightServerBase, streams: Any, deadline: float = 30.0) -> None:
        self.server = server
        self.streams = streams
        self.deadline = deadline
        self.draining = False
        self.health: Any = None
        self.metrics: Any = None
        self.before: list[Callable[[], None]] = []
        self.also_stop: list[Callable[[], None]] = []
        self._stopped = threading.Event()

    def stop(self, deadline: float | None = None, grace: float = 5.0) -> bool:
        """Drain and shut down; True when every call ended by itself or at the deadline, False
        when some call was still stuck ``grace`` seconds later (a client that reads nothing:
        the process may exit anyway)."""
        if self._stopped.is_set():
            return True
        deadline = self.deadline if deadline is None else deadline
        t0 = time.monotonic()
        self.draining = True
        if self.health is not None:
            self.health.stopping()
        if self.metrics is not None:
            self.metrics.draining.set(1)
        for fn in self.before:
            try:
                fn()
            except Exception as exc:  # a coordinator that is gone cannot be told
                log.warning("while stopping: %s", exc)
        self.streams.drain()
        open_now = self.streams.snapshot()["open"]
        log.warning("draining: %d streams open, up to %.0f s", open_now, deadline)
        # gRPC's own shutdown refuses new connections and waits for the calls in flight
        done = threading.Thread(target=self.server.shutdown, name="flight-shutdown", daemon=True)
        done.start()
        for fn in self.also_stop:
            threading.Thread(target=fn, name="stop", daemon=True).start()
        if not self.streams.wait_idle(max(0.0, deadline - (time.monotonic() - t0))):
            cut = self.streams.stop_all()
            log.warning("drain deadline: %d streams cut (UNAVAILABLE shutting down)", cut)
        done.join(grace)
        if done.is_alive():
            log.error("calls still running %.0f s after the drain deadline; stopping anyway", grace)
        if self.health is not None:
            self.health.stop()
        self._stopped.set()
        log.warning("stopped in %.1f s", time.monotonic() - t0)
        return not done.is_alive()
