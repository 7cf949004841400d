"""Prometheus metrics of one server (coordinator or data node), with ``prometheus_client``.

Each server owns a ``CollectorRegistry`` (several servers share a test process, and a node
exports its own). Two kinds of metric live in it:

* events: ``record`` is the sink of every finished access-log record of this server
  (``calllog.CallRecord``: door, method, status, seconds, rows, bytes) — the one place a call
  completes, on every door; Flight SQL executions are counted by outcome from the same records;
* state that other objects already keep (stream slots, the column-chunk cache, the indexer,
  membership, the login limiter, the workspace): small collectors read it at scrape time, so
  the hot paths carry no extra instrumentation.

Labels are bounded by construction: door and method come from code, status from the gRPC /
HTTP status set; dataset and user names are never labels. Per-user streams are summarised as
the number of users holding streams and the most any one user holds (a top-N of user names
would still grow the series set over time and publish who reads).

Served on ``/metrics`` of the HTTP port (``web/``) and, when HTTP is off, on ``--metrics-port``
(``MetricsServer``, started by ``server/ops.py``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from arrowroot.flight_server import __version__

__all__ = ["Metrics", "CONTENT_TYPE_LATEST", "http_route"]

#: call latency buckets, seconds: a GetFlightInfo is ~1 ms, a large DoGet minutes
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: distinct (door, method, status) combinations kept; more collapse into method="other"
MAX_CALL_SERIES = 400
_LABEL = re.compile(r"^[A-Za-z0-9_]{1,40}$")
#: HTTP path prefix → method label (bounded: never the dataset part of a path)
HTTP_ROUTES = (("/api/data/", "data"), ("/api/datasets/", "dataset"), ("/api/datasets", "datasets"),
               ("/api/health", "health"), ("/api/openapi.json", "openapi"), ("/datasets/", "dataset_page"),
               ("/plot/", "plot"), ("/login", "login"), ("/logout", "logout"), ("/metrics", "metrics"))
#: a Flight SQL execution's outcome from its call's status
SQL_OUTCOMES = {"OK": "ok", "CANCELLED": "cancelled", "DEADLINE_EXCEEDED": "timeout"}

def _label(value: object) -> str:
    text = str(value)
    return text if _LABEL.match(text) else "other"


def http_route(method: str) -> str:
    """The method label of an HTTP call from its access-log method ("GET /api/data/…" → "data")."""
    path = method.partition(" ")[2]
    if path == "/":
        return "index"
    for prefix, name in HTTP_ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


class Metrics:
    """The metrics of one server. ``enabled=False`` keeps the registry (so ``/metrics``
    still answers) but records nothing per call: the reference for the overhead bench."""

    def __init__(self, role: str = "coordinator", enabled: bool = True) -> None:
        self.enabled = enabled
        self.role = role
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        info = Gauge("arrowroot_build_info", "Version and role of this server (always 1).", ["version", "role"],
                     registry=r)
        info.labels(__version__, role).set(1)
        self.calls = Counter("arrowroot_calls", "Finished calls by door, method and status.",
                             ["door", "method", "status"], registry=r)
        self.latency = Histogram("arrowroot_call_duration_seconds", "Call duration from start to last byte.",
                                 ["door", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter("arrowroot_sent_rows", "Rows sent to clients, by door.", ["door"], registry=r)
        self.bytes = Counter("arrowroot_sent_bytes", "Arrow bytes sent to clients, by door.", ["door"], registry=r)
        self.sql = Counter("arrowroot_sql_queries", "Flight SQL query executions by outcome.", ["outcome"],
                           registry=r)
        self.heartbeats_sent = Counter("arrowroot_node_heartbeats_sent",
                                       "A data node's heartbeats to its coordinator, by outcome.", ["outcome"],
                                       registry=r)
        self.draining = Gauge("arrowroot_draining", "1 while the server drains before stopping.", registry=r)
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        self._children_lock = threading.Lock()

    # ------------------------------------------------------------ events

    def record(self, rec: Any) -> None:
        """The sink of this server's finished access-log records (``calllog.CallRecord``)."""
        if not self.enabled:
            return
        method = http_route(rec.method) if rec.door == "http" else rec.method
        # rows and bytes were sent by DoGet and HTTP answers; a GetFlightInfo's are the planned ones
        sent = rec.method == "DoGet" or rec.door == "http"
        self.record_call(rec.door, method, rec.status, rec.seconds, rec.rows if sent else 0,
                         rec.bytes if sent else 0)
        if rec.door == "flight_sql":
            if rec.method == "DoGet":  # a statement's execution and its results
                self.record_sql(SQL_OUTCOMES.get(rec.status, "error"))
            elif rec.method == "GetFlightInfo" and rec.status != "OK":  # refused when planned
                self.record_sql(SQL_OUTCOMES.get(rec.status, "error"))

    def record_call(self, door: str, method: str, status: str, seconds: float, rows: int = 0,
                    nbytes: int = 0) -> None:
        """One finished call: counted by (door, method, status), timed, its rows and bytes added."""
        if not self.enabled:
            return
        key = (door, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._child(key)
        calls, latency, rows_c, bytes_c = child
        calls.inc()
        latency.observe(seconds)
        if rows:
            rows_c.inc(rows)
        if nbytes:
            bytes_c.inc(nbytes)

    def _child(self, key: tuple[str, str, str]) -> tuple[Any, Any, Any, Any]:
        door, method, status = (_label(k) for k in key)
        with self._children_lock:
            if len(self._children) >= MAX_CALL_SERIES:
                method = "other"
            child = (self.calls.labels(door, method, status), self.latency.labels(door, method),
                     self.rows.labels(door), self.bytes.labels(door))
            if len(self._children) < MAX_CALL_SERIES:
                self._children[key] = child
            return child

    def record_sql(self, outcome: str) -> None:
        """One Flight SQL query ended: ok, error, cancelled or timeout."""
        if self.enabled:
            self.sql.labels(_label(outcome)).inc()

    # ------------------------------------------------------------ state read at scrape time

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Register ``read`` as a collector: it yields metric families when scraped."""
        self.registry.register(_Reader(read))

    def watch_streams(self, slots: Any) -> None:
        """Open streams, their limits and refusals (``server/streams.py``'s StreamSlots)."""
        def read() -> Iterator[Metric]:
            s = slots.snapshot()
            yield GaugeMetricFamily("arrowroot_streams_open", "DoGet streams sending now.", s["open"])
            yield GaugeMetricFamily("arrowroot_streams_limit", "Most DoGet streams sending at once.", slots.total)
            yield GaugeMetricFamily("arrowroot_stream_users", "Distinct users holding open streams "
                                    "(anonymous callers count as one).", s["users"])
            yield GaugeMetricFamily("arrowroot_streams_per_user_max", "Most streams one user holds now.",
                                    s["per_user_max"])
            yield GaugeMetricFamily("arrowroot_streams_per_user_limit", "Streams one user may hold.",
                                    slots.per_principal)
            refused = CounterMetricFamily("arrowroot_streams_refused", "Streams refused, by reason.",
                                          labels=["reason"])
            for reason, n in s["refused"].items():
                refused.add_metric([reason], n)
            yield refused
            yield CounterMetricFamily("arrowroot_streams_timed_out", "Streams ended because the client "
                                      "read nothing for the idle timeout.", s["timed_out"])
            yield CounterMetricFamily("arrowroot_streams_cancelled", "Streams cut at the drain deadline.",
                                      s["stopped"])
        self.watch(read)

    def watch_cache(self, chunks: Any) -> None:
        """The column-chunk cache (``execute/cache.py``)."""
        def read() -> Iterator[Metric]:
            s = chunks.stats()
            yield GaugeMetricFamily("arrowroot_cache_bytes", "Bytes of decoded column chunks held.", s["bytes"])
            yield GaugeMetricFamily("arrowroot_cache_limit_bytes", "The cache's byte budget.", s["max_bytes"])
            yield GaugeMetricFamily("arrowroot_cache_chunks", "Column chunks held.", s["chunks"])
            yield CounterMetricFamily("arrowroot_cache_hits", "Chunk lookups served from the cache.", s["hits"])
            yield CounterMetricFamily("arrowroot_cache_misses", "Chunk lookups that read the file.", s["misses"])
            yield CounterMetricFamily("arrowroot_cache_evictions", "Chunks dropped to stay in budget.",
                                      s["evictions"])
            yield CounterMetricFamily("arrowroot_cache_invalidations", "Chunks dropped because their file "
                                      "changed.", s["invalidations"])
        self.watch(read)

    def watch_indexer(self, indexer: Any, catalog: Any) -> None:
        """Index runs, files and errors, the indexing lag, and the catalog's size."""
        def read() -> Iterator[Metric]:
            t = indexer.totals()
            runs = CounterMetricFamily("arrowroot_index_runs", "Index runs by outcome.", labels=["outcome"])
            runs.add_metric(["ok"], t["runs"])
            runs.add_metric(["failed"], t["failed_runs"])
            yield runs
            files = CounterMetricFamily("arrowroot_index_files", "Files an index run looked at, by result.",
                                        labels=["result"])
            for result in ("added", "updated", "removed", "unchanged"):
                files.add_metric([result], t[result])
            yield files
            yield CounterMetricFamily("arrowroot_index_errors", "Files (or declared datasets) that failed to "
                                      "index, summed over runs.", t["errors"])
            yield GaugeMetricFamily("arrowroot_index_running", "1 while an index run is going.",
                                    int(bool(indexer.running)))
            if t["last_start"] is not None:
                # what changed on disk after the last finished run started may be missing
                yield GaugeMetricFamily("arrowroot_index_lag_seconds", "Seconds since the start of the last "
                                        "finished index run: how stale the catalog can be.",
                                        max(0.0, time.time() - t["last_start"]))
                yield GaugeMetricFamily("arrowroot_index_last_success_timestamp_seconds", "When the last "
                                        "finished index run ended (Unix time).", t["last_end"])
            yield GaugeMetricFamily("arrowroot_catalog_datasets", "Datasets in the catalog.",
                                    len(catalog.datasets()))
        self.watch(read)

    def watch_membership(self, membership: Any) -> None:
        """A coordinator's data nodes (``server/membership.py``)."""
        def read() -> Iterator[Metric]:
            nodes = membership.describe()
            alive = sum(1 for n in nodes if n["alive"])
            g = GaugeMetricFamily("arrowroot_nodes", "Data nodes known, by state.", labels=["state"])
            g.add_metric(["alive"], alive)
            g.add_metric(["down"], len(nodes) - alive)
            yield g
            c = membership.counts()
            beats = CounterMetricFamily("arrowroot_node_heartbeats", "Node registrations and heartbeats "
                                        "received, by outcome.", labels=["outcome"])
            beats.add_metric(["ok"], c["heartbeats"])
            beats.add_metric(["refused"], c["refused"])
            yield beats
            polls = CounterMetricFamily("arrowroot_node_polls", "Health polls of static nodes, by outcome.",
                                        labels=["outcome"])
            polls.add_metric(["ok"], c["polls_ok"])
            polls.add_metric(["failed"], c["polls_failed"])
            yield polls
            yield CounterMetricFamily("arrowroot_node_leaves", "Graceful leaves of data nodes.", c["leaves"])
        self.watch(read)

    def watch_coordinator(self, node: Any) -> None:
        """A data node's link to its coordinator (``server/node.py``)."""
        def read() -> Iterator[Metric]:
            up = node.coordinator_up()
            if up is not None:
                yield GaugeMetricFamily("arrowroot_node_coordinator_up", "1 while the last heartbeat to the "
                                        "coordinator went through.", int(up))
        self.watch(read)

    def watch_logins(self, limiter: Any) -> None:
        """Failed logins and lock-outs (``server/logins.py``)."""
        def read() -> Iterator[Metric]:
            s = limiter.counts()
            yield CounterMetricFamily("arrowroot_login_failures", "Logins with a wrong user name or password.",
                                      s["failures"])
            yield CounterMetricFamily("arrowroot_login_lockouts", "Times a user name was locked after "
                                      "repeated failures.", s["lockouts"])
            yield CounterMetricFamily("arrowroot_login_refused", "Login attempts refused unchecked while "
                                      "locked.", s["refused"])
            yield GaugeMetricFamily("arrowroot_login_locked_names", "User names locked now.", s["locked"])
        self.watch(read)

    def watch_workspace(self, workspace: Any) -> None:
        """Uploads, skims and the bytes the workspaces hold (``workspace/store.py``)."""
        def read() -> Iterator[Metric]:
            s = workspace.counts()
            ups = CounterMetricFamily("arrowroot_uploads", "Workspace datasets written (upload, derived, "
                                      "skim), by kind.", labels=["kind"])
            for kind, n in sorted(s["by_kind"].items()):
                ups.add_metric([_label(kind)], n)
            yield ups
            yield CounterMetricFamily("arrowroot_upload_bytes", "Bytes of workspace datasets written.",
                                      s["bytes_written"])
            datasets, nbytes = workspace.catalog.workspace_totals()
            yield GaugeMetricFamily("arrowroot_workspace_bytes", "Bytes the workspaces hold.", nbytes)
            yield GaugeMetricFamily("arrowroot_workspace_datasets", "Datasets the workspaces hold.", datasets)
        self.watch(read)

    def watch_sql(self, active: Callable[[], int]) -> None:
        self.watch(lambda: [GaugeMetricFamily("arrowroot_sql_queries_running",
                                              "Flight SQL queries executing or streaming now.", active())])

    # ------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _Reader:
    """A collector over a function; ``describe`` is empty so registering reads nothing."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self._read()
