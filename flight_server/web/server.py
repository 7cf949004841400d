"""Run the web app on uvicorn in a background thread of the Flight server's process, so both
ports share one catalog, one reader cache and one set of sessions. The connection bounds
(count, request timeout, head size, keep-alive) are ``connections.py``'s, from the settings."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

import uvicorn

from arrowroot.flight_server.web.app import WebOptions, create_app
from arrowroot.flight_server.web.connections import ConnectionLimits, guarded_protocol

log = logging.getLogger("arrowroot.http")


class WebServer:
    """The HTTP door of one server process: ``start()``, ``url``, ``stop()``."""

    def __init__(self, service: Any, port: int | None = None, host: str | None = None, max_bytes: int | None = None,
                 plot_entries: int = 1_000_000, flight_port: int | None = None):
        """Port, host and size limit default to the server's settings (``http_port``, ``host``,
        ``http_max_bytes``); ``flight_port`` is what the page's snippets connect to."""
        settings = service.ctx.settings
        self.host = host or settings.host
        port = port if port is not None else (settings.http_port or 0)
        max_bytes = max_bytes if max_bytes is not None else settings.http_max_bytes
        cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
        self.tls = bool(cert)
        flight = f"{'grpc+tls' if self.tls else 'grpc'}://{self.host}:{flight_port or settings.port}"
        options = WebOptions(max_bytes=max_bytes, plot_entries=plot_entries, secure_cookie=self.tls,
                             flight_location=flight, workers=settings.http_workers)
        limits = ConnectionLimits(max_connections=settings.http_max_connections,
                                  max_per_client=settings.http_max_connections_per_client,
                                  request_timeout=settings.http_request_timeout, keep_alive=settings.http_keep_alive,
                                  max_head_bytes=settings.http_max_header_bytes)
        tls: dict[str, Any] = {}
        if self.tls:  # the same PEM files as the Flight port (auth.tls_kwargs checked them)
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            if client_ca:
                tls.update(ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        self.config = uvicorn.Config(create_app(service, options), log_level="warning", access_log=False,
                                     lifespan="off", timeout_graceful_shutdown=5, server_header=False,
                                     http=guarded_protocol(limits), timeout_keep_alive=int(max(1, limits.keep_alive)),
                                     **tls)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, port))
        self.port = self.sock.getsockname()[1]
        self._uvicorn = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self, timeout: float = 15.0) -> "WebServer":
        """Serve in a daemon thread; returns once the port accepts connections."""
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
