"""Worker processes that bind, plan and execute DuckDB queries (``sandbox_worker.py``).

Each worker's address space is capped (``RLIMIT_AS``), so a query that grows past its memory
bound fails inside the worker, and the server kills a worker at its job's deadline, on cancel or
at shutdown; a fresh worker takes its place. A worker serves one job at a time, each on a fresh connection
to the worker's DuckDB database (what a job made is dropped after it); workers that ended their
last job cleanly are kept for reuse.

Slots: at most ``max_workers`` jobs run at once. A :class:`Job` owns its slot from the moment it
is granted until :meth:`Job.close`, which releases it exactly once, whoever calls it first — the
job's reader when the results are done or failed, the stream that dropped it, the job's own
watcher at the deadline (so even a job nobody closes gives its slot back by then), or the pool at
shutdown, which also wakes everybody waiting for a slot instead of letting them wait.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from arrowroot.flight_server.core.errors import ResourceExhausted, Unavailable

from arrowroot.flight_server.sql import sandbox_worker as wire

__all__ = ["Sandbox", "SandboxError", "WorkerGone", "Job", "sandbox"]

WORKER = Path(wire.__file__)
POLL_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")
#: a worker whose resident memory is above this after a job is not kept (allocators keep freed memory)
KEEP_RSS = 768 << 20
#: what a worker's environment adds: few malloc arenas (each reserves 64 MiB of address space
#: per thread otherwise) and Arrow on the system allocator (jemalloc/mimalloc reserve large
#: regions up front), so the address-space cap bounds memory actually used
PIPE_BYTES = 4 << 20
WORKER_ENV = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}


class SandboxError(Exception):
    """A DuckDB error from the worker: ``kind`` is permission | interrupt | memory | scan | value."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class WorkerGone(Exception):
    """The worker process ended mid-job; ``reason`` says why (timeout, cancel, memory, shutdown, crash)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _statm(pid: int) -> tuple[int, int]:
    """(virtual, resident) bytes of a process, from /proc (0, 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            size, rss = f.read().split()[:2]
        return int(size) * PAGE, int(rss) * PAGE
    except (OSError, ValueError):
        return 0, 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    return _statm(pid)[1]


def _widen(pipe: object) -> None:
    """Give a pipe the system's largest buffer (1 MiB by default, 64 KiB otherwise): a batch
    then crosses in one write instead of 16 hand-offs between the processes."""
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            size = int(f.read())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(size, PIPE_BYTES))
    except (OSError, ValueError, AttributeError):
        pass  # not Linux, or not allowed: the default size works, only slower


