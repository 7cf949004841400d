"""Read throughput: arrowroot vs a local read and vs a plain in-memory Flight stream.

Builds a ROOT file (flat + jagged branches) and an HDF5 file of N entries, then measures
in one run, each after a warm-up (files in the page cache, as on a busy server):

  local      uproot → Arrow / h5py → Arrow in this process (what a user with the files does)
  arrowroot  the arrowroot Client against `arrowroot serve` in another process
  flight     a plain pyarrow.flight server (another process) streaming the same Arrow
             table from memory: the transport's ceiling

and prints MB/s (of Arrow data) and the ratios arrowroot ÷ local and arrowroot ÷ flight.

    python bench/read_throughput.py [--entries 2000000] [--repeat 3] [--compression zlib|lz4|none]
                                    [--h5-compression none|gzip|lzf] [--serve-args "--endpoint-mb 16"]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import uproot

from arrowroot.clients import Client

ROOT_COLUMNS = ["run", "event", "nMuon", "MET_pt", "MET_phi", "Muon_pt", "Muon_eta", "Muon_phi", "Jet_pt", "Jet_eta"]
H5_COLUMNS = ["time", "energy", "channel", "baseline", "trigger"]


def build(root: Path, n: int, compression: str, h5_compression: str | None = None) -> None:
    rng = np.random.default_rng(0)
    comp = {"zlib": uproot.ZLIB(1), "lz4": uproot.LZ4(1), "none": None}[compression]
    with uproot.recreate(root / "events.root", compression=comp) as f:
        tree = f.mktree("events", {
            "run": "int32", "event": "int64", "nMuon": "int32", "MET_pt": "float32", "MET_phi": "float32",
            "Muon_pt": "var * float32", "Muon_eta": "var * float32", "Muon_phi": "var * float32",
            "nJet": "int32", "Jet_pt": "var * float32", "Jet_eta": "var * float32",
        })
        step = 250_000
        for start in range(0, n, step):
            m = min(step, n - start)
            nmu = rng.poisson(1.2, m).astype(np.int32)
            njet = rng.poisson(3.0, m).astype(np.int32)
            tmu, tjet = int(nmu.sum()), int(njet.sum())
            tree.extend({
                "run": np.full(m, 1, np.int32), "event": np.arange(start, start + m, dtype=np.int64),
                "nMuon": nmu, "MET_pt": rng.exponential(30, m).astype(np.float32),
                "MET_phi": rng.uniform(-3.14, 3.14, m).astype(np.float32),
                "Muon_pt": ak.unflatten(rng.exponential(20, tmu).astype(np.float32), nmu),
                "Muon_eta": ak.unflatten(rng.normal(0, 1.5, tmu).astype(np.float32), nmu),
                "Muon_phi": ak.unflatten(rng.uniform(-3.14, 3.14, tmu).astype(np.float32), nmu),
                "nJet": njet,
                "Jet_pt": ak.unflatten(rng.exponential(40, tjet).astype(np.float32), njet),
                "Jet_eta": ak.unflatten(rng.normal(0, 2, tjet).astype(np.float32), njet),
            })
    with h5py.File(root / "daq.h5", "w") as f:
        g = f.create_group("hits")
        opts = {"chunks": (65_536,), "compression": h5_compression}
        g.create_dataset("time", data=np.arange(n) * 1e-6, **opts)
        g.create_dataset("energy", data=rng.gamma(2, 100, n).astype(np.float32), **opts)
        g.create_dataset("channel", data=rng.integers(0, 64, n, dtype=np.int32), **opts)
        g.create_dataset("baseline", data=rng.normal(100, 5, n), **opts)
        g.create_dataset("trigger", data=rng.integers(0, 2**31, n, dtype=np.int64), **opts)


def local_root(path: Path) -> pa.Table:
    tree = uproot.open(path)["events"]
    return ak.to_arrow_table(tree.arrays(ROOT_COLUMNS, library="ak"), extensionarray=False)


def local_h5(path: Path) -> pa.Table:
    with h5py.File(path) as f:
        return pa.table({c: pa.array(f["hits"][c][...]) for c in H5_COLUMNS})


def _memory_server(table_ipc: bytes, batch_rows: int, port_queue) -> None:
    table = pa.ipc.open_stream(table_ipc).read_all()

    class MemoryServer(fl.FlightServerBase):
        def do_get(self, context, ticket):
            return fl.RecordBatchStream(pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows)))

    server = MemoryServer("grpc://127.0.0.1:0")
    port_queue.put(server.port)
    server.serve()


def memory_flight(table: pa.Table, batch_rows: int, repeat: int) -> float:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_memory_server, args=(sink.getvalue().to_pybytes(), batch_rows, q),
                                           daemon=True)
    proc.start()
    port = q.get(timeout=60)
    try:
        c = fl.connect(f"grpc://127.0.0.1:{port}")
        c.do_get(fl.Ticket(b"x")).read_all()
        return best(lambda: c.do_get(fl.Ticket(b"x")).read_all(), repeat)
    finally:
        proc.kill()


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compression", choices=["zlib", "lz4", "none"], default="zlib")
    ap.add_argument("--h5-compression", choices=["gzip", "lzf", "none"], default="none")
    ap.add_argument("--threads", type=int, default=4, help="client threads (parallel endpoints)")
    ap.add_argument("--serve-args", default="", help="extra `arrowroot serve` options, e.g. '--endpoint-mb 16'")
    ap.add_argument("--data", type=Path, help="reuse (or create) the files in this folder instead of a temp dir")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-") as tmp:
        root = args.data or Path(tmp)
        t0 = time.perf_counter()
        if not (root / "events.root").exists():
            root.mkdir(parents=True, exist_ok=True)
            build(root, args.entries, args.compression,
                  None if args.h5_compression == "none" else args.h5_compression)
        print(f"built {args.entries:,} entries (ROOT {args.compression}, HDF5 {args.h5_compression}) "
              f"in {time.perf_counter() - t0:.1f}s: "
              f"events.root {(root / 'events.root').stat().st_size / 1e6:.0f} MB, "
              f"daq.h5 {(root / 'daq.h5').stat().st_size / 1e6:.0f} MB")
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                                 "--port", "0", "--no-index", *args.serve_args.split()],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline()
        location = line.split()[1]
        try:
            client = Client(location, threads=args.threads)
            rows = []
            for label, dataset, columns, local in [
                ("ROOT", "events.root:events", ROOT_COLUMNS, lambda: local_root(root / "events.root")),
                ("HDF5", "daq.h5:hits", H5_COLUMNS, lambda: local_h5(root / "daq.h5")),
            ]:
                reference = local()
                mb = reference.nbytes / 1e6
                t_local = best(local, args.repeat)
                served = client.read(dataset, columns)
                assert served.num_rows == reference.num_rows, (served.num_rows, reference.num_rows)
                t_served = best(lambda d=dataset, c=columns: client.read(d, c), args.repeat)
                t_flight = memory_flight(reference, 131_072, args.repeat)
                endpoints = len(client.flight_info(dataset, columns).endpoints)
                rows.append((label, mb, t_local, t_served, t_flight, endpoints))
            client.close()
        finally:
            proc.terminate()
            proc.wait()

    print(f"\n{'format':6s} {'MB':>7s} {'local MB/s':>11s} {'arrowroot MB/s':>15s} {'flight MB/s':>12s} "
          f"{'endpoints':>9s} {'÷ local':>8s} {'÷ flight':>9s}")
    for label, mb, t_local, t_served, t_flight, endpoints in rows:
        print(f"{label:6s} {mb:7.0f} {mb / t_local:11.0f} {mb / t_served:15.0f} {mb / t_flight:12.0f} "
              f"{endpoints:9d} {t_local / t_served:8.2f} {t_flight / t_served:9.2f}")
    print("\nratios: arrowroot time vs the reference time (higher is better; goal ÷ local ≥ 0.8)")


if __name__ == "__main__":
    main()
