"""The web views' numbers over HTTP (``/api/view/NAME``, ``/plot/VIEW/NAME``) against the source
libraries on real files: uproot's values()/variances() for ROOT histograms, h5py/gwpy for strain,
PyTables' multidimensional atoms, numpy on HZZ's columns; metadata tables, search, downloads."""

from __future__ import annotations

import io
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.catalog.store import Catalog
from tests.test_web import Both, serve_both
from tests.web_views_data import (CUBE, CUTFLOW, DUR, GPS, GWOSC, GWOSC_STARTS, HPROF, HPX, HPXPY, HZZ, MDATOM, RATE,
                                  RUNS, STRAIN, build, gwpy_file, make_skim)


pytestmark = pytest.mark.slow   # every view against uproot, gwpy, h5py and awkward


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Both, dict, Path]]:
    root = tmp_path_factory.mktemp("views")
    info = build(root)
    b = serve_both(root, Catalog(tmp_path_factory.mktemp("viewcat") / "c.duckdb"))
    from arrowroot.clients import Client

    with Client(b.location) as c:
        info["skim"], info["renamed"] = make_skim(c)
    yield b, info, root
    b.stop()


def view(b: Both, name: str, **params: object) -> dict:
    with b.http() as h:
        r = h.get(f"/api/view/{name}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _none_nan(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# ---------------------------------------------------------------- ROOT histograms


def test_th1_is_contents_errors_edges_and_flow_of_uproot(views) -> None:
    b, _, root = views
    h = uproot.open(root / "hist" / "uproot-hepdata-example.root")["hpx"]
    v = view(b, HPX, view="histogram")
    assert v["dims"] == 1 and v["class"] == "TH1F" and v["title"] == "This is the px distribution"
    np.testing.assert_array_equal(v["content"], h.values())
    np.testing.assert_allclose(v["error"], np.sqrt(h.variances()))
    np.testing.assert_array_equal(v["axes"][0]["edges"], h.axis().edges())
    flow = h.values(flow=True)
    assert (v["underflow"], v["overflow"]) == (flow[0], flow[-1]) == (2.0, 4.0)
    assert v["entries"] == 75000.0


def test_th2_rows_are_y_bins_and_profile_errors(views) -> None:
    b, _, root = views
    f = uproot.open(root / "hist" / "uproot-hepdata-example.root")
    v = view(b, HPXPY, view="histogram")
    assert v["dims"] == 2
    np.testing.assert_array_equal(np.array(v["content"]), f["hpxpy"].values().T)
    np.testing.assert_array_equal(v["axes"][1]["edges"], f["hpxpy"].axis(1).edges())
    p = view(b, HPROF, view="histogram")
    assert p["profile"] and p["dims"] == 1
    np.testing.assert_array_equal(_none_nan(p["content"]), f["hprof"].values())
    np.testing.assert_allclose(_none_nan(p["error"]), f["hprof"].errors())


def test_th3_slices_along_each_axis_and_labels(views) -> None:
    b, _, root = views
    h = uproot.open(root / "hist" / "cube.root")["cube"]
    values = h.values()
    for axis, k in (("z", 1), ("z", 4), ("x", 2), ("y", 3)):
        v = view(b, CUBE, view="histogram", axis=axis, index=k)
        want = np.take(values, k - 1, axis="xyz".index(axis)).T
        np.testing.assert_array_equal(np.array(v["content"]), want, err_msg=f"{axis}={k}")
        assert v["slice"]["axis"] == axis and v["slice"]["index"] == k
    z = view(b, CUBE, view="histogram", axis="z", index=3)
    assert (z["slice"]["low"], z["slice"]["high"]) == (3.0, 6.0) and z["slice"]["title"] == "depth [mm]"
    assert view(b, CUBE, view="histogram")["slice"]["index"] == 2        # the middle by default
    with b.http() as h_:
        bad = h_.get(f"/api/view/{CUBE}", params={"view": "histogram", "axis": "z", "index": 9})
        assert bad.status_code == 400 and "index: bin 9 is outside 1..4" in bad.json()["message"]
    cut = view(b, CUTFLOW, view="histogram")
    assert cut["axes"][0]["labels"][:2] == ["Dijet", "MET"]
    np.testing.assert_array_equal(cut["content"], uproot.open(root / "hist" / "uproot-issue33.root")["cutflow"].values())


# ---------------------------------------------------------------- time series


def _minmax(values: np.ndarray, t0: float, rate: float, origin: float, span: float, pixels: int):
    t = t0 + np.arange(len(values)) / rate
    pix = np.floor((t - origin) / (span / pixels)).astype(int)
    keep = (pix >= 0) & (pix < pixels) & (t >= origin) & (t < origin + span)
    lo = np.full(pixels, np.nan)
    hi = np.full(pixels, np.nan)
    np.fmin.at(lo, pix[keep], values[keep])
    np.fmax.at(hi, pix[keep], values[keep])
    return lo, hi


def test_strain_is_min_max_per_pixel_against_gps_time(views) -> None:
    from gwpy.timeseries import TimeSeries

    b, _, _ = views
    ts = TimeSeries.read(gwpy_file(), "H1:LDAS-STRAIN", format="hdf5")
    v = view(b, STRAIN, view="series", column="H1:LDAS-STRAIN", pixels=500)
    assert v["axis"] == "time" and v["scale"] == "gps" and v["unit"] == "strain"
    assert v["origin"] == ts.t0.value == 968654552.0 and v["samples"] == len(ts) and v["mode"] == "minmax"
    assert v["utc_origin"] == 968654552.0 + 315964800 - 15                  # 2010-09-16 06:42:17 UTC
    lo, hi = _minmax(ts.value, ts.t0.value, ts.sample_rate.value, v["origin"], v["span"], 500)
    np.testing.assert_array_equal(_none_nan(v["min"]), lo)
    np.testing.assert_array_equal(_none_nan(v["max"]), hi)
    # a short range is every sample, at its own time
    short = view(b, STRAIN, view="series", column="H1:LDAS-STRAIN", time_start="2010-09-16T06:42:17.5Z",
                 time_stop=968654552.52, pixels=500)
    first = int(0.5 * 16384)
    assert short["mode"] == "samples" and short["origin"] == 968654552.5
    np.testing.assert_array_equal(short["y"], ts.value[first:first + len(short["y"])])
    assert len(short["y"]) == int(np.ceil(0.02 * 16384))
    last = view(b, STRAIN, view="series", column="H1:LDAS-STRAIN", time_last=0.25, pixels=100)
    assert last["origin"] == 968654552.75 and last["samples"] == 4096


def test_folder_series_shows_gaps_as_empty_pixels_and_dq_segments(views) -> None:
    b, info, _ = views
    strains = info["strains"]
    v = view(b, GWOSC, view="series", column="Strain", pixels=320)
    span = GWOSC_STARTS[-1] + DUR - GPS
    assert v["origin"] == GPS and v["span"] == span and v["samples"] == 3 * DUR * RATE
    assert v["gaps"] == [{"start": GPS + 2 * DUR, "stop": GPS + 3 * DUR, "samples": DUR * RATE,
                          "between": v["gaps"][0]["between"]}]
    lo = np.full(320, np.nan)
    hi = np.full(320, np.nan)
    for t0, s in strains.items():
        a, c = _minmax(s, t0, RATE, GPS, span, 320)
        lo, hi = np.fmin(lo, a), np.fmax(hi, c)
    np.testing.assert_array_equal(_none_nan(v["min"]), lo)
    np.testing.assert_array_equal(_none_nan(v["max"]), hi)
    gap = slice(int(2 * DUR / span * 320), int(3 * DUR / span * 320))
    assert all(x is None for x in v["min"][gap])                     # the gap stays empty
    assert "trend" not in v
    # that read went over whole files: a coarser view now folds their trends (min/max per 256
    # samples) on a grid of whole blocks, without reading the samples again; still exact
    t = view(b, GWOSC, view="series", column="Strain", pixels=12)
    assert t["trend"] == {"block": 256} and t["origin"] == GPS and t["pixels"] == 12
    width = t["span"] / t["pixels"]
    assert width * RATE % 256 == 0
    lo = np.full(12, np.nan)
    hi = np.full(12, np.nan)
    for t0, s in strains.items():
        a, c = _minmax(s, t0, RATE, GPS, t["span"], 12)
        lo, hi = np.fmin(lo, a), np.fmax(hi, c)
    np.testing.assert_array_equal(_none_nan(t["min"]), lo)
    np.testing.assert_array_equal(_none_nan(t["max"]), hi)
    # GWOSC's DQmask: CBC_CAT1 is off in second 2 of every file
    assert [GPS, GPS + 2] in v["dq"]["CBC_CAT1"] and [GPS + 3, GPS + 10] in v["dq"]["CBC_CAT1"]
    kept = view(b, GWOSC, view="series", column="Strain", dq="DATA & CBC_CAT1", time_start=GPS, time_stop=GPS + 4)
    assert kept["dq_kept"] == [[GPS, GPS + 2], [GPS + 3, GPS + 4]] and kept["samples"] == 3 * RATE


# ---------------------------------------------------------------- N-D arrays


def test_pytables_multidimensional_atoms_every_plane(views) -> None:
    """5 × 5 × 5 array of 3-vectors: planes through the atom axis too (the source slices only the
    array's own axes)."""
    b, _, root = views
    with h5py.File(root / "pt" / "array_mdatom.h5") as f:
        arr = f["arr"][...]
    assert arr.shape == (5, 5, 5, 3)
    for plane, want in (("0,:,:,0", arr[0, :, :, 0]), ("2,1,:,:", arr[2, 1]), (":,:,4,2", arr[:, :, 4, 2]),
                        ("4,:,3,:", arr[4, :, 3, :]), (":,0,0,:", arr[:, 0, 0, :])):
        v = view(b, MDATOM, view="plane", column="arr", plane=plane)
        got = np.frombuffer(__import__("base64").b64decode(v["values"]), "<f4").reshape(v["rows"], v["cols"])
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=plane)
        assert v["shape"] == [5, 5, 5, 3] and v["steps"] == [1, 1]
    with b.http() as h:
        assert h.get(f"/plot/plane/{MDATOM}", params={"column": "arr", "plane": "2,1,:,:"}).content[:4] == b"\x89PNG"
        bad = h.get(f"/api/view/{MDATOM}", params={"view": "plane", "column": "arr", "plane": "0,:,:"})
        assert bad.status_code == 400 and "3 axes given, the column has 4" in bad.json()["message"]


