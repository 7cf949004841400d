"""A bounded soak over every door at once: hostile and normal clients against real processes.

A coordinator (``arrowroot serve --http``) and one data node (``arrowroot node --join``), each under a
hard address-space cap (``prlimit --as``), take ~20 s of a mix, all at the same time: Flight reads
with cuts (some cancelled after their first batch), Flight SQL through ADBC (one query cancelled),
HTTP API calls and small downloads, HTTP downloads abandoned after their first bytes, idle HTTP
connections up to the per-client cap, Flight streams that stall (on the node and the coordinator),
uploads that end without their commit message or whose client is killed mid-upload, and bad
tickets to both servers. Then: both processes are up; ``/api/health`` answers within 100 ms and a
Flight read returns the file's rows; no half-written upload is left (no dataset, no temp file);
descriptors and threads of both processes are back near their starting counts; RSS is bounded.

Normal clients must see no error at all; hostile ones must get their clear error, never INTERNAL.
Small bounds keep it short: a 2 s stream idle timeout, 2 s HTTP request timeout, 1 s keep-alive.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from conftest import indexed_data_with_a_big_tree
from arrowroot.protos import PUT_COMMIT

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Cannot disable autocommit")]

AS_LIMIT = 5 << 30          # each server's address space: a bound that fails kills it, not the host
SOAK_S = 20.0               # the mixed load
EVENTS = "hep/events.root:events"
BIG = "big/stall.root:t"    # 61 MiB uncompressed in one endpoint: more than socket and gRPC buffers hold
CUT = "nMuon >= 2"
SLOW_SQL = "SELECT count(*) AS n FROM range(100000000000) a(x), range(100) b(y) WHERE x % 7 = y"
REUSE = "arrow-flight-reuse-connection://"
UPLOAD_CLIENT = Path(__file__).with_name("upload_client.py")
PAGE = os.sysconf("SC_PAGE_SIZE")
ENV = {"ARROWROOT_HTTP_MAX_CONNECTIONS": "60", "ARROWROOT_HTTP_MAX_CONNECTIONS_PER_CLIENT": "16",
       "ARROWROOT_HTTP_REQUEST_TIMEOUT": "2", "ARROWROOT_HTTP_KEEP_ALIVE": "1", "ARROWROOT_HTTP_WORKERS": "2",
       "ARROWROOT_MAX_STREAMS": "32", "ARROWROOT_MAX_STREAMS_PER_PRINCIPAL": "32",
       "ARROWROOT_STREAM_IDLE_TIMEOUT": "2", "ARROWROOT_SQL_WORKERS": "2", "ARROWROOT_SQL_MEMORY_LIMIT": "512MB",
       "ARROWROOT_SQL_TIMEOUT": "15", "ARROWROOT_CACHE_MB": "64"}


HEALTH_PROBE = """
import json, sys, time, httpx
url, seconds = sys.argv[1], float(sys.argv[2])
out, end = [], time.monotonic() + seconds
with httpx.Client(timeout=10) as h:
    while time.monotonic() < end:
        t0 = time.perf_counter()
        assert h.get(url).status_code == 200
        out.append(time.perf_counter() - t0)
        time.sleep(0.2)
