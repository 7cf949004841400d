"""Real files for the web views' tests (HTTP and browser): histograms from scikit-hep-testdata and
one written with uproot from a `hist` TH3, gwpy's shipped strain file, GWOSC-layout strain files
with a gap and data-quality flags, PyTables' multidimensional-atom array, a declared dataset whose
files drift, HZZ's tree (jagged columns) and a workspace skim of a renamed parent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np

SKHEP = None
HPX = "hist/uproot-hepdata-example.root:hpx"
HPXPY = "hist/uproot-hepdata-example.root:hpxpy"
HPROF = "hist/uproot-hepdata-example.root:hprof"
CUTFLOW = "hist/uproot-issue33.root:cutflow"
CUBE = "hist/cube.root:cube"
STRAIN = "gw/HLV-HW100916-968654552-1.hdf:H1:LDAS-STRAIN"
GWOSC = "H1/*.hdf5:strain/Strain"
MDATOM = "pt/array_mdatom.h5:arr"
RUNS = "runs/all"
HZZ = "hep/uproot-HZZ.root:events"
GPS = 1126259446
RATE = 4096
DUR = 8
GWOSC_STARTS = (GPS, GPS + DUR, GPS + 3 * DUR)      # a gap of 8 s before the third file


def skhep(name: str) -> Path:
    import skhep_testdata

    return Path(os.path.dirname(skhep_testdata.__file__)) / "data" / name


def gwpy_file() -> Path:
    import gwpy

    return Path(os.path.dirname(gwpy.__file__)) / "testing" / "data" / "HLV-HW100916-968654552-1.hdf"


def pytables_file(name: str) -> Path:
    import tables

    return Path(os.path.dirname(tables.__file__)) / "tests" / name


def build(root: Path) -> dict:
    """Lay the files out under ``root``; returns what the tests compare against."""
    import hist
    import uproot

    from tests.test_timeseries_scan import write_gwosc

    (root / "hist").mkdir(parents=True)
    for name in ("uproot-hepdata-example.root", "uproot-issue33.root"):
        shutil.copy(skhep(name), root / "hist" / name)
    h3 = hist.Hist(hist.axis.Regular(4, 0, 4, name="x", label="x [cm]"), hist.axis.Regular(3, -1.5, 1.5, name="y"),
                   hist.axis.Variable([0, 1, 3, 6, 10], name="z", label="depth [mm]"), storage=hist.storage.Weight())
    rng = np.random.default_rng(3)
    h3.fill(rng.uniform(-1, 5, 4000), rng.normal(0, 1, 4000), rng.uniform(-1, 11, 4000))
    with uproot.recreate(root / "hist" / "cube.root") as f:
        f["cube"] = h3
    (root / "gw").mkdir()
    shutil.copy(gwpy_file(), root / "gw" / gwpy_file().name)
    (root / "H1").mkdir()
    strains = {t0: write_gwosc(root / "H1" / f"H-H1_GWOSC_4KHZ_R1-{t0}-{DUR}.hdf5", t0, DUR, RATE, seed=i)
               for i, t0 in enumerate(GWOSC_STARTS)}
    (root / "pt").mkdir()
    shutil.copy(pytables_file("array_mdatom.h5"), root / "pt" / "array_mdatom.h5")
    (root / "runs").mkdir()
    for i in range(3):
        with h5py.File(root / "runs" / f"run{i}.h5", "w") as f:
            n = 100 + i
            f["events/energy"] = np.random.default_rng(i).normal(100, 10, n).astype("f4")
            f["events/energy"].attrs["units"] = "keV"
            f["events/channel"] = (np.arange(n) % 7).astype("i4" if i else "i8")
            if i != 1:
                f["events/flag"] = np.ones(n, dtype="u1")
    (root / "arrowroot.toml").write_text('[[dataset]]\nname = "runs/all"\nfiles = "runs/*.h5"\nobject = "events"\n'
                                         'keys = "run{run}.h5"\n')
    (root / "hep").mkdir()
    shutil.copy(skhep("uproot-HZZ.root"), root / "hep" / "uproot-HZZ.root")
    return {"strains": strains}


def make_skim(client) -> tuple[str, str]:
    """A skim of HZZ, a skim of that skim, then the first renamed: (the second, the first's new name)."""
    client.skim("home/local/muons", HZZ, "NMuon >= 1")
    client.skim("home/local/dimuon", "home/local/muons", "NMuon >= 2")
    client.rename("home/local/muons", "home/local/with_muons")
    return "home/local/dimuon", "home/local/with_muons"
