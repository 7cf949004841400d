"""Every view in a real browser (Debian's chromium driven by Playwright) on real files: the numbers
the page plotted, read back from the page, equal the source libraries' (uproot's values(), gwpy's
strain, h5py's arrays, numpy on HZZ's branches); sliders and toggles redraw without a reload; at a
desktop width and at 390 px. Screenshots go to the test's tmp dir and to $ARROWROOT_SCREENS."""

from __future__ import annotations

import base64
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import h5py
import numpy as np
import pytest
import uproot

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.web import WebServer
from tests.web_views_data import (CUBE, CUTFLOW, DUR, GPS, GWOSC, GWOSC_STARTS, HPX, HPXPY, HZZ, MDATOM, RATE, RUNS,
                                  STRAIN, build, gwpy_file, make_skim)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the PyPI package) is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install -y chromium "
                                                          "(.ci/run installs it)")]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Site:
    def __init__(self, root: Path, catalog: Path):
        self.root = root
        self.info = build(root)
        self.server = ArrowrootServer(Settings(root=root, port=0), catalog=Catalog(catalog))
        self.server.indexer.run()
        threading.Thread(target=self.server.serve, daemon=True).start()
        self.web = WebServer(self.server.service, 0, flight_port=self.server.port).start()
        from arrowroot.clients import Client

        with Client(f"grpc://127.0.0.1:{self.server.port}") as c:
            self.skim, self.renamed = make_skim(c)

    def stop(self) -> None:
        self.web.stop()
        self.server.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("browserviews"), tmp_path_factory.mktemp("bvcat") / "c.duckdb")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("screens")
    extra = Path(os.environ["ARROWROOT_SCREENS"]) if os.environ.get("ARROWROOT_SCREENS") else None

    def shot(target, name: str) -> None:
        target.screenshot(path=str(folder / name))
        if extra is not None:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / name, extra / name)
    return shot


def open_page(browser, site: Site, path: str, width: int = 1100, script: bool = True):
    ctx = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=script,
                              **({"device_scale_factor": 2, "is_mobile": True, "has_touch": True} if width < 500 else {}))
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.web.url + path)
    page.evaluate("window.__sameDocument = 1") if script else None
    page.errors = errors  # type: ignore[attr-defined]
    return page


def wait(page, expression: str) -> None:
    """Wait until a JavaScript expression holds; given as a function, which the page's CSP allows
    (Playwright evaluates plain expression strings with eval, which it forbids)."""
    page.wait_for_function(f"() => ({expression})")


def drawn(page, view: str, times: int = 1) -> dict:
    """Wait for the view's n-th drawing; its JSON (what was plotted) back from the page."""
    wait(page, f"(+(document.querySelector('#view-{view}').dataset.drawn || 0)) >= {times} && "
                           f"!document.querySelector('#view-{view}').dataset.pending")
    assert not page.errors, page.errors
    note = page.inner_text(f"#view-{view} .note")
    assert "error" not in page.get_attribute(f"#view-{view} .note", "class"), note
    return page.evaluate(f"document.querySelector('#view-{view} .chart')._arrowroot.view")


def plotted(page, view: str) -> list:
    """uPlot's own data arrays: what is on the canvas."""
    return page.evaluate(f"Array.from(document.querySelector('#view-{view} .chart')._arrowroot.plot.data, a => Array.from(a))")


def axis(page, view: str, i: int) -> dict:
    """An axis as uPlot drew it: its label and tick texts."""
    return page.evaluate(f"(a => ({{label: a.label, values: a._values}}))"
                         f"(document.querySelector('#view-{view} .chart')._arrowroot.plot.axes[{i}])")


def same_document(page) -> bool:
    return page.evaluate("window.__sameDocument === 1")


