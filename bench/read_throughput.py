"""Read throughput: arrowroot vs a local read and vs a plain in-memory Flight stream.

Builds a ROOT file (flat + jagged branches) and two HDF5 files of N entries (uncompressed,
and gzip or lzf), then measures in one run, each after a warm-up (files in the page cache,
as on a busy server):

  local      uproot → Arrow / h5py → Arrow in this process (what a user with the files does)
  arrowroot  the arrowroot Client against an arrowroot server in another process
  flight     a plain pyarrow.flight server (another process) streaming the same Arrow
             table from memory, in batches of the same size: the transport's ceiling

and prints MB/s (of Arrow data) and the ratios arrowroot ÷ local and arrowroot ÷ flight,
once per record-batch size (``--batch-mb 4,8,16``: the server's ``batch_bytes``).

    python bench/read_throughput.py [--entries 2000000] [--repeat 3] [--compression zlib|lz4|none]
                                    [--h5-compression gzip|lzf] [--batch-mb 4,8,16]
                                    [--formats root,hdf5,hdf5z] [--serve-args "--endpoint-mb 16"]

With ``--batch-mb`` other than the default 4, or several values, the server is started
through Settings (``batch_bytes``/``batch_rows`` have no CLI option); ``--serve-args`` then
applies only to the default run through ``arrowroot serve``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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


def build(root: Path, n: int, compression: str, h5_compression: str = "gzip") -> None:
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
    columns = {
        "time": np.arange(n) * 1e-6,
        "energy": rng.gamma(2, 100, n).astype(np.float32),
        "channel": rng.integers(0, 64, n, dtype=np.int32),
        "baseline": rng.normal(100, 5, n),
        "trigger": rng.integers(0, 2**31, n, dtype=np.int64),
    }
    for name, comp in (("daq.h5", None), (f"daq_{h5_compression}.h5", h5_compression)):
        with h5py.File(root / name, "w") as f:
            g = f.create_group("hits")
            for key, values in columns.items():
                g.create_dataset(key, data=values, chunks=(65_536,), compression=comp)


def local_root(path: Path) -> pa.Table:
    tree = uproot.open(path)["events"]
    return ak.to_arrow_table(tree.arrays(ROOT_COLUMNS, library="ak"), extensionarray=False)


def local_h5(path: Path) -> pa.Table:
    """What a user with the file does: h5py reads each column, pyarrow wraps it."""
    with h5py.File(path) as f:
        return pa.table({c: pa.array(f["hits"][c][...]) for c in H5_COLUMNS})


def _memory_server(table_ipc: bytes, batch_bytes: int, port_queue) -> None:
    table = pa.ipc.open_stream(table_ipc).read_all().combine_chunks()
    rows = max(1, int(table.num_rows * batch_bytes / max(table.nbytes, 1)))
    batches = table.to_batches(max_chunksize=rows)

    class MemoryServer(fl.FlightServerBase):
        def do_get(self, context, ticket):
            return fl.RecordBatchStream(pa.Table.from_batches(batches))

    server = MemoryServer("grpc://127.0.0.1:0")
    port_queue.put(server.port)
    server.serve()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cost(fn, repeat: int, pid: int) -> tuple[float, float]:
    """(best wall time, server CPU seconds per call): the CPU figure holds up when other work
    loads the machine, which makes wall times noisy."""
    before = cpu_seconds(pid)
    wall = best(fn, repeat)
    return wall, (cpu_seconds(pid) - before) / repeat


def memory_flight(table: pa.Table, batch_bytes: int, repeat: int) -> tuple[float, float]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_memory_server, args=(sink.getvalue().to_pybytes(), batch_bytes, q),
                                           daemon=True)
    proc.start()
    port = q.get(timeout=60)
    try:
        c = fl.connect(f"grpc://127.0.0.1:{port}")
        c.do_get(fl.Ticket(b"x")).read_all()
        return server_cost(lambda: c.do_get(fl.Ticket(b"x")).read_all(), repeat, proc.pid)
    finally:
        proc.kill()


# batch_bytes and batch_rows have no `arrowroot serve` option: the bench sets them directly.
SERVE_WITH_SETTINGS = """
import sys
from pathlib import Path
from arrowroot.flight_server.core.settings import MiB, Settings
from arrowroot.flight_server.server.flight import ArrowrootServer

