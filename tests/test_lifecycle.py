"""Running it like a service: the standard gRPC health service (checked with grpcio's own
health stub), SIGTERM draining with open streams, SIGHUP reloading without dropping streams,
and a data node's graceful leave. Real CLI processes for the signals, real servers on port 0."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pyarrow.flight as fl
import pytest
import uproot
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arrowroot.clients import Client
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.server.node import NodeServer

pytestmark = pytest.mark.slow   # real server processes stopped with signals

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BIG = "big/wide.root:t"
ROWS = 5_000_000  # 80 MB in one endpoint: more than gRPC and a loopback socket buffer (32 MB) hold
ENDPOINT = 256 << 20  # bytes: the whole table is one endpoint


def health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_for(predicate, timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def arrowroot_cmd() -> list[str]:
    script = Path(sys.executable).with_name("arrowroot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arrowroot.flight_server.cli"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_sample_files(tmp_path_factory.mktemp("lifecycle"), entries=2000)
    (root / "big").mkdir()
    with uproot.recreate(root / "big" / "wide.root", compression=None) as f:
        f.mktree("t", {"i": "int64", "x": "float64"})
        for start in range(0, ROWS, ROWS // 4):
            i = np.arange(start, start + ROWS // 4, dtype=np.int64)
            f["t"].extend({"i": i, "x": i * 0.5})
    return root


class Serve:
    """``arrowroot serve`` in a subprocess; its stdout lines name the Flight and health ports."""

    def __init__(self, root: Path, log: Path, *args: str) -> None:
        env = {**os.environ, "ARROWROOT_BATCH_ROWS": "10000", "ARROWROOT_ENDPOINT_BYTES": str(ENDPOINT)}
        self.proc = subprocess.Popen(arrowroot_cmd() + ["serve", str(root), "--port", "0", "--health-port", "0",
                                                        *args], stdout=subprocess.PIPE, stderr=open(log, "w"),
                                     text=True, env=env)
        self.log = log
        lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        text = "".join(lines)
        flight = re.search(r"serving (grpc://[\d.]+:\d+)", text)
        port = re.search(r"gRPC health on [\d.]+:(\d+)", text)
        if not (flight and port):
            self.proc.kill()
            raise AssertionError(f"serve did not start: {text!r}\n{log.read_text()[-2000:]}")
        self.location, self.health_port = flight.group(1), int(port.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _wait_indexed(location: str, name: str) -> None:
    with Client(location) as c:
        assert wait_for(lambda: name in c.datasets()["name"].to_pylist(), 60), f"{name} not indexed"


# ---------------------------------------------------------------- health


def test_health_serving_then_not_serving_while_draining(data: Path, tmp_path: Path) -> None:
    server = ArrowrootServer(Settings(root=data, port=0, health_port=0, batch_rows=10_000, endpoint_bytes=ENDPOINT,
                                      catalog=tmp_path / "catalog.duckdb"))
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    port = server.ops.health.port
    assert health(port) == SERVING  # the catalog is open
    assert health(port, "arrow.flight.protocol.FlightService") == SERVING
    assert health(port, "liveness") == SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError) as err:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    c = Client(f"grpc://127.0.0.1:{server.port}")
    info = c.flight_info(BIG)
    reader = c._flight.do_get(info.endpoints[0].ticket)
    reader.read_chunk()
    stopper = threading.Thread(target=server.ops.drain.stop, kwargs={"deadline": 20})
    stopper.start()
    assert wait_for(lambda: server.ops.drain.draining)
    assert health(port) == NOT_SERVING  # while the open stream finishes
    assert health(port, "liveness") == NOT_SERVING
    rest = reader.read_all()
    assert rest.num_rows == ROWS - 10_000
    stopper.join(20)
    assert not stopper.is_alive()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)  # port closed


def test_a_node_is_not_serving_while_its_coordinator_is_lost(data: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s" * 32)
    coord = ArrowrootServer(Settings(root=data, port=0, ticket_key_file=key, node_ttl=1.0,
                                     catalog=tmp_path / "catalog.duckdb"))
    coord.indexer.run()
    threading.Thread(target=coord.serve, daemon=True).start()
    node = NodeServer(Settings(root=data, port=0, ticket_key_file=key, health_port=0))
    threading.Thread(target=node.serve, daemon=True).start()
    try:
        port = node.ops.health.port
        node.join(f"grpc://127.0.0.1:{coord.port}")
        assert health(port) == SERVING
        coord.shutdown()  # the coordinator goes away: the node is dropped from its rotation after its ttl
        assert wait_for(lambda: health(port) == NOT_SERVING, 10)
        assert health(port, "liveness") == SERVING  # not ready, but not to be restarted
    finally:
        node.shutdown()


# ---------------------------------------------------------------- SIGTERM, SIGHUP


def test_sigterm_drains_open_streams_within_the_deadline(data: Path, tmp_path: Path) -> None:
    s = Serve(data, tmp_path / "serve.log", "--drain-seconds", "5")
    try:
        _wait_indexed(s.location, BIG)
        slow, fast = Client(s.location), Client(s.location)
        info = slow.flight_info(BIG)
        slow_reader = slow._flight.do_get(info.endpoints[0].ticket)
        fast_reader = fast._flight.do_get(fast.flight_info(BIG).endpoints[0].ticket)
        assert slow_reader.read_chunk().data.num_rows == 10_000
        assert fast_reader.read_chunk().data.num_rows == 10_000
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: health(s.health_port) == NOT_SERVING, 5)
        # a new call is refused; the open streams go on
        with pytest.raises(fl.FlightUnavailableError):
            fl.connect(s.location).get_flight_info(fl.FlightDescriptor.for_path(BIG))
        assert fast_reader.read_all().num_rows == ROWS - 10_000  # finishes within the deadline
        got, error = 10_000, None
        try:
            while True:
                got += slow_reader.read_chunk().data.num_rows
                time.sleep(0.1)  # a slow client: 500 batches would take 50 s, the deadline is 5 s
        except StopIteration:
            pass
        except fl.FlightError as exc:
            error = exc
        assert error is not None and got < ROWS, "the slow stream should have been cut"
        assert isinstance(error, fl.FlightUnavailableError), error
        assert "shutting down" in str(error)
        assert s.proc.wait(15) == 0
        assert time.monotonic() - t0 < 5 + 8
        log = s.log.read_text()
        assert "Traceback" not in log
        assert "streams cut" in log
    finally:
        s.stop()


def test_a_client_that_reads_nothing_does_not_hold_the_stop(data: Path, tmp_path: Path) -> None:
    s = Serve(data, tmp_path / "serve.log", "--drain-seconds", "1")
    try:
        _wait_indexed(s.location, BIG)
        c = Client(s.location)
        stalled = c._flight.do_get(c.flight_info(BIG).endpoints[0].ticket)
        stalled.read_chunk()  # then nothing: gRPC's buffers fill, the server blocks writing
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(20) == 0
        assert time.monotonic() - t0 < 1 + 5 + 5  # the deadline, the grace, start-up slack
    finally:
        s.stop()


def test_sighup_reloads_without_dropping_streams(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "served"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".arrowroot"))
    s = Serve(root, tmp_path / "serve.log")
    try:
        _wait_indexed(s.location, BIG)
        c = Client(s.location)
        reader = c._flight.do_get(c.flight_info(BIG).endpoints[0].ticket)
        reader.read_chunk()
        shutil.copy(root / "hep" / "events.root", root / "hep" / "more.root")
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "hep/more.root:events" in c.datasets()["name"].to_pylist(), 30)
        assert reader.read_all().num_rows == ROWS - 10_000  # the stream went on
        assert health(s.health_port) == SERVING
        assert s.proc.poll() is None
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0
    finally:
        s.stop()


# ---------------------------------------------------------------- a node's graceful leave


def test_a_node_hands_its_endpoints_over_before_it_stops(data: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s" * 32)
    coord = ArrowrootServer(Settings(root=data, port=0, ticket_key_file=key, node_ttl=30.0, batch_rows=10_000,
                                     endpoint_bytes=ENDPOINT,
                                     catalog=tmp_path / "catalog.duckdb"))
    coord.indexer.run()
    threading.Thread(target=coord.serve, daemon=True).start()
    nodes = [NodeServer(Settings(root=data, port=0, ticket_key_file=key)) for _ in range(2)]
    for n in nodes:
        threading.Thread(target=n.serve, daemon=True).start()
        n.join(f"grpc://127.0.0.1:{coord.port}")
    c = Client(f"grpc://127.0.0.1:{coord.port}")
    try:
        assert wait_for(lambda: len(coord.membership.live()) == 2)
        info = c.flight_info(BIG)
        first = info.endpoints[0].locations[0].uri.decode()
        leaving = next(n for n in nodes if n.advertise == first)
        stays = next(n for n in nodes if n is not leaving)
        open_reader = fl.connect(first).do_get(info.endpoints[0].ticket)
        assert open_reader.read_chunk().data.num_rows == 10_000
        stopper = threading.Thread(target=leaving.ops.drain.stop, kwargs={"deadline": 20})
        stopper.start()
        # out of the rotation at once (its ttl is 30 s: this is the leave, not a time-out)
        assert wait_for(lambda: [n.location for n in coord.membership.live()] == [stays.advertise], 5)
        again = c.flight_info(BIG)
        assert all(loc.uri.decode() != first for ep in again.endpoints for loc in ep.locations)
        # a ticket still naming the leaving node: refused there, the client reads it elsewhere
        with pytest.raises(fl.FlightUnavailableError):  # "shutting down", or the port is closed already
            fl.connect(first).do_get(info.endpoints[0].ticket).read_all()
        assert c.read_info(info).read_all().num_rows == ROWS
        assert open_reader.read_all().num_rows == ROWS - 10_000  # its open stream finished
        stopper.join(20)
        assert not stopper.is_alive()
        assert coord.membership.counts()["leaves"] == 1
    finally:
        for n in nodes:
            if not n.ops.drain.draining:
                n.shutdown()
        coord.shutdown()
