"""Folder datasets only when the files hold one table; ``allow_missing`` and the reasons a
dataset cannot be read, the same at every door (Python client, CLI, HTTP, SQL).

Real files: PyTables' ``smpl_*`` test files (a ``TestArray`` of int32, int64 and float64) and
km3net-testdata's ``event_info`` tables, which share a name but not their columns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from arrowroot.clients import Client
from arrowroot.clients.errors import InvalidRequest

tables = pytest.importorskip("tables")
km3 = pytest.importorskip("km3net_testdata")
PYTABLES = Path(os.path.dirname(tables.__file__)) / "tests"
EVENT_INFO = ["hdf5/geamon.h5", "hdf5/test_event_info.h5", "hdf5/mupage_ARCA.h5"]
TOML = """
[[dataset]]
name = "events"
files = "km3/*.h5"
object = "event_info"
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("one")
    if not (PYTABLES / "smpl_i32le.h5").exists():
        pytest.skip("this PyTables wheel ships no test files")
    (d / "ints").mkdir()
    for n in ("smpl_i32le.h5", "smpl_i64le.h5", "smpl_i32be.h5"):
        shutil.copy(PYTABLES / n, d / "ints" / n)
    (d / "mixed").mkdir()
    for n in ("smpl_i32le.h5", "smpl_f64le.h5"):
        shutil.copy(PYTABLES / n, d / "mixed" / n)
    (d / "km3").mkdir()
    for rel in EVENT_INFO:
        shutil.copy(km3.data_path(rel), d / "km3" / rel.split("/")[-1])
    with h5py.File(d / "quad.h5", "w") as f:  # float128: no Arrow type
        f.create_dataset("q", data=np.arange(4, dtype=np.longdouble))
    (d / "arrowroot.toml").write_text(TOML)
    return d


@pytest.fixture(scope="module")
def both(corpus):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_web import serve_both

    b = serve_both(corpus)
    yield b
    b.stop()


def test_folder_datasets_only_for_one_table(both):
    report = both.flight.indexer.run()
    names = {d.name for d in both.flight.catalog.datasets()}
    # int32 and int64 of the same array: a width drift the rule allows, widened to int64
    assert "ints/*.h5:TestArray" in names
    with Client(both.location) as c:
        t = c.read("ints/*.h5:TestArray")
        assert str(t.schema.field("TestArray").type) == "fixed_size_list<item: int64>[5]"
        want = [row for n in ("smpl_i32le.h5", "smpl_i64le.h5", "smpl_i32be.h5")
                for row in h5py.File(PYTABLES / n)["TestArray"][...].tolist()]
        assert t["TestArray"].to_pylist() == want
    # int32 with float64: not one table; both files stay listed, the report says why
    assert "mixed/*.h5:TestArray" not in names
    assert {"mixed/smpl_i32le.h5:TestArray", "mixed/smpl_f64le.h5:TestArray"} <= names
    why = {d["dataset"]: d for d in report.not_merged}
    assert why["mixed/*.h5:TestArray"]["reason"] == (
        "column 'TestArray' is fixed_size_list<item: double>[5] in smpl_f64le.h5 "
        "but fixed_size_list<item: int32>[5] in smpl_i32le.h5")
    # km3net's event_info tables of three writers: different columns, never merged by folder
    assert "km3/*.h5:event_info" not in names
    assert why["km3/*.h5:event_info"]["reason"].startswith("different columns: ")
    assert why["km3/*.h5:event_info"]["files"] == 3
    # declared, the same files are one dataset with full drift handling
    assert "events" in names and both.flight.catalog.dataset("events").attributes["schema_drift"]["missing"]


def _expected_weights() -> list:
    out: list = []
    for rel in sorted(EVENT_INFO, key=lambda r: r.split("/")[-1]):
        with h5py.File(km3.data_path(rel)) as f:
            t = f["event_info"]
            n = t.shape[0]
            out += t["det_id"].tolist() if "det_id" in t.dtype.names else [None] * n
    return out


