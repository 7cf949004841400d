"""The Node.js client (clients/nodejs) against a real arrowroot server.

Shows that a non-Python gRPC stack can use the server: the client speaks Arrow Flight with
@grpc/grpc-js and a hand-written .proto, rebuilds the Arrow IPC stream from FlightData and decodes
it with apache-arrow. Its JSON summary of a read is compared with the same read done through
pyarrow.flight. Skipped only when node or npm is not installed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "nodejs"
CLIENT = CLIENT_DIR / "arrowroot-client.mjs"
EVENTS = "hep/events.root:events"
SCAN = "lab/scan.h5:detector"
MAX_SAFE_INTEGER = 2**53 - 1

NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed for the Node.js client test (not found on PATH)",
)]


@pytest.fixture(scope="session")
def nodejs_client() -> Path:
    """`npm ci` in clients/nodejs from the committed lock file, once; skipped when already current."""
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"the Node.js client needs node >= 18, found {version}")
    lock = CLIENT_DIR / "package-lock.json"
    stamp = CLIENT_DIR / "node_modules" / ".arrowroot-lock.sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text().strip() == digest):
        proc = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"],
            cwd=CLIENT_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"npm ci failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        stamp.write_text(digest + "\n")
    return CLIENT


def run_client(client: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE, str(client), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def json_lines(proc: subprocess.CompletedProcess) -> list[dict]:
    assert proc.returncode == 0, f"client exited {proc.returncode}:\n{proc.stderr}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------ the reference: pyarrow.flight


def pyarrow_read(location: str, request: dict) -> tuple[flight.FlightInfo, pa.Table]:
    """The same read as the Node client: GetFlightInfo(CMD json) then DoGet on each endpoint in order."""
    client = flight.connect(location)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request).encode()))
        tables = [client.do_get(ep.ticket).read_all() for ep in info.endpoints]
    finally:
        client.close()
    table = pa.concat_tables(tables) if tables else info.schema.empty_table()
    return info, table


def json_value(value):
    """A Python value as the Node client prints it (64-bit ints past 2**53 as strings, NaN as text)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def numeric_sum(array: pa.ChunkedArray):
    values = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_integer(values.type):
        return sum(v for v in values.to_pylist() if v is not None)  # exact
    return float(np.asarray(values.drop_null().cast(pa.float64()), dtype=np.float64).sum())


def summarize(table: pa.Table) -> dict:
    """What the Node client reports, computed with pyarrow."""
    first, sums, list_lengths = {}, {}, {}
    for name in table.column_names:
        column = table.column(name)
        if table.num_rows:
            first[name] = json_value(column[0].as_py())
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
            list_lengths[name] = int(pc.sum(pc.list_value_length(column)).as_py() or 0)
            if pa.types.is_integer(column.type.value_type) or pa.types.is_floating(column.type.value_type):
                sums[name] = numeric_sum(pc.list_flatten(column))
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            sums[name] = numeric_sum(column)
    return {"rows": table.num_rows, "columns": table.column_names, "first": first, "sum": sums,
            "list_lengths": list_lengths}


def assert_same_summary(node: dict, info: flight.FlightInfo, table: pa.Table) -> None:
    expected = summarize(table)
    assert node["rows"] == expected["rows"]
    assert node["columns"] == expected["columns"]
    assert node["endpoints"] == len(info.endpoints)
    assert node["total_records"] == info.total_records
    assert node["first"] == expected["first"]  # float32 -> double -> JSON round-trips exactly
    assert node["list_lengths"] == expected["list_lengths"]
    assert node["sum"].keys() == expected["sum"].keys()
    for name, value in expected["sum"].items():
        got = node["sum"][name]
        if isinstance(value, int):
            assert int(got) == value, name  # exact, whatever the width
        elif not math.isfinite(value):
            assert got == json_value(value), name
        else:
            assert got == pytest.approx(value, rel=1e-9, abs=1e-9), name


# ------------------------------------------------------------------ tests


def dataset_size(location: str, dataset: str) -> int:
    client = flight.connect(location)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"dataset": dataset}).encode()))
    finally:
        client.close()
    assert info.total_records > 0, f"{dataset} reports {info.total_records} records"
    return info.total_records


def descriptor_name(descriptor: flight.FlightDescriptor) -> str:
    """How the Node client names a ListFlights entry: the path joined by '/', or the command text."""
    if descriptor.descriptor_type == flight.DescriptorType.PATH:
        return "/".join(p.decode() if isinstance(p, bytes) else p for p in descriptor.path)
    return descriptor.command.decode()


