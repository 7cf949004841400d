"""Worker processes that bind, plan and (for queries reading no dataset) run DuckDB queries.

DuckDB folds constant expressions while binding: that work escapes ``memory_limit`` and cannot
be interrupted. In a worker process it can be stopped: the server watches each job's deadline
and the worker's resident memory, and kills the worker when either is passed (the job then
fails with TimeoutError or MemoryError and a fresh worker takes its place). A worker serves
one job at a time, with a fresh DuckDB database per job; idle workers are kept for reuse.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from arrowroot.flight_server.core.errors import ResourceExhausted

from arrowroot.flight_server.sql import sandbox_worker as wire

__all__ = ["Sandbox", "SandboxError", "sandbox"]

WORKER = Path(wire.__file__)
POLL_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


class SandboxError(Exception):
    """A DuckDB error from the worker: ``kind`` is permission | interrupt | memory | value."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the server does not hit the worker mid-frame
        )
        self.peak = 0
        # The worker says it is ready once duckdb and pyarrow are imported (~0.3 s), so
        # that start-up never counts against a query's deadline.
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
    """One job on one worker; a watcher thread kills the worker on deadline, memory or cancel."""

    def __init__(self, pool: Sandbox, worker: _Worker, deadline: float, max_rss: int) -> None:
        self.pool, self.worker = pool, worker
        self.deadline, self.max_rss = deadline, max_rss
        self.reason: str | None = None
        self._done = threading.Event()
        self._state = threading.Lock()
        self._watch = threading.Thread(target=self._watch_loop, name="sql-sandbox-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        pid = self.worker.proc.pid
        while not self._done.wait(POLL_S):
            rss = rss_bytes(pid)
            self.worker.peak = max(self.worker.peak, rss)
            if rss > self.max_rss:
                self.stop("memory")
            elif time.monotonic() > self.deadline:
                self.stop("timeout")

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self, reason: str) -> None:
        """Kill the worker (the reading side then sees end of stream and reports ``reason``)."""
        with self._state:
            if self._done.is_set():
                return
            if self.reason is None:
                self.reason = reason
            self.worker.kill()

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
            self.fail()

    def receive(self) -> tuple[bytes, bytes]:
        try:
            frame = wire.read_frame(self.worker.proc.stdout)
        except (OSError, ValueError):
            frame = None
        if frame is None:
            self.fail()
        kind, data = frame
        if kind == b"E":
            err = json.loads(data)
            self.finish()
            raise SandboxError(err.get("kind", "value"), err.get("message", "query failed"))
        return kind, data

    def fail(self) -> None:
        """The worker went away: say why (deadline, memory, cancel, or a crash)."""
        reason = self.reason or "crash"
        self.worker.kill()
        self.finish()
        if reason == "timeout":
            raise TimeoutError("deadline")
        if reason == "memory":
            raise MemoryError(f"the query needed more than {self.max_rss >> 20} MiB of memory")
        if reason == "cancel":
            raise SandboxError("interrupt", "query cancelled")
        raise SandboxError("value", "the SQL worker stopped unexpectedly")

    def finish(self) -> None:
        with self._state:
            if self._done.is_set():
                return
            self._done.set()
        self.pool._release(self.worker)


class Sandbox:
    """A small pool of worker processes (started on demand, reused while healthy).

    At most ``max_workers`` jobs run at once; more wait for a free worker (starting a worker
    costs ~0.3 s of CPU, so a burst of queries must not start one each)."""

    def __init__(self, max_idle: int = 4, max_workers: int = 4) -> None:
        self.max_idle, self.max_workers = max_idle, max_workers
        self._idle: list[_Worker] = []
        self._busy = 0
        self._lock = threading.Condition()
        self._closed = False
        atexit.register(self.close)

    def _get(self, wait_s: float) -> _Worker:
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._busy >= self.max_workers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResourceExhausted(f"all {self.max_workers} SQL workers are busy; retry shortly")
                self._lock.wait(left)
            self._busy += 1
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    return w
        try:
            return _Worker()
        except BaseException:
            self._done_with_slot()
            raise

    def _done_with_slot(self) -> None:
        with self._lock:
            self._busy -= 1
            self._lock.notify()

    def _release(self, worker: _Worker, busy: bool = True) -> None:
        if busy:
            self._done_with_slot()
        with self._lock:
            if worker.alive() and not self._closed and len(self._idle) < self.max_idle:
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
            w = _Worker()
        except (OSError, SandboxError):
            return
        self._release(w, busy=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()

    def start(self, header: dict, tables: dict[str, pa.Table], params: pa.Table | None,
              timeout_s: float, max_rss: int) -> Job:
        job = Job(self, self._get(timeout_s), time.monotonic() + timeout_s, max_rss)
        job.send(header, tables, params)
        return job

    def call(self, header: dict, tables: dict[str, pa.Table], params: pa.Table | None,
             timeout_s: float, max_rss: int) -> dict:
        """Run a job that answers with one JSON result (plan)."""
        job = self.start(header, tables, params, timeout_s, max_rss)
        _, data = job.receive()
        job.finish()
        return json.loads(data)


def read_run(job: Job) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The result schema of a ``run`` job, and its batches (the job ends with the iterator)."""
    kind, data = job.receive()
    if kind == b"R":  # no rows and no schema cannot happen; be defensive
        job.finish()
        raise SandboxError("value", "the query produced no result schema")
    schema = pa.ipc.read_schema(pa.py_buffer(data))

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while True:
                kind, data = job.receive()
                if kind == b"R":
                    job.finish()
                    return
                yield pa.ipc.read_record_batch(pa.py_buffer(data), schema)
        finally:
            if not job.done:  # abandoned mid-stream: the worker is in an unknown state
                job.stop("cancel")
                job.finish()

    return schema, batches()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


_SANDBOX: Sandbox | None = None
_SANDBOX_LOCK = threading.Lock()


def sandbox() -> Sandbox:
    """The process-wide worker pool."""
    global _SANDBOX
    with _SANDBOX_LOCK:
        if _SANDBOX is None:
            _SANDBOX = Sandbox()
        return _SANDBOX