# ---------------------------------------------------------------- tables and trees


def test_integer_columns_get_one_bin_per_value_and_jagged_ones_every_element(views) -> None:
    b, _, root = views
    t = uproot.open(root / "hep" / "uproot-HZZ.root")["events"]
    nmuon = t["NMuon"].array(library="np")
    v = view(b, HZZ, view="column", column="NMuon")
    assert v["integer"] and v["edges"][0] == -0.5 and np.diff(v["edges"]).tolist() == [1.0] * (len(v["edges"]) - 1)
    np.testing.assert_array_equal(v["counts"], np.bincount(nmuon)[nmuon.min():])
    px = t["Muon_Px"].array(library="ak")
    import awkward as ak

    flat = ak.to_numpy(ak.flatten(px)).astype(np.float64)
    v = view(b, HZZ, view="column", column="Muon_Px", bins=40)
    assert v["jagged"] and v["values"] == len(flat) and v["entries"] == len(nmuon)
    np.testing.assert_array_equal(v["counts"], np.histogram(flat, bins=np.array(v["edges"]))[0])
    per = view(b, HZZ, view="column", column="Muon_Px", per="count")
    np.testing.assert_array_equal(per["counts"], np.bincount(ak.to_numpy(ak.num(px)))[ak.to_numpy(ak.num(px)).min():])
    cut = view(b, HZZ, view="column", column="NMuon", where="NMuon >= 2")
    assert cut["values"] == int((nmuon >= 2).sum()) and cut["edges"][0] == 1.5