def test_lists_datasets(sample_server, nodejs_client):
    (listing,) = json_lines(run_client(nodejs_client, sample_server.location))
    client = flight.connect(sample_server.location)
    try:
        expected = {descriptor_name(info.descriptor): info.total_records for info in client.list_flights()}
    finally:
        client.close()
    got = {d["name"]: d["total_records"] for d in listing["datasets"]}
    assert got == expected
    assert EVENTS in got and SCAN in got


def test_jagged_read_matches_pyarrow(sample_server, nodejs_client):
    n = dataset_size(sample_server.location, EVENTS)
    start, stop = min(100, n // 10), min(2100, n)
    request = {
        "dataset": EVENTS,
        "columns": ["run", "event", "nMuon", "Muon_pt", "Muon_eta", "MET_pt"],
        "entryStart": str(start),  # canonical protobuf JSON: int64 as a string, lowerCamelCase
        "entryStop": str(stop),
    }
    listing, node = json_lines(run_client(nodejs_client, sample_server.location, json.dumps(request)))
    assert any(d["name"] == EVENTS for d in listing["datasets"])
    info, table = pyarrow_read(sample_server.location, request)

    assert node["rows"] == stop - start == table.num_rows
    assert_same_summary(node, info, table)
    # jagged columns arrive as lists, not flattened: one list per entry, nMuon elements each
    for name in ("Muon_pt", "Muon_eta"):
        assert node["types"][name].startswith("List<"), node["types"][name]
        assert isinstance(node["first"][name], list)
        assert len(node["first"][name]) == node["first"]["nMuon"]
        assert node["list_lengths"][name] == node["sum"]["nMuon"]


def test_proto_field_names_from_stdin(sample_server, nodejs_client):
    n = dataset_size(sample_server.location, EVENTS)
    request = {"dataset": EVENTS, "columns": ["nMuon", "Muon_pt"], "entry_start": n // 2, "entry_stop": n}
    (node,) = json_lines(run_client(nodejs_client, "--no-list", sample_server.location, "-", stdin=json.dumps(request)))
    info, table = pyarrow_read(sample_server.location, request)
    assert node["rows"] == n - n // 2
    assert_same_summary(node, info, table)


def test_hdf5_all_columns_match_pyarrow(sample_server, nodejs_client):
    request = {"dataset": SCAN}
    (node,) = json_lines(run_client(nodejs_client, "--no-list", sample_server.location, json.dumps(request)))
    info, table = pyarrow_read(sample_server.location, request)
    assert {"time", "energy", "channel"} <= set(node["columns"])
    assert node["rows"] == dataset_size(sample_server.location, SCAN)
    assert_same_summary(node, info, table)


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
def test_many_endpoints_and_compressed_bodies(sample_server, nodejs_client, serve, tmp_path, compression):
    """Small endpoints and batches (many DoGet streams, many batches each), optionally compressed."""
    server = serve(sample_server.data_dir, catalog=tmp_path / "catalog.duckdb", endpoint_bytes=64 << 10,
                   compression=compression)
    n = dataset_size(server.location, EVENTS)
    request = {"dataset": EVENTS, "columns": ["event", "nMuon", "Muon_pt", "MET_pt"],
               "entryStart": "3", "entryStop": str(n - 5), "batchRows": "1000"}
    (node,) = json_lines(run_client(nodejs_client, "--no-list", server.location, json.dumps(request)))
    info, table = pyarrow_read(server.location, request)
    assert len(info.endpoints) > 1
    assert node["batches"] > node["endpoints"]
    assert node["rows"] == n - 8
    assert_same_summary(node, info, table)


def test_unknown_dataset_is_not_found(sample_server, nodejs_client):
    request = {"dataset": "hep/no-such-file.root:events"}
    proc = run_client(nodejs_client, "--no-list", sample_server.location, json.dumps(request))
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "GetFlightInfo failed: NOT_FOUND (5)" in proc.stderr, proc.stderr
    # the server's own message is passed through (pyarrow sees the same one)
    with pytest.raises(pa.ArrowException) as excinfo:
        pyarrow_read(sample_server.location, request)
    server_message = str(excinfo.value).split(". Detail:")[0].splitlines()[0].strip().strip('"')
    assert server_message and server_message in proc.stderr, (server_message, proc.stderr)


def test_unreachable_server_fails_cleanly(nodejs_client):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_client(nodejs_client, "--timeout", "20", f"grpc://127.0.0.1:{port}")
    assert proc.returncode == 1
    assert "ListFlights failed: UNAVAILABLE (14)" in proc.stderr, proc.stderr


def test_usage_errors_exit_2(nodejs_client):
    proc = run_client(nodejs_client, "http://127.0.0.1:1")
    assert proc.returncode == 2 and "unsupported location scheme" in proc.stderr
    proc = run_client(nodejs_client, "grpc://127.0.0.1:1", "{not json")
    assert proc.returncode == 2 and "not JSON" in proc.stderr
