"""Sample data for the example notebooks, written into one directory that a server then serves.

    python examples/sample_data.py DIR [--rescan]

writes

* ``hep/events.root`` (TTree ``events``: jagged muons) and ``lab/scan.h5`` (an image stack and a
  detector table) — arrowroot's own demo files (``arrowroot.flight_server.cli.demo``);
* ``lh5/{type}/{period}/r{run}/l200-{period}-r{run}-{type}-{timestamp}-tier_dsp.lh5``: a small
  LEGEND-style pygama tier (two channels per file, one ``dsp`` table per channel), written with
  h5py alone, and an ``arrowroot.toml`` that declares them as one dataset, ``l200/dsp``, with typed
  file keys.

The notebooks never call this themselves: ``tests/test_notebooks.py`` calls :func:`write_all`
on a temporary directory and serves it; in the Docker setup the ``sample-data`` service
(``docker compose --profile demo run --rm sample-data``) writes the same files into the data
folder the server mounts.  ``--rescan`` then asks the server at ``ARROWROOT_URL`` to index them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import h5py
import numpy as np

CHANNELS = (1027201, 1027202)
LH5_DATASET = "l200/dsp"
LH5_TOML = f"""
# written by examples/sample_data.py: the pygama dsp tier as one dataset
[[dataset]]
name = "{LH5_DATASET}"
files = "lh5/*/*/*/*-tier_dsp.lh5"
object = "ch{{ch}}/dsp"
keys = "{{exp}}-{{period}}-{{run}}-{{type}}-{{timestamp}}-tier_{{tier}}.lh5"
"""
# gamma lines a germanium detector sees in calibration (keV): 228Th chain and 40K
LINES_KEV = np.array([238.6, 583.2, 727.3, 860.6, 1460.8, 2614.5])


def _column(group: h5py.Group, name: str, data: np.ndarray, units: str | None = None) -> None:
    d = group.create_dataset(name, data=data)
    d.attrs["datatype"] = "array<1>{real}"
    if units:
        d.attrs["units"] = units


def _dsp_table(group: h5py.Group, rng: np.random.Generator, n: int, calibration: bool, t0: float) -> None:
    """One LH5 ``table``: energy (keV), A/E, a quality flag, timestamps, trigger times (jagged)
    and a short waveform summary (fixed-size arrays)."""
    if calibration:  # lines on a falling continuum
        line = rng.random(n) < 0.6
        energy = np.where(line, rng.choice(LINES_KEV, n) + rng.normal(0.0, 1.5, n), rng.exponential(700.0, n))
    else:
        energy = rng.exponential(400.0, n)
    table = group.create_group("dsp")
    table.attrs["datatype"] = "table{energy,aoe,quality,timestamp,tp,baseline}"
    _column(table, "energy", energy.astype(np.float64), "keV")
    _column(table, "aoe", rng.normal(1.0, 0.05, n))
    _column(table, "quality", (rng.random(n) < 0.08).astype(np.int32))   # 0 = good
    _column(table, "timestamp", t0 + np.sort(rng.uniform(0.0, 3600.0, n)), "s")
    lengths = rng.integers(0, 4, n)
    tp = table.create_group("tp")
    tp.attrs["datatype"] = "array<1>{array<1>{real}}"
    _column(tp, "cumulative_length", np.cumsum(lengths).astype(np.uint32))
    _column(tp, "flattened_data", rng.uniform(0.0, 8000.0, int(lengths.sum())))
    base = table.create_dataset("baseline", data=rng.normal(15000.0, 5.0, (n, 4)).astype(np.float32))
    base.attrs["datatype"] = "array_of_equalsized_arrays<1,1>{real}"


def write_lh5(root: str | Path, seed: int = 5, per_file: int = 400) -> Path:
    """Two periods x three runs x (cal, phy), two channels each; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    stamp = 0
    for period in ("p03", "p04"):
        for run in range(3):
            for typ in ("cal", "phy"):
                stamp += 1
                ts = f"2023{3 + stamp // 10:02d}{1 + stamp:02d}T120000Z"
                folder = root / "lh5" / typ / period / f"r{run:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                with h5py.File(folder / f"l200-{period}-r{run:03d}-{typ}-{ts}-tier_dsp.lh5", "w") as f:
                    f.attrs["datatype"] = "struct{" + ",".join(f"ch{c}" for c in CHANNELS) + "}"
                    for ch in CHANNELS:
                        g = f.create_group(f"ch{ch}")
                        g.attrs["datatype"] = "struct{dsp}"
                        _dsp_table(g, rng, per_file + int(rng.integers(0, 50)), typ == "cal", 1.68e9 + 1e5 * stamp)
    toml = root / "arrowroot.toml"
    text = toml.read_text() if toml.exists() else ""
    if f'name = "{LH5_DATASET}"' not in text:
        toml.write_text(text + LH5_TOML)
    return root


def write_all(root: str | Path) -> Path:
    """Everything the three example notebooks read, under ``root``."""
    from arrowroot.flight_server.cli.demo import write_sample_files

    write_sample_files(root)
    return write_lh5(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rescan", action="store_true", help="ask the server at ARROWROOT_URL to index them")
    args = parser.parse_args()
    write_all(args.directory)
    print(f"wrote the example notebooks' sample data under {args.directory}")
    if args.rescan:
        from arrowroot.clients import Client

        url = os.environ.get("ARROWROOT_URL", "grpc://127.0.0.1:8815")
        try:
            with Client(url) as client:
                print(f"rescan of {url}: {client.action('rescan')}")
        except Exception as exc:  # the server indexes at start anyway
            print(f"no rescan ({url}: {exc}); the server indexes the folder when it starts")


if __name__ == "__main__":
    main()