def test_two_columns_as_points_or_density_with_the_cut(views) -> None:
    import awkward as ak

    b, _, root = views
    t = uproot.open(root / "hep" / "uproot-HZZ.root")["events"]
    met, px, n = (t[k].array(library="ak") for k in ("MET_px", "Muon_Px", "NMuon"))
    keep = ak.to_numpy(n) >= 3
    v = view(b, HZZ, view="scatter", x="MET_px", y="Muon_Px", where="NMuon >= 3")
    assert v["mode"] == "points"
    x = ak.to_numpy(ak.flatten(ak.broadcast_arrays(met[keep], px[keep])[0])).astype(np.float64)
    y = ak.to_numpy(ak.flatten(px[keep])).astype(np.float64)
    np.testing.assert_array_equal(v["xs"], x)
    np.testing.assert_array_equal(v["ys"], y)
    d = view(b, HZZ, view="scatter", x="MET_px", y="MET_py")
    assert d["mode"] == "points" and d["points"] == 2421
    with b.http() as h:
        r = h.get(f"/api/view/{HZZ}", params={"view": "scatter", "x": "Muon_Px", "y": "Jet_Px"})
        assert r.status_code == 400 and "different lengths" in r.json()["message"]


# ---------------------------------------------------------------- pages, metadata, search, downloads


