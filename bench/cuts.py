"""Server-side cuts: a 1%-selective cut returning 2 columns, pushed down to arrowroot, vs
fetching those 2 columns plus the cut's columns for every entry and filtering on the client.

Builds a ROOT file of N entries with 20 branches (flat and jagged), serves it with
`arrowroot serve` in another process, and prints both timings, the bytes each moved, and
the ratios (goal: pushdown ≥ 5× faster, bytes ≈ 1%).

    python bench/cuts.py [--entries 2000000] [--repeat 3] [--compression zlib|lz4|none]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uproot

from arrowroot.clients import Client

OUTPUT = ["event", "Jet_pt"]


def build(path: Path, n: int, compression: str) -> float:
    """Write the file; returns the MET_pt threshold that, with nMuon >= 2, keeps ~1%."""
    rng = np.random.default_rng(1)
    comp = {"zlib": uproot.ZLIB(1), "lz4": uproot.LZ4(1), "none": None}[compression]
    flat = {f"f{i}": "float32" for i in range(8)}
    with uproot.recreate(path, compression=comp) as f:
        tree = f.mktree("events", {"event": "int64", "run": "int32", "nMuon": "int32", "MET_pt": "float32",
                                   "MET_phi": "float32", **flat, "Muon_pt": "var * float32",
                                   "Muon_eta": "var * float32", "Jet_pt": "var * float32",
                                   "Jet_eta": "var * float32", "Jet_phi": "var * float32",
                                   "Jet_mass": "var * float32"})
        step = 250_000
        for start in range(0, n, step):
            m = min(step, n - start)
            nmu = rng.poisson(1.0, m).astype(np.int32)
            njet = rng.poisson(4.0, m).astype(np.int32)
            tm, tj = int(nmu.sum()), int(njet.sum())
            data = {"event": np.arange(start, start + m, dtype=np.int64), "run": np.ones(m, np.int32),
                    "nMuon": nmu, "MET_pt": rng.exponential(30, m).astype(np.float32),
                    "MET_phi": rng.uniform(-3.1, 3.1, m).astype(np.float32),
                    **{k: rng.normal(size=m).astype(np.float32) for k in flat},
                    "Muon_pt": ak.unflatten(rng.exponential(20, tm).astype(np.float32), nmu),
                    "Muon_eta": ak.unflatten(rng.normal(0, 1.5, tm).astype(np.float32), nmu)}
            for k in ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"):
                data[k] = ak.unflatten(rng.exponential(40, tj).astype(np.float32), njet)
            tree.extend(data)
    t = uproot.open(path)["events"]
    nmu, met = t["nMuon"].array(library="np"), t["MET_pt"].array(library="np")
    pool = np.sort(met[nmu >= 2])
    return float(pool[int(len(pool) - 0.01 * n)])  # ~1% of all entries pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compression", choices=["zlib", "lz4", "none"], default="zlib")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-cuts-") as tmp:
        root = Path(tmp)
        threshold = build(root / "events.root", args.entries, args.compression)
        threshold = float(f"{threshold:.4f}")
        where = f"nMuon >= 2 and MET_pt > {threshold}"
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port",
                                 "0", "--no-index"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        location = proc.stdout.readline().split()[1]
        try:
            c = Client(location, threads=4)
            ds = "events.root:events"

            def pushdown() -> pa.Table:
                return c.read(ds, OUTPUT, where=where)

            def client_side() -> pa.Table:
                t = c.read(ds, OUTPUT + ["nMuon", "MET_pt"])
                keep = pc.and_(pc.greater_equal(t["nMuon"], 2), pc.greater(t["MET_pt"], threshold))
                return t.filter(keep).select(OUTPUT)

            a, b = pushdown(), client_side()
            if not a.equals(b):
                raise SystemExit(f"pushdown ({a.num_rows} rows) and client-side filtering ({b.num_rows}) disagree")
            t_a = min(_timed(pushdown) for _ in range(args.repeat))
            t_b = min(_timed(client_side) for _ in range(args.repeat))
            bytes_a = a.nbytes
            bytes_b = c.read(ds, OUTPUT + ["nMuon", "MET_pt"]).nbytes
            c.close()
        finally:
            proc.terminate()
            proc.wait()
    print(f"{args.entries:,} entries, 20 branches ({args.compression}); cut {where!r} keeps "
          f"{a.num_rows:,} ({100 * a.num_rows / args.entries:.2f}%)")
    print(f"(a) pushdown, 2 columns:                {t_a:7.3f} s  {bytes_a / 1e6:8.2f} MB sent")
    print(f"(b) 4 columns to the client, filtered:  {t_b:7.3f} s  {bytes_b / 1e6:8.2f} MB sent")
    print(f"speed-up (b ÷ a): {t_b / t_a:.2f}×   bytes (a ÷ b): {100 * bytes_a / bytes_b:.2f}%")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
