"""A LEGEND-style production written by the field's own writers, for the levels tests and bench.

legend-lh5io (``lh5.write``) writes the ``raw``, ``dsp`` and ``hit`` tiers (one table per channel,
``ch1084803/raw`` ...) and the ``evt`` tier; pygama's ``build_tcm`` builds the time-coincidence map
from the raw tables' timestamps, as a LEGEND production does. File names follow the production's
``{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5`` under ``<tier>/<type>/<period>/<run>/``.

Also here: the ``arrowroot.toml`` declaring the levels, and pygama's ``FileDB``/``DataLoader``
configurations for the same files (the reference the tests and ``bench/tiers.py`` compare with).

    python bench/legend.py DIR [--events 300]     # writes a small production into DIR
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIERS = ("raw", "dsp", "hit", "tcm", "evt")
CHANNELS = (1084803, 1084804, 1121600, 1121601)
KEYS = (("p03", "r000", "20230311T120000Z"), ("p03", "r000", "20230311T130000Z"),
        ("p03", "r001", "20230312T080000Z"), ("p04", "r000", "20230420T100000Z"))
TCM_TABLE = "hardware_tcm_1"
FILE = "{exp}-{period}-{run}-{type}-{timestamp}-tier_%s.lh5"
WAVEFORM_SAMPLES = 64

TOML = f"""
# the hit level: raw, dsp and hit tiers, one table per channel, entry-aligned
[[level]]
name = "l200/hit"
tiers = ["raw", "dsp", "hit"]
files = "{{tier}}/*/*/*/*-tier_{{tier}}.lh5"
object = "ch{{ch}}/{{tier}}"
keys = "{{exp}}-{{period}}-{{run}}-{{type}}-{{timestamp}}-tier_{{tier}}.lh5"

# the event level: pygama's TCM points into l200/hit; evt has one row per TCM event
[[level]]
name = "l200/evt"
hits = "l200/hit"
tiers = ["tcm", "evt"]
files = "{{tier}}/*/*/*/*-tier_{{tier}}.lh5"
keys = "{{exp}}-{{period}}-{{run}}-{{type}}-{{timestamp}}-tier_{{tier}}.lh5"
[level.tier.tcm]
object = "{TCM_TABLE}"
[level.tier.evt]
object = "evt"
"""


@dataclass
class Production:
    root: Path
    keys: list[tuple[str, str, str]]
    channels: tuple[int, ...]

    def path(self, tier: str, key: tuple[str, str, str], typ: str = "phy") -> Path:
        period, run, ts = key
        name = FILE.replace("%s", tier).format(exp="l200", period=period, run=run, type=typ, timestamp=ts)
        return self.root / tier / typ / period / run / name


def write_key(prod: Production, key: tuple[str, str, str], events: int, rng: np.random.Generator,
              tiers: tuple[str, ...] = TIERS) -> None:
    """One file key: every channel's raw/dsp/hit tables, the TCM built from raw, and evt."""
    import lh5
    from lgdo import Array, ArrayOfEqualSizedArrays, Table

    for t in tiers:
        prod.path(t, key).parent.mkdir(parents=True, exist_ok=True)
    t_event = np.cumsum(rng.exponential(1.0, events))
    for ch in prod.channels:
        hit = rng.random(events) < 0.55
        t = t_event[hit] + rng.normal(0.0, 2e-6, int(hit.sum()))
        n = len(t)
        energy = np.where(rng.random(n) < 0.3, rng.choice([583.2, 1460.8, 2614.5], n) + rng.normal(0, 1.5, n),
                          rng.exponential(600.0, n)).astype(np.float32)
        if "raw" in tiers:
            wf = (rng.normal(15000.0, 5.0, (n, WAVEFORM_SAMPLES))).astype(np.uint16)
            raw = Table(col_dict={"timestamp": Array(t, attrs={"units": "s"}),
                                  "daqenergy": Array((energy * 8).astype(np.int32)),
                                  "channel": Array(np.full(n, ch, dtype=np.uint32)),
                                  "baseline": Array(wf[:, 0].astype(np.uint16)),
                                  "waveform": ArrayOfEqualSizedArrays(nda=wf)})
            lh5.write(raw, f"ch{ch}/raw", prod.path("raw", key), wo_mode="append")
        if "dsp" in tiers:
            dsp = Table(col_dict={"trapEmax": Array((energy * 1.02 + rng.normal(0, 0.5, n)).astype(np.float32)),
                                  "tp_0_est": Array(rng.normal(48000.0, 80.0, n).astype(np.float32), attrs={"units": "ns"}),
                                  "AoE": Array(rng.normal(0.0, 2.0, n)),
                                  "dt_eff": Array(rng.normal(300.0, 20.0, n).astype(np.float32))})
            lh5.write(dsp, f"ch{ch}/dsp", prod.path("dsp", key), wo_mode="append")
        if "hit" in tiers:
            hitt = Table(col_dict={"cuspEmax_ctc_cal": Array(energy, attrs={"units": "keV"}),
                                   "trapEmax": Array((energy * 0.998).astype(np.float32)),
                                   "AoE_classifier": Array(rng.normal(0.0, 1.0, n)),
                                   "is_valid_0vbb": Array(rng.random(n) < 0.9)})
            lh5.write(hitt, f"ch{ch}/hit", prod.path("hit", key), wo_mode="append")
    if "tcm" in tiers:
        from pygama.evt import build_tcm

        logging.getLogger("pygama").setLevel(logging.WARNING)
        build_tcm([(str(prod.path("raw", key)), ["ch*/raw"])], "timestamp", coin_windows=1e-4,
                  out_file=str(prod.path("tcm", key)), out_name=TCM_TABLE, wo_mode="of")
    if "evt" in tiers:
        tcm = lh5.read(TCM_TABLE, str(prod.path("tcm", key)))
        multiplicity = np.diff(np.r_[0, tcm.table_key.cumulative_length.nda]).astype(np.int32)
        m = len(multiplicity)
        evt = Table(col_dict={"muon_veto": Array(rng.random(m) < 0.15),
                              "multiplicity": Array(multiplicity),
                              "energy_sum": Array(rng.exponential(800.0, m))})
        lh5.write(evt, "evt", str(prod.path("evt", key)), wo_mode="of")


