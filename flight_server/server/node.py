"""A data node: serves the tickets a coordinator signed, reading the same files, nothing else.

    arrowroot node /data --port 8816 --join grpc://coordinator:8815 --key-file /etc/arrowroot/key

A node holds no catalog and plans nothing. Its one data method is DoGet: the ticket is a
self-contained read task, signed (and given an expiry) by the coordinator with the shared
key; the node verifies it, checks the file under its own directory is still the one
planned (size + mtime, and never a path outside the directory), and streams it through
its own column-chunk cache. GetFlightInfo and friends are refused with a pointer to the
coordinator. With ``--join`` it registers and then heartbeats, so the coordinator puts
it into (and, once silent, out of) the endpoint locations it hands out.

A ticket is a capability: whoever holds it may redeem it until it expires; the
coordinator checked the caller's rights when it issued it. Use TLS (``--tls-cert``) where
the network between clients and nodes is not trusted.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, Unimplemented
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.core.task import ReadTask
from arrowroot.flight_server.execute.cache import chunk_cache
from arrowroot.flight_server.execute.executor import Execution, StreamStats, stream_task
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.server.auth import tls_kwargs
from arrowroot.flight_server.server.errors import to_flight
from arrowroot.flight_server.server.membership import HEALTH_ACTION, REGISTER_ACTION, health_answer, registration
from arrowroot.flight_server.server.tickets import TicketSigner
from arrowroot.flight_server.workspace.store import MOUNT

log = logging.getLogger("arrowroot.node")

NOT_HERE = ("this is an arrowroot data node: it serves the tickets of its coordinator's FlightInfos; "
            "ask the coordinator for FlightInfo")


class JoinRefused(RuntimeError):
    """The coordinator refused this node (another key, or it has none)."""


class NodeServer(fl.FlightServerBase):
    """DoGet of coordinator-signed tickets over the files of ``settings.root``."""

    def __init__(self, settings: Settings, node_id: str | None = None, advertise: str | None = None):
        key = settings.ticket_key()
        if key is None:
            raise ValueError("a data node needs its coordinator's ticket key: --key-file PATH "
                             "(or ARROWROOT_TICKET_KEY), the same as the coordinator's")
        self.settings = settings
        self.tickets = TicketSigner(key, settings.ticket_ttl)
        self.readers = ReaderCache(settings.root, chunks=chunk_cache(settings))
        if settings.workspace is not None:  # workspace files outside the root (flight_server/workspace)
            self.readers.mount(MOUNT, settings.workspace)
        self._ipc_options = pa.ipc.IpcWriteOptions(compression=settings.compression)
        self._served = {"requests": 0, "rows": 0, "bytes": 0, "refused": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._joiner: threading.Thread | None = None
        self.coordinator: str | None = None
        super().__init__(settings.location, **tls_kwargs(settings))
        scheme = "grpc+tls" if settings.tls_cert else "grpc"
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else _own_address()
        self.advertise = advertise or f"{scheme}://{host}:{self.port}"
        self.node_id = node_id or f"{socket.gethostname()}:{self.port}"

    # ------------------------------------------------------------ data

    def _open(self, ticket: bytes) -> ReadTask:
        task = self.tickets.open(ticket)
        for part in task.parts:
            self.readers.check(part)  # inside DIR, and still the file that was planned
        return task

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        try:
            task = self._open(ticket.ticket)
            ex = Execution(task)
        except Exception as exc:
            with self._lock:
                self._served["refused"] += 1
            log.warning("%s do_get refused: %s", context.peer(), exc)
            raise to_flight(exc, "do_get") from None
        return fl.GeneratorStream(ex.schema, self._stream(context, task, ex), options=self._ipc_options)

    def _stream(self, context: fl.ServerCallContext, task: ReadTask, ex: Execution) -> Iterator[Any]:
        t0 = time.perf_counter()
        stats = StreamStats()
        what = f"{task.dataset}[{task.entry_start}:{task.entry_stop}]"
        try:
            yield from stream_task(task, self.readers, stats, ex, cancelled=context.is_cancelled)
        except Exception as exc:
            raise to_flight(exc, "do_get", what) from None
        finally:
            with self._lock:
                self._served["requests"] += 1
                self._served["rows"] += stats.rows
                self._served["bytes"] += stats.bytes
            log.info("%s do_get %s rows=%d bytes=%d %.3fs", context.peer(), what, stats.rows, stats.bytes,
                     time.perf_counter() - t0)

    # ------------------------------------------------------------ everything else

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        raise to_flight(Unimplemented(f"ListFlights: {NOT_HERE}"), "list_flights")

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        raise to_flight(Unimplemented(f"GetFlightInfo: {NOT_HERE}"), "get_flight_info")

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        raise to_flight(Unimplemented(f"GetSchema: {NOT_HERE}"), "get_schema")

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        raise to_flight(Unimplemented(f"DoPut: {NOT_HERE}"), "do_put")

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        return [(HEALTH_ACTION, 'Liveness; body {"challenge": "..."} is answered with a proof of the key.'),
                ("stats", "Requests, rows and bytes served, and the column-chunk cache's counters.")]

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        try:
            answer = self._action(action.type, body)
        except Exception as exc:
            raise to_flight(exc, "do_action", action.type) from None
        yield fl.Result(json.dumps(answer).encode())

    def _action(self, kind: str, body: bytes) -> dict:
        if kind == HEALTH_ACTION:
            try:
                args = json.loads(body) if body.strip() else {}
            except ValueError:
                raise InvalidRequest("health: body is not JSON") from None
            challenge = args.get("challenge", "") if isinstance(args, dict) else ""
            return {"status": "ok", "role": "node", "version": __version__, "node": self.node_id,
                    "coordinator": self.coordinator, **health_answer(self.tickets.key, str(challenge))}
        if kind == "stats":
            with self._lock:
                served = dict(self._served)
            return {"node": self.node_id, "served": served, "cache": self.readers.chunks.stats()}
        raise NotFound(f"no action {kind!r} on a data node; available: health, stats")

    # ------------------------------------------------------------ joining a coordinator

    def register(self, coordinator: str, timeout: float = 5.0) -> dict:
        """One signed registration (or heartbeat); JoinRefused when the coordinator says no."""
        body = registration(self.tickets.key, self.node_id, self.advertise)
        try:
            with fl.FlightClient(coordinator) as c:
                opts = fl.FlightCallOptions(timeout=timeout)
                result = next(iter(c.do_action(fl.Action(REGISTER_ACTION, body), opts)))
        except (fl.FlightUnauthorizedError, fl.FlightUnauthenticatedError) as exc:
            raise JoinRefused(f"{coordinator} refused this node: {_message(exc)}") from None
        return json.loads(result.body.to_pybytes())

    def join(self, coordinator: str, interval: float = 1.0) -> None:
        """Register now (raising JoinRefused / connection errors), then heartbeat in a thread
        until shutdown. A coordinator that is down is retried; one that refuses stops it."""
        answer = self.register(coordinator)
        self.coordinator = coordinator
        interval = float(answer.get("interval", interval))

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.register(coordinator, timeout=max(1.0, interval))
                except JoinRefused as exc:
                    log.error("%s; no more heartbeats", exc)
                    return
                except Exception as exc:  # coordinator restarting or unreachable: keep trying
                    log.warning("heartbeat to %s failed: %s", coordinator, _message(exc))

        self._joiner = threading.Thread(target=beat, name="node-heartbeat", daemon=True)
        self._joiner.start()

    def shutdown(self) -> None:
        self._stop.set()
        super().shutdown()
        self.readers.close()


def _own_address() -> str:
    """This host's address as others see it (a container's or pod's IP), for --host 0.0.0.0."""
    name = socket.gethostname()
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def _message(exc: BaseException) -> str:
    text = str(exc)
    for prefix in ("Flight returned unauthenticated error, with message: ",
                   "Flight returned unauthorized error, with message: "):
        text = text.replace(prefix, "")
    return text.split(". Detail:")[0].split(". gRPC client debug context")[0]


__all__ = ["NodeServer", "JoinRefused"]
