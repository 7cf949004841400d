"""Workspaces: a 1% skim of a 2M-entry tree and derived columns, against their references.

Builds a ROOT file of N entries with 20 branches (flat and jagged), serves it with
`arrowroot serve` in another process, and prints four ratios, each against a reference
measured in the same run:

* bytes stored by the skim ÷ bytes of a materialised copy of the same rows (goal ≤ 1%);
* time to read the skim ÷ time to read the same rows from the parent with the ``where``
  cut, printed as the speed-up (goal ≥ 1.5×);
* derived-column read (parent columns from the ROOT file + new ones from the workspace)
  vs reading the same columns from one Parquet upload holding both, as the throughput
  ratio parquet_time ÷ derived_time (goal ≥ 0.8);
* a skim of the derived dataset (it keeps the derived columns at its entries) against reading
  the derived dataset with the cut, as the speed-up (goal ≥ 1.5×).

    python bench/skims.py [--entries 2000000] [--repeat 3] [--cache-mb 0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from arrowroot.clients import Client
import cuts  # noqa: E402  (bench/cuts.py: the same 20-branch ROOT file)
from timing import best  # noqa: E402  (bench/timing.py)

DATASET = "events.root:events"
OUTPUT = ["event", "MET_pt", "Jet_pt", "Muon_pt"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-mb", type=float, default=0.0,
                    help="server column-chunk cache [0: measure reads, not repeats served from memory]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-skims-") as tmp:
        root = Path(tmp)
        threshold = float(f"{cuts.build(root / 'events.root', args.entries, 'zlib'):.4f}")
        where = f"nMuon >= 2 and MET_pt > {threshold}"
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port",
                                 "0", "--no-index", "--cache-mb", str(args.cache_mb)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        location = proc.stdout.readline().split()[1]
        try:
            c = Client(location, threads=4)
            t0 = time.perf_counter()
            skim = c.skim("home/local/skim", DATASET, where)
            t_make = time.perf_counter() - t0
            copy = c.skim("home/local/copy", DATASET, where, materialize=True)
            print(f"{args.entries} entries, cut {where!r}: {skim['rows']} pass "
                  f"({100 * skim['rows'] / args.entries:.2f}%), skim made in {t_make:.2f} s")
            print(f"stored: skim {skim['bytes']:,} B, materialised copy (all {20} branches) {copy['bytes']:,} B "
                  f"-> ratio {100 * skim['bytes'] / copy['bytes']:.2f}% (goal <= 1%)")

            t_cut, ref = best(lambda: c.read(DATASET, OUTPUT, where=where), args.repeat, warmup=False)
            t_skim, got = best(lambda: c.read("home/local/skim", OUTPUT), args.repeat, warmup=False)
            assert got.equals(ref), "the skim must read the rows the cut selects"
            print(f"read {OUTPUT}: with where {t_cut:.3f} s, from the skim {t_skim:.3f} s "
                  f"-> skim {t_cut / t_skim:.2f}x faster (goal >= 1.5x)")
            t_all, _ = best(lambda: c.read(DATASET, OUTPUT), args.repeat, warmup=False)
            print(f"  (all {args.entries} entries of those columns, no cut: {t_all:.3f} s; a 1% random selection "
                  "has entries in every cluster, so the skim decompresses the same baskets)")

            parent = c.read(DATASET, ["MET_pt", "Jet_pt"], with_entry_numbers=True)
            met = parent["MET_pt"].cast(pa.float64())
            ht = pc.list_value_length(parent["Jet_pt"]).cast(pa.float64())
            derived = pa.table({"entry": parent["entry"], "met2": pc.multiply(met, met), "njet": ht})
            c.put("home/local/derived", derived, parent=DATASET)
            both = pa.table({"MET_pt": parent["MET_pt"], "Jet_pt": parent["Jet_pt"], "met2": derived["met2"],
                             "njet": derived["njet"]})
            c.put("home/local/both", both)
            del parent, derived, both
            cols = ["MET_pt", "Jet_pt", "met2", "njet"]
            t_pq, ref = best(lambda: c.read("home/local/both", cols), args.repeat, warmup=False)
            t_der, got = best(lambda: c.read("home/local/derived", cols), args.repeat, warmup=False)
            assert got.equals(ref), "the derived columns must join the parent's"
            print(f"read {cols}: one Parquet upload {t_pq:.3f} s, parent ROOT + derived Parquet {t_der:.3f} s "
                  f"-> ratio {t_pq / t_der:.2f} (goal >= 0.8)")
            t_root, _ = best(lambda: c.read(DATASET, ["MET_pt", "Jet_pt"]), args.repeat, warmup=False)
            print(f"  (the parent's two columns alone from ROOT: {t_root:.3f} s; the join costs "
                  f"{t_der / t_root:.2f}x that)")

            # skims compose with derived columns: the skim keeps met2/njet at its entries
            c.skim("home/local/derived_skim", "home/local/derived", where)
            t_dcut, ref = best(lambda: c.read("home/local/derived", cols, where=where), args.repeat, warmup=False)
            t_dskim, got = best(lambda: c.read("home/local/derived_skim", cols), args.repeat, warmup=False)
            assert got.equals(ref), "the skim of the derived dataset must read the rows the cut selects"
            print(f"skim of the derived dataset, read {cols}: with where {t_dcut:.3f} s, from the skim "
                  f"{t_dskim:.3f} s -> skim {t_dcut / t_dskim:.2f}x faster (goal >= 1.5x)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
