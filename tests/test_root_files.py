"""ROOT files as users bring them, read through a real server and compared with uproot.

scikit-hep-testdata 0.2.0 ships ROOT's own example files (the Event tree, HZZ with
streamed TLorentzVectors, Double32_t/Float16_t branches, histogram files written by
ROOT); other files here are written by uproot in the test (histograms, RNTuples).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.clients.errors import ServerError
from arrowroot.flight_server.sources import ColumnUnreadable
from arrowroot.flight_server.sources.root import RootSource

from root_expect import Tally, branch_paths, histogram_rows, rntuple_values, same, same_ak, tree_values

pytestmark = pytest.mark.slow

skhep = pytest.importorskip("skhep_testdata")
SKHEP_DIR = Path(skhep.data_path("uproot-HZZ.root")).parent


@pytest.fixture(scope="module")
def skhep_server(tmp_path_factory, skhep_catalog):
    """Every ROOT file scikit-hep-testdata ships, served in place (catalog elsewhere, indexed once
    for the session)."""
    from conftest import copy_catalog, start_server

    catalog = copy_catalog(skhep_catalog, tmp_path_factory.mktemp("skhep"))
    r = start_server(SKHEP_DIR, catalog=catalog, endpoint_bytes=2_000_000)
    yield r
    r.stop()


def attributes(schema: pa.Schema) -> dict:
    return json.loads(schema.metadata[b"arrowroot.attributes"])


# ---------------------------------------------------------------- item 1: Event.root


def test_event_tree_serves_every_readable_branch(skhep_server):
    rec = skhep_server.server.catalog.dataset("uproot-Event.root:T")
    tree = uproot.open(SKHEP_DIR / "uproot-Event.root")["T"]
    # parent branches (event/fEvtHdr, ...) are named only: "all columns" is the leaves
    readable = [c.name for c in rec.columns if c.readable and not c.name.startswith("event/")]
    assert len(readable) >= 45 and "fLastTrack" in readable and "fTracks.fPx" in readable
    with Client(skhep_server.location, threads=2) as client:
        table = client.read("uproot-Event.root:T")  # all readable columns, all entries
    assert table.num_rows == 1000 and table.column_names == readable
    paths = branch_paths(tree)
    for name in readable:
        assert same_ak(table[name], tree[paths[name]].array(library="ak")), name
    bad = {c.name: c.reason for c in rec.columns if not c.readable}
    assert "wrong number of bytes" in bad["fTracks.fBits"]
    assert bad["fHighPt"] == "uproot has no columnar (Awkward/Arrow) form for it: pointers to other objects"
    for reason in bad.values():
        assert reason and str(SKHEP_DIR) not in reason
        # uproot's advice (library="np", "in file ... in object ...") does not apply here: one line, our terms
        assert "library=" not in reason and "\n" not in reason and "in object" not in reason, reason


def test_strided_object_read_ending_on_a_basket_boundary():
    """uproot's own read of fLastTrack [0, 960) raises KeyError: 2 (960 starts a basket)."""
    path = str(SKHEP_DIR / "uproot-Event.root")
    branch = uproot.open(path)["T"]["fLastTrack"]
    with pytest.raises(KeyError):
        branch.array(entry_start=0, entry_stop=960)
    reader = RootSource().open(path, "T", "ttree")
    got = reader.read(["fLastTrack"], 0, 960)["fLastTrack"].to_pylist()
    assert got == ak.to_list(branch.array(entry_start=0, entry_stop=1000))[:960]
    assert reader.read(["fLastTrack"], 796, 960).num_rows == 164


def test_a_failing_branch_is_a_column_error_naming_it():
    reader = RootSource().open(str(SKHEP_DIR / "uproot-Event.root"), "T", "ttree")
    with pytest.raises(ColumnUnreadable, match=r"branch 'fTracks\.fBits' of 'T', entries 0-10") as err:
        reader.read(["fTracks.fBits"], 0, 10)
    assert not isinstance(err.value, KeyError) and str(SKHEP_DIR) not in str(err.value)


