"""A data node: serves the tickets a coordinator signed, reading the same files, nothing else.

    arrowroot node /data --port 8816 --join grpc://coordinator:8815 --key-file /etc/arrowroot/key

A node holds no catalog and plans nothing. Its one data method is DoGet, served by the same
datasets door as the coordinator's (``datasets_door.py``) over a node context
(``ServerContext.node``): the ticket — a self-contained read task, signed and given an expiry by
the coordinator with the shared key — is verified, its files checked (inside DIR after resolving
symlinks, still the ones planned; filled gaps of time reads read none), and streamed through the
one read path, with the same stream caps, idle timeout and IPC compression as the coordinator.
GetFlightInfo and friends answer UNIMPLEMENTED with a pointer to the coordinator. With ``--join``
it registers and then heartbeats, so the coordinator puts it into (and, once silent, out of) the
endpoint locations it hands out.

A ticket is a capability: whoever holds it may redeem it until it expires; the coordinator
checked the caller's rights when it issued it. Use TLS (``--tls-cert``) where the network
between clients and nodes is not trusted.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.flight as fl

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import InvalidRequest, Unimplemented
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.service.context import ServerContext
from arrowroot.flight_server.service.membership import HEALTH_ACTION, REGISTER_ACTION, health_answer, registration
from arrowroot.flight_server.service.service import Service, encode_result, memory
from arrowroot.flight_server.server.auth import NODE_HEADER, flight_kwargs, record_of, tls_kwargs
from arrowroot.flight_server.server.datasets_door import DatasetsDoor
from arrowroot.flight_server.server.errors import fail
from arrowroot.flight_server.server.ops import Ops

log = logging.getLogger("arrowroot.node")

NOT_HERE = ("this is an arrowroot data node: it serves the tickets of its coordinator's FlightInfos; "
            "ask the coordinator for FlightInfo")


class JoinRefused(RuntimeError):
    """The coordinator refused this node (another key, or it has none)."""


def flight_health_probe(location: str, body: bytes, timeout: float) -> dict:
    """Ask a node for its health (the coordinator's poll of static nodes)."""
    with fl.FlightClient(location) as c:
        opts = fl.FlightCallOptions(timeout=timeout)
        return json.loads(next(iter(c.do_action(fl.Action(HEALTH_ACTION, body), opts))).body.to_pybytes())


class NodeServer(fl.FlightServerBase):
    """DoGet of coordinator-signed tickets over the files of ``settings.root``."""

    def __init__(self, settings: Settings, node_id: str | None = None, advertise: str | None = None):
        self.ctx = ServerContext.node(settings)
        self.settings = settings
        self.service = Service(self.ctx)
        self.door = DatasetsDoor(self.service)
        self.membership_key = self.ctx.keys.key("membership")
        self._stop = threading.Event()
        self._joiner: threading.Thread | None = None
        self.coordinator: str | None = None
        self._coordinator_up: bool | None = None  # the last heartbeat went through (None: not joined)
        self.ops = Ops(self, self.ctx)  # metrics, gRPC health, graceful stop (ops.py)
        self.ops.metrics.watch_coordinator(self)
        self.ops.drain.before.append(self.leave)
        super().__init__(settings.location, **tls_kwargs(settings),
                         **flight_kwargs("node", None, sink=self.ops.sink, draining=self.ops.draining))
        self.ops.started()
        scheme = "grpc+tls" if settings.tls_cert else "grpc"
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else _own_address()
        self.advertise = advertise or f"{scheme}://{host}:{self.port}"
        self.node_id = node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def readers(self) -> Any:
        return self.ctx.readers

    @property
    def tickets(self) -> Any:
        return self.ctx.tickets

    # ------------------------------------------------------------ data: the coordinator's door

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        return self.door.do_get(context, ticket)

    # ------------------------------------------------------------ everything else

    def _not_here(self, context: fl.ServerCallContext, what: str) -> BaseException:
        return fail(Unimplemented(f"{what}: {NOT_HERE}"), record_of(context))

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        raise self._not_here(context, "ListFlights")

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        raise self._not_here(context, "GetFlightInfo")

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        raise self._not_here(context, "GetSchema")

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        raise self._not_here(context, "DoPut")

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        return [(HEALTH_ACTION, 'Liveness; body {"challenge": "..."} is answered with a proof of the key.'),
                ("stats", "Requests, rows and bytes served, and the column-chunk cache's counters.")]

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        record = record_of(context)
        record.detail = f"action={action.type[:40]}"
        try:
            answer = self._action(action.type, body)
        except Exception as exc:
            raise fail(exc, record) from None
        yield fl.Result(encode_result(answer))

    def _action(self, kind: str, body: bytes) -> dict:
        if kind == HEALTH_ACTION:
            try:
                args = json.loads(body) if body.strip() else {}
            except ValueError:
                raise InvalidRequest("health: body is not JSON") from None
            challenge = args.get("challenge", "") if isinstance(args, dict) else ""
            draining = self.ops.drain.draining  # a static node's coordinator takes it out of rotation
            return {"status": "draining" if draining else "ok", "role": "node", "version": __version__,
                    "node": self.node_id, "coordinator": self.coordinator, "draining": draining,
                    **health_answer(self.membership_key, str(challenge))}
        if kind == "stats":
            served = self.ctx.served.snapshot()
            totals = {k: sum(v.get(k, 0) for v in served.values()) for k in ("requests", "rows", "bytes")}
            return {"node": self.node_id, "served": totals, "datasets": served, "cache": self.ctx.readers.chunks.stats(),
                    "memory": memory(self.ctx)}
        raise Unimplemented(f"no action {kind[:100]!r} on a data node; served: health, stats")

    # ------------------------------------------------------------ joining a coordinator

    def register(self, coordinator: str, timeout: float = 5.0, leave: bool = False) -> dict:
        """One signed registration (or heartbeat, or leave); JoinRefused when the coordinator says no."""
        body = registration(self.membership_key, self.node_id, self.advertise, leave=leave)
        try:
            with fl.FlightClient(coordinator) as c:
                opts = fl.FlightCallOptions(timeout=timeout, headers=[(NODE_HEADER.encode(), b"1")])
                result = next(iter(c.do_action(fl.Action(REGISTER_ACTION, body), opts)))
        except (fl.FlightUnauthorizedError, fl.FlightUnauthenticatedError) as exc:
            raise JoinRefused(f"{coordinator} refused this node: {_message(exc)}") from None
        return json.loads(result.body.to_pybytes())

    def join(self, coordinator: str, interval: float = 1.0) -> None:
        """Register now (raising JoinRefused / connection errors), then heartbeat in a thread
        until shutdown. A coordinator that is down is retried; one that refuses stops it."""
        answer = self.register(coordinator)
        self.coordinator = coordinator
        self._beat(True, "ok")
        interval = float(answer.get("interval", interval))
        ttl = float(answer.get("ttl", 3 * interval))
        last_ok = time.monotonic()

        def beat() -> None:
            nonlocal last_ok
            while not self._stop.wait(interval):
                try:
                    self.register(coordinator, timeout=max(1.0, interval))
                    last_ok = time.monotonic()
                    self._beat(True, "ok")
                except JoinRefused as exc:
                    log.error("%s; no more heartbeats", exc)
                    self._beat(False, "refused")
                    return
                except Exception as exc:  # coordinator restarting or unreachable: keep trying
                    log.warning("heartbeat to %s failed: %s", coordinator, _message(exc))
                    # not ready once the coordinator has dropped this node from its rotation
                    self._beat(time.monotonic() - last_ok <= ttl, "failed")

        self._joiner = threading.Thread(target=beat, name="node-heartbeat", daemon=True)
        self._joiner.start()

    def _beat(self, up: bool, outcome: str) -> None:
        self._coordinator_up = up
        if self.ops.metrics.enabled:
            self.ops.metrics.heartbeats_sent.labels(outcome).inc()
        self.ops.ready(up)  # health: NOT_SERVING while the coordinator is lost

    def coordinator_up(self) -> bool | None:
        return self._coordinator_up

    def leave(self) -> None:
        """Tell the coordinator this node stops: new FlightInfos name other nodes (graceful stop)."""
        self._stop.set()  # no more heartbeats
        if self.coordinator:
            self.register(self.coordinator, timeout=2.0, leave=True)
            log.warning("left %s", self.coordinator)

    def reload(self) -> None:
        """SIGHUP: a node holds no catalog or identities; nothing to re-read."""
        log.info("reload: nothing to re-read on a data node")

    def shutdown(self) -> None:
        self._stop.set()
        super().shutdown()
        self.ctx.close()
        self.ops.close()


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


__all__ = ["NodeServer", "JoinRefused", "flight_health_probe"]