@pytest.mark.slow
def test_allow_missing_at_every_door(both, tmp_path):
    want = _expected_weights()
    assert None in want and any(v is not None for v in want)
    with Client(both.location) as c:
        with pytest.raises(InvalidRequest, match=r"'det_id'.*allow_missing"):
            c.read("events", ["det_id"])
        assert c.read("events", ["det_id"], allow_missing=True)["det_id"].to_pylist() == want
        # SQL: the dataset() table function; without it the error is the read's own
        got = c.sql_batches('SELECT det_id FROM dataset(\'events\', allow_missing => true) w').read_all()
        assert got["det_id"].to_pylist() == want
        with pytest.raises(Exception, match=r"'det_id'.*allow_missing") as err:
            c.sql_batches('SELECT det_id FROM "events"').read_all()
        assert "exporting a stream" not in str(err.value)
    # CLI
    out = tmp_path / "w.parquet"
    r = run_cli("get", "events", str(out), "-c", "det_id", "-l", both.location)
    assert r.returncode == 1 and "allow_missing" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("get", "events", str(out), "-c", "det_id", "--allow-missing", "-l", both.location)
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out)["det_id"].to_pylist() == want
    # HTTP: the parameter, and the page's form field
    with both.http() as h:
        r = h.get("/api/data/events", params={"columns": "det_id", "format": "parquet"})
        assert r.status_code == 400 and "allow_missing" in r.json()["message"]
        r = h.get("/api/data/events", params={"columns": "det_id", "format": "parquet", "allow_missing": "true"})
        assert r.status_code == 200
        import io
        assert pq.read_table(io.BytesIO(r.content))["det_id"].to_pylist() == want
        page = h.get("/datasets/events", params={"columns": "det_id", "allow_missing": "on"})
        assert page.status_code == 200 and 'name="allow_missing"' in page.text and "checked" in page.text
        assert 'id="preview-error"' not in page.text


REASON = "HDF5 type float128 (128-bit) has no Arrow equivalent"


@pytest.mark.slow
def test_why_unreadable_is_said_at_every_door(both, tmp_path):
    name = "quad.h5:q"
    text = f"'{name}' has no readable columns: q: {REASON}"
    with Client(both.location) as c:
        with pytest.raises(InvalidRequest) as err:
            c.read(name)
        assert text in str(err.value)
        with pytest.raises(InvalidRequest) as err:
            c.schema(name)
        assert text in str(err.value)
        with pytest.raises(Exception) as err:
            c.sql_batches(f'SELECT * FROM "{name}"').read_all()
        assert text in str(err.value) and "at least one column" not in str(err.value)
    for args in (("schema", name), ("get", name, str(tmp_path / "q.parquet"))):
        r = run_cli(*args, "-l", both.location)
        assert r.returncode == 1 and text in r.stderr and "Traceback" not in r.stderr, r.stderr
    with both.http() as h:
        r = h.get(f"/api/data/{name}")
        assert r.status_code == 400 and text in r.json()["message"]
        assert REASON in h.get(f"/api/datasets/{name}").json()["unreadable"][0]["reason"]


def test_an_unreadable_column_named_says_why(both):
    """Columns some datasets cannot serve, named: the same reason through Flight, SQL and the CLI."""
    with h5py.File(both.flight.settings.root / "part.h5", "w") as f:
        g = f.create_group("t")
        g.create_dataset("ok", data=np.arange(3.0))
        g.create_dataset("q", data=np.arange(3, dtype=np.longdouble))
    both.flight.indexer.run()
    name = "part.h5:t"
    column = f"'q' cannot be read: {REASON}"
    with Client(both.location) as c:
        with pytest.raises(InvalidRequest, match=re.escape("columns: " + column)):
            c.read(name, ["q"])
        with pytest.raises(Exception) as err:
            c.sql_batches(f'SELECT q FROM "{name}"').read_all()
        assert column in str(err.value)
    r = run_cli("schema", name, "-l", both.location)
    assert r.returncode == 0 and r.stdout.splitlines() == ["ok: double", f"q: cannot be read: {REASON}"]
