"""The web view in a real browser: Debian's chromium driven by Playwright (no browser download).

Logs in, opens the tree, searches, opens a dataset, changes the cut, waits for the histogram
and the image to be drawn, clicks a download and reads the file back. Screenshots go to the test's
tmp dir (and to $ARROWROOT_SCREENS when set, to look at them).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.web import WebServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the PyPI package) is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install -y chromium "
                                                          "(.ci/run installs it)")]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
IMAGE = "lab/scan.h5:entry/data/image"


def _drawn(page, view: str, times: int = 1) -> dict:
    """The JSON a view drew, once drawn ``times`` times (as a function: the page's CSP forbids eval)."""
    page.wait_for_function(f"() => (+(document.querySelector('#view-{view}').dataset.drawn || 0)) >= {times} "
                           f"&& !document.querySelector('#view-{view}').dataset.pending")
    return page.evaluate(f"document.querySelector('#view-{view} .chart')._arrowroot.view")


def test_browse_search_preview_plot_download(tmp_path: Path) -> None:
    root = write_sample_files(tmp_path / "data", entries=3000)
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "alice", "alice-browser-pw", ["all"])
    identities.grant(cat, "*", "group:all")
    server = ArrowrootServer(Settings(root=root, port=0), catalog=cat)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    web = WebServer(server.service, 0, flight_port=server.port).start()
    shots = tmp_path / "screens"
    shots.mkdir()
    extra = Path(os.environ["ARROWROOT_SCREENS"]) if os.environ.get("ARROWROOT_SCREENS") else None

    def shot(page, name: str) -> None:
        page.screenshot(path=str(shots / name), full_page=True)
        if extra is not None:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(shots / name, extra / name)

    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            ctx = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(30_000)

            # no session: the login page, then back where we wanted to go
            page.goto(web.url)
            assert page.url.startswith(web.url + "login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            assert "wrong user name or password" in page.inner_text(".error")
            shot(page, "01-login-error.png")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "alice-browser-pw")
            page.click("main button[type=submit]")
            page.wait_for_url(web.url)
            cookie = next(c for c in ctx.cookies() if c["name"] == "arrowroot_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

            # the tree
            assert page.inner_text("#counts").strip() == "7 datasets"
            assert page.is_visible(f'a[href="/datasets/{IMAGE}"]')
            shot(page, "02-tree.png")

            # search: has_column + format
            page.fill("input[name=has_column]", "energy")
            page.select_option("select[name=format]", "hdf5")
            page.click("form[role=search] button")
            assert page.inner_text("#counts").startswith("2 of 7 datasets match")
            shot(page, "03-search.png")

            # a dataset: schema, preview, then a cut
            page.click(f'#tree a[href="/datasets/{DETECTOR}"]')
            # the page writes its view state into the query once drawn: match the path only
            page.wait_for_url(lambda url: urlsplit(url).path.endswith(f"/datasets/{DETECTOR}"))
            assert "float32" in page.inner_text("#schema")
            assert len(page.query_selector_all("#preview tr")) == 21
            _drawn(page, "column")
            page.select_option("#hist-form select[name=hist]", "energy")
            page.fill("#hist-form input[name=where]", "channel == 3 and energy > 150")
            page.fill("#hist-form input[name=bins]", "30")
            page.click("#hist-form button")
            page.wait_for_function("() => (v => v && v.where === 'channel == 3 and energy > 150' && v.counts.length === 30)"
                                   "((document.querySelector('#view-column .chart')._arrowroot || {}).view)")
            view = _drawn(page, "column", 3)
            assert view["column"] == "energy" and view["where"] == "channel == 3 and energy > 150"
            assert len(view["counts"]) == 30 and "where=channel" in page.url and "bins=30" in page.url
            assert _drawn(page, "series")["column"] == "energy"
            shot(page, "04-dataset-histogram-cut.png")

            # preview with the cut and a download of that selection
            page.fill("#selection input[name=where]", "channel == 3 and energy > 150")
            page.fill("#selection input[name=columns]", "channel,energy")
            page.click("#selection button")
            page.wait_for_load_state()
            rows = page.query_selector_all("#preview tr")[1:]
            assert rows and all(r.query_selector_all("td")[1].inner_text() == "3" for r in rows)
            with page.expect_download() as info:
                page.click('#downloads a:text-is("parquet")')
            download = info.value
            assert download.suggested_filename == "lab_scan.h5_detector.parquet"
            got = pq.read_table(io.BytesIO(Path(download.path()).read_bytes()))
            assert got.column_names == ["channel", "energy"] and got.num_rows > 0
            assert set(got["channel"].to_pylist()) == {3} and min(got["energy"].to_pylist()) > 150
            import h5py
            import numpy as np

            with h5py.File(root / "lab" / "scan.h5") as f:
                ch, en = f["detector/channel"][...], f["detector/energy"][...]
            keep = (ch == 3) & (en > 150)
            assert np.array_equal(got["energy"].to_numpy(), en[keep])
            shot(page, "05-preview-cut-download.png")

            # an image stack: change the planar cut
            page.goto(web.url + f"datasets/{IMAGE}")
            _drawn(page, "plane")
            page.fill("#image-form input[name=plane]", ":,16,:")
            page.press("#image-form input[name=plane]", "Enter")
            page.wait_for_function("() => document.querySelector('#view-plane .chart')._arrowroot.view.plane === ':,16,:'")
            assert "plane=%3A%2C16%2C%3A" in page.url
            shot(page, "06-image-plane.png")

            # a phone
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, storage_state=ctx.storage_state())
            mobile = phone.new_page()
            mobile.goto(web.url + f"datasets/{EVENTS}?hist=Muon_pt&where=nMuon%20%3E%3D%202")
            assert _drawn(mobile, "column")["column"] == "Muon_pt"
            width = mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width}px wide on a 390px phone"
            shot(mobile, "07-phone-dataset.png")
            browser.close()
    finally:
        web.stop()
        server.shutdown()
        cat.close()
