"""Prometheus metrics: a real server, a scripted workload over Flight, Flight SQL and HTTP, then a
scrape parsed with prometheus_client's own text parser; the counts must match the workload."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.flight as fl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.clients import Client
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.service.metrics import MAX_CALL_SERIES, Metrics, http_route
from arrowroot.flight_server.web import WebServer

PASSWORD = "correct horse battery"
EVENTS = "hep/events.root:events"


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value, from a real GET of /metrics."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = write_sample_files(tmp_path_factory.mktemp("metrics"), entries=200_000)
    cat = Catalog(tmp_path_factory.mktemp("metrics_cat") / "catalog.duckdb")
    identities.add_user(cat, "alice", PASSWORD)
    identities.grant(cat, "hep/*", "user:alice")
    identities.grant(cat, "lab/*", "user:alice")
    server = ArrowrootServer(Settings(root=root, port=0, max_streams=1, batch_rows=1000, metrics_port=0),
                             catalog=cat)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    web = WebServer(server.service, port=0, flight_port=server.port).start()
    yield server, web, f"grpc://127.0.0.1:{server.port}"
    web.stop()
    server.shutdown()


@pytest.mark.slow
def test_a_scripted_workload_is_counted(served) -> None:
    server, web, location = served
    metrics_url = server.ops.metrics_server.url
    before = scrape(metrics_url)
    files_added = value(before, "arrowroot_index_files_total", result="added")
    assert value(before, "arrowroot_index_runs_total", outcome="ok") == 1
    assert files_added == len(server.catalog.files())
    assert value(before, "arrowroot_catalog_datasets") == len(server.catalog.datasets())
    assert value(before, "arrowroot_index_lag_seconds") >= 0
    assert value(before, "arrowroot_build_info", version=__import__("arrowroot.flight_server").flight_server.__version__,
                 role="coordinator") == 1

    # -- Flight: 3 reads of 20,000 rows, one unknown dataset, one bad request
    with Client(location, username="alice", password=PASSWORD) as c:
        for _ in range(3):
            info = c.flight_info(EVENTS, ["nMuon", "MET_pt"])
            assert len(info.endpoints) == 1
            assert c.read_info(info).read_all().num_rows == 200_000
        with pytest.raises(Exception, match="no dataset"):
            c.flight_info("hep/nothing.root:events")
        with pytest.raises(Exception):
            c.flight_info(EVENTS, ["nMuon"], where="nMuon >>> 2")
        # Flight SQL: one good query, one that fails
        assert c.sql(f'SELECT count(*) AS n FROM "{EVENTS}"').column("n")[0].as_py() == 200_000
        with pytest.raises(Exception):
            c.sql("SELECT nope FROM nowhere")
        # a workspace upload
        c.put("home/alice/small", pa.table({"x": pa.array(range(100), pa.int64())}))
        # an open stream holds the only slot: a second DoGet is refused
        info = c.flight_info(EVENTS)  # all columns, 1,000-row batches: far more than gRPC buffers
        reader = c._flight.do_get(info.endpoints[0].ticket, c._options())
        reader.read_chunk()
        during = scrape(metrics_url)
        assert value(during, "arrowroot_streams_open") == 1
        assert value(during, "arrowroot_stream_users") == 1
        assert value(during, "arrowroot_streams_per_user_max") == 1
        with pytest.raises(fl.FlightUnavailableError, match="resource exhausted"):
            c._flight.do_get(info.endpoints[0].ticket, c._options()).read_all()
        reader_rows = reader.read_all().num_rows + 1000

    # -- logins: 6 wrong passwords (the 6th locks the name), then one refused unchecked
    flight = fl.connect(location)
    for _ in range(7):
        bad = base64.b64encode(b"alice:wrong").decode()
        with pytest.raises(fl.FlightUnauthenticatedError):
            list(flight.list_flights(options=fl.FlightCallOptions(headers=[(b"authorization", f"Basic {bad}".encode())])))
    server.ctx.auth.logins.succeeded("alice")  # let the rest of the module log in

    # -- HTTP: the dataset list, a download, a 404
    http = httpx.Client(base_url=web.url, auth=("alice", PASSWORD), timeout=30)
    assert http.get("/api/datasets").status_code == 200
    down = http.get(f"/api/data/{EVENTS}", params={"columns": "nMuon", "format": "arrow"})
    assert down.status_code == 200
    assert pa.ipc.open_stream(down.content).read_all().num_rows == 200_000
    assert http.get("/api/datasets/no/such").status_code == 404
    time.sleep(0.3)  # call_completed of the last streams runs after the client saw the end

    after = scrape(metrics_url)
    # the metrics page on the HTTP port is the same registry
    http_page = scrape(web.url + "metrics")
    assert value(http_page, "arrowroot_calls_total", door="flight", method="DoGet", status="OK") == \
        value(after, "arrowroot_calls_total", door="flight", method="DoGet", status="OK")

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    reads = 4  # three full reads and the one held open, each one endpoint
    assert delta("arrowroot_calls_total", door="flight", method="DoGet", status="OK") == reads
    assert delta("arrowroot_calls_total", door="flight_sql", method="DoGet", status="OK") == 1
    assert delta("arrowroot_calls_total", door="flight", method="DoGet", status="UNAVAILABLE") == 1  # the cap
    assert delta("arrowroot_calls_total", door="flight", method="GetFlightInfo", status="NOT_FOUND") == 1
    assert delta("arrowroot_calls_total", door="flight", method="GetFlightInfo", status="INVALID_ARGUMENT") == 1
    assert delta("arrowroot_calls_total", door="workspace", method="DoPut", status="OK") == 1
    # refused at the door for bad credentials: still calls, and the login counters have them
    assert delta("arrowroot_calls_total", door="flight", method="ListFlights", status="UNAUTHENTICATED") == 7
    assert delta("arrowroot_call_duration_seconds_count", door="flight", method="DoGet") == reads + 1
    assert delta("arrowroot_sent_rows_total", door="flight") == 3 * 200_000 + reader_rows
    assert delta("arrowroot_sent_rows_total", door="flight_sql") == 1  # the one-row answer
    assert delta("arrowroot_sent_bytes_total", door="flight") > reads * 200_000 * 4
    assert value(after, "arrowroot_streams_refused_total", reason="server_limit") == 1
    assert value(after, "arrowroot_streams_open") == 0
    assert delta("arrowroot_sql_queries_total", outcome="ok") == 1
    assert delta("arrowroot_sql_queries_total", outcome="error") == 1
    assert delta("arrowroot_uploads_total", kind="upload") == 1
    assert delta("arrowroot_upload_bytes_total") > 0
    assert value(after, "arrowroot_workspace_datasets") == 1
    assert value(after, "arrowroot_workspace_bytes") > 0
    assert delta("arrowroot_login_failures_total") == 6
    assert delta("arrowroot_login_lockouts_total") == 1
    assert delta("arrowroot_login_refused_total") == 1
    # the same columns read again come from the column-chunk cache
    assert delta("arrowroot_cache_hits_total") > 0
    assert value(after, "arrowroot_cache_bytes") > 0
    assert delta("arrowroot_calls_total", door="http", method="datasets", status="OK") == 1
    assert delta("arrowroot_calls_total", door="http", method="data", status="OK") == 1
    assert delta("arrowroot_calls_total", door="http", method="dataset", status="NOT_FOUND") == 1
    assert delta("arrowroot_sent_rows_total", door="http") == 200_000
    assert delta("arrowroot_sent_bytes_total", door="http") > 200_000  # the access log counts Arrow bytes
    assert value(after, "process_resident_memory_bytes") > 0


def test_labels_are_bounded_and_named_by_convention(served) -> None:
    server, web, _ = served
    samples = scrape(server.ops.metrics_server.url)
    names = {n for n, _ in samples}
    ours = {n for n in names if n.startswith("arrowroot_")}
    assert ours, names
    for n in ours:
        assert n == n.lower() and " " not in n
    # no dataset or user name is ever a label value
    values = {v for _, labels in samples for _, v in labels}
    assert not any("alice" in v or "events" in v or "/" in v for v in values), values


def test_label_values_and_series_are_capped() -> None:
    m = Metrics("coordinator")
    m.record_call("flight", "Not A Label!", "OK", 0.01)
    for i in range(MAX_CALL_SERIES + 50):
        m.record_call("http", f"method{i}", "OK", 0.001)
    text = m.exposition().decode()
    assert 'method="other"' in text
    series = [line for line in text.splitlines() if line.startswith("arrowroot_calls_total{")]
    assert len(series) <= MAX_CALL_SERIES + 1


def test_off_counts_nothing_but_still_answers() -> None:
    m = Metrics("node", enabled=False)
    m.record_call("node", "DoGet", "OK", 0.5, 10, 100)
    text = m.exposition().decode()
    assert "arrowroot_calls_total{" not in text
    assert 'arrowroot_build_info{role="node"' in text


@pytest.mark.parametrize("method, label", [
    ("GET /", "index"), ("GET /api/data/…", "data"), ("GET /api/datasets", "datasets"),
    ("GET /api/datasets/…", "dataset"), ("POST /login", "login"), ("GET /metrics", "metrics"),
    ("GET /some/where/else", "other"),
])
def test_http_routes_are_bounded_labels(method: str, label: str) -> None:
    assert http_route(method) == label


def test_a_node_exports_its_own(tmp_path: Path) -> None:
    from arrowroot.flight_server.server.node import NodeServer

    write_sample_files(tmp_path, entries=2000)
    (tmp_path / "key").write_text("k" * 32)
    coord = ArrowrootServer(Settings(root=tmp_path, port=0, ticket_key_file=tmp_path / "key"))
    coord.indexer.run()
    threading.Thread(target=coord.serve, daemon=True).start()
    node = NodeServer(Settings(root=tmp_path, port=0, ticket_key_file=tmp_path / "key", metrics_port=0))
    threading.Thread(target=node.serve, daemon=True).start()
    try:
        node.join(f"grpc://127.0.0.1:{coord.port}", interval=0.2)
        deadline = time.monotonic() + 10
        while not coord.membership.live() and time.monotonic() < deadline:
            time.sleep(0.05)
        with Client(f"grpc://127.0.0.1:{coord.port}") as c:
            assert c.read(EVENTS, ["nMuon"]).num_rows == 2000
        time.sleep(0.5)
        n = scrape(node.ops.metrics_server.url)
        assert value(n, "arrowroot_build_info", version=__import__("arrowroot.flight_server").flight_server.__version__,
                     role="node") == 1
        assert total(n, "arrowroot_calls_total", door="node", method="DoGet", status="OK") >= 1
        assert total(n, "arrowroot_sent_rows_total", door="node") == 2000
        assert value(n, "arrowroot_node_coordinator_up") == 1
        assert value(n, "arrowroot_node_heartbeats_sent_total", outcome="ok") >= 1
        assert "arrowroot_cache_hits_total" in {k for k, _ in n}
        coord_samples = coord.ops.metrics.exposition().decode()
        parsed = {s.name: s for f in text_string_to_metric_families(coord_samples) for s in f.samples
                  if s.labels.get("state") == "alive" or s.labels.get("outcome") == "ok"}
        assert parsed["arrowroot_nodes"].value == 1
        assert parsed["arrowroot_node_heartbeats_total"].value >= 1
    finally:
        node.shutdown()
        coord.shutdown()