def narrow_enough(page, width: int = 390) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll}px wide on a {width}px phone"


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_th1_bars_are_uproots_values_with_errors_and_flow(site: Site, browser, shots) -> None:
    h = uproot.open(site.root / "hist" / "uproot-hepdata-example.root")["hpx"]
    for width in (1100, 390):
        page = open_page(browser, site, f"datasets/{HPX}", width)
        drawn(page, "histogram")
        xs, ys = plotted(page, "histogram")
        np.testing.assert_array_equal(ys[:-1], h.values())                 # bar heights = uproot's values()
        np.testing.assert_array_equal(xs, h.axis().edges())
        note = page.inner_text("#view-histogram .note")
        assert "underflow 2" in note and "overflow 4" in note and "75000 entries" in note
        if width == 1100:
            box = page.query_selector("#view-histogram .u-over").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            legend = page.inner_text("#view-histogram .u-legend")
            assert "±" in legend and "[" in legend                          # hover: bin range, value ± error
            page.check("#view-histogram input[name=log]")
            drawn(page, "histogram", 2)
            assert page.evaluate("document.querySelector('#view-histogram .chart')._arrowroot.plot.scales.y.distr") == 3
            assert same_document(page) and "log=1" in page.url
            page.uncheck("#view-histogram input[name=log]")
            drawn(page, "histogram", 3)
            shots(page.query_selector("#view-histogram"), "th1-desktop.png")
        else:
            narrow_enough(page)
            shots(page.query_selector("#view-histogram"), "th1-phone.png")
        page.context.close()
    page = open_page(browser, site, f"datasets/{CUTFLOW}")
    drawn(page, "histogram")
    ticks = axis(page, "histogram", 0)["values"]     # uPlot draws its axes on the canvas: ask it what it drew
    assert ticks[:3] == ["Dijet", "MET", "MuonVeto"]                           # bin labels on the axis
    page.context.close()