def test_mid_stream_failure_names_the_branch(tmp_path, serve):
    """A basket in the middle of a branch is corrupt: the scan's probes (first, last and
    cluster-edge entries) pass, the full read fails with an error naming the branch."""
    path = tmp_path / "broken.root"
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        f.mktree("t", {"a": "float64", "b": "int32"})
        for i in range(5):
            f["t"].extend({"a": np.linspace(i, i + 1, 1000), "b": np.arange(1000, dtype=np.int32)})
    branch = uproot.open(path)["t"]["a"]
    seek = int(branch.member("fBasketSeek")[2])
    key_len = 100  # past the TKey header, inside the compressed payload
    data = bytearray(path.read_bytes())
    data[seek + key_len: seek + key_len + 64] = b"\x55" * 64
    path.write_bytes(bytes(data))
    s = serve(tmp_path)
    rec = s.server.catalog.dataset("broken.root:t")
    assert all(c.readable for c in rec.columns)
    with Client(s.location) as client:
        assert client.read("broken.root:t", ["b"]).num_rows == 5000
        # the client's error type for mid-stream failures is issue 11 item 7 (clients/)
        with pytest.raises((ServerError, OSError), match=r"branch 'a' of 't', entries") as err:
            client.read("broken.root:t", ["a", "b"])
    assert str(tmp_path) not in str(err.value)


# ---------------------------------------------------------------- item 2: objects, Double32


def test_streamed_objects_have_physics_fields_only(skhep_server):
    name = "uproot-HZZ-objects.root:events"
    tree = uproot.open(SKHEP_DIR / "uproot-HZZ-objects.root")["events"]
    with Client(skhep_server.location) as client:
        schema = client.schema(name)
        table = client.read(name, ["jetp4", "muonp4", "MET", "MC_lepton"], entries=(0, 500))
    vec3 = pa.struct([("fX", pa.float64()), ("fY", pa.float64()), ("fZ", pa.float64())])
    lorentz = pa.struct([("fP", vec3), ("fE", pa.float64())])
    assert schema.field("jetp4").type == pa.list_(lorentz)
    assert schema.field("muonp4").type == pa.list_(lorentz)
    assert schema.field("MET").type == pa.struct([("fX", pa.float64()), ("fY", pa.float64())])
    assert schema.field("MC_lepton").type == vec3
    assert "@" not in str(schema) and "fUniqueID" not in str(schema.field("jetp4").type)
    assert schema.field("jetp4").metadata[b"arrowroot.source_type"] == b"std::vector<TLorentzVector>"
    for col in table.column_names:
        assert table[col].to_pylist() == tree_values(tree, col, 0, 500), col
    assert table.schema.field("jetp4").type == schema.field("jetp4").type


def test_double32_and_float16_keep_their_stored_precision(skhep_server):
    name = "uproot-demo-double32.root:T"
    tree = uproot.open(SKHEP_DIR / "uproot-demo-double32.root")["T"]
    with Client(skhep_server.location) as client:
        table = client.read(name)
        schema = client.schema(name)
    assert table.num_rows == tree.num_entries
    for col in table.column_names:
        expected = tree[f"d/{col}"].array(library="np")
        got = table[col].to_numpy()
        assert got.dtype == expected.dtype == np.float64
        np.testing.assert_array_equal(got, expected, err_msg=col)
    meta = {f.name: (f.metadata or {}).get(b"arrowroot.stored_as", b"").decode() for f in schema}
    assert meta["fI16"] == "Double32_t: 16-bit integer over [-3.14159, 3.14159]"
    assert meta["fR8"] == "Double32_t: float with a 8-bit mantissa"
    assert meta["fD64"] == ""
    # values really are truncated: 2 bits over [-pi, pi] leave a handful of values
    assert len(np.unique(table["fI2"].to_numpy())) <= 5 < len(np.unique(table["fI16"].to_numpy()))
    # Float16_t inside the Event tree's track collection: float32 as ROOT stores them
    with Client(skhep_server.location) as client:
        ev = client.read("uproot-Event.root:T", ["fTracks.fMass2", "fTracks.fCharge"], entries=(0, 20))
        ev_schema = client.schema("uproot-Event.root:T")
    tracks = uproot.open(SKHEP_DIR / "uproot-Event.root")["T"]
    assert ev.schema.field("fTracks.fMass2").type == pa.list_(pa.float32())
    assert ev["fTracks.fMass2"].to_pylist() == ak.to_list(tracks["fTracks.fMass2"].array(entry_stop=20))
    assert ev["fTracks.fCharge"].to_pylist() == ak.to_list(tracks["fTracks.fCharge"].array(entry_stop=20))
    assert ev_schema.field("fTracks.fMass2").metadata[b"arrowroot.stored_as"].startswith(b"Float16_t")


