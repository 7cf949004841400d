"""The standard gRPC health service (``grpc.health.v1.Health``) on a side port (``--health-port``).

Kubernetes' built-in ``grpc:`` probes, ``grpc_health_probe`` and load balancers speak this
protocol; the Flight port cannot serve it (pyarrow owns that gRPC server), so grpcio serves it
on its own small port, with ``grpcio-health-checking``'s servicer.

Services answered:

* ``""`` and ``arrow.flight.protocol.FlightService`` — readiness: SERVING once the catalog is
  open (a coordinator) or the node is up and, if it joined one, its coordinator answers;
  NOT_SERVING while draining or when a node has lost its coordinator.
* ``liveness`` — SERVING while the process runs and is not stopping: a node that lost its
  coordinator is not ready but must not be restarted for it.

The port is plain gRPC even when Flight uses TLS: kubelet's gRPC probes do not speak TLS, and the
answers carry nothing but these statuses.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger("arrowroot.health")

FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

__all__ = ["HealthServer", "FLIGHT_SERVICE", "LIVENESS"]


class HealthServer:
    """grpc.health.v1 on ``host:port`` (0 picks a free port). Starts NOT_SERVING: call
    ``ready(True)`` once the server can answer."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.servicer = health.HealthServicer()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
                                   options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self._server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self._server.add_insecure_port(address)  # kubelet's grpc probes speak no TLS
        except RuntimeError:  # grpcio raises where older versions returned 0
            self.port = 0
        if not self.port:
            raise OSError(f"health port {port} on {host} is in use; choose another --health-port, or 0")
        self.host = host
        self._stopped = False
        self.serving: bool | None = None
        self.servicer.set(LIVENESS, SERVING)
        self.ready(False)

    def start(self) -> HealthServer:
        self._server.start()
        return self

    def ready(self, serving: bool) -> None:
        """Readiness: SERVING or NOT_SERVING for the whole server and its Flight service."""
        if serving == self.serving:
            return
        self.serving = serving
        status = SERVING if serving else NOT_SERVING
        for service in ("", FLIGHT_SERVICE):
            self.servicer.set(service, status)
        log.info("health: %s", "SERVING" if serving else "NOT_SERVING")

    def stopping(self) -> None:
        """Every service NOT_SERVING from now on (later ``ready`` calls change nothing)."""
        self.serving = False
        self.servicer.enter_graceful_shutdown()

    def stop(self, grace: float = 1.0) -> None:
        self.stopping()
        if not self._stopped:
            self._stopped = True
            self._server.stop(grace).wait(grace + 1)