def test_th2_colour_map_and_th3_slider(site: Site, browser, shots) -> None:
    f = uproot.open(site.root / "hist" / "uproot-hepdata-example.root")
    page = open_page(browser, site, f"datasets/{HPXPY}")
    v = drawn(page, "histogram")
    np.testing.assert_array_equal(np.array(v["content"]), f["hpxpy"].values().T)
    # the canvas cell under a point holds that bin's content
    hit = page.evaluate("(() => { const p = document.querySelector('#view-histogram .chart')._arrowroot.plot;"
                        " const r = p.canvas.getBoundingClientRect();"
                        " return p.cellAt(64 + 0.5 * (r.width - 160), 10 + 0.5 * (r.height - 58)); })()")
    assert hit["value"] == f["hpxpy"].values().T[hit["r"], hit["c"]]
    page.check("#view-histogram input[name=log]")
    drawn(page, "histogram", 2)
    assert same_document(page)
    shots(page.query_selector("#view-histogram"), "th2-log-desktop.png")
    page.context.close()

    cube = uproot.open(site.root / "hist" / "cube.root")["cube"].values()
    page = open_page(browser, site, f"datasets/{CUBE}")
    v = drawn(page, "histogram")
    assert v["slice"]["index"] == 2
    page.eval_on_selector("#view-histogram input[name=index]",
                          "el => { el.value = 4; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    wait(page, "document.querySelector('#view-histogram .chart')._arrowroot.view.slice.index === 4")
    v = drawn(page, "histogram", 2)
    np.testing.assert_array_equal(np.array(v["content"]), cube[:, :, 3].T)
    assert same_document(page) and "depth [mm]" in page.inner_text("#view-histogram .note") or v["slice"]["high"] == 10
    page.select_option("#view-histogram select[name=axis]", "x")
    wait(page, "document.querySelector('#view-histogram .chart')._arrowroot.view.slice.axis === 'x'")
    v = drawn(page, "histogram", 3)
    np.testing.assert_array_equal(np.array(v["content"]), np.take(cube, v["slice"]["index"] - 1, axis=0).T)
    shots(page.query_selector("#view-histogram"), "th3-slice-desktop.png")
    page.context.close()


def _minmax(values: np.ndarray, t0: float, rate: float, origin: float, span: float, pixels: int):
    t = t0 + np.arange(len(values)) / rate
    pix = np.floor((t - origin) / (span / pixels)).astype(int)
    keep = (pix >= 0) & (pix < pixels) & (t < origin + span)
    lo, hi = np.full(pixels, np.nan), np.full(pixels, np.nan)
    np.fmin.at(lo, pix[keep], values[keep])
    np.fmax.at(hi, pix[keep], values[keep])
    return lo, hi


def test_strain_against_gps_time_zoom_reads_again(site: Site, browser, shots) -> None:
    from gwpy.timeseries import TimeSeries

    ts = TimeSeries.read(gwpy_file(), "H1:LDAS-STRAIN", format="hdf5")
    for width in (1100, 390):
        page = open_page(browser, site, f"datasets/{STRAIN}", width)
        v = drawn(page, "series")
        xs, lo, hi = plotted(page, "series")
        want_lo, want_hi = _minmax(ts.value, ts.t0.value, ts.sample_rate.value, v["origin"], v["span"], v["pixels"])
        np.testing.assert_array_equal(_nan(lo), want_lo)
        np.testing.assert_array_equal(_nan(hi), want_hi)
        label = "Time [s] from 2010-09-16 06:42:17 UTC (GPS 968654552)"
        if width == 1100:
            assert axis(page, "series", 0)["label"] == label
        else:   # a phone: a short axis label, the whole one under the plot
            assert axis(page, "series", 0)["label"] == "[s] from 2010-09-16 06:42:17 UTC"
            assert label in page.inner_text("#view-series .note")
        assert axis(page, "series", 1)["label"] == "H1:LDAS-STRAIN [strain]"
        if width == 1100:
            shots(page.query_selector("#view-series"), "series-desktop.png")
            # drag-zoom on the middle fifth: the server folds that range anew, down to every sample
            page.evaluate("(() => { const u = document.querySelector('#view-series .chart')._arrowroot.plot;"
                          " const w = u.bbox.width / devicePixelRatio;"
                          " u.setSelect({left: w * 0.4, width: w * 0.02, top: 0, height: 10}); })()")
            z = drawn(page, "series", 2)
            assert z["origin"] > v["origin"] and z["span"] < 0.05 and z["mode"] == "samples"
            first = int(np.ceil((z["origin"] - ts.t0.value) * 16384 - 1e-6))   # a start between samples rounds up
            np.testing.assert_array_equal(plotted(page, "series")[1], ts.value[first:first + len(z["y"])])
            assert page.input_value("#view-series input[name=time_start]") == str(z["origin"])
            assert same_document(page)
            page.select_option("#view-series select[name=clock]", "utc")
            drawn(page, "series", 3)
            assert axis(page, "series", 0)["label"] == "UTC"
            assert page.evaluate("document.querySelector('#view-series .chart')._arrowroot.plot.scales.x.time")
        else:
            narrow_enough(page)
            shots(page.query_selector("#view-series"), "series-phone.png")
        page.context.close()


def test_folder_series_gap_and_dq_band(site: Site, browser, shots) -> None:
    page = open_page(browser, site, f"datasets/{GWOSC}")
    v = drawn(page, "series")
    xs, lo, hi = plotted(page, "series")
    span = GWOSC_STARTS[-1] + DUR - GPS
    assert v["span"] == span
    in_gap = [i for i, x in enumerate(xs) if 2 * DUR + 0.1 < x < 3 * DUR - 0.1]
    assert in_gap and all(lo[i] is None and hi[i] is None for i in in_gap)   # drawn as a gap
    want_lo = np.full(v["pixels"], np.nan)
    for t0, s in site.info["strains"].items():
        want_lo = np.fmin(want_lo, _minmax(s, t0, RATE, GPS, span, v["pixels"])[0])
    np.testing.assert_array_equal(_nan(lo), want_lo)
    note = page.inner_text("#view-series .note")
    assert "1 gap" in note and "CBC_CAT1" in note
    shots(page.query_selector("#view-series"), "series-gap-dq-desktop.png")
    page.context.close()


def test_multidimensional_atoms_with_sliders(site: Site, browser, shots) -> None:
    with h5py.File(site.root / "pt" / "array_mdatom.h5") as f:
        arr = f["arr"][...]

    def shown(page) -> np.ndarray:
        v = page.evaluate("document.querySelector('#view-plane .chart')._arrowroot.view")
        return np.frombuffer(base64.b64decode(v["values"]), "<f4").reshape(v["rows"], v["cols"])

    for width in (1100, 390):
        page = open_page(browser, site, f"datasets/{MDATOM}", width)
        drawn(page, "plane")
        np.testing.assert_array_equal(shown(page), arr[0, 0].astype(np.float32))
        assert page.input_value("#view-plane input[name=plane]") == "0,0,:,:"
        page.eval_on_selector("#view-plane .sliders input[data-axis='0']",
                              "el => { el.value = 3; el.dispatchEvent(new Event('input', {bubbles: true})); }")
        wait(page, "document.querySelector('#view-plane .chart')._arrowroot.view.plane === '3,0,:,:'")
        drawn(page, "plane", 2)
        np.testing.assert_array_equal(shown(page), arr[3, 0].astype(np.float32))
        assert same_document(page)
        # show entries × the atom's axis: the array's own axes get sliders
        page.select_option("#view-plane .sliders select[aria-label=rows]", "0")
        wait(page, "document.querySelector('#view-plane .chart')._arrowroot.view.plane === ':,0,0,:'")
        drawn(page, "plane", 3)
        np.testing.assert_array_equal(shown(page), arr[:, 0, 0, :].astype(np.float32))
        assert "every element shown" in page.inner_text("#view-plane .note")
        if width == 1100:
            shots(page.query_selector("#view-plane"), "plane-desktop.png")
        else:
            narrow_enough(page)
            shots(page.query_selector("#view-plane"), "plane-phone.png")
        page.context.close()


def test_tree_columns_integers_jagged_and_scatter(site: Site, browser, shots) -> None:
    import awkward as ak

    t = uproot.open(site.root / "hep" / "uproot-HZZ.root")["events"]
    page = open_page(browser, site, f"datasets/{HZZ}")
    drawn(page, "column")
    page.select_option("#view-column select[name=hist]", "NMuon")
    v = drawn(page, "column", 2)
    nmuon = t["NMuon"].array(library="np")
    assert v["column"] == "NMuon" and v["integer"]
    xs, ys = plotted(page, "column")
    np.testing.assert_array_equal(ys, np.bincount(nmuon)[nmuon.min():])                   # one bar per value
    np.testing.assert_array_equal(xs, np.arange(nmuon.min(), nmuon.max() + 1))
    page.select_option("#view-column select[name=hist]", "Muon_Px")
    page.fill("#view-column input[name=where]", "NMuon >= 2")
    page.click("#view-column button[type=submit]")
    wait(page, "document.querySelector('#view-column .chart')._arrowroot.view.where === 'NMuon >= 2'")
    v = drawn(page, "column", 3)
    px = t["Muon_Px"].array(library="ak")
    flat = ak.to_numpy(ak.flatten(px[nmuon >= 2])).astype(np.float64)
    assert v["values"] == len(flat) and v["entries"] == int((nmuon >= 2).sum())
    np.testing.assert_array_equal(plotted(page, "column")[1][:-1], np.histogram(flat, bins=np.array(v["edges"]))[0])
    assert f"{len(flat)} values in {v['entries']} entries passing NMuon >= 2" in page.inner_text("#view-column .note")
    shots(page.query_selector("#view-column"), "column-jagged-desktop.png")
    drawn(page, "scatter")
    page.select_option("#view-scatter select[name=x]", "MET_px")
    page.select_option("#view-scatter select[name=y]", "MET_py")
    wait(page, "(v => v.x === 'MET_px' && v.y === 'MET_py')"
                           "(document.querySelector('#view-scatter .chart')._arrowroot.view)")
    s = drawn(page, "scatter", 2)
    assert s["mode"] == "points" and s["points"] == len(nmuon)
    xs, ys = plotted(page, "scatter")
    want = sorted(zip(*(t[c].array(library="np").astype(np.float64) for c in ("MET_px", "MET_py"))))
    assert sorted(zip(xs, ys)) == want
    shots(page.query_selector("#view-scatter"), "scatter-desktop.png")
    page.context.close()


def test_metadata_lineage_and_search(site: Site, browser, shots) -> None:
    page = open_page(browser, site, f"datasets/{RUNS}")
    assert "widened to int64" in page.inner_text("#drift-table")
    assert "runs/run1.h5:events" in page.inner_text("#missing-table")
    page.evaluate("document.querySelector('#drift').scrollIntoView()")
    shots(page, "drift-desktop.png")
    page.context.close()
    page = open_page(browser, site, f"datasets/{site.skim}")
    steps = page.inner_text("ol.lineage")
    assert HZZ in steps and site.renamed in steps and "home/local/muons" not in page.content()
    shots(page.query_selector("ol.lineage"), "lineage-desktop.png")
    page.click(f"ol.lineage a:text-is('{site.renamed}')")
    # the page writes its view state into the query once drawn: match the path only
    page.wait_for_url(lambda url: urlsplit(url).path.endswith(f"/datasets/{site.renamed}"))
    assert page.inner_text("h1") == site.renamed
    page.context.close()
    page = open_page(browser, site, "")
    page.fill("input[name=q]", "HZZ")
    page.click("form[role=search] button")
    page.wait_for_selector("#results")
    assert page.inner_text("#results li:first-child a") == HZZ
    shots(page, "search-desktop.png")
    page.context.close()


def test_pages_work_without_javascript(site: Site, browser) -> None:
    for path, img in ((HPX, "histogram"), (STRAIN, "line"), (MDATOM, "image"), (HZZ, "hist")):
        page = open_page(browser, site, f"datasets/{path}", script=False)
        wait(page, f"document.querySelector('#{img}') && document.querySelector('#{img}').complete")
        assert page.eval_on_selector(f"#{img}", "i => i.naturalWidth") == 640, path
        page.context.close()
