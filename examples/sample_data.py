"""Sample data for the example notebooks, written into one directory that a server then serves.

    python examples/sample_data.py DIR [--rescan]

writes

* ``hep/events.root`` (TTree ``events``: jagged muons) and ``lab/scan.h5`` (an image stack and a
  detector table) — arrowroot's own demo files (``arrowroot.flight_server.cli.demo``);
* ``lh5/{type}/{period}/r{run}/l200-{period}-r{run}-{type}-{timestamp}-tier_dsp.lh5``: a small
  LEGEND-style pygama tier (two channels per file, one ``dsp`` table per channel), written with
  h5py alone, and an ``arrowroot.toml`` that declares them as one dataset, ``l200/dsp``, with typed
  file keys;
* ``legend/{tier}/phy/{period}/{run}/...-tier_{tier}.lh5``: a small production of all tiers (raw,
  dsp, hit, a TCM as pygama's ``build_tcm`` writes it, evt), declared as the levels ``l200/hit``
  and ``l200/evt`` (``write_levels``; h5py alone, so the Docker sample needs no pygama).

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


LEVEL_CHANNELS = (1084803, 1084804, 1121600)
LEVEL_KEYS = (("p03", "r000", "20230311T120000Z"), ("p03", "r001", "20230312T080000Z"))
LEVELS_TOML = """
# written by examples/sample_data.py: the LEGEND levels, as pygama's DataLoader configures them
[[level]]
name = "l200/hit"
tiers = ["raw", "dsp", "hit"]
files = "legend/{tier}/*/*/*/*-tier_{tier}.lh5"
object = "ch{ch}/{tier}"
keys = "{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5"

[[level]]
name = "l200/evt"
hits = "l200/hit"
tiers = ["tcm", "evt"]
files = "legend/{tier}/*/*/*/*-tier_{tier}.lh5"
keys = "{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5"
[level.tier.tcm]
object = "hardware_tcm_1"
[level.tier.evt]
object = "evt"
"""


def _table(parent: h5py.Group, name: str, columns: dict[str, np.ndarray], units: dict[str, str] | None = None) -> None:
    """An LH5 ``table``: flat columns (bools stored as uint8, as legend-lh5io does) and lists
    (``array<1>{array<1>{real}}``: cumulative_length + flattened_data), given as (lengths, values)."""
    g = parent.create_group(name)
    g.attrs["datatype"] = "table{" + ",".join(columns) + "}"
    for col, data in columns.items():
        if isinstance(data, tuple):
            lengths, values = data
            v = g.create_group(col)
            v.attrs["datatype"] = "array<1>{array<1>{real}}"
            _column(v, "cumulative_length", np.cumsum(lengths).astype(np.uint32))
            _column(v, "flattened_data", values)
        elif data.dtype == bool:
            d = g.create_dataset(col, data=data.astype(np.uint8))
            d.attrs["datatype"] = "array<1>{bool}"
        else:
            _column(g, col, data, (units or {}).get(col))


def write_levels(root: str | Path, seed: int = 11, events: int = 2000) -> Path:
    """A small LEGEND production as pygama writes it (h5py only): per file key, the raw, dsp and
    hit tiers (one table per channel), the TCM (per event, the table key and row of each hit, as
    pygama's ``build_tcm`` writes it) and an evt tier; plus the levels in arrowroot.toml."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for period, run, ts in LEVEL_KEYS:
        paths = {}
        for tier in ("raw", "dsp", "hit", "tcm", "evt"):
            folder = root / "legend" / tier / "phy" / period / run
            folder.mkdir(parents=True, exist_ok=True)
            paths[tier] = folder / f"l200-{period}-{run}-phy-{ts}-tier_{tier}.lh5"
        fired = rng.random((events, len(LEVEL_CHANNELS))) < 0.5
        fired[~fired.any(axis=1), 0] = True                     # every event has a hit
        rows = np.cumsum(fired, axis=0) - 1                     # each hit's row in its channel's table
        t_event = np.cumsum(rng.exponential(0.5, events))
        files = {t: h5py.File(paths[t], "w") for t in ("raw", "dsp", "hit")}
        for f in files.values():
            f.attrs["datatype"] = "struct{" + ",".join(f"ch{c}" for c in LEVEL_CHANNELS) + "}"
        for j, ch in enumerate(LEVEL_CHANNELS):
            n = int(fired[:, j].sum())
            energy = np.where(rng.random(n) < 0.3, rng.choice(LINES_KEV, n) + rng.normal(0.0, 1.5, n),
                              rng.exponential(500.0, n)).astype(np.float32)
            for t, f in files.items():
                g = f.create_group(f"ch{ch}")
                g.attrs["datatype"] = f"struct{{{t}}}"
            _table(files["raw"][f"ch{ch}"], "raw", {
                "timestamp": t_event[fired[:, j]] + rng.normal(0.0, 1e-6, n),
                "daqenergy": (energy * 8).astype(np.int32), "channel": np.full(n, ch, dtype=np.uint32)},
                {"timestamp": "s"})
            _table(files["dsp"][f"ch{ch}"], "dsp", {
                "trapEmax": (energy * 1.02).astype(np.float32), "AoE": rng.normal(0.0, 2.0, n),
                "tp_0_est": rng.normal(48000.0, 80.0, n).astype(np.float32)}, {"tp_0_est": "ns"})
            _table(files["hit"][f"ch{ch}"], "hit", {
                "cuspEmax_ctc_cal": energy, "trapEmax": (energy * 0.998).astype(np.float32),
                "is_valid_0vbb": rng.random(n) < 0.9}, {"cuspEmax_ctc_cal": "keV"})
        for f in files.values():
            f.close()
        counts = fired.sum(axis=1)
        keys = np.broadcast_to(np.asarray(LEVEL_CHANNELS, dtype=np.int64), fired.shape)[fired]
        with h5py.File(paths["tcm"], "w") as f:
            f.attrs["datatype"] = "struct{hardware_tcm_1}"
            _table(f, "hardware_tcm_1", {"row_in_table": (counts, rows[fired].astype(np.int64)),
                                         "table_key": (counts, keys)})
            f["hardware_tcm_1"].attrs["tables"] = str([f"ch{c}/raw" for c in LEVEL_CHANNELS])
            f["hardware_tcm_1"].attrs["hash_func"] = r"\d+"
        with h5py.File(paths["evt"], "w") as f:
            f.attrs["datatype"] = "struct{evt}"
            _table(f, "evt", {"multiplicity": counts.astype(np.int32), "muon_veto": rng.random(events) < 0.1})
    toml = root / "arrowroot.toml"
    text = toml.read_text() if toml.exists() else ""
    if 'name = "l200/hit"' not in text:
        toml.write_text(text + LEVELS_TOML)
    return root


def write_all(root: str | Path) -> Path:
    """Everything the three example notebooks read, under ``root``."""
    from arrowroot.flight_server.cli.demo import write_sample_files

    write_sample_files(root)
    write_levels(root)
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
