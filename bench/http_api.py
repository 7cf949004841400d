"""HTTP download vs Flight read of the same column, and page render times.

Writes an HDF5 file with one float64 column of ``--mb`` MB (default 100), starts
``arrowroot serve DIR --http 0`` in another process, then measures in the same run (best of
``--repeat`` after a warm-up; the client ends with a pyarrow Table either way):

  flight    arrowroot Client.read (parallel endpoints over gRPC)
  http      GET /api/data/NAME?columns=x&format=arrow|parquet|feather|csv, decoded with pyarrow

and prints MB/s and the ratio http ÷ flight (throughput) per format (goal ≥ 0.5 for Arrow IPC and
Parquet). Page renders: p50 over ``--pages`` requests of the dataset page and of the tree,
against /api/health (the bare HTTP round trip) as the reference.

    python bench/http_api.py [--mb 100] [--repeat 3] [--pages 50]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import h5py
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from arrowroot.clients import Client
from timing import best  # noqa: E402  (bench/timing.py)

NAME = "big.h5:x"


def build(root: Path, mb: float) -> int:
    n = int(mb * 1e6 / 8)
    with h5py.File(root / "big.h5", "w") as f:
        ds = f.create_dataset("x", (n,), dtype=np.float64, chunks=(1 << 18,))
        rng = np.random.default_rng(0)
        step = 1 << 22
        for a in range(0, n, step):
            ds[a:a + step] = rng.normal(0, 1, min(step, n - a))
    return n


STRAIN = "strain.h5:strain"
STRAIN_RATE = 16384


def build_strain(root: Path, minutes: float) -> int:
    """An hour (by default) of 16 kHz float64 strain with gwpy's attributes (x0, dx, unit, channel)."""
    n = int(minutes * 60 * STRAIN_RATE)
    with h5py.File(root / "strain.h5", "w") as f:
        ds = f.create_dataset("strain", (n,), dtype=np.float64, chunks=(1 << 20,))
        rng = np.random.default_rng(1)
        step = 1 << 22
        for a in range(0, n, step):
            ds[a:a + step] = rng.normal(0, 1e-21, min(step, n - a))
        ds.attrs.update({"x0": 1126259446.0, "dx": 1.0 / STRAIN_RATE, "xunit": "s", "unit": "strain",
                         "channel": "H1:STRAIN", "name": "H1:STRAIN"})
    return n


