"""Flight SQL vs the plain arrowroot protocol, on one ≥ 2M-entry ROOT file (a script, not a test).

    python bench/sql.py [--entries 2000000] [--repeat 5] [--keep DIR]

Writes a TTree with 20 branches (flat and jagged) with uproot, indexes it, serves it with
``arrowroot serve`` in a separate process (so client and server do not share a GIL), and prints:

1. a cut: ``SELECT MET_pt, nMuon FROM ds WHERE ...`` via ADBC vs a plain DoGet of the same two
   columns with the same cut (server-side ``where`` when the server applies it, otherwise the
   client filters, and the output says so). Goal: ADBC ≥ 0.9× plain DoGet.
2. aggregates computed by the server (count/avg and histogram-like GROUP BYs) vs fetching the
   columns with a plain DoGet and aggregating with numpy. Goal: ≥ 10× faster on the server.

Each figure is the median of ``--repeat`` runs, the two sides alternating, after a warm-up.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uproot

DATASET = "events.root:Events"
CUT_SQL = "MET_pt > 40 AND nMuon >= 2"
CUT_WHERE = "MET_pt > 40 and nMuon >= 2"


def write_file(path: Path, entries: int, seed: int = 7) -> None:
    """A CMS-NanoAOD-like tree: 14 flat branches and 6 jagged ones (20 in total)."""
    rng = np.random.default_rng(seed)
    flat = {"run": "int32", "luminosityBlock": "int32", "event": "int64", "nMuon": "int32", "nJet": "int32",
            "MET_pt": "float32", "MET_phi": "float32", "MET_sumEt": "float32", "PV_npvs": "int32",
            "PV_z": "float32", "HT": "float32", "genWeight": "float32", "Pileup_nTrueInt": "float32",
            "fixedGridRhoFastjetAll": "float32"}
    jagged = {"Muon_pt": "nMuon", "Muon_eta": "nMuon", "Muon_phi": "nMuon",
              "Jet_pt": "nJet", "Jet_eta": "nJet", "Jet_phi": "nJet"}
    branches = dict(flat) | {k: "var * float32" for k in jagged}
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", branches)
        step = 250_000
        for start in range(0, entries, step):
            n = min(step, entries - start)
            n_mu = rng.poisson(1.2, n).astype(np.int32)
            n_jet = rng.poisson(4.0, n).astype(np.int32)
            data: dict[str, object] = {
                "run": np.full(n, 316_000 + start // 1_000_000, np.int32),
                "luminosityBlock": (np.arange(start, start + n) // 1000).astype(np.int32),
                "event": np.arange(start, start + n, dtype=np.int64),
                "nMuon": n_mu,
                "nJet": n_jet,
                "MET_pt": rng.exponential(30.0, n).astype(np.float32),
                "MET_phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
                "MET_sumEt": rng.gamma(5.0, 100.0, n).astype(np.float32),
                "PV_npvs": rng.poisson(30, n).astype(np.int32),
                "PV_z": rng.normal(0, 4, n).astype(np.float32),
                "HT": rng.gamma(3.0, 80.0, n).astype(np.float32),
                "genWeight": np.ones(n, np.float32),
                "Pileup_nTrueInt": rng.normal(32, 5, n).astype(np.float32),
                "fixedGridRhoFastjetAll": rng.gamma(4.0, 5.0, n).astype(np.float32),
            }
            for name, counter in jagged.items():
                counts = n_mu if counter == "nMuon" else n_jet
                total = int(counts.sum())
                values = (rng.exponential(25.0, total) if name.endswith("_pt") else rng.normal(0, 1.5, total))
                data[name] = ak.unflatten(values.astype(np.float32), counts)
            tree.extend(data)


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                             "--port", "0", "--no-index"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline()
    match = re.search(r"grpc://[\w.]+:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(0)


def compare(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float, object, object]:
    """Median seconds of ``a`` and ``b``, run alternately (a, b, b, a, ...) so drifting load on a
    shared machine hits both alike; one warm-up each first (connections, page cache, plan cache)."""
    out_a, out_b = a(), b()
    ta, tb = [], []
    for i in range(repeat):
        for fn, times in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), out_a, out_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--keep", type=Path, help="write the file here and keep it (default: a temp dir)")
    args = ap.parse_args()

    import adbc_driver_flightsql.dbapi as flightsql

    from arrowroot.clients import Client

    tmp = tempfile.TemporaryDirectory(prefix="arrowroot-bench-sql-")
    root = args.keep or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "events.root"
    if not path.exists():
        t0 = time.perf_counter()
        write_file(path, args.entries)
        print(f"wrote {path} ({args.entries:,} entries, 20 branches, {path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
    proc, location = start_server(root)
    try:
        warnings.simplefilter("ignore")
        conn = flightsql.connect(location, autocommit=True)
        client = Client(location)
        ds = f'"{DATASET}"'

        def adbc(query: str) -> pa.Table:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetch_arrow_table()

        def plain(columns: list[str], **kw: object) -> pa.Table:
            return pa.Table.from_batches(list(client.read_batches(DATASET, columns, **kw)))

        print(f"\nserver {location}; median of {args.repeat} alternating runs after a warm-up\n")
        # 1. the cut ---------------------------------------------------------------------------
        q_cut = f"SELECT MET_pt, nMuon FROM {ds} WHERE {CUT_SQL}"
        expected = adbc(q_cut).num_rows
        try:
            server_cut = plain(["MET_pt", "nMuon"], where=CUT_WHERE).num_rows == expected
        except Exception:  # noqa: BLE001 - an older server refuses `where`
            server_cut = False
        if server_cut:
            how = "plain DoGet, server-side `where` cut"

            def plain_cut() -> pa.Table:
                return plain(["MET_pt", "nMuon"], where=CUT_WHERE)
        else:
            how = "plain DoGet of 2 columns + client cut"

            def plain_cut() -> pa.Table:
                t = plain(["MET_pt", "nMuon"])
                return t.filter(pc.and_(pc.greater(t["MET_pt"], 40), pc.greater_equal(t["nMuon"], 2)))

        t_adbc, t_plain, got, ref = compare(lambda: adbc(q_cut), plain_cut, args.repeat)
        assert ref.num_rows == got.num_rows == expected, (ref.num_rows, expected)
        print(f"1. cut {CUT_SQL}: {expected:,} of {args.entries:,} rows")
        print(f"   ADBC Flight SQL                          {t_adbc * 1e3:8.1f} ms")
        print(f"   {how:40s} {t_plain * 1e3:8.1f} ms")
        if not server_cut:
            print("   (the plain protocol's server-side `where` is not in place on this server: the client filters)")
        print(f"   ratio plain/ADBC (goal >= 0.9): {t_plain / t_adbc:.2f}x")

        # 2. aggregates --------------------------------------------------------------------------
        q_hist = (f"SELECT floor(MET_pt / 5)::INTEGER AS bin, count(*) AS n, avg(MET_pt) AS mean "
                  f"FROM {ds} WHERE nMuon >= 1 GROUP BY bin ORDER BY bin")
        fetched: dict[str, int] = {}

        def client_hist() -> tuple[np.ndarray, np.ndarray]:
            t = plain(["MET_pt", "nMuon"])
            fetched["hist"] = t.nbytes
            met = t["MET_pt"].to_numpy()
            keep = t["nMuon"].to_numpy() >= 1
            bins = np.floor(met[keep] / 5).astype(np.int64)
            return np.bincount(bins), np.bincount(bins, weights=met[keep].astype(np.float64))

        t_sql, t_cli, hist, (n, sums) = compare(lambda: adbc(q_hist), client_hist, args.repeat)
        nz = np.nonzero(n)[0]
        assert hist["bin"].to_pylist() == nz.tolist() and hist["n"].to_pylist() == n[nz].tolist()
        np.testing.assert_allclose(hist["mean"].to_numpy(), sums[nz] / n[nz], rtol=1e-9)
        gbit = 1e9 / 8
        print(f"\n2. aggregate: count, avg(MET_pt) GROUP BY floor(MET_pt/5) WHERE nMuon >= 1 ({len(nz)} bins)")
        print(f"   on the server via ADBC                   {t_sql * 1e3:8.1f} ms   moves {hist.nbytes:,} B")
        print(f"   plain DoGet of 2 columns + numpy         {t_cli * 1e3:8.1f} ms   moves {fetched['hist']:,} B")
        print(f"   ratio (goal >= 10): {t_cli / t_sql:.2f}x on loopback; with a 1 Gbit/s link the fetch adds "
              f"{fetched['hist'] / gbit * 1e3:.0f} ms -> {(t_cli + fetched['hist'] / gbit) / t_sql:.1f}x (projected)")

        q_mu = (f"SELECT count(*) AS muons, avg(pt) AS mean_pt, max(pt) AS max_pt FROM "
                f"(SELECT unnest(Muon_pt) AS pt FROM {ds})")

        def client_mu() -> tuple[int, float, float]:
            t = plain(["Muon_pt"])
            fetched["mu"] = t.nbytes
            flat = pc.list_flatten(t["Muon_pt"]).to_numpy()
            return len(flat), float(flat.astype(np.float64).mean()), float(flat.max())

        t_sql2, t_cli2, mu, (count, mean, top) = compare(lambda: adbc(q_mu), client_mu, args.repeat)
        assert mu["muons"][0].as_py() == count
        assert abs(mu["mean_pt"][0].as_py() - mean) < 1e-6 * mean
        print(f"\n3. aggregate: count, avg, max over unnest(Muon_pt) ({count:,} muons, jagged)")
        print(f"   on the server via ADBC                   {t_sql2 * 1e3:8.1f} ms   moves {mu.nbytes:,} B")
        print(f"   plain DoGet of the column + numpy        {t_cli2 * 1e3:8.1f} ms   moves {fetched['mu']:,} B")
        print(f"   ratio (goal >= 10): {t_cli2 / t_sql2:.2f}x on loopback; with a 1 Gbit/s link "
              f"{(t_cli2 + fetched['mu'] / gbit) / t_sql2:.1f}x (projected)")
        conn.close()
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