def test_pages_choose_views_by_kind_and_keep_pictures_for_no_javascript(views) -> None:
    b, _, _ = views
    want = {HPX: ["histogram"], CUBE: ["histogram"], STRAIN: ["series"], MDATOM: ["plane"],
            HZZ: ["column", "scatter"], GWOSC: ["series"]}
    with b.http() as h:
        for name, kinds in want.items():
            page = h.get(f"/datasets/{name}")
            assert page.status_code == 200, name
            assert re.findall(r'<section class="view" id="view-(\w+)"', page.text) == kinds, name
            assert '<script src="/static/arrowroot.js" defer></script>' in page.text
            for src in re.findall(r'<noscript><p><img class="plot" id="\w+" src="([^"]+)"', page.text):
                png = h.get(src.replace("&amp;", "&"))
                assert png.status_code == 200 and png.content[:4] == b"\x89PNG", (name, src)
        js = h.get("/static/arrowroot.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert h.get("/static/vendor/uplot-1.6.32/uPlot.iife.min.js").status_code == 200
        csp = js.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe-eval" not in csp
        hpx = h.get(f"/datasets/{HPX}").text
        assert "102 rows, one per bin" in hpx and hpx.count("<dt>entries</dt>") == 0


def test_drift_and_missing_columns_are_tables_and_the_form_has_allow_missing(views) -> None:
    b, _, _ = views
    with b.http() as h:
        page = h.get(f"/datasets/{RUNS}").text
        drift = page.split('id="drift-table"')[1].split("</table>")[0]
        assert "<code>flag</code></td><td>missing</td>" in drift and "runs/run1.h5:events" in drift
        assert "<code>channel</code></td><td>widened to int64</td>" in drift
        missing = page.split('id="missing-table"')[1].split("</table>")[0]
        assert "<code>flag</code>" in missing and "1: <code>runs/run1.h5:events</code>" in missing
        assert "{&#39;missing&#39;" not in page and "schema_drift" not in page.split('id="attribute-table"')[1][:2000]
        assert 'name="allow_missing"' in page and 'name="files"' in page
        bad = h.get(f"/datasets/{RUNS}", params={"columns": "flag"})
        assert bad.status_code == 400 and "set allow_missing" in bad.text
        ok = h.get(f"/datasets/{RUNS}", params={"columns": "flag", "allow_missing": "true", "rows": 500})
        assert ok.status_code == 200 and ok.text.count("<td>null</td>") == 101
        strain = h.get(f"/datasets/{GWOSC}").text
        for field in ("time_start", "time_stop", "time_last", "with_time", "fill_gaps", "dq", "files"):
            assert f'name="{field}"' in strain, field
        units = h.get(f"/datasets/{STRAIN}").text.split('id="schema"')[1].split("</table>")[0]
        assert "<td>strain</td>" in units


def test_lineage_shows_parents_by_their_current_names(views) -> None:
    b, info, _ = views
    with b.http() as h:
        page = h.get(f"/datasets/{info['skim']}").text
    chain = page.split('<ol class="lineage">')[1].split("</ol>")[0]
    names = re.findall(r'<li class="[^"]*">(?:<a href="/datasets/([^"]+)">|<b>([^<]+)</b>)', chain)
    assert [a or c for a, c in names] == [HZZ, info["renamed"], info["skim"]]
    assert "home/local/muons" not in page
    assert "cut: NMuon &gt;= 2" in chain


def test_search_box_words_rank_exact_matches_first_and_globs_still_work(views) -> None:
    b, _, _ = views
    with b.http() as h:
        hzz = h.get("/api/datasets", params={"q": "HZZ"}).json()
        assert [d["name"] for d in hzz["datasets"]][:1] == [HZZ]
        assert h.get("/api/datasets", params={"name": "HZZ"}).json()["count"] == 0   # list_flights' glob
        assert h.get("/api/datasets", params={"q": "*HZZ*"}).json()["count"] == 1
        px = [d["name"] for d in h.get("/api/datasets", params={"q": "px distribution"}).json()["datasets"]]
        assert px == [HPX]                                                       # the title
        ranked = [d["name"] for d in h.get("/api/datasets", params={"q": "hpx"}).json()["datasets"]]
        assert ranked[0] == HPX and HPXPY in ranked                              # exact object name first
        keV = [d["name"] for d in h.get("/api/datasets", params={"q": "kev"}).json()["datasets"]]
        assert RUNS in keV                                                       # a column attribute
        page = h.get("/", params={"q": "strain"}).text
        results = [urllib.parse.unquote(n) for n in
                   re.findall(r'<li><a href="/datasets/([^"]+)">', page.split('id="results"')[1])]
        assert STRAIN in results and results.index(GWOSC) < results.index(STRAIN)   # object named Strain first


def test_compressed_arrow_downloads_and_bad_compression(views) -> None:
    b, _, root = views
    with b.http() as h:
        for codec in ("zstd", "lz4"):
            r = h.get(f"/api/data/{HZZ}", params={"columns": "MET_px", "compression": codec})
            t = pa.ipc.open_stream(io.BytesIO(r.content)).read_all()
            np.testing.assert_array_equal(t["MET_px"].to_numpy(),
                                          uproot.open(root / "hep" / "uproot-HZZ.root")["events/MET_px"].array(library="np"))
        assert h.get(f"/api/data/{HZZ}", params={"columns": "MET_px", "format": "feather",
                                                 "compression": "zstd"}).status_code == 200
        bad = h.get(f"/api/data/{HZZ}", params={"format": "parquet", "compression": "zstd"})
        assert bad.status_code == 400 and "for arrow and feather downloads only" in bad.json()["message"]
        assert h.get(f"/api/data/{HZZ}", params={"compression": "gzip"}).status_code == 400


def test_the_client_snippet_reads_the_time_range_shown(views) -> None:
    import html
    import subprocess
    import sys

    b, _, _ = views
    with b.http() as h:
        page = h.get(f"/datasets/{STRAIN}", params={"time_start": "2010-09-16T06:42:17.25Z",
                                                     "time_stop": 968654552.5, "with_time": "true"}).text
    client = html.unescape(re.findall(r"<pre>(.*?)</pre>", page, re.S)[0])
    assert "time=('2010-09-16T06:42:17.25Z', 968654552.5)" in client and "with_time=True" in client
    out = subprocess.run([sys.executable, "-c", client + "\nprint(table.num_rows, table.column_names[0])"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(16384 // 4), "time"]


def test_a_long_series_opens_on_its_first_stretch_and_huge_ranges_are_refused(views, monkeypatch) -> None:
    from arrowroot.flight_server.web import series

    b, _, _ = views
    monkeypatch.setattr(series, "DEFAULT_SAMPLES", 8192)
    v = view(b, STRAIN, view="series", column="H1:LDAS-STRAIN", pixels=100)
    assert v["first_stretch"] and v["samples"] == 8192 and v["origin"] == 968654552.0
    whole = view(b, STRAIN, view="series", column="H1:LDAS-STRAIN", pixels=100, time_start=968654552)
    assert not whole["first_stretch"] and whole["samples"] == 16384             # a range given: all of it
    monkeypatch.setattr(series, "MAX_SAMPLES", 10_000)
    with b.http() as h:
        r = h.get(f"/api/view/{STRAIN}", params={"view": "series", "column": "H1:LDAS-STRAIN", "time_last": 1})
    assert r.status_code == 400 and "narrow the time or entry range" in r.json()["message"]
