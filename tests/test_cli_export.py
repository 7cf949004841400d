"""Exports a user can trust: nested cells in CSV, no clobbered files, clear errors mid-stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pyarrow.csv as pcsv
import pytest

from arrowroot.clients import ServerError

pytestmark = pytest.mark.slow

DS = "hep/events.root:events"


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_csv_of_jagged_columns_holds_json_cells(sample_server, tmp_path):
    out = tmp_path / "muons.csv"
    r = run_cli("get", DS, str(out), "-c", "nMuon", "-c", "Muon_pt", "-e", "0:200", "-l", sample_server.location)
    assert r.returncode == 0, r.stderr
    table = pcsv.read_csv(out)
    with sample_server.client() as c:
        want = c.read(DS, ["nMuon", "Muon_pt"], entries=(0, 200))
    assert table.num_rows == 200
    assert table["nMuon"].to_pylist() == want["nMuon"].to_pylist()
    cells = [json.loads(v) for v in table["Muon_pt"].to_pylist()]
    assert all(a == pytest.approx(b, rel=1e-6) for a, b in zip(cells, want["Muon_pt"].to_pylist()))
    assert [len(c) for c in cells] == want["nMuon"].to_pylist()


def test_failed_export_leaves_the_existing_file(sample_server, tmp_path):
    out = tmp_path / "good.parquet"
    out.write_bytes(b"precious")
    r = run_cli("get", DS, str(out), "-c", "no_such_column", "-l", sample_server.location)
    assert r.returncode == 1
    assert "NotFound" in r.stderr and "no_such_column" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["good.parquet"]  # no partial file left behind


@pytest.fixture
def broken_mid_file(tmp_path):
    """An HDF5 dataset whose last chunk is corrupted in place (same size and mtime): it indexes
    fine and the first chunks read fine; the read fails part-way through."""
    root = tmp_path / "data"
    root.mkdir()
    path = root / "daq.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("adc", data=np.arange(400_000, dtype=np.int64), chunks=(50_000,), compression="gzip")
    return root, path


def _corrupt_last_chunk(path):
    with h5py.File(path, "r") as f:
        d = f["adc"]
        info = d.id.get_chunk_info(d.id.get_num_chunks() - 1)
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_mid_stream_failure_is_a_clear_error(serve, broken_mid_file, tmp_path):
    root, path = broken_mid_file
    server = serve(root, chunk_bytes=100_000, batch_bytes=100_000)
    _corrupt_last_chunk(path)
    with server.client() as c:
        seen = 0
        with pytest.raises(ServerError, match="cannot read the data") as err:
            for batch in c.read_batches("daq.h5:adc"):
                seen += batch.num_rows
        assert seen > 0 and str(root) not in str(err.value)
    out = tmp_path / "adc.parquet"
    out.write_bytes(b"keep me")
    r = run_cli("get", "daq.h5:adc", str(out), "-l", server.location)
    assert r.returncode == 1 and "cannot read the data" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert out.read_bytes() == b"keep me"
    assert not list(tmp_path.glob(".adc.parquet.*"))


def test_the_one_csv_cell_converter_holds_every_cell_type():
    """CLI get, sql -o and HTTP downloads share export.formats.csv_batch: nested cells of any type
    (timestamps, NaN, structs) become JSON text and dictionary columns their values."""
    import datetime
    import json

    import pyarrow as pa

    from arrowroot.flight_server.export.formats import csv_batch, csv_schema

    b = pa.record_batch({
        "when": pa.array([[datetime.datetime(2020, 1, 1, 12)], None]),
        "pt": pa.array([[1.5, float("nan")], []]),
        "p": pa.array([{"fX": 1.0, "fY": 2.0}, None]),
        "tag": pa.array(["a", "b"]).dictionary_encode(),
        "n": pa.array([1, 2]),
    })
    out = csv_batch(b, csv_schema(b.schema))
    assert out.schema.field("tag").type == pa.string() and out.schema.field("n").type == pa.int64()
    rows = out.to_pylist()
    assert rows[0]["when"] == '["2020-01-01 12:00:00"]' and rows[1]["when"] is None
    assert json.loads(rows[0]["pt"])[0] == 1.5 and rows[0]["pt"].endswith("NaN]")
    assert json.loads(rows[0]["p"]) == {"fX": 1.0, "fY": 2.0}
    assert [r["tag"] for r in rows] == ["a", "b"]
