"""Many clients against one server on loopback: aggregate throughput, and whether a tiny read
waits behind large ones (head-of-line blocking).

Serves a ZLIB ROOT file and an uncompressed HDF5 file (bench/read_throughput.py's) with two
`arrowroot serve` processes, A and B, and measures for 1, 4 and 16 concurrent clients:

  large   N clients each streaming a whole dataset over and over (ROOT 10 columns, HDF5 5):
          aggregate MB/s over a fixed window
  small   N clients each doing tiny reads (100 entries, 2 columns) back to back: reads/s, p50/p99
  probe   a tiny read every 20 ms from another process while the N large readers load server A,
          sent alternately to A and to B (idle). B's latency is what the machine's CPU sharing
          alone costs; what A adds on top is queueing inside the server, the part a fix there
          (separate read pools, fair scheduling) could remove.

The load runs in a separate process from the probe, so the probe never waits for the load's GIL.
Also reports server A's peak RSS (memory must stay bounded however many clients stream).

    python bench/concurrency.py [--entries 2000000] [--clients 1,4,16] [--duration 4] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import read_throughput  # noqa: E402  (the same ROOT and HDF5 files as the throughput bench)

LARGE = {"ROOT": ("events.root:events", read_throughput.ROOT_COLUMNS),
         "HDF5": ("daq.h5:hits", read_throughput.H5_COLUMNS)}
TINY = {"ROOT": ("events.root:events", ["event", "MET_pt"]), "HDF5": ("daq.h5:hits", ["time", "energy"])}
TINY_ROWS = 100
WARMUP = 1.0  # seconds of load before the window opens, so every client is mid-stream


def tiny_read(client: Any, i: int, entries: int, kind: str = "ROOT") -> None:
    ds, columns = TINY[kind]
    n = TINY_ROWS
    start = (i * 7919 * n) % max(1, entries - n)  # a different place each time, not one cached batch
    table = client.read(ds, columns, (start, start + n))
    assert table.num_rows == n


def load(location: str, kind: str, n: int, entries: int, duration: float, ready: Any, out: Any) -> None:
    """N clients (one connection each) in this process; reports bytes or latencies in the window."""
    from arrowroot.clients import Client

    clients = [Client(location) for _ in range(n)]
    window = threading.Event()
    stop = threading.Event()
    got = [0] * n
    latencies: list[list[float]] = [[] for _ in range(n)]

    def large(i: int) -> None:
        ds, columns = LARGE[kind]
        while not stop.is_set():
            for batch in clients[i].read_batches(ds, columns):
                if stop.is_set():
                    break
                if window.is_set():
                    got[i] += batch.nbytes

    def small(i: int) -> None:
        k = i * 100_000
        while not stop.is_set():
            t0 = time.perf_counter()
            tiny_read(clients[i], k, entries)
            if window.is_set() and not stop.is_set():
                latencies[i].append(time.perf_counter() - t0)
            k += 1

    threads = [threading.Thread(target=small if kind == "small" else large, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(WARMUP)
    window.set()
    ready.set()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join(60)
    out.put({"bytes": sum(got), "seconds": elapsed, "latencies": [x for lat in latencies for x in lat]})
    for c in clients:
        c.close()


def probe(targets: dict[str, tuple[str, str]], entries: int, duration: float) -> dict[str, list[float]]:
    """Tiny reads 10 ms apart, taking turns between targets (name → (location, ROOT|HDF5));
    latencies per target."""
    from arrowroot.clients import Client

    clients = {name: (Client(loc), kind) for name, (loc, kind) in targets.items()}
    for c, kind in clients.values():
        tiny_read(c, 0, entries, kind)  # connect outside the window
    out: dict[str, list[float]] = {name: [] for name in clients}
    end = time.perf_counter() + duration
    i = 1
    while time.perf_counter() < end:
        for name, (c, kind) in clients.items():
            t0 = time.perf_counter()
            tiny_read(c, i, entries, kind)
            out[name].append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.01)
    for c, _ in clients.values():
        c.close()
    return out


class PeakRSS:
    """Samples a process's resident memory every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
            self.peak = max(self.peak, kb * 1024)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cli() -> str:
    here = Path(sys.executable).parent / "arrowroot"
    found = str(here) if here.exists() else shutil.which("arrowroot")
    if not found:
        raise SystemExit("the `arrowroot` command is not installed (pip install -e .)")
    return found