def start(root: Path, *extra: str) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0",
                             "--http", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    grpc = re.search(r"(grpc://\S+)", proc.stdout.readline()).group(1)
    http = re.search(r"(http://\S+)", proc.stdout.readline()).group(1).rstrip("/")
    return proc, grpc, http


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--plots", type=int, default=10)
    ap.add_argument("--series-minutes", type=float, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-http-") as tmp:
        root = Path(tmp)
        n = build(root, args.mb)
        samples = build_strain(root, args.series_minutes)
        import shutil

        import skhep_testdata

        shutil.copy(skhep_testdata.data_path("uproot-hepdata-example.root"), root / "hepdata.root")
        proc, grpc, base = start(root)
        try:
            with httpx.Client(base_url=base, timeout=600) as h:
                while h.get("/api/health").json()["datasets"] < 3 or h.get("/api/health").json()["indexing"]:
                    time.sleep(0.2)
                def http(fmt: str) -> pa.Table:
                    # urllib (http.client), as pandas/pyarrow use for URLs; httpx reads large bodies ~2x slower
                    parts = []
                    with urllib.request.urlopen(f"{base}/api/data/{NAME}?columns=x&format={fmt}") as r:
                        while piece := r.read1(1 << 22):
                            parts.append(piece)
                    body = b"".join(parts)
                    if fmt == "arrow":
                        return pa.ipc.open_stream(body).read_all()
                    if fmt == "feather":
                        return pa.ipc.open_file(body).read_all()
                    if fmt == "parquet":
                        return pq.read_table(pa.BufferReader(body))
                    return pcsv.read_csv(pa.BufferReader(body))

                formats = ["arrow", "parquet", "feather"]
                with Client(grpc) as c:
                    runs = {"flight": lambda: c.read(NAME, ["x"]), **{f: (lambda f=f: http(f)) for f in formats}}
                    times = {k: [] for k in runs}
                    for fn in runs.values():  # warm-up
                        assert fn().num_rows == n
                    for _ in range(args.repeat):  # interleaved, so load changes hit every contender alike
                        for k, fn in runs.items():
                            t0 = time.perf_counter()
                            table = fn()
                            times[k].append(time.perf_counter() - t0)
                    csv_secs, _ = best(lambda: http("csv"), 1)
                mb = table.nbytes / 1e6
                secs = min(times["flight"])
                print(f"column: {n} float64 entries = {mb:.0f} MB of Arrow data (best of {args.repeat})")
                print(f"  flight       {secs:7.3f} s  {mb / secs:8.0f} MB/s   (reference)")
                for fmt in formats + ["csv"]:
                    hs = min(times[fmt]) if fmt != "csv" else csv_secs
                    goal = "  (goal ≥ 0.5)" if fmt in ("arrow", "parquet") else ""
                    print(f"  http {fmt:8s}{hs:7.3f} s  {mb / hs:8.0f} MB/s   http ÷ flight = {secs / hs:.2f}{goal}")

                def p50(path: str) -> float:
                    h.get(path)
                    times = []
                    for _ in range(args.pages):
                        t0 = time.perf_counter()
                        r = h.get(path)
                        times.append(time.perf_counter() - t0)
                        assert r.status_code == 200
                    return statistics.median(times) * 1000

                ref = p50("/api/health")
                print(f"page render p50 over {args.pages} requests (reference /api/health {ref:.1f} ms):")
                for path in ("/", f"/datasets/{NAME}", f"/plot/hist/{NAME}?column=x"):
                    ms = p50(path)
                    print(f"  {path:32s} {ms:7.1f} ms   ÷ health = {ms / ref:.1f}")
                plots(h, grpc, samples, args.plots, ref)
        finally:
            proc.terminate()
            proc.wait(30)
        memory(root, n)


def plots(h: httpx.Client, grpc: str, samples: int, count: int, health_ms: float) -> None:
    """Pages with their plots, and the hour of strain as min/max per pixel vs a Flight read of it."""
    def page_with_plots(name: str) -> float:
        t0 = time.perf_counter()
        page = h.get(f"/datasets/{name}")
        assert page.status_code == 200
        for url in re.findall(r'data-json="([^"]+)"', page.text):   # what the page's script fetches
            r = h.get(url.replace("&amp;", "&"))
            assert r.status_code == 200, r.text
        return time.perf_counter() - t0

    def p50(fn, runs: int) -> tuple[float, float]:
        first = fn()
        return first * 1000, statistics.median(fn() for _ in range(runs)) * 1000

    print(f"pages with their plots, p50 over {count} (first load in brackets):")
    for name in ("hepdata.root:hpx", NAME):
        first, ms = p50(lambda name=name: page_with_plots(name), count)
        print(f"  /datasets/{name:28s} {ms:7.1f} ms  ({first:.0f} ms)   ÷ health = {ms / health_ms:.1f}")

    def series() -> float:
        t0 = time.perf_counter()
        v = h.get(f"/api/view/{STRAIN}", params={"view": "series", "column": "strain", "pixels": 1000}).json()
        assert v["samples"] == samples and v["mode"] == "minmax", v
        return time.perf_counter() - t0

    first, ms = p50(series, count)
    with Client(grpc) as c:
        c.read(STRAIN, ["strain"])
        flight = min(timed(lambda: c.read(STRAIN, ["strain"])) for _ in range(3)) * 1000
    print(f"{samples / STRAIN_RATE / 3600:.2f} h of {STRAIN_RATE} Hz strain ({samples} samples, {samples * 8 / 1e6:.0f} MB) "
          f"as min/max of 1000 pixels: p50 {ms:.0f} ms (first {first:.0f} ms; goal ≤ 300 ms); "
          f"reading it over Flight {flight:.0f} ms (reference): plot ÷ read = {ms / flight:.2f}")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_kib(pid: int, key: str) -> int | None:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith(key))


def memory(root: Path, n: int) -> None:
    """Bounded memory: fresh servers without the column cache; one reads the column once over
    Flight (the reference), the other serves it over HTTP in every format. Peak RSS grows by
    some chunks and batches, not by the column."""
    def peak_after(work) -> tuple[int, int] | None:
        proc, grpc, base = start(root, "--cache-mb", "0", "--no-index")
        try:
            before = _rss_kib(proc.pid, "VmRSS:")
            if before is None:
                return None
            work(grpc, base)
            return before, _rss_kib(proc.pid, "VmHWM:")
        finally:
            proc.terminate()
            proc.wait(30)

    def flight(grpc: str, base: str) -> None:
        with Client(grpc) as c:
            for _ in c.read_batches(NAME, ["x"]):
                pass

    def http(grpc: str, base: str) -> None:
        for fmt in ("arrow", "parquet", "feather", "csv", "hdf5"):
            with urllib.request.urlopen(f"{base}/api/data/{NAME}?columns=x&format={fmt}") as r:
                while r.read1(1 << 22):
                    pass

    ref, got = peak_after(flight), peak_after(http)
    if ref is None or got is None:
        return
    grow_ref, grow = (ref[1] - ref[0]) / 1024, (got[1] - got[0]) / 1024
    print(f"server peak RSS growth, no column cache, {n * 8 / 1e6:.0f} MB column: Flight read {grow_ref:.0f} MiB "
          f"(reference), HTTP in all 5 formats {grow:.0f} MiB; ratio {grow / max(grow_ref, 1):.2f}")


if __name__ == "__main__":
    main()