print(json.dumps(out))
"""


class Proc:
    """An arrowroot process under ``prlimit --as``; its first lines name its locations."""

    def __init__(self, args: list[str], log: Path, lines: int = 1):
        cmd = ["prlimit", f"--as={AS_LIMIT}", sys.executable, "-m", "arrowroot.flight_server.cli", *args]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                                     env={**os.environ, **ENV})
        head = "".join(self.proc.stdout.readline() for _ in range(lines))
        grpc = re.search(r"grpc://[\w.:]+", head)
        http = re.search(r"http://[\w.]+:\d+/", head)
        if not grpc or (lines > 1 and not http):
            self.stop()
            raise AssertionError(f"{args[0]} did not start: {head!r}\n{log.read_text()[-2000:]}")
        self.location = grpc.group(0)
        self.url = http.group(0) if http else ""
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> collections.Counter[str]:
        """What the descriptors are (files, sockets, pipes), for a message when they leak."""
        out: collections.Counter[str] = collections.Counter()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out[re.sub(r"\[\d+\]", "", os.readlink(f"/proc/{self.pid}/fd/{fd}"))] += 1
            except OSError:
                pass
        return out

    def thread_names(self) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                out[open(f"/proc/{self.pid}/task/{tid}/comm").read().strip()] += 1
            except OSError:
                pass
        return out

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return indexed_data_with_a_big_tree(tmp_path_factory.mktemp("soak"), entries=20_000)


@pytest.fixture(scope="module")
def cluster(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    logs = tmp_path_factory.mktemp("soak_logs")
    key = logs / "node.key"
    key.write_text("the soak's shared ticket key\n")
    coord = Proc(["serve", str(data), "--port", "0", "--http", "0", "--no-index", "--key-file", str(key)],
                 logs / "coordinator.log", lines=2)
    node = None
    try:
        node = Proc(["node", str(data), "--port", "0", "--join", coord.location, "--key-file", str(key),
                     "--id", "n1"], logs / "node.log")
        c = fl.connect(coord.location)
        deadline = time.monotonic() + 30
        while node.location not in _locations(c, {"dataset": EVENTS, "columns": ["nMuon"]}):
            assert time.monotonic() < deadline, "the node never joined"
            time.sleep(0.2)
        c.close()
        yield coord, node
    finally:
        for p in (node, coord):
            if p is not None:
                p.stop()


# ------------------------------------------------------------------ helpers


def _info(c: fl.FlightClient, request: dict) -> fl.FlightInfo:
    return c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))


def _uri(location: fl.Location, coordinator: str) -> str:
    """An endpoint's location as a URI to connect to (the reuse-connection one is the coordinator)."""
    uri = location.uri.decode() if isinstance(location.uri, bytes) else location.uri
    return coordinator if uri.startswith(REUSE) else uri


def _locations(c: fl.FlightClient, request: dict) -> list[str]:
    return [_uri(loc, "") for ep in _info(c, request).endpoints for loc in ep.locations]


def _drain(reader: fl.FlightStreamReader) -> pa.Table:
    """Every batch (read_chunk, not read_all: pyarrow turns a CANCELLED status into SIGINT there)."""
    batches = []
    while True:
        try:
            batches.append(reader.read_chunk().data)
        except StopIteration:
            return pa.Table.from_batches(batches) if batches else pa.table({})


class Reads:
    """Reads that follow each endpoint's first location (the node), one client per location."""

    def __init__(self, coordinator: str):
        self.coordinator = coordinator
        self.clients: dict[str, fl.FlightClient] = {}

    def client(self, location: str) -> fl.FlightClient:
        if location not in self.clients:
            self.clients[location] = fl.connect(location)
        return self.clients[location]

    def read(self, request: dict) -> pa.Table:
        info = _info(self.client(self.coordinator), request)
        parts = []
        for ep in info.endpoints:
            loc = _uri(ep.locations[0], self.coordinator) if ep.locations else self.coordinator
            parts.append(_drain(self.client(loc).do_get(ep.ticket)))
        return pa.concat_tables(parts)

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def _upload_names(location: str) -> set[str]:
    c = fl.connect(location)
    try:
        return {f.descriptor.path[0].decode() if isinstance(f.descriptor.path[0], bytes) else f.descriptor.path[0]
                for f in c.list_flights(json.dumps({"name": "home/*"}).encode()) if f.descriptor.path}
    finally:
        c.close()


def _others(targets: collections.Counter[str], data: Path) -> dict[str, int]:
    return {t: n for t, n in targets.items() if not t.startswith(str(data))}


def _temp_files(root: Path) -> list[Path]:
    return [p for p in (root / ".arrowroot" / "workspace").rglob(".tmp-*")]


# ------------------------------------------------------------------ the soak