def _serve(cli: str, root: Path, catalog: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([cli, "serve", str(root), "--port", "0", "--no-index", "--catalog", str(catalog)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"grpc://[\w.]+:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(0)


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of each measurement window")
    ap.add_argument("--quick", action="store_true", help="500k entries, 2 s windows")
    args = ap.parse_args()
    entries = 500_000 if args.quick else args.entries
    duration = 2.0 if args.quick else args.duration
    counts = [int(x) for x in args.clients.split(",") if x.strip()]
    ctx = mp.get_context("spawn")
    cli = _cli()
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-conc-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        read_throughput.build(root, entries, "zlib")
        subprocess.run([cli, "index", str(root)], check=True, capture_output=True)
        catalog = root / ".arrowroot" / "catalog.duckdb"
        for name in "AB":
            shutil.copy(catalog, Path(tmp) / f"catalog-{name}.duckdb")  # one DuckDB file per process
        proc_a, loc_a = _serve(cli, root, Path(tmp) / "catalog-A.duckdb")
        proc_b, loc_b = _serve(cli, root, Path(tmp) / "catalog-B.duckdb")
        try:
            from arrowroot.clients import Client

            with Client(loc_a) as c:  # page cache warm, sizes known
                sizes = {kind: c.read(ds, cols).nbytes for kind, (ds, cols) in LARGE.items()}
            print(f"{entries:,} entries: ROOT (ZLIB) large read {sizes['ROOT'] / 1e6:.0f} MB, HDF5 "
                  f"{sizes['HDF5'] / 1e6:.0f} MB; tiny read {TINY_ROWS} entries × 2 columns; "
                  f"{duration:g} s windows\n", flush=True)
            idle = probe({"ROOT": (loc_a, "ROOT"), "HDF5": (loc_a, "HDF5")}, entries, duration)

            def run_load(kind: str, n: int, with_probe: bool) -> tuple[dict, dict | None]:
                ready, out = ctx.Event(), ctx.Queue()
                p = ctx.Process(target=load, args=(loc_a, kind, n, entries, duration, ready, out))
                p.start()
                if not ready.wait(120):
                    p.kill()
                    raise SystemExit(f"the {kind} load with {n} clients did not start")
                targets = {"A ROOT": (loc_a, "ROOT"), "A HDF5": (loc_a, "HDF5"), "B ROOT": (loc_b, "ROOT")}
                probed = probe(targets, entries, duration) if with_probe else None
                result = out.get(timeout=120)
                p.join(60)
                return result, probed

            rows = []
            with PeakRSS(proc_a.pid) as rss:
                for n in counts:
                    for kind in LARGE:
                        print(f"  {n:2d} clients, large {kind} reads + probe ...", file=sys.stderr, flush=True)
                        res, probed = run_load(kind, n, True)
                        rows.append(("large", kind, n, res, probed))
                    print(f"  {n:2d} clients, tiny reads ...", file=sys.stderr, flush=True)
                    res, _ = run_load("small", n, False)
                    rows.append(("small", "ROOT", n, res, None))
        finally:
            for proc in (proc_a, proc_b):
                proc.terminate()
                proc.wait(10)

    print("tiny read on an idle server: " + ", ".join(
        f"{kind} p50 {_ms(v, 50):.1f} ms, p99 {_ms(v, 99):.1f} ms ({len(v)} reads)" for kind, v in idle.items()) + "\n")
    print("large reads on A: aggregate throughput, and tiny reads' latency (ms) meanwhile — on A (ROOT and HDF5)")
    print("and on B, an idle server on the same CPUs (what CPU sharing alone costs)")
    print(f"  {'clients':>7s} {'load':5s} {'MB/s':>6s} {'/client':>7s}   {'A ROOT p50':>10s} {'p99':>7s} {'n':>4s}   "
          f"{'A HDF5 p50':>10s} {'p99':>7s}   {'B ROOT p50':>10s} {'p99':>7s}   {'A÷B p99':>7s}")
    for what, kind, n, res, probed in rows:
        if what != "large":
            continue
        mbs = res["bytes"] / res["seconds"] / 1e6
        a, h, b = probed["A ROOT"], probed["A HDF5"], probed["B ROOT"]
        print(f"  {n:7d} {kind:5s} {mbs:6.0f} {mbs / n:7.0f}   {_ms(a, 50):10.1f} {_ms(a, 99):7.1f} {len(a):4d}   "
              f"{_ms(h, 50):10.1f} {_ms(h, 99):7.1f}   {_ms(b, 50):10.1f} {_ms(b, 99):7.1f}   "
              f"{_ms(a, 99) / _ms(b, 99):7.1f}")
    print("\ntiny ROOT reads only, N clients back to back (flight_info + do_get of 100 entries)")
    print(f"  {'clients':>7s} {'reads/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s}")
    for what, _kind, n, res, _ in rows:
        if what == "small":
            lat = res["latencies"]
            print(f"  {n:7d} {len(lat) / res['seconds']:8.0f} {_ms(lat, 50):7.1f} {_ms(lat, 99):7.1f}")
    print(f"\nserver A peak RSS during all of it: {rss.peak / 2**20:.0f} MiB   (total {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
