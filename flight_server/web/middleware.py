"""ASGI middleware of the HTTP door: one access-log line per request, security headers on every
answer. Both are pure ASGI (a streamed download passes through untouched)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from arrowroot.flight_server.service.caller import new_request_id
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.errors import TABLE

#: an HTTP status → the gRPC name the access log gives it (the error table, read backwards)
HTTP_TO_GRPC = {row.http: row.grpc for row in reversed(TABLE)} | {404: "NOT_FOUND", 500: "INTERNAL"}
#: scripts and data only from this server; the pages' own JavaScript reads the HTTP API
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
     b"style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
]
GONE = "arrowroot.gone"          # scope key: a threading.Event set when the client went away
CLEANUP = "arrowroot.cleanup"    # scope key: coroutines run when the request is over, however it ended
log = logging.getLogger("arrowroot.http")
#: routes whose tail is a dataset name: logged by their prefix only
NAMED = ("/api/data/", "/datasets/", "/plot/", "/api/datasets/", "/api/view/", "/view/")


def record_of(request: Request) -> CallRecord:
    """The request's access-log record (opened by :class:`AccessLog`)."""
    record = request.scope.get("arrowroot.record")
    if record is None:  # the app run without its middleware (not in a server): a detached record
        record = request.scope["arrowroot.record"] = CallRecord("http", f"{request.method} {request.url.path}")
    return record


class AccessLog:
    """One access-log line per HTTP request, written when the response has been sent in full
    (a streamed download's line comes after its last byte), with the status of the error table
    (``http=404``, ``NOT_FOUND``) and the caller."""

    def __init__(self, app: Any, sink: Callable[[CallRecord], None] | None = None):
        self.app = app
        self.sink = sink  # the server's metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if not path.startswith(NAMED) else "/".join(path.split("/")[:3]) + "/…"
        record = scope["arrowroot.record"] = CallRecord("http", f"{scope.get('method', '?')} {route}",
                                                        request_id=new_request_id(), sink=self.sink)

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                record.http = int(message["status"])
                if record.status == "OK" and record.http >= 400:
                    record.status = HTTP_TO_GRPC.get(record.http, "UNKNOWN")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()
                record.finish()

        # The client's messages are read from the start, by a task of their own, so that a client
        # going away is noticed while the handler is still working (a heavy cut can run for minutes
        # before its first byte): ``scope[GONE]`` is set and the read path stops within a chunk.
        gone = scope[GONE] = threading.Event()
        done = threading.Event()                          # the response's last byte was sent
        inbox: asyncio.Queue = asyncio.Queue(maxsize=1)  # one message ahead: uploads keep their back-pressure

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect" and not done.is_set():
                    gone.set()
                    if record.status == "OK":
                        record.status = "CANCELLED"
                await inbox.put(message)
                if message["type"] == "http.disconnect":
                    return

        async def receive_watched() -> dict:
            return await inbox.get()

        watcher = asyncio.ensure_future(watch())
        try:
            await self.app(scope, receive_watched, send_logged)
        except BaseException:
            if record.status == "OK":
                record.status = "CANCELLED"
            record.finish()
            raise
        finally:
            watcher.cancel()
            # a response cancelled while it waited to send (its client went away) leaves its body
            # generator suspended, holding what it read: close it now, not when the GC gets to it
            for close in scope.get(CLEANUP, ()):
                try:
                    await close()
                except Exception:  # the request is over; its clean-up must not fail the server
                    log.exception("closing the body of %s", route)
        record.finish()


class SecurityHeaders:
    """The headers every answer carries (CSP: scripts, styles and data from this server only)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def disconnected(request: Request) -> Callable[[], bool]:
    """A cheap "has the client gone?" for the read path (checked between chunks): set by
    :class:`AccessLog` as soon as the client disconnects, even before the first byte."""
    event = request.scope.get(GONE)
    return event.is_set if event is not None else (lambda: False)
