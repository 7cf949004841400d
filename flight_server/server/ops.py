"""What an operator watches and signals, for one server: its metrics (``service/metrics.py``, on
``--metrics-port`` here), its gRPC health side port (``health.py``), its graceful stop
(``lifecycle.py``) and, on a server that holds a catalog, the local admin socket the identity
commands use while it runs (``admin_socket.py``).

The composition root (``ArrowrootServer``, ``NodeServer``) builds one ``Ops`` before its Flight
port opens — the call middleware gets ``sink`` (every finished call into the metrics) and
``draining`` (refuse new calls while stopping) — and calls ``started()`` once the port answers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow.flight as fl

from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.context import ServerContext
from arrowroot.flight_server.service.metrics import Metrics
from arrowroot.flight_server.server.admin_socket import AdminSocket
from arrowroot.flight_server.server.health import HealthServer
from arrowroot.flight_server.server.lifecycle import Drain

log = logging.getLogger("arrowroot.ops")

__all__ = ["Ops", "MetricsServer"]


class MetricsServer:
    """``/metrics`` on its own port (``--metrics-port``), for servers without the HTTP port and
    for data nodes: prometheus_client's threaded HTTP server over this server's registry."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1", certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        from prometheus_client import start_http_server

        self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry,
                                                      certfile=certfile, keyfile=keyfile)
        self.host = host
        self.port = int(self._httpd.server_port)
        self.tls = bool(certfile)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Ops:
    def __init__(self, server: fl.FlightServerBase, ctx: ServerContext) -> None:
        self.settings = ctx.settings
        assert ctx.metrics is not None
        self.metrics: Metrics = ctx.metrics
        self.drain = Drain(server, ctx.streams, self.settings.drain_seconds)
        self.drain.metrics = self.metrics
        self.health: HealthServer | None = None
        if self.settings.health_port is not None:
            self.health = HealthServer(self.settings.health_port, self.settings.host).start()
            self.drain.health = self.health
        self.metrics_server: MetricsServer | None = None
        self.ctx = ctx
        self.admin: AdminSocket | None = None

    def sink(self, record: CallRecord) -> None:
        """Every finished call of this server (the call middleware's records) into its metrics."""
        self.metrics.record(record)

    def draining(self) -> bool:
        return self.drain.draining

    def started(self, ready: bool = True) -> None:
        """The Flight port answers: readiness as given, ``/metrics`` on ``--metrics-port`` if set."""
        s = self.settings
        if s.metrics_port is not None and self.metrics_server is None:
            cert = str(s.tls_cert) if s.tls_cert else None
            key = str(s.tls_key) if s.tls_key else None
            self.metrics_server = MetricsServer(self.metrics, s.metrics_port, s.host, cert, key)
        catalog = self.ctx.catalog
        if s.admin_socket and self.admin is None and catalog is not None and catalog.path != ":memory:":
            try:
                self.admin = AdminSocket(catalog, Path(catalog.path), self._auth_on).start()
            except OSError as exc:  # the server still serves; the admin commands then say to stop it
                log.warning("no admin socket (%s): identity commands need the server stopped", exc)
        if self.health is not None:
            self.health.ready(ready)

    def _auth_on(self) -> bool:
        return bool(self.ctx.access is not None and self.ctx.access.enabled)

    def ready(self, serving: bool) -> None:
        if self.health is not None and not self.drain.draining:
            self.health.ready(serving)

    def watch(self, read: Any) -> None:
        self.metrics.watch(read)

    def close(self) -> None:
        """Close the side ports (after the Flight server stopped)."""
        if self.admin is not None:
            self.admin.stop()
            self.admin = None
        if self.health is not None:
            self.health.stop(grace=0.5)
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
