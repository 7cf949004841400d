"""The HTTP door under hostile load: connection floods, idle and trickling connections, header
bombs, stalled and abandoned downloads, heavy work next to ``/api/health``.

The server under test is a real ``arrowroot serve --http`` process under a hard address-space cap
(``prlimit --as``), so a bound that fails takes down only it; every loop here is bounded in count
and time. Small bounds make the tests quick: 20 connections per client address and 40 in total, a
2 s request timeout, 1 s keep-alive, 8 streams with a 2 s idle timeout.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pyarrow.flight as fl
import pytest

from conftest import indexed_data_with_a_big_tree

# real server processes, writers and clients in other processes: not in the quick run
pytestmark = pytest.mark.slow

AS_LIMIT = 5 << 30                       # the server's address space: a runaway bound kills it, not the host
STALL = "big/stall.root:t"               # 61 MiB in one endpoint: more than socket buffers hold
HEAVY = "sin(x)*cos(x)*tan(x)*exp(sin(x)) > 1e9"   # passes nothing: a download's first byte is its last
#: the same, six times over: a scan of several seconds even when the chunks are cached (0.5 s for HEAVY)
HEAVIER = " + ".join(f"sin(x+{k})*cos(x+{k})*tan(x+{k})*exp(sin(x+{k}))" for k in range(6)) + " > 1e9"
ENV = {"ARROWROOT_HTTP_MAX_CONNECTIONS": "40", "ARROWROOT_HTTP_MAX_CONNECTIONS_PER_CLIENT": "20",
       "ARROWROOT_HTTP_REQUEST_TIMEOUT": "2", "ARROWROOT_HTTP_KEEP_ALIVE": "1", "ARROWROOT_MAX_STREAMS": "8",
       "ARROWROOT_STREAM_IDLE_TIMEOUT": "2", "ARROWROOT_HTTP_WORKERS": "2"}


class Server:
    def __init__(self, root: Path, log: Path, **env: str):
        cmd = ["prlimit", f"--as={AS_LIMIT}", sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
               "--port", "0", "--http", "0", "--no-index"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                                     env={**os.environ, **ENV, **env})
        first, second = self.proc.stdout.readline(), self.proc.stdout.readline()
        grpc, http = re.search(r"grpc://[\w.:]+", first), re.search(r"http://([\w.]+):(\d+)/", second)
        if not grpc or not http:
            self.proc.kill()
            raise AssertionError(f"the server did not start: {first!r} {second!r}\n{log.read_text()[-2000:]}")
        self.location = grpc.group(0)
        self.host, self.port = http.group(1), int(http.group(2))
        self.url = f"http://{self.host}:{self.port}/"
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def http_sockets(self) -> int:
        """Connections the server holds on its HTTP port."""
        return sum(1 for c in self.ps.net_connections(kind="tcp") if c.laddr.port == self.port and c.raddr)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return indexed_data_with_a_big_tree(tmp_path_factory.mktemp("http_limits"), entries=2000)


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[Server]:
    s = Server(data, data.parent / "server.log")
    yield s
    s.stop()


def _connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect((server.host, server.port))
    return s


def _answer(s: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes (bounded in time)."""
    s.settimeout(limit)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (TimeoutError, ConnectionResetError):
        return out


def _flight_read(server: Server) -> int:
    c = fl.connect(server.location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"dataset": "hep/events.root:events",
                                                                          "columns": ["nMuon"]})))
    return sum(c.do_get(e.ticket).read_all().num_rows for e in info.endpoints)


@pytest.mark.slow
def test_connection_flood_is_bounded_and_flight_keeps_working(data: Path, tmp_path: Path) -> None:
    """300 connects from three client addresses: 20 per address are kept, the rest are answered 503
    and closed at once, the third address meets the total of 40; the server's descriptors stay
    bounded, Flight keeps answering, and everything is released when the clients go. (A server of
    its own, with a request timeout longer than the test, and its own catalog.)"""
    subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(data), "--catalog",
                    str(tmp_path / "flood.duckdb")], check=True, capture_output=True)
    server = Server(data, tmp_path / "flood.log", ARROWROOT_HTTP_REQUEST_TIMEOUT="60",
                    ARROWROOT_CATALOG=str(tmp_path / "flood.duckdb"))
    socks: list[tuple[str, socket.socket]] = []
    try:
        fds0 = server.ps.num_fds()
        t0 = time.monotonic()
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            for _ in range(100):
                socks.append((source, _connect(server, source)))
        assert time.monotonic() - t0 < 60
        deadline = time.monotonic() + 30  # until the server has accepted (and refused) them all
        while server.http_sockets() > 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert server.http_sockets() <= 40
        assert server.ps.num_fds() <= fds0 + 40 + 10
        assert _flight_read(server) == 2000
        kept: dict[str, int] = {}
        refused: dict[str, int] = {}
        for source, s in socks:
            s.settimeout(0.05)
            try:
                got = s.recv(4096)
            except TimeoutError:
                kept[source] = kept.get(source, 0) + 1  # kept: no answer until it sends a request
                continue
            assert got.startswith(b"HTTP/1.1 503"), got[:100]
            which = re.search(rb"from (this client|the server)", got).group(1).decode()
            refused[which] = refused.get(which, 0) + 1
        assert kept == {"127.0.0.1": 20, "127.0.0.2": 20}
        assert refused == {"this client": 160, "the server": 100}
    finally:
        for _, s in socks:
            s.close()
        try:
            deadline = time.monotonic() + 10
            while server.http_sockets() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.http_sockets() == 0
            assert httpx.get(server.url + "api/health").status_code == 200
        finally:
            server.stop()


