"""Exports the user's other tools read, from ``arrowroot get`` and the HTTP download alike,
each read back with the library those users check files with: uproot (ROOT TTree and
RNTuple, as C++ macros and ``TFile::Open`` see them), h5py (HDF5) and tifffile (ImageJ)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

tifffile = pytest.importorskip("tifffile")

EVENTS = "hep/events.root:events"


pytestmark = pytest.mark.slow   # ROOT, RNTuple, HDF5 and TIFF files written and read back


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_web import serve_both

    d = tmp_path_factory.mktemp("exports")
    (d / "hep").mkdir()
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, 500)
    with uproot.recreate(d / "hep" / "events.root") as f:
        t = f.mktree("events", {"nMuon": "int32", "Muon_pt": "var * float32", "MET": "float64", "tag": "string"})
        t.extend({"nMuon": counts.astype(np.int32),
                  "Muon_pt": ak.unflatten(rng.exponential(20, int(counts.sum())).astype(np.float32), counts),
                  "MET": rng.normal(30, 5, 500), "tag": ak.Array([f"e{i}" for i in range(500)])})
    with h5py.File(d / "scan.h5", "w") as f:
        f.create_dataset("stack", data=rng.integers(0, 4000, (6, 16, 12)).astype(np.uint16))
        f.create_dataset("plane", data=rng.normal(size=(20, 8)).astype(np.float64))
    b = serve_both(d)
    yield b, d
    b.stop()


def _both_ways(b, tmp_path: Path, name: str, suffix: str, *args: str, **params: str) -> list[bytes]:
    """The file written by ``arrowroot get`` and the bytes of the HTTP download."""
    out = tmp_path / f"out{suffix}"
    r = run_cli("get", name, str(out), *args, "-l", b.location)
    assert r.returncode == 0, r.stderr
    with b.http() as h:
        resp = h.get(f"/api/data/{name}", params=params)
        assert resp.status_code == 200, resp.text
    return [out.read_bytes(), resp.content]


def test_root_ttree_with_jagged_branches(both, tmp_path):
    b, d = both
    src = uproot.open(d / "hep" / "events.root")["events"].arrays(library="ak")
    for i, content in enumerate(_both_ways(b, tmp_path, EVENTS, ".root", "-e", "0:300",
                                           format="root", entry_stop="300")):
        path = tmp_path / f"back{i}.root"
        path.write_bytes(content)
        with uproot.open(path) as f:
            tree = f["events"]
            assert tree.classname == "TTree" and tree.num_entries == 300
            assert tree["Muon_pt"].typename == "float[]" and "nMuon_pt" in tree.keys()  # ROOT's jagged array
            got = tree.arrays(["nMuon", "Muon_pt", "MET", "tag"], library="ak")
        for col in ("nMuon", "Muon_pt", "MET", "tag"):
            assert ak.to_list(got[col]) == ak.to_list(src[col][:300]), col


def test_rntuple(both, tmp_path):
    b, d = both
    out = tmp_path / "nt.root"
    r = run_cli("get", EVENTS, str(out), "--format", "rntuple", "-c", "Muon_pt", "-c", "MET", "-l", b.location)
    assert r.returncode == 0, r.stderr
    src = uproot.open(d / "hep" / "events.root")["events"].arrays(["Muon_pt", "MET"], library="ak")
    with uproot.open(out) as f:
        nt = f["events"]
        assert nt.classname == "ROOT::RNTuple"
        assert ak.to_list(nt.arrays()["Muon_pt"]) == ak.to_list(src["Muon_pt"])


def test_hdf5_same_layout_from_cli_and_http(both, tmp_path):
    b, _ = both
    cli, http = _both_ways(b, tmp_path, EVENTS, ".h5", "-c", "Muon_pt", "-c", "MET",
                           format="hdf5", columns="Muon_pt,MET")
    with b.http() as h:
        want = b.flight.catalog.dataset(EVENTS) and h  # same server
    from arrowroot.clients import Client
    with Client(b.location) as c:
        want = c.read(EVENTS, ["Muon_pt", "MET"])
    for content in (cli, http):
        with h5py.File(io.BytesIO(content)) as f:
            assert f["Muon_pt"].attrs["datatype"] == "array<1>{array<1>{real}}"
            lengths = f["Muon_pt/cumulative_length"][...]
            values = f["Muon_pt/flattened_data"][...]
            rows = np.split(values, lengths[:-1])
            assert [r.tolist() for r in rows] == [list(map(float, x)) for x in want["Muon_pt"].to_pylist()]
            np.testing.assert_array_equal(f["MET"][...], want["MET"].to_numpy())


def test_tiff_stack_and_plane(both, tmp_path):
    b, d = both
    with h5py.File(d / "scan.h5") as f:
        stack, plane = f["stack"][...], f["plane"][...]
    for content in _both_ways(b, tmp_path, "scan.h5:stack", ".tiff", format="tiff"):
        with tifffile.TiffFile(io.BytesIO(content)) as t:
            assert t.is_imagej and len(t.pages) == 6
            np.testing.assert_array_equal(t.asarray(), stack)
    for content in _both_ways(b, tmp_path, "scan.h5:plane", ".tif", format="tiff"):
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(content)), plane)


def test_formats_that_cannot_hold_the_columns_say_so(both, tmp_path):
    b, _ = both
    out = tmp_path / "x.tiff"
    r = run_cli("get", EVENTS, str(out), "-l", b.location)
    assert r.returncode == 1 and "format tiff: select one image column" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []
    with b.http() as h:
        r = h.get(f"/api/data/{EVENTS}", params={"format": "tiff"})
        assert r.status_code == 400 and "format tiff" in r.json()["message"]
    r = run_cli("get", EVENTS, str(tmp_path / "x.unknown"), "-l", b.location)
    assert r.returncode == 2 and "--format" in r.stderr