def test_every_door_under_hostile_load_stays_bounded(cluster: tuple[Proc, Proc], data: Path) -> None:
    coord, node = cluster
    events = uproot.open(data / "hep" / "events.root")["events"]["nMuon"].array(library="np")
    n_cut = int((events >= 2).sum())
    health = coord.url + "api/health"
    parts = urllib.parse.urlsplit(coord.url)
    http_address = (parts.hostname, parts.port)

    # warm every door once (lazy pools and workers), then take the starting counts
    reads = Reads(coord.location)
    assert reads.read({"dataset": EVENTS, "columns": ["nMuon"], "where": CUT}).num_rows == n_cut
    with flightsql.connect(coord.location, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{EVENTS}"')
        assert cur.fetchone() == (len(events),)
    with httpx.Client(base_url=coord.url, timeout=30) as http:
        assert http.get("/api/datasets").status_code == 200
        got = http.get(f"/api/data/{EVENTS}", params={"columns": "nMuon", "format": "arrow", "entry_stop": "100"})
        assert pa.ipc.open_stream(got.content).read_all().num_rows == 100
    reads.close()
    time.sleep(1.5)
    start = {p: (p.fds(), p.threads(), p.rss_mb()) for p in (coord, node)}
    start_fds = {p: p.fd_targets() for p in (coord, node)}
    start_threads = {p: p.thread_names() for p in (coord, node)}
    start_held = {p: (sum(start_fds[p].values()) - sum(n for t, n in start_fds[p].items() if t.startswith(str(data))),
                      sum(n for t, n in start_fds[p].items() if t.startswith(str(data))), start[p][1])
                  for p in (coord, node)}

    ok: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()        # anything unexpected: must stay 0
    refused: collections.Counter[str] = collections.Counter()       # hostile clients' expected answers
    examples: dict[str, str] = {}
    lat: dict[str, list[float]] = collections.defaultdict(list)
    lock = threading.Lock()
    stop_at = time.monotonic() + SOAK_S
    peak = {coord: 0.0, node: 0.0}

    def tally(counter: collections.Counter, key: str, exc: BaseException | None = None) -> None:
        with lock:
            counter[key] += 1
            if exc is not None:
                examples.setdefault(key, f"{type(exc).__name__}: {str(exc)[:200]}")

    def loop(kind: str, body: Callable[[random.Random], str | None]) -> Callable[[int], None]:
        """Call ``body`` until the end: None = served right, a string = the refusal a hostile
        client expects (by its error's name), an exception = wrong (counted in ``errors``)."""
        def run(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    answer = body(rng)
                except Exception as exc:  # noqa: BLE001 - counted, asserted below
                    tally(errors, f"{kind}:{type(exc).__name__}", exc)
                    continue
                if answer is not None:
                    tally(refused, f"{kind}:{answer}")
                    continue
                with lock:
                    ok[kind] += 1
                    lat[kind].append(time.perf_counter() - t0)
        return run

    def expected(exc: BaseException) -> str:
        """A hostile client's clear refusal: any Flight/Arrow error but INTERNAL."""
        if isinstance(exc, fl.FlightInternalError) or not isinstance(exc, (fl.FlightError, pa.ArrowException)):
            raise exc
        return type(exc).__name__

    # -- normal clients: every answer right, no error
    flight_reads = Reads(coord.location)

    def small_read(rng: random.Random) -> None:
        s = rng.randrange(0, len(events) - 50)
        t = flight_reads.read({"dataset": EVENTS, "columns": ["nMuon"], "entry_start": s, "entry_stop": s + 50})
        assert t["nMuon"].to_numpy().tolist() == events[s:s + 50].tolist()

    cut_reads = Reads(coord.location)

    def cut_read(rng: random.Random) -> None:
        t = cut_reads.read({"dataset": EVENTS, "columns": ["nMuon"], "where": CUT})
        assert t.num_rows == n_cut and t["nMuon"].to_numpy().min() >= 2

    sql_conn = flightsql.connect(coord.location, autocommit=True)

    def sql(rng: random.Random) -> None:
        with sql_conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{EVENTS}" WHERE {CUT}')
            assert cur.fetchone() == (n_cut,)

    http = httpx.Client(base_url=coord.url, timeout=30)

    def http_normal(rng: random.Random) -> None:
        assert http.get("/api/datasets").status_code == 200
        s = rng.randrange(0, len(events) - 100)
        r = http.get(f"/api/data/{EVENTS}", params={"columns": "nMuon", "format": "arrow",
                                                    "entry_start": str(s), "entry_stop": str(s + 100)})
        assert r.status_code == 200, r.text[:200]
        assert pa.ipc.open_stream(r.content).read_all()["nMuon"].to_numpy().tolist() == events[s:s + 100].tolist()

    committed: list[str] = []

    def upload(rng: random.Random) -> None:
        """An upload that finishes: committed, then read back."""
        name = f"home/local/soak-ok-{rng.randrange(10**9)}"
        t = pa.table({"x": np.arange(rng.randrange(1, 5000), dtype=np.int64)})
        c = flight_reads.client(coord.location)
        writer, _ = c.do_put(fl.FlightDescriptor.for_command(json.dumps({"dataset": name}).encode()), t.schema)
        writer.write_table(t)
        writer.write_metadata(pa.py_buffer(PUT_COMMIT))
        writer.close()
        assert flight_reads.read({"dataset": name}).column("x").equals(t.column("x"))
        committed.append(name)


    # -- hostile clients: each gets a clear refusal or is cut, never INTERNAL
    cancel_reads = Reads(coord.location)

    def cancelled_read(rng: random.Random) -> None:
        c = cancel_reads.client(coord.location)
        ep = _info(c, {"dataset": BIG, "where": "x > 10"}).endpoints[0]
        reader = cancel_reads.client(_uri(ep.locations[0], coord.location)).do_get(ep.ticket)
        reader.read_chunk()
        reader.cancel()

    def abandoned_download(rng: random.Random) -> None:
        with httpx.Client(base_url=coord.url, timeout=30) as h, \
                h.stream("GET", f"/api/data/{BIG}", params={"format": "arrow"}) as r:
            assert r.status_code == 200
            for _ in r.iter_raw(65536):
                break  # the client goes away after its first bytes

    def idle_connections(rng: random.Random) -> None:
        """Up to the per-client cap from one address, held silent: the server cuts each (408)."""
        socks = []
        try:
            for _ in range(16):
                s = socket.socket()
                s.bind(("127.0.0.4", 0))
                s.settimeout(10)
                s.connect(http_address)
                socks.append(s)
            for s in socks:
                got = s.recv(4096)
                if not got.startswith(b"HTTP/1.1 408"):
                    raise AssertionError(f"an idle connection got {got[:60]!r}")
        finally:
            for s in socks:
                s.close()

    stall_clients = Reads(coord.location)

    def stalled_stream(rng: random.Random) -> str:
        """Read one batch, then nothing for longer than the idle timeout: the stream is ended."""
        c = stall_clients.client(coord.location)
        ep = _info(c, {"dataset": BIG}).endpoints[0]
        where = rng.choice([node.location, coord.location])
        reader = stall_clients.client(where).do_get(ep.ticket)
        reader.read_chunk()
        # the idle timeout is 2 s, counted from the last batch the server made (gRPC's buffers take a
        # few after the first read), and the reaper looks every 0.5 s: 4.5 s leaves room for a loaded
        # machine (at 3 s, 5 node streams in one full run were still open)
        time.sleep(4.5)
        try:
            _drain(reader)
        except Exception as exc:  # noqa: BLE001 - sorted by expected()
            return ("node " if where == node.location else "coordinator ") + expected(exc)
        raise AssertionError(f"a stream stalled 4.5 s on the {'node' if where == node.location else 'coordinator'} "
                             "was not ended")

    def uncommitted_upload(rng: random.Random) -> str:
        c = fl.connect(coord.location)
        try:
            schema = pa.schema([("x", pa.int64())])
            name = f"home/local/soak-cut-{rng.randrange(10**9)}"
            writer, _ = c.do_put(fl.FlightDescriptor.for_command(json.dumps({"dataset": name}).encode()), schema)
            for i in range(3):
                writer.write_batch(pa.record_batch([pa.array(np.arange(1000) + i * 1000)], schema=schema))
            if rng.random() < 0.5:
                c.close()          # the connection goes away mid-upload
                return "connection closed"
            try:
                writer.close()     # ends without the commit message: refused
            except Exception as exc:  # noqa: BLE001 - sorted by expected()
                return expected(exc)
            raise AssertionError("an upload without its commit message was accepted")
        finally:
            c.close()

    def bad_ticket(rng: random.Random) -> None:
        c = flight_reads.client(rng.choice([coord.location, node.location]))
        good = _info(flight_reads.client(coord.location), {"dataset": EVENTS, "columns": ["nMuon"]}).endpoints[0]
        raw = bytearray(good.ticket.ticket)
        choice = rng.randrange(3)
        if choice == 0:
            raw = bytearray(rng.randbytes(rng.randrange(1, 300)))
        elif choice == 1:
            raw = raw[: rng.randrange(1, len(raw))]
        else:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        try:
            _drain(c.do_get(fl.Ticket(bytes(raw))))
        except Exception as exc:  # noqa: BLE001 - sorted by expected()
            return expected(exc)
        raise AssertionError("a damaged ticket was served")

    killed: list[str] = []

    def killed_uploader(rng: random.Random) -> None:
        """A real client process killed (SIGKILL) after its third batch."""
        name = f"home/local/soak-killed-{rng.randrange(10**9)}"
        p = subprocess.Popen([sys.executable, str(UPLOAD_CLIENT), coord.location, name, "raw"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            for line in p.stdout:
                if line.strip() == "sent 3":
                    break
            os.kill(p.pid, signal.SIGKILL)
        finally:
            p.kill()
            p.wait(10)
        killed.append(name)
        time.sleep(1.0)

    normal = [("small", small_read, 2), ("cut", cut_read, 1), ("sql", sql, 1), ("http", http_normal, 1), ("upload", upload, 1)]
    hostile = [("cancelled_read", cancelled_read, 1), ("abandoned_download", abandoned_download, 1),
               ("idle_http", idle_connections, 1), ("stalled_stream", stalled_stream, 1),
               ("uncommitted_upload", uncommitted_upload, 1), ("bad_ticket", bad_ticket, 1),
               ("killed_upload", killed_uploader, 1)]
    threads = [threading.Thread(target=loop(k, fn), args=(i,), daemon=True)
               for i, (k, fn, n) in enumerate(normal + hostile) for _ in range(n)]

    sql_cancel: list[str] = []

    def cancelled_sql() -> None:
        with flightsql.connect(coord.location, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(SLOW_SQL)
            threading.Timer(1.0, cur.adbc_cancel).start()
            try:
                cur.fetchone()
                sql_cancel.append("finished?!")
            except adbc_driver_manager.Error as exc:
                sql_cancel.append(str(exc)[:120])

    threads.append(threading.Thread(target=cancelled_sql, daemon=True))

    def sample() -> None:
        while time.monotonic() < stop_at:
            for p in peak:
                peak[p] = max(peak[p], p.rss_mb())
            time.sleep(0.5)

    threads.append(threading.Thread(target=sample, daemon=True))
    # /api/health probed from a process of its own (this one's GIL is busy with the clients)
    probe = subprocess.Popen([sys.executable, "-c", HEALTH_PROBE, health, str(SOAK_S)], stdout=subprocess.PIPE,
                             text=True)
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(SOAK_S + 30)
    wall = time.monotonic() - t_start
    health_lat = json.loads(probe.communicate(timeout=30)[0])
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    for r in (flight_reads, cut_reads, cancel_reads, stall_clients):
        r.close()
    sql_conn.close()
    http.close()

    # -- the report (printed with -s; the figures go in the note)
    print(f"\nsoak {wall:.1f} s: ok {dict(ok)}")
    print(f"normal-client errors {dict(errors)}")
    print(f"hostile answers {dict(refused)}")
    for key, ex in sorted(examples.items()):
        print(f"  {key}: {ex}")
    for kind, v in sorted(lat.items()):
        v = sorted(v)
        print(f"  {kind:20s} n={len(v):5d} p50={statistics.median(v) * 1e3:8.1f} ms "
              f"p99={v[min(len(v) - 1, int(0.99 * len(v)))] * 1e3:8.1f} ms")
    health_lat.sort()
    print(f"/api/health under load: n={len(health_lat)} median {statistics.median(health_lat) * 1e3:.1f} ms, "
          f"p90 {health_lat[int(0.9 * len(health_lat))] * 1e3:.1f} ms, max {health_lat[-1] * 1e3:.1f} ms")
    print(f"cancelled SQL: {sql_cancel}")

    # -- both servers up; health fast; the data right
    assert coord.alive() and node.alive(), (coord.log.read_text()[-3000:], node.log.read_text()[-3000:])
    assert not errors, (dict(errors), examples)
    for kind, _, _ in normal + hostile:
        assert ok[kind] + sum(n for k, n in refused.items() if k.startswith(kind + ":")) >= 1, kind
    assert sql_cancel and "cancel" in sql_cancel[0].lower(), sql_cancel
    assert not ok["stalled_stream"] and not ok["bad_ticket"] and not ok["uncommitted_upload"]
    with httpx.Client(timeout=10) as h:
        h.get(health)
        quick = []
        for _ in range(5):
            t0 = time.perf_counter()
            assert h.get(health).status_code == 200
            quick.append(time.perf_counter() - t0)
    print(f"health after: {[round(q * 1e3, 1) for q in quick]} ms")
    assert min(quick) < 0.1 and statistics.median(quick) < 0.1, quick
    final = Reads(coord.location)
    assert final.read({"dataset": EVENTS, "columns": ["nMuon"]})["nMuon"].to_numpy().tolist() == events.tolist()
    final.close()

    # -- nothing half-written: no interrupted upload is a dataset, no temp file is left
    names = _upload_names(coord.location)
    assert not {n for n in names if n.startswith(("home/local/soak-cut", "home/local/soak-killed"))}, names
    assert set(committed) <= names and committed
    deadline = time.monotonic() + 10
    while _temp_files(data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _temp_files(data) == []

    # -- descriptors and threads back near the start; memory bounded. Files a server read stay open
    # in its reader cache (bounded: ReaderCache.SIZE, 128), so they are bounded apart from the rest.
    def held(p: Proc) -> tuple[int, int, int]:
        """(sockets, pipes and other non-file descriptors; open data files; threads)."""
        targets = p.fd_targets()
        files = sum(n for t, n in targets.items() if t.startswith(str(data)))
        return sum(targets.values()) - files, files, p.threads()

    begin = {p: held(p) for p in (coord, node)}
    margin_fds, margin_threads = 8, 12   # threads: bounded pools (HTTP work, asyncio, read pool) grown once
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
            held(p)[0] > start_held[p][0] + margin_fds or held(p)[2] > start_held[p][2] + margin_threads
            for p in (coord, node)):
        time.sleep(0.25)
    end = {p: (held(p), p.rss_mb()) for p in (coord, node)}
    for p, label in ((coord, "coordinator"), (node, "node")):
        (fds0, files0, threads0), (fds1, files1, threads1) = start_held[p], end[p][0]
        print(f"{label}: other fds {fds0} -> {begin[p][0]} (just after) -> {fds1}, data files open {files0} -> {files1}, "
              f"threads {threads0} -> {begin[p][2]} -> {threads1}, RSS {start[p][2]:.0f} -> peak {peak[p]:.0f} -> "
              f"{end[p][1]:.0f} MiB; new other fds {_others(p.fd_targets() - start_fds[p], data)}, "
              f"new threads {dict(p.thread_names() - start_threads[p])}")
    for p in (coord, node):
        (fds0, files0, threads0), (fds1, files1, threads1) = start_held[p], end[p][0]
        assert fds1 <= fds0 + margin_fds, (start_held[p], end[p], _others(p.fd_targets() - start_fds[p], data))
        assert files1 <= 128 + 8, (files0, files1)
        assert threads1 <= threads0 + margin_threads, (start_held[p], end[p], p.thread_names() - start_threads[p])
        assert peak[p] < 1536 and end[p][1] < start[p][2] + 256, (start[p], peak[p], end[p])
