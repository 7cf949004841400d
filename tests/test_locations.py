"""The Python client follows endpoint locations: pooled connections, fallback to the
next location when one is down or dies mid-stream, order kept, every row exactly once.

The fallback cases use plain Flight servers in their own processes
(tests/slow_flight_server.py) that a test kills with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients import Client, InvalidRequest, Unavailable

pytestmark = pytest.mark.slow

SLOW_SERVER = Path(__file__).with_name("slow_flight_server.py")
REUSE = "arrow-flight-reuse-connection://?"


class SlowServer:
    def __init__(self, pause: float):
        self.proc = subprocess.Popen([sys.executable, str(SLOW_SERVER), "--pause", str(pause)],
                                     stdout=subprocess.PIPE, text=True)
        self.location = f"grpc://127.0.0.1:{int(self.proc.stdout.readline())}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def slow() -> Iterator:
    started: list[SlowServer] = []

    def start(pause: float = 0.0) -> SlowServer:
        started.append(SlowServer(pause))
        return started[-1]

    yield start
    for s in started:
        s.kill()


def dead_location() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"grpc://127.0.0.1:{port}"


def info_of(endpoints: list[tuple[bytes, list[str]]]) -> fl.FlightInfo:
    schema = pa.schema([("x", pa.int64())])
    eps = [fl.FlightEndpoint(ticket, locations) for ticket, locations in endpoints]
    return fl.FlightInfo(schema, fl.FlightDescriptor.for_path("x"), eps, -1, -1)


def values(reader: pa.RecordBatchReader) -> list[int]:
    return reader.read_all()["x"].to_pylist()


def test_empty_reuse_and_own_locations_read_on_the_clients_connection(sample_server) -> None:
    with sample_server.client() as c:
        info = c.flight_info("hep/events.root:events", ["nMuon", "MET_pt"])
        expected = c.read_info(info).read_all()
        assert expected.num_rows == info.total_records > 0
        port = sample_server.server.port
        for locations in ([], [REUSE], [f"grpc://localhost:{port}"]):
            moved = fl.FlightInfo(info.schema, info.descriptor,
                                  [fl.FlightEndpoint(ep.ticket, locations) for ep in info.endpoints],
                                  info.total_records, info.total_bytes)
            assert c.read_info(moved).read_all().equals(expected)
        assert list(c._pool) == [f"grpc://localhost:{port}"]  # one pooled connection, reused


def test_a_dead_first_location_falls_back_to_the_next(slow) -> None:
    live = slow()
    dead = dead_location()
    info = info_of([(b"250", [dead, live.location]), (b"130", [live.location, dead]), (b"7", [dead, live.location])])
    with Client(live.location, threads=1) as c:
        assert values(c.read_info(info)) == list(range(250)) + list(range(130)) + list(range(7))


def test_a_location_killed_mid_stream_is_finished_from_the_fallback(slow) -> None:
    first, second = slow(pause=0.05), slow(pause=0.0)
    info = info_of([(b"1000", [first.location, second.location])])
    with Client(second.location) as c:
        batches = c.endpoint_batches(info.endpoints[0])
        got = next(batches)["x"].to_pylist()
        assert got == list(range(100))
        first.kill()                          # SIGKILL while 900 rows are still to come
        for batch in batches:
            got.extend(batch["x"].to_pylist())
    assert got == list(range(1000))           # every row once, in order


def test_many_endpoints_over_two_locations_keep_their_order(slow) -> None:
    a, b = slow(), slow()
    sizes = [300, 50, 420, 1, 199, 260, 80, 333]
    info = info_of([(str(n).encode(), [(a, b)[i % 2].location]) for i, n in enumerate(sizes)])
    with Client(a.location, threads=4) as c:
        assert values(c.read_info(info)) == [x for n in sizes for x in range(n)]
        assert sorted(c._pool) == sorted({b.location})  # a is the client's own connection
    assert c._pool == {}


def test_every_location_down_names_them_all() -> None:
    d1, d2 = dead_location(), dead_location()
    with Client(d1) as c:
        with pytest.raises(Unavailable, match="no location of the endpoint answered") as err:
            c.read_info(info_of([(b"5", [d1, d2])])).read_all()
    assert d1 in str(err.value) and d2 in str(err.value)


def test_a_refusal_is_not_retried_elsewhere(sample_server, slow) -> None:
    """A server that answers (here: a forged ticket) is not a dead one: no fallback."""
    live = slow()
    with sample_server.client() as c:
        info = info_of([(b"forged", [sample_server.location, live.location])])
        with pytest.raises(InvalidRequest, match="ticket"):
            c.read_info(info).read_all()
        assert list(c._pool) == []
