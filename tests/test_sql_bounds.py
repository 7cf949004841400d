"""SQL bounded like its planning: memory, time, worker slots and shutdown (issues 21 and 22).

Queries execute in sandboxed worker processes (``sql/sandbox.py``). The memory bomb runs only
against a server that is itself a subprocess under a hard address-space cap (``prlimit --as``),
so the machine is never at risk whatever happens; everything else uses in-process servers.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.protos import flight_sql as fs
from tests.conftest import RunningServer, start_server

pytestmark = pytest.mark.slow   # SQL workers killed, memory bombs under prlimit, SIGTERM

EVENTS = "hep/events.root:events"
N = 4000
#: grows a string per row (300 MB × (nMuon + 1)): past DuckDB's memory_limit, which does not
#: count it, and past any bound but a hard one
BOMB = f"SELECT max(length(repeat('x', ((nMuon + 1)::BIGINT * 300000000)))) AS n FROM \"{EVENTS}\""
SERVER_AS = 4_000_000_000   # the server subprocess's hard address-space cap (its baseline is ~1.5 GB)


def _sql_info(c: fl.FlightClient, query: str) -> fl.FlightInfo:
    return c.get_flight_info(fl.FlightDescriptor.for_command(fs.pack(fs.CommandStatementQuery(query=query))))


def _sql(c: fl.FlightClient, query: str, timeout: float | None = None) -> pa.Table:
    info = _sql_info(c, query)
    opts = fl.FlightCallOptions(timeout=timeout) if timeout else None
    return c.do_get(info.endpoints[0].ticket, opts).read_all() if opts else c.do_get(info.endpoints[0].ticket).read_all()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_files(tmp_path_factory.mktemp("sqlbounds"), entries=N)


# ----------------------------------------------------------------------------- memory (a capped subprocess)


def _status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS / VmSize of a process in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "VmSize", "VmPeak"):
                out[key] = int(value.split()[0]) * 1024
    return out


class CappedServer:
    """``arrowroot serve`` in a subprocess whose address space is capped (prlimit --as)."""

    def __init__(self, root: Path, env: dict[str, str], cap: int = SERVER_AS) -> None:
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True, env={**os.environ, **env})
        cmd = [sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0", "--no-index"]
        prlimit = shutil.which("prlimit")
        kwargs: dict = {}
        if prlimit:
            cmd = [prlimit, f"--as={cap}", "--", *cmd]
        else:  # the same cap without util-linux
            kwargs["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **env}, **kwargs)
        line = self.proc.stdout.readline()
        match = re.search(r"grpc://[\w.]+:\d+", line)
        if not match:
            self.stop()
            raise RuntimeError(f"the capped server did not start: {line!r}")
        self.location = match.group(0)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 30) -> float:
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t0


_DUCKDB_ALONE = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import duckdb
con = duckdb.connect(config={"memory_limit": "256MB", "threads": 1})
try:
    con.sql("SELECT max(length(repeat('x', ((i % 4) + 1) * 200000000))) FROM range(8) t(i)").fetchall()
except Exception:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_duckdb_memory_limit_alone_does_not_hold_per_row_growth() -> None:
    """Why queries run in capped workers: with memory_limit=256MB, DuckDB itself grows per-row
    strings far past it (measured in a subprocess capped at 3 GiB of address space)."""
    out = subprocess.run([sys.executable, "-c", _DUCKDB_ALONE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    peak = int(out.stdout.strip().splitlines()[-1])
    assert peak > 3 * 256_000_000, f"peak RSS {peak >> 20} MiB under memory_limit=256MB"


@pytest.fixture
def capped(data: Path) -> Iterator[CappedServer]:
    server = CappedServer(data, {"ARROWROOT_SQL_MEMORY_LIMIT": "256MB", "ARROWROOT_SQL_TIMEOUT": "60",
                                 "ARROWROOT_SQL_WORKERS": "2"})
    yield server
    server.stop()


def test_per_row_growth_is_resource_exhausted_and_the_server_stays_small(capped: CappedServer) -> None:
    """The query that made the server reach 23 GB: stopped in its worker by the address-space
    cap (sql_memory_limit + 1 GiB), answered "resource exhausted", the server's own memory flat."""
    c = fl.connect(capped.location)
    assert _sql(c, f'SELECT count(*) AS n FROM "{EVENTS}"').column("n").to_pylist() == [N]
    before = _status(capped.proc.pid)
    t0 = time.monotonic()
    with pytest.raises(fl.FlightUnavailableError, match="resource exhausted: .*memory") as err:
        _sql(c, BOMB)
    assert time.monotonic() - t0 < 60, "stopped by the memory bound, not by the timeout"
    assert "sql_memory_limit" in str(err.value)
    after = _status(capped.proc.pid)
    assert capped.proc.poll() is None, "the server is still up"
    # the bomb grew nothing in the server: its resident peak stays where serving left it
    assert after["VmHWM"] < before["VmHWM"] + (200 << 20), (before, after)
    assert after["VmHWM"] < 1 << 30
    # and SQL keeps working, with the dataset read as before
    got = _sql(c, f'SELECT count(*) AS n, sum(nMuon) AS s FROM "{EVENTS}"')
    assert got.column("n").to_pylist() == [N]
    assert _sql(c, "SELECT 42 AS x").column("x").to_pylist() == [42]


