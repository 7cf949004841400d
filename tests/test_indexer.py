"""The catalog follows the disk: incremental indexing, broken files, changed files, rescans."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.index.indexer import Indexer


def write_tree(path, n, value=1.0):
    with uproot.recreate(path) as f:
        t = f.mktree("t", {"x": "float64"})
        t.extend({"x": np.full(n, value)})


def test_incremental_index(tmp_path):
    write_sample_files(tmp_path)
    (tmp_path / "notes.txt").write_text("not data")
    cat = Catalog(tmp_path / ".arrowroot" / "catalog.duckdb")
    ix = Indexer(tmp_path, cat)
    first = ix.run()
    assert (first.added, first.updated, first.removed, first.errors) == (2, 0, 0, [])
    names = {d.name for d in cat.datasets()}
    assert "hep/events.root:events" in names and "lab/scan.h5:detector" in names
    second = ix.run()
    assert (second.added, second.updated, second.removed) == (0, 0, 0)
    assert second.unchanged == 3  # including the text file, remembered as not ours
    # change one file, delete another
    write_tree(tmp_path / "hep" / "events.root", 5)
    os.utime(tmp_path / "hep" / "events.root", (time.time() + 5, time.time() + 5))
    (tmp_path / "lab" / "scan.h5").unlink()
    third = ix.run()
    assert (third.added, third.updated, third.removed) == (0, 1, 1)
    names = {d.name: d.entries for d in cat.datasets()}
    assert names == {"hep/events.root:t": 5}
    cat.close()
    # the catalog persists across processes/opens
    again = Catalog(tmp_path / ".arrowroot" / "catalog.duckdb")
    assert [d.name for d in again.datasets()] == ["hep/events.root:t"]
    again.close()


def test_broken_files_are_recorded_and_do_not_stop_indexing(tmp_path):
    write_tree(tmp_path / "good.root", 10)
    data = (tmp_path / "good.root").read_bytes()
    (tmp_path / "truncated.root").write_bytes(data[:1000])
    (tmp_path / "fake.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    cat = Catalog()
    report = Indexer(tmp_path, cat).run()
    errors = dict(report.errors)
    assert set(errors) == {"truncated.root", "fake.h5"}
    assert "not a readable HDF5 file" in errors["fake.h5"]
    assert "not a readable ROOT file" in errors["truncated.root"]
    assert [d.name for d in cat.datasets()] == ["good.root:t"]
    assert cat.stats()["files_with_errors"] == 2
    assert dict(cat.file_errors()).keys() == {"truncated.root", "fake.h5"}


def test_unreadable_branches_listed_not_served(tmp_path):
    """A ROOT file written by ROOT itself (KM3NeT offline format) with branches uproot cannot interpret."""
    km3 = pytest.importorskip("km3net_testdata")
    shutil.copy(km3.data_path("offline/km3net_offline.root"), tmp_path / "km3.root")
    cat = Catalog()
    Indexer(tmp_path, cat).run()
    rec = cat.dataset("km3.root:E")
    bad = [c for c in rec.columns if not c.readable]
    assert bad and all(c.reason for c in bad)
    schema = pa.ipc.read_schema(pa.py_buffer(rec.schema))
    assert not {c.name for c in bad} & set(schema.names)


def test_rescan_action_and_changed_file(tmp_path, serve):
    write_tree(tmp_path / "a.root", 10)
    s = serve(tmp_path)
    c = s.flight()
    info = c.get_flight_info(fl.FlightDescriptor.for_path("a.root:t"))
    # the file changes behind the catalog's back: do_get refuses with UNAVAILABLE and re-indexes it
    write_tree(tmp_path / "a.root", 20, value=2.0)
    os.utime(tmp_path / "a.root", (time.time() + 10, time.time() + 10))
    with pytest.raises(fl.FlightUnavailableError, match="a.root: the file was modified since it was indexed"):
        c.do_get(info.endpoints[0].ticket).read_all()
    s.server.indexer.wait(10)
    deadline = time.time() + 10
    while s.server.catalog.dataset("a.root:t").entries != 20 and time.time() < deadline:
        time.sleep(0.05)
    info = c.get_flight_info(fl.FlightDescriptor.for_path("a.root:t"))
    assert c.do_get(info.endpoints[0].ticket).read_all()["x"].to_pylist() == [2.0] * 20
    # a new file appears; rescan of one sub-path picks it up
    (tmp_path / "sub").mkdir()
    write_tree(tmp_path / "sub" / "b.root", 3)
    result = json.loads(next(iter(c.do_action(fl.Action("rescan", b'{"path": "sub"}')))).body.to_pybytes())
    assert result["added"] == 1 and result["errors"] == []
    assert "sub/b.root:t" in {i.descriptor.path[0].decode() for i in c.list_flights()}
    # a deleted file: ask again and get a clear error
    info = c.get_flight_info(fl.FlightDescriptor.for_path("sub/b.root:t"))
    (tmp_path / "sub" / "b.root").unlink()
    with pytest.raises(fl.FlightUnavailableError, match="deleted"):
        c.do_get(info.endpoints[0].ticket).read_all()
    with pytest.raises(pa.ArrowInvalid, match="outside the served directory"):
        list(c.do_action(fl.Action("rescan", b'{"path": "../.."}')))


def test_health_and_stats(sample_server):
    c = sample_server.flight()
    health = json.loads(next(iter(c.do_action(fl.Action("health", b"")))).body.to_pybytes())
    assert health["status"] == "ok" and health["datasets"] == 7
    info = c.get_flight_info(fl.FlightDescriptor.for_path("lab/scan.h5:detector"))
    for ep in info.endpoints:
        c.do_get(ep.ticket).read_all()
    stats = json.loads(next(iter(c.do_action(fl.Action("stats", b"")))).body.to_pybytes())
    assert stats["files"] == 2 and stats["datasets"] == 7
    assert stats["served"]["lab/scan.h5:detector"]["rows"] >= 20_000
    actions = {a.type: a.description for a in c.list_actions()}
    assert set(actions) >= {"health", "rescan", "stats"} and all(actions.values())


def test_list_flights_criteria(sample_server):
    c = sample_server.flight()

    def names(criteria):
        return sorted(i.descriptor.path[0].decode() for i in c.list_flights(json.dumps(criteria).encode()))

    assert names({"name": "hep/*"}) == ["hep/events.root:events"]
    assert names({"format": "hdf5", "kind": "hdf5.table"}) == ["lab/scan.h5:detector", "lab/scan.h5:entry/data"]
    assert names({"has_column": "Muon_pt"}) == ["hep/events.root:events"]
    assert names({"attributes": {"sample_rate_hz": 1000.0}}) == ["lab/scan.h5:detector"]
    assert names({"attributes": {"units": "counts"}}) == ["lab/scan.h5:entry/data/image"]
    assert names({"attributes": {"units": "volts"}}) == []
    assert len(names({})) == 7