# ---------------------------------------------------------------- item 4: histograms


@pytest.fixture(scope="module")
def hist_dir(tmp_path_factory):
    """Histograms written by uproot from numpy and from hist objects, plus ROOT-written ones."""
    hist = pytest.importorskip("hist")
    d = tmp_path_factory.mktemp("hists")
    rng = np.random.default_rng(3)
    h1 = hist.Hist.new.Reg(10, -3, 3, name="x", label="x [cm]").Weight()
    h1.fill(rng.normal(size=1000), weight=rng.random(1000))
    h2 = hist.Hist.new.Reg(4, 0, 1, name="x").Var([0, 0.1, 0.5, 1], name="y").Double()
    h2.fill(rng.random(500), rng.random(500))
    h3 = hist.Hist.new.Reg(3, 0, 1).Reg(2, 0, 1).Reg(4, 0, 1).Double()
    h3.fill(rng.random(100), rng.random(100), rng.random(100))
    hp = hist.Hist.new.Reg(5, 0, 1, name="x").Mean()
    hp.fill(rng.random(300), sample=rng.normal(size=300))
    hc = hist.Hist.new.StrCat(["a", "b", "c"], name="cat").Double()
    hc.fill(["a", "b", "b", "c"])
    with uproot.recreate(d / "written.root") as f:
        f["np1"] = np.histogram(rng.normal(size=100), bins=7)
        f["np2"] = np.histogram2d(rng.normal(size=100), rng.normal(size=100), bins=(3, 4))
        f["weighted"] = h1
        f["var2d"] = h2
        f["cube"] = h3
        f["profile"] = hp
        f["labels"] = hc
        f["dir/inner"] = np.histogram(np.arange(10.0), bins=3)
        f["twice"] = np.histogram(np.arange(5.0), bins=2)
        f["twice"] = np.histogram(np.arange(5.0), bins=4)  # cycle 2 is served
    for name in ("uproot-histograms.root", "uproot-hepdata-example.root", "uproot-issue33.root"):
        shutil.copy(SKHEP_DIR / name, d / name)
    return d


@pytest.fixture(scope="module")
def hist_server(hist_dir):
    from conftest import start_server

    r = start_server(hist_dir)
    yield r
    r.stop()


def test_histograms_are_datasets_of_bins(hist_server, hist_dir):
    cat = hist_server.server.catalog
    kinds = {r.name: r.kind for r in cat.datasets() if r.origin == "file" and r.kind != "ttree"}
    assert kinds["written.root:np1"] == "th1" and kinds["written.root:np2"] == "th2"
    assert kinds["written.root:cube"] == "th3" and kinds["written.root:profile"] == "tprofile"
    assert kinds["uproot-hepdata-example.root:hprof"] == "tprofile"
    assert kinds["uproot-hepdata-example.root:hpxpy"] == "th2"
    assert kinds["written.root:dir/inner"] == "th1"
    f = uproot.open(hist_dir / "written.root")
    with Client(hist_server.location) as client:
        for name, kind in kinds.items():
            path, obj = name.split(":", 1)
            h = uproot.open(hist_dir / path)[obj]
            table = client.read(name)
            expected = histogram_rows(h)
            assert table.num_rows == len(expected["content"])
            for col, values in expected.items():
                np.testing.assert_array_equal(table[col].to_numpy(), values, err_msg=f"{name}:{col}")
            # the in-range bins, reshaped, are uproot's values()/variances()/to_numpy()
            inner = table.filter(pa.compute.invert(_any_flow(table)))
            shape = tuple(len(a.edges()) - 1 for a in h.axes)
            content = inner["content"].to_numpy().reshape(shape[::-1]).T
            np.testing.assert_array_equal(content, h.values())
            np.testing.assert_array_equal(inner["variance"].to_numpy().reshape(shape[::-1]).T, h.variances())
            if kind == "th1":
                counts, edges = h.to_numpy()
                np.testing.assert_array_equal(inner["content"].to_numpy(), counts)
                np.testing.assert_array_equal(inner["x_low"].to_numpy(), edges[:-1])
                np.testing.assert_array_equal(inner["x_high"].to_numpy(), edges[1:])
            for i, axis in enumerate("xyz"[: len(shape)]):
                np.testing.assert_array_equal(np.unique(inner[f"{axis}_low"].to_numpy()), h.axis(i).edges()[:-1])
    twice = f["twice"]
    with Client(hist_server.location) as client:
        assert client.read("written.root:twice").num_rows == len(twice.values()) + 2 == 6


