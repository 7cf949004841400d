"""The Python client (parallel endpoints, library conversions) and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest
import uproot

from arrowroot.clients import Client

DS = "hep/events.root:events"


@pytest.fixture(scope="module")
def small_endpoints(sample_dir):
    from conftest import start_server

    r = start_server(sample_dir, endpoint_bytes=30_000, chunk_bytes=10_000, batch_bytes=4_000)
    yield r
    r.stop()


def test_read_parallel_endpoints_in_order(small_endpoints, sample_dir):
    with Client(small_endpoints.location, threads=4) as c:
        info = c.flight_info(DS, ["event", "Muon_pt"], entries=(150, 19_950))
        assert len(info.endpoints) == 4  # one per cluster: clusters are never cut into pieces
        reader = c.read_batches(DS, ["event", "Muon_pt"], entries=(150, 19_950))
        assert isinstance(reader, pa.RecordBatchReader)
        batches = list(reader)
        assert max(b.nbytes for b in batches) < 16_000  # split by bytes, not only rows
        table = pa.Table.from_batches(batches)
    assert table["event"].to_pylist() == list(range(150, 19_950))
    expected = uproot.open(sample_dir / "hep/events.root")["events"]["Muon_pt"].array(entry_start=150, entry_stop=19_950)
    assert ak.to_list(ak.from_arrow(table["Muon_pt"])) == ak.to_list(expected)


def test_path_descriptor_and_binary_command(sample_server):
    c = sample_server.flight()
    info = c.get_flight_info(fl.FlightDescriptor.for_path("lab/scan.h5:detector"))
    assert info.total_records == 20_000 and info.schema.names == ["channel", "energy", "time"]
    from arrowroot.protos import arrowroot_pb2 as pb

    req = pb.ReadRequest(dataset="lab/scan.h5:detector", columns=["time"], entry_start=5, entry_stop=8)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(req.SerializeToString()))
    t = pa.concat_tables(c.do_get(e.ticket).read_all() for e in info.endpoints)
    assert t["time"].to_pylist() == [0.005, 0.006, 0.007]
    # the canonical JSON mapping (camelCase, int64 as strings) is accepted too
    info = c.get_flight_info(fl.FlightDescriptor.for_command(
        b'{"dataset": "lab/scan.h5:detector", "columns": ["time"], "entryStart": "5", "entryStop": "6"}'))
    assert info.total_records == 1


def test_negative_and_clipped_ranges(sample_server):
    with Client(sample_server.location) as c:
        assert c.read(DS, ["event"], entries=(-3, None))["event"].to_pylist() == [19_997, 19_998, 19_999]
        assert c.read(DS, ["event"], entries=(19_998, 50_000)).num_rows == 2
        empty = c.read(DS, ["event"], entries=(100, 100))
        assert empty.num_rows == 0 and empty.schema.names == ["event"]


def test_libraries(sample_server, sample_dir):
    tree = uproot.open(sample_dir / "hep/events.root")["events"]
    with Client(sample_server.location) as c:
        df = c.read(DS, ["nMuon", "MET_pt"], entries=(0, 100), library="pd")
        np.testing.assert_array_equal(df["MET_pt"].to_numpy(), tree["MET_pt"].array(library="np", entry_stop=100))
        pl_df = c.read(DS, ["nMuon"], entries=(0, 100), library="pl")
        assert pl_df["nMuon"].to_list() == tree["nMuon"].array(library="np", entry_stop=100).tolist()
        arr = c.read(DS, ["Muon_pt"], entries=(0, 100), library="ak")
        assert ak.to_list(arr.Muon_pt) == ak.to_list(tree["Muon_pt"].array(entry_stop=100))
        arrays = c.read(DS, ["Muon_pt", "MET_pt"], entries=(0, 100), library="np")
        assert arrays["MET_pt"].dtype == np.float32 and arrays["Muon_pt"].dtype == object
        assert [list(a) for a in arrays["Muon_pt"]] == ak.to_list(tree["Muon_pt"].array(entry_stop=100))
        image = c.read("lab/scan.h5:entry/data/image", entries=(0, 2), library="np")["image"]
        assert image.shape == (2, 32, 32) and image.dtype == np.uint16
        with pytest.raises(ValueError, match="is not known"):
            c.read(DS, ["nMuon"], library="root")
        listing = c.datasets("lab/*")
        assert listing.column_names == ["name", "entries", "bytes", "columns"] and listing.num_rows == 6
        assert c.schema(DS, ["Muon_*"]).names == ["Muon_pt", "Muon_eta"]
        assert c.action("health")["status"] == "ok"


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_ls_schema_get(sample_server, tmp_path):
    loc = sample_server.location
    out = run_cli("ls", "-l", loc)
    assert out.returncode == 0 and "hep/events.root:events\t20000 entries" in out.stdout
    out = run_cli("schema", DS, "-l", loc)
    assert "Muon_pt: list<item: float>" in out.stdout
    target = tmp_path / "muons.parquet"
    out = run_cli("get", DS, str(target), "-c", "nMuon", "-c", "Muon_*", "-e", "100:2100", "-l", loc)
    assert out.returncode == 0, out.stderr
    t = pq.read_table(target)
    assert t.num_rows == 2000 and t.column_names == ["nMuon", "Muon_pt", "Muon_eta"]
    out = run_cli("get", DS, str(tmp_path / "x.csv"), "-c", "event", "-e", "0:3", "-l", loc)
    assert (tmp_path / "x.csv").read_text().splitlines() == ['"event"', "0", "1", "2"]
    out = run_cli("get", "hep/nope.root:events", str(tmp_path / "y.parquet"), "-l", loc)
    assert out.returncode == 1 and "closest: 'hep/events.root:events'" in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("arrowroot get: NotFound:")
    out = run_cli("action", "health", "-l", loc)
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "ok"
    out = run_cli("action", "health", "-l", "grpc://127.0.0.1:1")
    assert out.returncode == 1


@pytest.mark.slow
def test_cli_index_and_serve(tmp_path):
    from arrowroot.flight_server.cli.demo import write_sample_files

    write_sample_files(tmp_path, entries=1000)
    out = run_cli("index", str(tmp_path))
    assert out.returncode == 0 and "2 added" in out.stdout and "7 datasets" in out.stdout
    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving grpc://127.0.0.1:") and "(7 datasets, indexing ...)" in line
        port = int(line.split(":")[2].split()[0])
        with Client(f"grpc://127.0.0.1:{port}") as c:
            assert c.read(DS, ["event"], entries=(0, 5))["event"].to_pylist() == [0, 1, 2, 3, 4]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0
    log = proc.stderr.read()  # one access-log line per call
    assert "flight DoGet user=- dataset=hep/events.root:events rows=5 " in log and "entries=0:5" in log


@pytest.mark.slow
def test_demo_runs():
    out = run_cli("demo", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "hep/events.root:events, columns nMuon + Muon_*, entries 100-2100: 2000 rows" in out.stdout
    assert "numpy (2, 4, 4) uint16" in out.stdout