class _Worker:
    def __init__(self, as_bytes: int, database: tuple[str, int] | None = None) -> None:
        args = [str(as_bytes)] + ([database[0], str(database[1])] if database else [])
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **WORKER_ENV},
            start_new_session=True,  # a Ctrl-C to the server does not hit the worker mid-frame
        )
        for pipe in (self.proc.stdin, self.proc.stdout):
            _widen(pipe)
        # The worker says it is ready once duckdb and pyarrow are imported and its database is
        # open (~0.3 s), so that start-up never counts against a query's deadline.
        frame = wire.read_frame(self.proc.stdout)
        if frame is None or frame[0] != b"K":
            self.kill()
            raise SandboxError("value", "the SQL worker failed to start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class Job:
    """One job on one worker, owning the worker's slot until :meth:`close` (exactly once)."""

    def __init__(self, pool: Sandbox, worker: _Worker, deadline: float) -> None:
        self.pool, self.worker, self.deadline = pool, worker, deadline
        self.started = time.monotonic()
        self.reason: str | None = None
        self.peak_vm = 0
        self._closed = False
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, name="sql-sandbox-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        pid = self.worker.proc.pid
        while not self._stop.wait(POLL_S):
            self.peak_vm = max(self.peak_vm, _statm(pid)[0])
            if time.monotonic() > self.deadline:
                self.stop("timeout")
                self.close()  # the slot comes back at the deadline even if nobody reads on
                return

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def elapsed(self) -> float:
        """Seconds since the job started on its worker."""
        return time.monotonic() - self.started

    @property
    def stopped(self) -> bool:
        """Killed (deadline, cancel, shutdown) or closed: scans feeding it may stop."""
        return self.reason is not None or self._closed

    def stop(self, reason: str) -> None:
        """Kill the worker (thread-safe); the reading side then sees end of stream and reports ``reason``."""
        with self._state:
            if self.reason is None:
                self.reason = reason
        self.worker.kill()

    def close(self, reusable: bool = False) -> None:
        """End the job: its slot is released here, once. The worker goes back to the pool only
        when ``reusable`` (it answered its last frame and is alive), else it is killed."""
        with self._state:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if not reusable or self.reason is not None:
            self.worker.kill()
        self.pool._done(self)

    # ------------------------------------------------------------ frames

    def send(self, header: dict, tables: dict[str, pa.Table], params: pa.Table | None) -> None:
        header = dict(header, tables=list(tables), params=params is not None)
        out = self.worker.proc.stdin
        try:
            wire.write_frame(out, b"J", json.dumps(header).encode())
            for table in tables.values():
                wire.write_frame(out, b"T", _ipc(table))
            if params is not None:
                wire.write_frame(out, b"P", _ipc(params))
            out.flush()
        except (OSError, ValueError):
            raise self._gone() from None

    def reply(self, kind: bytes, data: bytes | memoryview | pa.Buffer = b"") -> None:
        """Answer a scan request of the worker."""
        out = self.worker.proc.stdin
        try:
            wire.write_frame(out, kind, data)
            out.flush()
        except (OSError, ValueError):
            raise self._gone() from None

    def receive(self) -> tuple[bytes, bytes]:
        """The worker's next frame; an ``E`` frame raises :class:`SandboxError`, a worker that
        went away :class:`WorkerGone` with the reason."""
        try:
            frame = wire.read_frame(self.worker.proc.stdout)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            raise self._gone()
        kind, data = frame
        if kind == b"E":
            err = json.loads(data)
            raise SandboxError(err.get("kind", "value"), err.get("message", "query failed"))
        return kind, data

    def _gone(self) -> WorkerGone:
        self.worker.kill()
        reason = self.reason
        code = self.worker.proc.returncode
        if reason is None:
            # killed by nobody here: the kernel (out of address space) or a crash
            near = self.pool.as_bytes and self.peak_vm >= 0.85 * self.pool.as_bytes
            reason = "memory" if near else "crash"
        return WorkerGone(reason, f"exit status {code}")


class Sandbox:
    """A small pool of worker processes (started on demand, reused while healthy).

    At most ``max_workers`` jobs run at once; more wait for a free slot up to their deadline
    (starting a worker costs ~0.3 s of CPU, so a burst of queries must not start one each)."""

    def __init__(self, as_bytes: int, max_workers: int, max_idle: int | None = None,
                 database: tuple[str, int] | None = None) -> None:
        self.as_bytes, self.max_workers = as_bytes, max_workers
        #: (memory_limit, threads) of the database a new worker opens before its first job
        self.database = database
        self.max_idle = max_workers if max_idle is None else max_idle
        self._idle: list[_Worker] = []
        self._jobs: set[Job] = set()
        self._held = 0  # slots granted and not yet given back
        self._lock = threading.Condition()
        self._closed = False
        atexit.register(self.close)

    @property
    def busy(self) -> int:
        """Slots held by jobs now (operators, tests)."""
        with self._lock:
            return self._held

    def start(self, header: dict, tables: dict[str, pa.Table], params: pa.Table | None,
              timeout_s: float) -> Job:
        """A job on a free worker, its frames sent, to finish within ``timeout_s``. Raises
        ResourceExhausted when no slot frees up within ``timeout_s``, Unavailable when the pool
        is shutting down."""
        worker = self._grant(time.monotonic() + timeout_s)
        try:
            if worker is None:
                worker = _Worker(self.as_bytes, self.database)
            # starting a worker (~0.3 s) does not count against the job's time
            job = Job(self, worker, time.monotonic() + timeout_s)
        except BaseException:
            self._give_back()
            if worker is not None:
                worker.kill()
            raise
        with self._lock:
            closed = self._closed
            if not closed:
                self._jobs.add(job)
        if closed:
            job.close()
            raise Unavailable("the server is stopping; SQL is not accepting queries")
        try:
            job.send(header, tables, params)
        except BaseException:
            job.close()
            raise
        return job

    def _grant(self, deadline: float) -> _Worker | None:
        """Take a slot and an idle worker if there is one (None: start one)."""
        with self._lock:
            while self._held >= self.max_workers and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResourceExhausted(f"all {self.max_workers} SQL workers are busy; retry shortly")
                self._lock.wait(left)
            if self._closed:
                raise Unavailable("the server is stopping; SQL is not accepting queries")
            self._held += 1
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    return w
                w.kill()
        return None

    def _give_back(self) -> None:
        with self._lock:
            self._held -= 1
            self._lock.notify()

    def _done(self, job: Job) -> None:
        """A job closed (called once per job): its slot frees, its worker is kept if still fit."""
        worker = job.worker
        keep = worker.alive() and rss_bytes(worker.proc.pid) < KEEP_RSS
        with self._lock:
            self._jobs.discard(job)
            self._held -= 1
            self._lock.notify()
            if keep and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(worker)
                return
            refill = not self._idle and not self._closed
        worker.kill()
        if refill:  # a killed worker is replaced in the background, off the next query's path
            threading.Thread(target=self.warm, name="sql-sandbox-start", daemon=True).start()

    def warm(self) -> None:
        """Start one worker ahead of the first query (a worker costs ~0.3 s to start)."""
        with self._lock:
            if self._idle or self._closed:
                return
        try:
            w = _Worker(self.as_bytes, self.database)
        except (OSError, SandboxError):
            return
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(w)
                return
        w.kill()

    def close(self) -> None:
        """Stop: kill every worker, end every job, wake everybody waiting for a slot."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            jobs = list(self._jobs)
            self._lock.notify_all()
        for w in idle:
            w.kill()
        for job in jobs:
            job.stop("shutdown")
            job.close()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


_SANDBOXES: dict[tuple, Sandbox] = {}
_SANDBOX_LOCK = threading.Lock()


def sandbox(as_bytes: int, max_workers: int, database: tuple[str, int] | None = None) -> Sandbox:
    """A process-wide worker pool for one cap, size and database setting (engines without a pool
    of their own; a server owns its pool)."""
    key = (as_bytes, max_workers, database)
    with _SANDBOX_LOCK:
        pool = _SANDBOXES.get(key)
        if pool is None or pool._closed:
            pool = _SANDBOXES[key] = Sandbox(as_bytes, max_workers, database=database)
        return pool
