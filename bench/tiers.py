"""Levels: a hit-level read with a cut on two tiers, and an event-level read through the TCM,
each against pygama's DataLoader on the same files and against reading the tiers separately
through arrowroot and joining them in pandas, all measured in one run.

Writes a LEGEND-style production with legend-lh5io and pygama's build_tcm (``bench/legend.py``:
raw with 64-sample waveforms, dsp, hit, tcm, evt; KEYS x CHANNELS tables), serves it with
``arrowroot serve`` in another process (column-chunk cache off, so every read decodes), and prints
for each read the best of ``--repeat`` runs and the ratios

    DataLoader time ÷ arrowroot time                       (goal ≥ 3)
    separate tiers + pandas join time ÷ arrowroot time

The results are checked equal before anything is timed.

    python bench/tiers.py [--events 20000] [--repeat 3] [--keys 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TQDM_DISABLE", "1")  # DataLoader's progress bars (tqdm reads this)
import legend  # noqa: E402  (bench/legend.py)
from arrowroot.clients import Client
from timing import best  # noqa: E402  (bench/timing.py)

# the per-tier datasets, for the "read each tier, join in pandas" reference
TIER_TOML = "".join(f"""
[[dataset]]
name = "tier/{t}"
files = "{t}/*/*/*/*-tier_{t}.lh5"
object = "ch{{ch}}/{t}"
keys = "{{exp}}-{{period}}-{{run}}-{{type}}-{{timestamp}}-tier_{t}.lh5"
""" for t in ("raw", "dsp", "hit")) + f"""
[[dataset]]
name = "tier/tcm"
files = "tcm/*/*/*/*-tier_tcm.lh5"
object = "{legend.TCM_TABLE}"
keys = "{{exp}}-{{period}}-{{run}}-{{type}}-{{timestamp}}-tier_tcm.lh5"
"""

HIT_CUT = "cuspEmax_ctc_cal > 1000 and AoE > 0"            # hit tier and dsp tier
HIT_COLUMNS = ["cuspEmax_ctc_cal", "AoE", "tp_0_est", "daqenergy"]
EVT_CUT = "cuspEmax_ctc_cal > 2000"
EVT_COLUMNS = ["cuspEmax_ctc_cal", "tp_0_est"]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        level, root.level = root.level, logging.CRITICAL
        try:
            return fn(*args, **kwargs)
        finally:
            root.setLevel(level)


def dataloader(root: Path):
    from pygama.flow import DataLoader, FileDB

    db = quiet(FileDB, legend.filedb_config(root))
    quiet(db.scan_tables_columns)

    def hits() -> pd.DataFrame:
        dl = DataLoader(legend.DATALOADER_CONFIG, db)
        dl.set_files("all")
        dl.set_cuts({"hit": HIT_CUT})
        dl.set_output(fmt="pd.DataFrame", columns=HIT_COLUMNS)
        return quiet(dl.load)

    def events() -> pd.DataFrame:
        dl = DataLoader(legend.DATALOADER_CONFIG, db)
        dl.set_files("all")
        dl.set_cuts({"hit": EVT_CUT})
        dl.set_output(fmt="pd.DataFrame", columns=EVT_COLUMNS)
        el = quiet(dl.build_entry_list, tcm_level="tcm", mode="any")
        return quiet(dl.load, el, tcm_level="tcm")

    return hits, events


def separate_hits(c: Client) -> pd.DataFrame:
    """The hand-made join: each tier's columns read in full (the cut spans tiers, so no tier can
    be cut alone), aligned by entry number, cut in pandas."""
    raw = c.read("tier/raw", ["daqenergy"], with_entry_numbers=True, library="pd")
    dsp = c.read("tier/dsp", ["AoE", "tp_0_est"], with_entry_numbers=True, library="pd")
    hit = c.read("tier/hit", ["cuspEmax_ctc_cal"], with_entry_numbers=True, library="pd")
    df = hit.merge(dsp, on="entry").merge(raw, on="entry")
    return df.query(HIT_CUT)[HIT_COLUMNS].reset_index(drop=True)


def separate_events(c: Client) -> pd.DataFrame:
    """The hand-made event read: per file key, the TCM exploded into (event, channel, row), the hit
    and dsp tiers read in full with their per-channel row numbers, merged, then mode "any"."""
    out = []
    for ts in c.files("tier/tcm")["timestamp"].to_pylist():
        key = f"timestamp == '{ts:%Y%m%dT%H%M%SZ}'"
        tcm = c.read("tier/tcm", ["table_key", "row_in_table"], files=key)
        counts = [len(x) for x in tcm["table_key"].to_pylist()]
        hits = pd.DataFrame({"evt": np.repeat(np.arange(len(counts)), counts),
                             "channel": np.concatenate([np.asarray(x) for x in tcm["table_key"].to_pylist()]),
                             "row": np.concatenate([np.asarray(x) for x in tcm["row_in_table"].to_pylist()])})
        tiers = None
        for name, cols in (("tier/hit", ["cuspEmax_ctc_cal"]), ("tier/dsp", ["tp_0_est"])):
            t = c.read(name, cols + ["channel"], files=key, library="pd")
            t["row"] = t.groupby("channel").cumcount()
            tiers = t if tiers is None else tiers.merge(t, on=["channel", "row"])
        df = hits.merge(tiers, on=["channel", "row"], how="left")
        passing = df.loc[df.eval(EVT_CUT), "evt"].unique()
        out.append(df[df["evt"].isin(passing)])
    return pd.concat(out, ignore_index=True)[EVT_COLUMNS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events per file key")
    ap.add_argument("--keys", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    keys = tuple((f"p0{3 + i // 4}", f"r{i % 4:03d}", f"2023031{1 + i // 4}T{10 + i % 4:02d}0000Z")
                 for i in range(args.keys))
    with tempfile.TemporaryDirectory(prefix="arrowroot-tiers-") as tmp:
        root = Path(tmp)
        prod = legend.write_production(root, events=args.events, keys=keys)
        (root / "arrowroot.toml").write_text(legend.TOML + TIER_TOML)
        size = sum(p.stat().st_size for p in root.rglob("*.lh5"))
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port",
                                 "0", "--no-index", "--cache-mb", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        location = proc.stdout.readline().split()[1]
        try:
            c = Client(location, threads=4)
            n_hits = c.datasets("l200/hit")["entries"][0].as_py()
            print(f"{len(prod.keys)} keys x {len(prod.channels)} channels, {args.events} events per key, "
                  f"{n_hits} hits, {size / 1e6:.0f} MB of LH5 (raw waveforms included)")
            dl_hits, dl_events = dataloader(root)

            def ours_hits() -> pd.DataFrame:
                return c.read("l200/hit", HIT_COLUMNS, where=HIT_CUT, library="pd")

            def ours_events() -> pd.DataFrame:
                return c.read("l200/evt", EVT_COLUMNS, hit_where=EVT_CUT, mode="any", orientation="hit",
                              library="pd")

            for name, ours, theirs, separate in (
                    (f"hit level, cut {HIT_CUT!r}", ours_hits, dl_hits, lambda: separate_hits(c)),
                    (f"event level, mode any, hit cut {EVT_CUT!r}", ours_events, dl_events,
                     lambda: separate_events(c))):
                a, b, s = ours(), theirs(), separate()
                for col in (HIT_COLUMNS if "hit level" in name else EVT_COLUMNS):
                    np.testing.assert_array_equal(np.sort(a[col].to_numpy()), np.sort(b[col].to_numpy()))
                    np.testing.assert_array_equal(np.sort(a[col].to_numpy()), np.sort(s[col].to_numpy()))
                t_ours, _ = best(ours, args.repeat)
                t_dl, _ = best(theirs, max(1, args.repeat - 1))
                t_sep, _ = best(separate, args.repeat)
                print(f"\n{name}: {len(a)} rows")
                print(f"  arrowroot level read     {t_ours:7.3f} s")
                print(f"  pygama DataLoader        {t_dl:7.3f} s   DataLoader ÷ arrowroot = {t_dl / t_ours:5.1f}x "
                      "(goal ≥ 3)")
                print(f"  tiers read + pandas join {t_sep:7.3f} s   separate ÷ arrowroot   = {t_sep / t_ours:5.1f}x")
            c.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