root, batch_mb = sys.argv[1], float(sys.argv[2])
batch_bytes = int(batch_mb * MiB)
server = ArrowrootServer(Settings(root=Path(root), port=0, batch_bytes=batch_bytes,
                                  batch_rows=max(131_072, batch_bytes // 8), index_on_start=False))
print(f"serving grpc://127.0.0.1:{server.port}", flush=True)
server.serve()
"""


def start_server(root: Path, batch_mb: float | None, serve_args: str) -> tuple[subprocess.Popen, str]:
    """An arrowroot server in another process: `arrowroot serve`, or through Settings for a batch size."""
    if batch_mb is None:
        cmd = [sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0", "--no-index",
               *serve_args.split()]
    else:
        cmd = [sys.executable, "-c", SERVE_WITH_SETTINGS, str(root), str(batch_mb)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split()[1]


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
    ap.add_argument("--h5-compression", choices=["gzip", "lzf"], default="gzip",
                    help="compression of the second HDF5 file (the first is uncompressed)")
    ap.add_argument("--formats", default="root,hdf5,hdf5z", help="which of root, hdf5, hdf5z (compressed HDF5)")
    ap.add_argument("--batch-mb", default="4", help="server record-batch sizes to measure, e.g. 4,8,16")
    ap.add_argument("--threads", type=int, default=4, help="client threads (parallel endpoints)")
    ap.add_argument("--serve-args", default="", help="extra `arrowroot serve` options, e.g. '--endpoint-mb 16'")
    ap.add_argument("--data", type=Path, help="reuse (or create) the files in this folder instead of a temp dir")
    args = ap.parse_args()
    formats = set(args.formats.split(","))
    batch_sizes = [float(x) for x in args.batch_mb.split(",")]
    zname = f"daq_{args.h5_compression}.h5"

    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-") as tmp:
        root = args.data or Path(tmp)
        t0 = time.perf_counter()
        if not (root / "events.root").exists() or not (root / zname).exists():
            root.mkdir(parents=True, exist_ok=True)
            build(root, args.entries, args.compression, args.h5_compression)
        print(f"built {args.entries:,} entries (ROOT {args.compression}, HDF5 none and {args.h5_compression}) in "
              f"{time.perf_counter() - t0:.1f}s: events.root {(root / 'events.root').stat().st_size / 1e6:.0f} MB, "
              f"daq.h5 {(root / 'daq.h5').stat().st_size / 1e6:.0f} MB, {zname} {(root / zname).stat().st_size / 1e6:.0f} MB")
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        cases = [(label, dataset, columns, local) for label, key, dataset, columns, local in [
            ("ROOT", "root", "events.root:events", ROOT_COLUMNS, lambda: local_root(root / "events.root")),
            ("HDF5", "hdf5", "daq.h5:hits", H5_COLUMNS, lambda: local_h5(root / "daq.h5")),
            (f"HDF5 {args.h5_compression}", "hdf5z", f"{zname}:hits", H5_COLUMNS, lambda: local_h5(root / zname)),
        ] if key in formats]
        references = {}
        for label, _, _, local in cases:
            reference = local()
            references[label] = (reference, best(local, args.repeat))
        rows = []
        for batch_mb in batch_sizes:
            proc, location = start_server(root, None if batch_sizes == [4.0] else batch_mb, args.serve_args)
            try:
                client = Client(location, threads=args.threads)
                for label, dataset, columns, _ in cases:
                    reference, t_local = references[label]
                    served = client.read(dataset, columns)
                    assert served.num_rows == reference.num_rows, (served.num_rows, reference.num_rows)
                    if label.startswith("HDF5"):  # same values as h5py's (ROOT: types differ, rows suffice)
                        assert all(served.column(c).equals(reference.column(c)) for c in columns), label
                    t_served, cpu_served = server_cost(lambda d=dataset, c=columns, cl=client: cl.read(d, c),
                                                       args.repeat, proc.pid)
                    t_flight, cpu_flight = memory_flight(reference, int(batch_mb * (1 << 20)), args.repeat)
                    endpoints = len(client.flight_info(dataset, columns).endpoints)
                    rows.append((label, batch_mb, reference.nbytes / 1e6, t_local, t_served, t_flight, endpoints,
                                 cpu_served, cpu_flight))
                client.close()
            finally:
                proc.terminate()
                proc.wait()

    print(f"\n{'format':10s} {'batch':>6s} {'MB':>6s} {'local MB/s':>11s} {'arrowroot MB/s':>15s} {'flight MB/s':>12s} "
          f"{'endpoints':>9s} {'÷ local':>8s} {'÷ flight':>9s} {'server CPU ms':>14s} {'flight CPU ms':>14s}")
    for label, batch_mb, mb, t_local, t_served, t_flight, endpoints, cpu_served, cpu_flight in rows:
        print(f"{label:10s} {batch_mb:4.0f}Mi {mb:6.0f} {mb / t_local:11.0f} {mb / t_served:15.0f} {mb / t_flight:12.0f} "
              f"{endpoints:9d} {t_local / t_served:8.2f} {t_flight / t_served:9.2f} {cpu_served * 1e3:14.0f} "
              f"{cpu_flight * 1e3:14.0f}")
    print("\nratios: arrowroot time vs the reference time (higher is better). Goals: HDF5 ÷ flight ≥ 0.9, "
          "HDF5 gzip ÷ local ≥ 1.0, ROOT ÷ local ≥ 0.8.\nserver CPU ms: CPU time the arrowroot / in-memory "
          f"Flight server process spent per read (load average {os.getloadavg()[0]:.1f}: wall times are noisy "
          "when other work loads the machine; CPU per read is not)")


if __name__ == "__main__":
    main()