def _any_flow(table: pa.Table) -> pa.Array:
    flags = [table[c] for c in table.column_names if c.endswith("_flow")]
    out = flags[0]
    for f in flags[1:]:
        out = pa.compute.or_(out, f)
    return out


def test_histogram_attributes_and_profile_entries(hist_server, hist_dir):
    with Client(hist_server.location) as client:
        hpx = attributes(client.schema("uproot-hepdata-example.root:hpx"))
        prof = client.read("uproot-hepdata-example.root:hprof")
        weighted = attributes(client.schema("written.root:weighted"))
        labels = client.read("written.root:labels")
        cut = client.read("uproot-hepdata-example.root:hpx", ["x_low", "content"],
                          where="content > 1000 and not x_flow")
    assert hpx["title"] == "This is the px distribution" and hpx["class"] == "TH1F"
    assert hpx["entries"] == 75000.0 and hpx["x_bins"] == 100 and hpx["x_range"] == [-4.0, 4.0]
    assert weighted["x_title"] == "x [cm]"
    h = uproot.open(hist_dir / "uproot-hepdata-example.root")["hprof"]
    assert prof["entries"].to_pylist() == list(h.member("fBinEntries"))
    np.testing.assert_allclose(prof["effective_entries"].to_numpy(), h.counts(flow=True))
    np.testing.assert_array_equal(prof["content"].to_numpy(), h.values(flow=True))
    assert labels["x_label"].to_pylist() == [None, "a", "b", "c", None]
    assert labels["content"].to_pylist() == [0.0, 1.0, 2.0, 1.0, 0.0]
    values, edges = uproot.open(hist_dir / "uproot-hepdata-example.root")["hpx"].to_numpy()
    keep = values > 1000
    np.testing.assert_array_equal(cut["x_low"].to_numpy(), edges[:-1][keep])


def test_histograms_in_root_written_files_with_cycles(hist_server):
    """uproot-issue33.root: a labelled cutflow written by ROOT; histogram-only files index."""
    cat = hist_server.server.catalog
    assert not cat.file_errors()
    rec = cat.dataset("uproot-issue33.root:cutflow")
    assert rec.kind == "th1" and rec.attributes["x_labels"][0] == "Dijet"
    names = {r.name for r in cat.datasets()}
    assert {"uproot-histograms.root:one", "uproot-histograms.root:two", "uproot-histograms.root:three"} <= names


# ---------------------------------------------------------------- item 3: RNTuples


