"""Skipped data: zone maps, as ratios measured in one run.

Builds a ROOT file (ZLIB, 20 branches, clusters of 100k entries) whose `run` column is sorted
(run numbers, as data are written) and whose `shuffled` column holds the same values in random
order; indexes it (zone maps collected), and starts two `arrowroot serve` processes over it — one
with zone maps, one with `--no-zone-maps` (its own catalog copy). Then:

  sorted    a 1%-selective cut on the sorted column (`run == R`), 2 columns returned:
            without ÷ with zone maps (time)                                      goal ≥ 10×
  random    the same cut on the shuffled column: with ÷ without                   goal ≈ 1 (no slower)
  sql       SELECT count(*), min/max of two columns via ADBC (Flight SQL): the same aggregates
            computed by DuckDB over a full scan (`count(*) + 0` and friends cannot be answered from
            statistics) ÷ answered from the zone maps

    python bench/zones.py [--entries 2000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import awkward as ak
import numpy as np
import uproot

from arrowroot.clients import Client

DS = "events.root:events"
OUTPUT = ["event", "Jet_pt"]


def build(path: Path, n: int) -> int:
    """Write the file; returns a run number R with ~1% of the entries."""
    rng = np.random.default_rng(1)
    runs = np.sort(rng.integers(0, 100, n)).astype(np.int32)
    shuffled = rng.permutation(runs)
    flat = {f"f{i}": "float32" for i in range(12)}
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        tree = f.mktree("events", {"event": "int64", "run": "int32", "shuffled": "int32", "MET_pt": "float32",
                                   **flat, "Muon_pt": "var * float32", "Jet_pt": "var * float32",
                                   "Jet_eta": "var * float32", "Jet_phi": "var * float32"})
        step = 100_000
        for start in range(0, n, step):
            m = min(step, n - start)
            nmu, njet = rng.poisson(1.0, m).astype(np.int32), rng.poisson(4.0, m).astype(np.int32)
            tm, tj = int(nmu.sum()), int(njet.sum())
            data = {"event": np.arange(start, start + m, dtype=np.int64), "run": runs[start:start + m],
                    "shuffled": shuffled[start:start + m], "MET_pt": rng.exponential(30, m).astype(np.float32),
                    **{k: rng.normal(size=m).astype(np.float32) for k in flat},
                    "Muon_pt": ak.unflatten(rng.exponential(20, tm).astype(np.float32), nmu)}
            for k in ("Jet_pt", "Jet_eta", "Jet_phi"):
                data[k] = ak.unflatten(rng.exponential(40, tj).astype(np.float32), njet)
            tree.extend(data)
    return 57


class Server:
    def __init__(self, root: Path, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                                      "--port", "0", "--no-index", "--cache-mb", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.location = self.proc.stdout.readline().split()[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _sql(conn, query: str) -> list:
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def interleaved(fns: list, repeat: int) -> list[tuple[float, object]]:
    """(best time, last result) of each function, timed in turns so that load changes hit all alike."""
    import time

    results: list = [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for f in fns:
        f()  # warm-up
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            results[i] = f()
            times[i].append(time.perf_counter() - t0)
    return [(min(t), r) for t, r in zip(times, results)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-zones-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        r = build(root / "events.root", args.entries)
        size = (root / "events.root").stat().st_size
        catalog = root / ".arrowroot" / "catalog.duckdb"
        other = Path(tmp) / "plain.duckdb"
        # zone maps collected while indexing (a server would collect them on the first cut instead)
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root), "--zone-index-mb",
                        "100000"], check=True, capture_output=True)
        shutil.copy(catalog, other)
        with_maps = Server(root)
        without = Server(root, "--no-zone-maps", "--catalog", str(other))
        try:
            with Client(with_maps.location, threads=4) as a, Client(without.location, threads=4) as b:
                figures = {}
                for column in ("run", "shuffled"):
                    where = f"{column} == {r} and MET_pt > 0"   # on 2 of 20 columns
                    (t_without, ref), (t_with, got) = interleaved(
                        [lambda w=where: b.read(DS, OUTPUT, where=w), lambda w=where: a.read(DS, OUTPUT, where=w)],
                        args.repeat)
                    assert got.equals(ref), column
                    skipped = json.loads(a.flight_info(DS, OUTPUT, where=where).app_metadata or b"{}")
                    figures[column] = (t_with, t_without, got.num_rows, skipped.get("zone_skipped", 0))
                fast = "SELECT count(*) AS n, min(run) AS r0, max(run) AS r1, min(MET_pt) AS m0, max(MET_pt) AS m1 FROM "
                slow = ("SELECT count(*) + 0 AS n, min(run) + 0 AS r0, max(run) + 0 AS r1, min(MET_pt) + 0 AS m0, "
                        "max(MET_pt) + 0 AS m1 FROM ")
                query = f'"{DS}"'
                with flightsql.connect(with_maps.location, autocommit=True) as conn:
                    (t_fast, got), (t_slow, ref) = interleaved(
                        [lambda: _sql(conn, fast + query), lambda: _sql(conn, slow + query)], args.repeat)
                assert [tuple(float(x) for x in row) for row in got] == [tuple(float(x) for x in row) for row in ref]
        finally:
            with_maps.stop()
            without.stop()
    load = os.getloadavg()
    print(f"{args.entries:,} entries, 20 branches (ZLIB, {size / 1e6:.0f} MB, clusters of 100k); best of "
          f"{args.repeat} (taken in turns); load average {load[0]:.1f} / {load[1]:.1f}")
    for column, label in (("run", "sorted  "), ("shuffled", "random  ")):
        t_with, t_without, rows, skipped = figures[column]
        print(f"  {label} `{column} == {r} and MET_pt > 0` keeps {rows:,} ({100 * rows / args.entries:.2f}%), zone maps skip "
              f"{skipped:,} entries: with {t_with:6.3f} s, without {t_without:6.3f} s  "
              f"without ÷ with {t_without / t_with:5.2f}×")
    print(f"  sql      count/min/max via ADBC: zone maps {t_fast * 1e3:7.1f} ms, full scan {t_slow * 1e3:7.1f} ms  "
          f"scan ÷ zone maps {t_slow / t_fast:6.1f}×")


if __name__ == "__main__":
    main()