def test_sigterm_does_not_wait_for_a_sql_worker(data: Path) -> None:
    """One worker busy with a long query, another query waiting for it: SIGTERM still ends the
    server at once (the pool wakes the waiter and stops the running query)."""
    server = CappedServer(data, {"ARROWROOT_SQL_WORKERS": "1", "ARROWROOT_SQL_TIMEOUT": "120"})
    try:
        slow = "SELECT count(*) AS n FROM range(100000000000) a(x), range(100) b(y) WHERE x % 7 = y"
        outcomes: dict[str, str] = {}
        planned = threading.Event()

        def run(name: str, query: str) -> None:
            c = fl.connect(server.location)
            try:
                info = _sql_info(c, query)
                planned.set()
                c.do_get(info.endpoints[0].ticket).read_all()
                outcomes[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - the shutdown ends it with some status
                outcomes[name] = type(exc).__name__

        first = threading.Thread(target=run, args=("slow", slow), daemon=True)
        first.start()
        assert planned.wait(60)
        time.sleep(1.5)  # the one worker is executing the slow query now
        waiting = threading.Thread(target=run, args=("waiting", "SELECT 2 AS x"), daemon=True)
        waiting.start()  # needs the same (only) worker: waits for its slot
        time.sleep(1.5)
        took = server.stop(signal.SIGTERM, wait=60)
        assert took < 15, f"SIGTERM took {took:.1f} s"
        assert server.proc.returncode == 0
        first.join(10)
        waiting.join(10)
        assert outcomes.get("slow") not in (None, "ok"), outcomes
    finally:
        server.stop(signal.SIGKILL)


# ----------------------------------------------------------------------------- in-process servers


@pytest.fixture(scope="module")
def served(data: Path) -> Iterator[RunningServer]:
    r = start_server(data, sql_timeout=3.0, sql_workers=2)
    yield r
    r.stop()


def _idle(server: RunningServer, within: float = 10.0) -> bool:
    """Whether every SQL worker slot comes back and no query is left running."""
    front = server.server.sql
    end = time.monotonic() + within
    while time.monotonic() < end:
        if front.pool.busy == 0 and not front.active_queries():
            return True
        time.sleep(0.05)
    return False


def test_timeout_is_deadline_exceeded_with_the_reason_and_frees_the_worker(served: RunningServer) -> None:
    c = served.flight()
    t0 = time.monotonic()
    with pytest.raises(fl.FlightTimedOutError, match="3 s time limit"):
        _sql(c, f'SELECT count(*) FROM "{EVENTS}" a, range(1000000000) b(x) WHERE a.nMuon * x = -1')
    assert time.monotonic() - t0 < 15
    assert _idle(served)
    assert _sql(c, "SELECT 7 AS x").column("x").to_pylist() == [7]


def test_dropped_dogets_never_leak_a_worker(served: RunningServer) -> None:
    """100 DoGets dropped at random moments — before the first batch, mid-stream, by a client
    deadline, by cancelling — on queries that read no dataset and queries that do; afterwards
    every slot is free and queries run normally (a leak froze SQL after 4 of these)."""
    rng = random.Random(22)
    queries = ["SELECT 1 AS x", "SELECT x FROM range(3000000) t(x)",
               f'SELECT event, MET_pt FROM "{EVENTS}"', f'SELECT count(*) FROM "{EVENTS}" a, range(2000) b(y)']
    c = served.flight()
    refused = 0
    for _ in range(100):
        query = rng.choice(queries)
        how = rng.choice(["unread", "first", "deadline", "cancel"])
        try:
            info = _sql_info(c, query)
            if how == "deadline":
                c.do_get(info.endpoints[0].ticket, fl.FlightCallOptions(timeout=rng.uniform(0.001, 0.05))).read_all()
                continue
            reader = c.do_get(info.endpoints[0].ticket)
            if how == "first":
                reader.read_chunk()
            if how == "cancel":
                time.sleep(rng.uniform(0, 0.02))
                reader.cancel()
            del reader
        except (StopIteration, fl.FlightTimedOutError, fl.FlightCancelledError):
            pass
        except fl.FlightUnavailableError as exc:  # both workers still busy with dropped queries: a fair answer
            assert "SQL workers are busy" in str(exc)
            refused += 1
    c.close()
    assert _idle(served, within=20), f"busy slots: {served.server.sql.pool.busy}"
    c = served.flight()
    t0 = time.monotonic()
    for _ in range(5):
        assert _sql(c, f'SELECT count(*) AS n FROM "{EVENTS}"').column("n").to_pylist() == [N]
    assert time.monotonic() - t0 < 10


def test_unread_prepared_statement_dogets_never_leak(served: RunningServer) -> None:
    """The leak's original trigger: a prepared ``SELECT ? AS x`` whose DoGet is dropped unread."""
    c = served.flight()
    for _ in range(12):  # three times the number of workers
        result = fs.unpack(list(c.do_action(fl.Action("CreatePreparedStatement", fs.pack(
            fs.ActionCreatePreparedStatementRequest(query="SELECT ? AS x")))))[0].body.to_pybytes())
        handle = result.prepared_statement_handle
        desc = fl.FlightDescriptor.for_command(fs.pack(fs.CommandPreparedStatementQuery(
            prepared_statement_handle=handle)))
        writer, meta = c.do_put(desc, pa.schema([("x", pa.int64())]))
        writer.write_table(pa.table({"x": pa.array([5], pa.int64())}))
        writer.done_writing()
        meta.read()
        writer.close()
        info = c.get_flight_info(desc)
        reader = c.do_get(info.endpoints[0].ticket)
        reader.cancel()
        del reader
    assert _idle(served)
    assert _sql(c, "SELECT 3 AS x").column("x").to_pylist() == [3]


def test_results_stream_while_the_scan_is_still_reading(tmp_path: Path, serve) -> None:
    """A large result leaves in batches while the worker is still reading the dataset: the
    first batches arrive before the dataset's scan has ended (nothing is materialised whole)."""
    import numpy as np
    import uproot

    n = 2_000_000
    with uproot.recreate(tmp_path / "big.root") as f:
        f["t"] = {"x": np.arange(n, dtype=np.float64), "y": np.ones(n, dtype=np.float64)}
    server = serve(tmp_path, sql_timeout=60.0)
    c = server.flight()
    info = _sql_info(c, 'SELECT x, y FROM "big.root:t"')
    reader = c.do_get(info.endpoints[0].ticket)
    first = reader.read_chunk().data
    assert first.num_rows > 0
    time.sleep(0.5)  # a materialising engine would finish reading now
    assert server.server.sql.active_queries(), "the query is still running while its first batch is out"
    assert "big.root:t" not in server.server.sql.scanned.snapshot(), "the scan has not ended: results stream"
    rest = reader.read_all()
    assert first.num_rows + rest.num_rows == n
    assert server.server.sql.scanned["big.root:t"]["rows"] == n