def test_idle_trickling_and_kept_alive_connections_are_cut(server: Server) -> None:
    silent = _connect(server)
    trickle = _connect(server)
    t0 = time.monotonic()
    trickle.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    closed_at = None
    for _ in range(40):  # one byte every 0.2 s: uvicorn alone would wait forever
        try:
            trickle.sendall(b"a")
        except OSError:
            closed_at = time.monotonic() - t0
            break
        time.sleep(0.2)
    assert closed_at is not None and closed_at < 4.0
    assert _answer(silent).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t0 < 6.0
    kept = _connect(server)
    kept.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    t1 = time.monotonic()
    got = _answer(kept, 8.0)  # the answer, then the keep-alive timeout (1 s) closes the connection
    assert got.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in got
    assert time.monotonic() - t1 < 4.0


def test_header_bomb_is_refused_without_reading_it(server: Server) -> None:
    """100 MB of headers were read and answered 200 (+97 MB RSS); now 431 after 64 KiB."""
    rss0 = server.ps.memory_info().rss
    s = _connect(server)
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    line = b"X-Bomb: " + b"b" * 8000 + b"\r\n"
    sent = 0
    try:
        while sent < 100 << 20:
            s.sendall(line)
            sent += len(line)
    except OSError:
        pass
    assert sent < 8 << 20  # cut long before 100 MB
    got = _answer(s)
    assert got == b"" or got.startswith(b"HTTP/1.1 431")
    assert server.ps.memory_info().rss - rss0 < 32 << 20
    assert httpx.get(server.url + "api/health").status_code == 200


@pytest.mark.slow
def test_stalled_downloads_meet_the_stream_cap_and_are_cut(server: Server) -> None:
    """Downloads whose clients read nothing take stream slots (8 here); the next download is
    refused 429; after the idle timeout (2 s) their connections are cut and the slots are free."""
    stalled = []
    try:
        for _ in range(8):
            s = _connect(server)
            s.sendall(f"GET /api/data/{STALL}?format=arrow HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")  # headers and a first piece; then nothing read
            stalled.append(s)
        time.sleep(0.5)
        r = httpx.get(server.url + f"api/data/{STALL}?format=arrow", timeout=30)
        assert r.status_code == 429 and "resource exhausted" in r.json()["message"]
        time.sleep(5)  # 2 s idle, the reaper's turn; the cut reaches the clients
        for s in stalled:
            s.settimeout(10)
            got = 0
            with pytest.raises((ConnectionResetError, EOFError)):
                while True:  # what the kernel had buffered, then the end: never all 61 MiB
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise EOFError
                    got += len(chunk)
            assert got < 60 << 20
        r = httpx.get(server.url + "api/data/hep/events.root:events?columns=nMuon&format=csv", timeout=60)
        assert r.status_code == 200 and r.text.count("\n") == 2001
    finally:
        for s in stalled:
            s.close()


@pytest.mark.slow
def test_an_abandoned_scan_stops_within_a_second(server: Server) -> None:
    """A heavy cut sends nothing until it is done; its client leaving used to go unnoticed
    (abandoned scans still used CPU 300 s later). Now the read stops within a slice of the cut."""
    path = f"api/data/{STALL}?" + str(httpx.QueryParams({"columns": "x", "where": HEAVIER, "format": "csv"}))
    assert httpx.get(server.url + path, timeout=300).text.strip().strip('"') == "x"  # warm: reader open, chunk cached
    socks = []
    for _ in range(2):
        s = _connect(server)
        s.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    time.sleep(1.0)
    c0 = server.cpu()
    time.sleep(1.0)
    assert server.cpu() - c0 > 0.02  # they are scanning
    for s in socks:
        s.close()
    time.sleep(1.0)
    c1 = server.cpu()
    time.sleep(1.5)
    assert server.cpu() - c1 < 0.03  # stopped: nothing runs for them any more


@pytest.mark.slow
def test_health_answers_fast_under_heavy_http_work(server: Server) -> None:
    """Twelve heavy-cut downloads in flight (more than the HTTP pool's workers, fewer than its
    queue): /api/health — outside that pool — still answers in well under 100 ms."""
    path = f"api/data/{STALL}?" + str(httpx.QueryParams({"columns": "x", "where": HEAVY}))
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=300) as c:
            while not stop.is_set():
                try:
                    c.get(server.url + path)
                except httpx.HTTPError:
                    pass

    threads = [threading.Thread(target=load, daemon=True) for _ in range(12)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        latencies = []
        with httpx.Client(timeout=30) as c:
            for _ in range(20):
                t0 = time.perf_counter()
                assert c.get(server.url + "api/health").json()["status"] == "ok"
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.1)
        assert server.cpu() > 0  # (the load ran)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert statistics.median(latencies) < 0.1, latencies
