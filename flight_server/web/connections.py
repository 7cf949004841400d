"""Bounds on HTTP connections, in the HTTP parser's protocol (uvicorn + httptools).

uvicorn bounds none of these: 1,000 idle or trickling connections were all still held after 80 s;
20,000 connects used up the process's file descriptors, after which even the Flight port failed;
100 MB of request headers were read into memory and answered 200. This protocol class adds:

* a connection cap, in total and per client address: a connection over it is answered 503 and
  closed at once, so descriptors stay bounded whatever the connect rate;
* a request timeout: a request's head (and body) must arrive within ``request_timeout`` of the
  connection or of the previous response — a client trickling a byte at a time is cut (408);
* a head-size limit: a request whose line and headers pass ``max_head_bytes`` is answered 431;
* uvicorn's own keep-alive timeout for idle connections between requests;
* a way for the app to cut a connection from any thread (``scope["arrowroot.abort"]``): the read
  path's idle timeout ends a download whose client stopped reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("arrowroot.http")

__all__ = ["ConnectionLimits", "guarded_protocol", "ABORT_KEY"]

ABORT_KEY = "arrowroot.abort"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000          # open HTTP connections in total
    max_per_client: int = 64             # ... from one client address
    request_timeout: float = 10.0        # seconds for a request's head and body to arrive
    keep_alive: float = 5.0              # seconds an idle keep-alive connection is kept
    max_head_bytes: int = 64 << 10       # request line + headers


def _response(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


def guarded_protocol(limits: ConnectionLimits) -> type:
    """An ``HttpToolsProtocol`` class with ``limits`` (uvicorn's ``Config(http=...)``)."""
    per_client: Counter[str] = Counter()   # open connections by client address, for this server

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timeout_keep_alive = limits.keep_alive
            self._counted: str | None = None
            self._request_timer: asyncio.TimerHandle | None = None
            self._in_head = True
            self._head_bytes = 0

        # ------------------------------------------------------------ connections

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if peer else "?"
            if len(self.connections) >= limits.max_connections or per_client[host] >= limits.max_per_client:
                which = "this client" if per_client[host] >= limits.max_per_client else "the server"
                transport.write(_response(b"503 Service Unavailable",
                                          f"resource exhausted: too many open connections from {which}; retry shortly"))
                transport.close()
                self.transport = transport
                return
            per_client[host] += 1
            self._counted = host
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is None:  # refused at the door: uvicorn never saw it
                return
            per_client[self._counted] -= 1
            if per_client[self._counted] <= 0:
                del per_client[self._counted]
            self._counted = None
            super().connection_lost(exc)

        # ------------------------------------------------------------ the request's arrival

        def _arm(self) -> None:
            self._disarm()
            self._in_head, self._head_bytes = True, 0
            self._request_timer = self.loop.call_later(limits.request_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._request_timer is not None:
                self._request_timer.cancel()
                self._request_timer = None

        def _too_slow(self) -> None:
            self._request_timer = None
            if not self.transport.is_closing():
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.write(_response(b"408 Request Timeout", "the request did not arrive in time"))
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._counted is None:
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > limits.max_head_bytes and not self.transport.is_closing():
                self.transport.write(_response(b"431 Request Header Fields Too Large",
                                               f"request line and headers over {limits.max_head_bytes} bytes"))
                self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            transport, loop = self.transport, self.loop
            self.scope[ABORT_KEY] = lambda: loop.call_soon_threadsafe(transport.abort)  # type: ignore[literal-required]
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()  # the whole request is here; the response may take as long as it takes
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection must arrive in time too

    return GuardedProtocol
