"""The example notebooks (examples/NN_*.py, jupytext percent format) run end to end against a
real server, so they never rot: jupytext → notebook → nbclient with the ``python3`` kernel.

The test writes the sample data (examples/sample_data.py) and serves it; the notebooks only read
``ARROWROOT_URL``. Figures come from matplotlib's inline backend (Agg underneath, no display).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

jupytext = pytest.importorskip("jupytext", reason="pip install jupytext nbclient ipykernel matplotlib")
nbclient = pytest.importorskip("nbclient", reason="pip install jupytext nbclient ipykernel matplotlib")
pytest.importorskip("ipykernel", reason="pip install jupytext nbclient ipykernel matplotlib")
pytest.importorskip("matplotlib", reason="pip install jupytext nbclient ipykernel matplotlib")

from conftest import start_server  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("[0-9]*.py"))

# per notebook: lines its printed output must contain, and how many figures it draws at least
EXPECTED = {
    "01_hep_muons.py": ([r"read 20000 events with \d+ muons", r"entries 1000-2000: 1000 events",
                         r"server-side cut kept \d+ of 20000 events"], 2),
    "02_pygama_lh5.py": ([r"3 calibration files in period 3 \(of 12 files\)",
                          r"channel 1027201, period 3 calibration: \d+ events",
                          r"cut kept \d+ of \d+ calibration events",
                          r"\d+ hits pass a cut on the hit and dsp tiers; \d+ events without muon veto"], 1),
    "03_hdf5_imaging.py": ([r"images 10-14: numpy \(4, 32, 32\) uint16",
                            r"quarter \(16, 16\), every second pixel \(16, 16\)",
                            r"\d+ hits above 300 in channels 0-7"], 2),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import sample_data
    finally:
        sys.path.remove(str(EXAMPLES))
    root = sample_data.write_all(tmp_path_factory.mktemp("examples-data"))
    running = start_server(root)
    yield running
    running.stop()


def test_every_notebook_is_tested():
    assert NOTEBOOKS == sorted(EXPECTED)


def test_notebooks_read_the_server_location_from_the_environment():
    for name in NOTEBOOKS:
        text = (EXAMPLES / name).read_text()
        assert 'os.environ.get("ARROWROOT_URL", "grpc://127.0.0.1:8815")' in text, name
        assert "sample_data" not in re.sub(r"#.*", "", text), f"{name} must not write its own data"


def _outputs(nb) -> tuple[str, int, list[str]]:
    text, figures, errors = [], 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                (errors if out.name == "stderr" else text).append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                figures += "image/png" in out.data
                text.append(out.data.get("text/plain", ""))
            elif out.output_type == "error":
                errors.append(f"{out.ename}: {out.evalue}")
    return "".join(text), figures, errors


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, server, tmp_path, monkeypatch):
    monkeypatch.setenv("ARROWROOT_URL", server.location)
    monkeypatch.delenv("MPLBACKEND", raising=False)        # the kernel's inline backend draws PNGs
    nb = jupytext.read(EXAMPLES / name)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=60,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                                        # raises CellExecutionError on any error
    text, figures, errors = _outputs(nb)
    assert not [e for e in errors if "Traceback" in e or "Error" in e], errors
    patterns, min_figures = EXPECTED[name]
    for pattern in patterns:
        assert re.search(pattern, text), f"{name}: no output matching {pattern!r} in:\n{text}"
    assert figures >= min_figures, f"{name}: {figures} figures, expected at least {min_figures}"
