"""Warm data: the chunk cache keyed by storage, as ratios measured in one run.

Builds a ROOT file (ZLIB, flat + jagged branches, clusters of 100k entries), starts real
servers from the CLI (`arrowroot serve`, loopback) and times one read — 4 columns, in another
order, over entries 10%-90% — in three situations:

  cold      a server with the cache off (every repetition decodes; the file is in the page cache)
  warm      after a read of 8 columns over every entry (a superset of those columns, another range)
            on a server with the memory cache on                                goal ≥ 3× cold
  restart   a new server process given the same --cache-dir (memory cache off, so every repetition
            reads the decoded pieces the first server left on disk)             goal ≥ 2× cold

and prints the ratios (cold time ÷ time), the cache's counters and the load average.

    python bench/warm.py [--entries 2000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best  # noqa: E402

from arrowroot.clients import Client  # noqa: E402

DS = "events.root:events"
WARMUP = ["MET_pt", "MET_phi", "nMuon", "Muon_pt", "Muon_eta", "Jet_pt", "Jet_eta", "f0"]
READ = ["Jet_pt", "MET_pt", "Muon_eta", "f0"]


def build(path: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    flat = {f"f{i}": "float32" for i in range(6)}
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        tree = f.mktree("events", {"MET_pt": "float32", "MET_phi": "float32", "nMuon": "int32", **flat,
                                   "Muon_pt": "var * float32", "Muon_eta": "var * float32",
                                   "Jet_pt": "var * float32", "Jet_eta": "var * float32"})
        step = 100_000
        for start in range(0, n, step):
            m = min(step, n - start)
            nmu, njet = rng.poisson(1.5, m).astype(np.int32), rng.poisson(4, m).astype(np.int32)
            tm, tj = int(nmu.sum()), int(njet.sum())
            tree.extend({"MET_pt": rng.exponential(30, m).astype(np.float32),
                         "MET_phi": rng.uniform(-3.1, 3.1, m).astype(np.float32), "nMuon": nmu,
                         **{k: rng.normal(size=m).astype(np.float32) for k in flat},
                         "Muon_pt": ak.unflatten(rng.exponential(20, tm).astype(np.float32), nmu),
                         "Muon_eta": ak.unflatten(rng.normal(0, 1.5, tm).astype(np.float32), nmu),
                         "Jet_pt": ak.unflatten(rng.exponential(40, tj).astype(np.float32), njet),
                         "Jet_eta": ak.unflatten(rng.normal(0, 2, tj).astype(np.float32), njet)})


class Server:
    """``arrowroot serve`` in its own process."""

    def __init__(self, root: Path, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                                      "--port", "0", "--no-index", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.location = self.proc.stdout.readline().split()[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-warm-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        build(root / "events.root", args.entries)
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        entries = (args.entries // 10, args.entries * 9 // 10)
        cache_dir = Path(tmp) / "cache"

        def read(c: Client):
            return lambda: c.read(DS, READ, entries=entries)

        cold_server = Server(root, "--cache-mb", "0")
        try:
            with Client(cold_server.location, threads=4) as c:
                t_cold, reference = best(read(c), args.repeat)
        finally:
            cold_server.stop()

        warm_server = Server(root, "--cache-mb", "2048", "--cache-dir", str(cache_dir), "--cache-dir-mb", "4096")
        try:
            with Client(warm_server.location, threads=4) as c:
                c.read(DS, WARMUP)                               # other columns, every entry
                t_warm, got = best(read(c), args.repeat, warmup=False)
                assert got.equals(reference)
                stats = c.action("stats")["cache"]
                for _ in range(200):                             # the disk tier writes in the background
                    disk = c.action("stats")["cache"]["disk"]
                    if disk["writes"] + disk["dropped"] >= stats["misses"] // 2:
                        break
                    time.sleep(0.05)
                stats = c.action("stats")["cache"]
        finally:
            warm_server.stop()

        restarted = Server(root, "--cache-mb", "0", "--cache-dir", str(cache_dir), "--cache-dir-mb", "4096")
        try:
            with Client(restarted.location, threads=4) as c:
                t_restart, got = best(read(c), args.repeat, warmup=False)
                assert got.equals(reference)
                after = c.action("stats")["cache"]
        finally:
            restarted.stop()
    mb = reference.nbytes / 1e6
    load = os.getloadavg()
    print(f"{args.entries:,} entries (ZLIB, clusters of 100k); read: {READ} over entries {entries[0]:,}-"
          f"{entries[1]:,} ({mb:.0f} MB of Arrow); best of {args.repeat}; load average {load[0]:.1f} / {load[1]:.1f}")
    print(f"  cold (cache off):                          {t_cold:7.3f} s  {mb / t_cold:7.0f} MB/s")
    print(f"  warm (after reading {len(WARMUP)} columns, all entries): {t_warm:7.3f} s  {mb / t_warm:7.0f} MB/s"
          f"   cold ÷ warm    {t_cold / t_warm:5.2f}×  (goal ≥ 3)")
    print(f"  restart, disk tier only:                   {t_restart:7.3f} s  {mb / t_restart:7.0f} MB/s"
          f"   cold ÷ restart {t_cold / t_restart:5.2f}×  (goal ≥ 2)")
    print(f"  cache after the warm reads: hits {stats['hits']}, misses {stats['misses']}, "
          f"{stats['bytes'] / 1e6:.0f} MB in memory; disk {stats['disk']['chunks']} pieces, "
          f"{stats['disk']['bytes'] / 1e6:.0f} MB, dropped {stats['disk']['dropped']}")
    print(f"  restarted server: disk hits {after['disk']['hits']}, misses {after['disk']['misses']}")


if __name__ == "__main__":
    main()