def write_production(root: Path, events: int = 300, keys: tuple = KEYS, channels: tuple[int, ...] = CHANNELS,
                     seed: int = 23, toml: bool = True) -> Production:
    """Every tier of every key under ``root`` (and the levels' arrowroot.toml)."""
    prod = Production(Path(root), list(keys), tuple(channels))
    rng = np.random.default_rng(seed)
    for key in keys:
        write_key(prod, key, events, rng)
    if toml:
        (prod.root / "arrowroot.toml").write_text(TOML)
    return prod


def filedb_config(root: Path, tiers: tuple[str, ...] = TIERS) -> dict:
    """pygama FileDB's configuration for the production (tables as 7-digit channel numbers)."""
    tables = {"raw": "ch{ch:07d}/raw", "dsp": "ch{ch:07d}/dsp", "hit": "ch{ch:07d}/hit", "tcm": TCM_TABLE,
              "evt": "evt"}
    return {"data_dir": str(Path(root).resolve()), "tier_dirs": {t: f"/{t}" for t in tiers},
            "file_format": {t: "/{type}/{period}/{run}/" + FILE.replace("%s", t) for t in tiers},
            "table_format": {t: tables[t] for t in tiers}}


DATALOADER_CONFIG = {"levels": {
    "hit": {"tiers": ["raw", "dsp", "hit"]},
    "tcm": {"tiers": ["tcm"], "parent": "hit", "child": "evt",
            "tcm_cols": {"child_idx": "coin_idx", "parent_tb": "table_key", "parent_idx": "row_in_table"}},
    "evt": {"tiers": ["evt"]}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--events", type=int, default=300)
    args = ap.parse_args()
    prod = write_production(args.directory, args.events)
    print(f"wrote {len(prod.keys)} keys x {len(prod.channels)} channels x {len(TIERS)} tiers under {prod.root}")


if __name__ == "__main__":
    main()
