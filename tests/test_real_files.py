"""Files written by ROOT itself and by other HDF5 writers, as a PyPI package ships them.

km3net-testdata carries KM3NeT's ROOT files (written by ROOT through Jpp/aanet, with split
objects, TDirectories, several cycles and branches uproot cannot interpret) and HDF5
files written by km3pipe/PyTables. Every readable column of every dataset must equal what
uproot / h5py read directly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.clients import Client

pytestmark = pytest.mark.slow

km3 = pytest.importorskip("km3net_testdata")

ROOT_FILES = [
    "offline/km3net_offline.root",
    "offline/numucc.root",
    "online/km3net_online.root",
    "oscillations/ORCA6_433kt-y_opendata_v0.5_testdata.root",
    "acoustics/mechanical_model.root",
    "gseagen/gseagen.root",
]
H5_FILES = ["hdf5/geamon.h5", "hdf5/test_event_info.h5", "seatray/antares.h5", "online/events_sample.h5"]


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("real")
    for rel in ROOT_FILES + H5_FILES:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(km3.data_path(rel), d / rel)
    return d


@pytest.fixture(scope="module")
def real_server(real_dir):
    from conftest import start_server

    r = start_server(real_dir, endpoint_bytes=50_000)
    yield r
    r.stop()


def sweep_root(server, root_dir: Path, tally, tree_entries: int = 40) -> None:
    """Every ROOT dataset of a served corpus, read through the client and compared with
    uproot's own read: trees and RNTuples column by column over their first entries,
    histograms bin by bin in full. Each column the server lists unreadable is read in
    full by uproot too: those uproot reads are ``tally.missed``."""
    from root_expect import (HISTOGRAM_KINDS, branch_paths, histogram_rows, lookup, rntuple_values, same,
                             tree_values)

    catalog = server.server.catalog
    with Client(server.location, threads=2) as client:
        for rec in [r for r in catalog.search(fmt="root") if r.origin == "file"]:  # not folder datasets
            path, obj = rec.name.split(":", 1)
            f = uproot.open(root_dir / path)
            node = lookup(f, obj)
            if rec.kind in HISTOGRAM_KINDS:
                tally.histograms += 1
                table = client.read(rec.name)
                assert table.num_rows == rec.entries
                expected = histogram_rows(node)
                for name in table.column_names:
                    tally.columns += 1
                    tally.readable += 1
                    tally.uproot_readable += 1
                    if name in expected:
                        np.testing.assert_array_equal(table[name].to_numpy(), expected[name],
                                                      err_msg=f"{rec.name}:{name}")
                        tally.compared += 1
                continue
            if rec.kind == "rntuple":
                tally.rntuples += 1
            else:
                tally.trees += 1
            paths = branch_paths(node) if rec.kind == "ttree" else {}
            for col in rec.columns:
                tally.columns += 1
                tally.readable += col.readable
                if not col.readable:
                    tally.unreadable[f"{rec.name}:{col.name}"] = col.reason
                if col.readable:  # compared with uproot's read below
                    tally.uproot_readable += 1
                    continue
                try:  # does uproot read what the server lists unreadable?
                    if rec.kind == "ttree":
                        full = ak.Array(node[paths[col.name]].array(library="ak"))
                    else:
                        full = node[col.name].array()
                    ok = not isinstance(full.layout.form, ak.forms.EmptyForm) and str(full.type).split(" * ", 1)[-1] != "unknown"
                except Exception:
                    ok = False
                tally.uproot_readable += ok
                if ok:
                    what = f"{rec.name}:{col.name} ({col.reason[:80]})"
                    # uproot reads it without an error, but different values per range
                    (tally.inconsistent if "inconsistently" in col.reason else tally.missed).append(what)
            if not any(c.readable for c in rec.columns):
                with pytest.raises(ValueError, match="no readable columns|has no columns"):
                    client.read(rec.name)
                continue
            stop = min(rec.entries, tree_entries)
            table = client.read(rec.name, entries=(0, stop))
            assert table.num_rows == stop
            for name in table.column_names:
                if rec.kind == "ttree":
                    expected = tree_values(node, paths[name], 0, stop)
                else:
                    expected = rntuple_values(node, name, 0, stop)
                assert same(table[name].to_pylist(), expected), f"{rec.name}:{name}"
                tally.compared += 1


def test_root_files_written_by_root(real_server, real_dir):
    from root_expect import Tally

    assert not real_server.server.catalog.file_errors()
    tally = Tally()
    sweep_root(real_server, real_dir, tally)
    print("\n" + tally.summary("km3net-testdata"))
    assert tally.compared > 200 and tally.histograms >= 9
    assert not tally.missed, tally.missed


def test_root_unreadable_branches_named_with_reason(real_server):
    cat = real_server.server.catalog
    header = cat.dataset("online/km3net_online.root:KM3NET_EVENT")
    bad = {c.name: c.reason for c in header.columns if not c.readable}
    assert "KM3NETDAQ::JDAQEventHeader" in bad and "no interpretation" in bad["KM3NETDAQ::JDAQEventHeader"]
    rec = cat.dataset("offline/km3net_offline.root:E")
    bad = {c.name: c.reason for c in rec.columns if not c.readable}
    assert "trks.usr_data" in bad and bad["trks.usr_data"]
    with Client(real_server.location) as client:
        with pytest.raises(ValueError, match="'trks.usr_data' cannot be read"):
            client.read(rec.name, ["trks.usr_data"])
        # a glob over everything skips them and still reads
        t = client.read(rec.name, ["trks.*"], entries=(0, 3))
        assert "trks.usr_data" not in t.column_names and "trks.dir.x" in t.column_names and t.num_rows == 3


def test_open_data_tree_full_read(real_server, real_dir):
    name = "oscillations/ORCA6_433kt-y_opendata_v0.5_testdata.root:binned_nu_response"
    with Client(real_server.location, threads=3) as client:
        info = client.flight_info(name)
        assert len(info.endpoints) > 1  # small endpoint target: parallel fetch in order
        df = client.read(name, library="pd")
    tree = uproot.open(real_dir / name.split(":")[0])["binned_nu_response"]
    expected = tree.arrays(library="pd")
    assert len(df) == tree.num_entries == 59360 // 1 or len(df) == tree.num_entries
    for col in expected.columns:
        np.testing.assert_array_equal(df[col].to_numpy(), expected[col].to_numpy())


def test_hdf5_files_from_other_writers(real_server, real_dir):
    catalog = real_server.server.catalog
    with Client(real_server.location) as client:
        checked = 0
        for rec in [r for r in catalog.search(fmt="hdf5") if r.origin == "file"]:  # not folder datasets
            path, obj = rec.name.split(":", 1)
            stop = min(rec.entries, 50)
            table = client.read(rec.name, entries=(0, stop))
            with h5py.File(real_dir / path, "r") as f:
                node = f[obj]
                for name in table.column_names:
                    if isinstance(node, h5py.Dataset) and node.dtype.names and node.ndim == 1:
                        expected = node[:stop][name]
                    elif isinstance(node, h5py.Dataset):
                        expected = node[:stop] if node.ndim else np.asarray(node[()]).reshape(1)
                    else:
                        expected = node[name][:stop]
                    got = table[name]
                    enum = h5py.check_enum_dtype(np.asarray(expected).dtype)
                    if enum is not None and np.asarray(expected).dtype.kind != "b":
                        names = {v: k for k, v in enum.items()}
                        assert got.to_pylist() == [names.get(int(v)) for v in np.asarray(expected)]
                    elif pa.types.is_string(got.type):
                        exp = [v.decode() if isinstance(v, bytes) else v for v in np.asarray(expected).tolist()]
                        assert got.to_pylist() == exp, (rec.name, name)
                    elif pa.types.is_struct(got.type) or pa.types.is_list(got.type):
                        assert len(got) == len(expected)
                    elif len(got) == 0:
                        assert len(expected) == 0
                    else:
                        values = np.array(got.to_pylist())
                        np.testing.assert_array_equal(values, np.asarray(expected), err_msg=f"{rec.name}:{name}")
                    checked += 1
        assert checked > 100


def test_pytables_shipped_files(tmp_path, serve):
    """PyTables' own test files: big-endian, chunked tables, attributes of many types."""
    tables = pytest.importorskip("tables")
    base = Path(os.path.dirname(tables.__file__)) / "tests"
    names = ["smpl_i32be.h5", "float.h5", "non-chunked-table.h5", "attr-u16.h5", "array_mdatom.h5"]
    present = [n for n in names if (base / n).exists()]
    if not present:
        pytest.skip("this PyTables wheel ships no test files")
    for n in present:
        shutil.copy(base / n, tmp_path / n)
    s = serve(tmp_path)
    assert not s.server.catalog.file_errors()
    with Client(s.location) as client:
        for rec in s.server.catalog.datasets():
            if rec.origin != "file" or not any(c.readable for c in rec.columns):
                continue
            path, obj = rec.name.split(":", 1)
            t = client.read(rec.name)
            assert t.num_rows == rec.entries
            with h5py.File(tmp_path / path) as f:
                node = f[obj]
                if isinstance(node, h5py.Dataset) and not node.dtype.names and node.dtype.kind in "iuf" and node.ndim == 1:
                    np.testing.assert_array_equal(t.column(0).to_numpy(), node[...])
