"""The page's JavaScript: its pure helpers under node's own test runner (tests/js/), and the
vendored uPlot is the pinned npm release with its licence next to it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "flight_server" / "web" / "static"
UPLOT = {"uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
         "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_helpers_under_node() -> None:
    out = subprocess.run(["node", "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass 9" in out.stdout


def test_vendored_uplot_is_the_pinned_release_with_its_licence() -> None:
    folder = STATIC / "vendor" / "uplot-1.6.32"
    for name, digest in UPLOT.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert (folder / "uPlot.iife.min.js").read_text()[:60].startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32)")
    licence = (folder / "LICENSE").read_text()
    assert "The MIT License" in licence and "Leon Sorokin" in licence
    template = (ROOT / "flight_server" / "web" / "templates" / "dataset.html").read_text()
    assert "/static/vendor/uplot-1.6.32/uPlot.iife.min.js" in template


def test_the_page_script_stays_small() -> None:
    assert len((STATIC / "arrowroot.js").read_bytes()) < 40_000