def _events(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n)
    tracks = [[{"pt": float(j + i), "hits": list(range(j % 3)), "trk": {"d0": float(j), "idx": [j] * (j % 2)}}
               for j in range(c)] for i, c in enumerate(counts)]
    return {
        "Muon": ak.Array(tracks),                                             # list of records
        "Jets": ak.Array([[[float(k) for k in range(j)] for j in range(i % 3)] for i in range(n)]),  # list of lists
        "Vertex": ak.Array([{"x": float(i), "tracks": [[k, k] for k in range(i % 4)]} for i in range(n)]),
        "Empty": ak.Array([{"a": i, "e": {}} for i in range(n)]),            # record with an empty struct
        "Choice": ak.concatenate([ak.Array(list(range(n // 2))), ak.Array([str(i) for i in range(n - n // 2)])]),
        "Opt": ak.Array([None if i % 3 == 0 else [i] * (i % 4) for i in range(n)]),
        "x": rng.normal(size=n).astype(np.float32),
    }


CLUSTERS = (0, 300, 550, 950)


@pytest.fixture(scope="module")
def rntuple_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rntuple")
    with uproot.recreate(d / "nt.root") as f:
        f["events"] = _events(300, 1)
        f["events"].extend(_events(250, 2))  # a second cluster
        f["events"].extend(_events(400, 3))
    return d


@pytest.fixture(scope="module")
def rntuple_server(rntuple_dir):
    from conftest import start_server

    r = start_server(rntuple_dir, endpoint_bytes=20_000, chunk_bytes=8_000)
    yield r
    r.stop()


def test_rntuple_lists_top_level_fields_once(rntuple_server):
    rec = rntuple_server.server.catalog.dataset("nt.root:events")
    assert sorted(c.name for c in rec.columns) == ["Choice", "Empty", "Jets", "Muon", "Opt", "Vertex", "x"]
    assert all(c.readable for c in rec.columns), [(c.name, c.reason) for c in rec.columns]
    assert rec.entries == 950
    assert RootSource().scan(str(rntuple_server.data_dir / "nt.root"))[0].boundaries == (0, 300, 550)


@pytest.mark.parametrize("entries", [None, (0, 300), (290, 310), (299, 551), (551, 552), (17, 903)])
def test_rntuple_nested_collections_equal_uproot(rntuple_server, rntuple_dir, entries):
    ntuple = uproot.open(rntuple_dir / "nt.root")["events"]
    with Client(rntuple_server.location, threads=2) as client:
        info = client.flight_info("nt.root:events", entries=entries)
        table = client.read("nt.root:events", entries=entries)
    start, stop = entries or (0, 950)
    assert table.num_rows == stop - start
    if entries is None:
        assert len(info.endpoints) > 1  # several reads, each sliced inside a cluster
    for name in table.column_names:
        # uproot read cluster by cluster: its own multi-cluster read of a std::variant
        # field is wrong (entry 700 comes back as 0, the file holds 150), the server's
        # reads never cross a cluster boundary
        expected = []
        for a, b in zip(CLUSTERS, CLUSTERS[1:]):
            if max(a, start) < min(b, stop):
                expected += rntuple_values(ntuple, name, max(a, start), min(b, stop))
        assert same(table[name].to_pylist(), expected), name
    table.validate(full=True)
    written = [*_events(300, 1)["Choice"], *_events(250, 2)["Choice"], *_events(400, 3)["Choice"]]
    assert table["Choice"].to_pylist() == written[start:stop]


def test_rntuple_subfield_readable_when_parent_is(rntuple_dir):
    """Sub-fields are not separate columns; the parent struct carries them."""
    ds = RootSource().scan(str(rntuple_dir / "nt.root"))[0]
    assert not any("." in c.name for c in ds.columns)
    muon = next(c for c in ds.columns if c.name == "Muon")
    assert muon.arrow_type == pa.list_(pa.struct([
        ("pt", pa.float64()), ("hits", pa.list_(pa.int64())),
        ("trk", pa.struct([("d0", pa.float64()), ("idx", pa.list_(pa.int64()))]))]))


# ---------------------------------------------------------------- sweep


def test_skhep_corpus_sweep(skhep_server):
    from test_real_files import sweep_root

    cat = skhep_server.server.catalog
    tally = Tally()
    sweep_root(skhep_server, SKHEP_DIR, tally, tree_entries=25)
    print("\n" + tally.summary("scikit-hep-testdata 0.2.0"))
    errors = cat.file_errors()
    print(f"  files that failed to index: {len(errors)}", errors)
    assert tally.trees >= 70 and tally.histograms >= 25
    assert not tally.missed, tally.missed
    assert tally.compared > 2000


def test_skhep_branches_uproot_reads_are_all_named(skhep_catalog):
    """Every TTree branch uproot reads is a column arrowroot can name (readable, or listed with the
    reason it is not)."""
    import real_sweep

    r = real_sweep.sweep("skhep", SKHEP_DIR, skhep_catalog)
    print("\n" + real_sweep.table([r]))
    assert r.branches > 4000 and r.uproot_reads > 4000
    assert not r.missed, r.missed
