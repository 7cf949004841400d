"""Ticket and planning overhead (a script, not a test): what plan-once costs and saves.

Prints, from one run against a real server process (started with the CLI):
1. ticket bytes of a query matching N_SELECTED files of a declared multi-file dataset
   (one endpoint per file): total and per endpoint;
2. GetFlightInfo p50/p99 for that query;
3. a tiny read (10 entries of one column): GetFlightInfo + DoGet p50/p99, the round trip a
   user's small request costs; and DoGet alone p50;
4. the same round trip against a bare pyarrow Flight server process (one endpoint, a 10-row table
   held in memory): the reference, and the tiny read ÷ it;
5. ticket bytes of a read of one column of an HDF5 group carrying 200 attributes.

    python bench/tickets.py [--files 2000] [--selected 237] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow.flight as fl


BARE = """
import sys, pyarrow as pa, pyarrow.flight as fl
TABLE = pa.table({"energy": pa.array(range(10), pa.float32())})
class Bare(fl.FlightServerBase):
    def get_flight_info(self, context, descriptor):
        return fl.FlightInfo(TABLE.schema, descriptor, [fl.FlightEndpoint(b"t", [])], 10, TABLE.nbytes)
    def do_get(self, context, ticket):
        return fl.RecordBatchStream(TABLE)
s = Bare("grpc://127.0.0.1:0")
print(s.port, flush=True)
s.serve()
"""


def write_attributes(root: Path, n: int = 200) -> None:
    """An HDF5 group whose attributes (instrument metadata, as beamlines write) are most of its bytes."""
    with h5py.File(root / "attrs.h5", "w") as f:
        g = f.create_group("scan")
        g.create_dataset("x", data=np.arange(1000.0))
        g.create_dataset("y", data=np.arange(1000.0))
        for i in range(n):
            g.attrs[f"setting_{i:03d}"] = f"motor {i}: position {i * 0.125:.3f} mm, calibrated 2026-11-{1 + i % 28:02d}"


def write_files(root: Path, n: int) -> None:
    for i in range(n):
        sub = root / "lh" / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        with h5py.File(sub / f"l200-p00-r{i:05d}-phy.h5", "w") as f:
            g = f.create_group("events")
            g.create_dataset("energy", data=np.arange(10, dtype=np.float32))
    (root / "arrowroot.toml").write_text('[[dataset]]\nname = "l200"\nfiles = "lh/*/*.h5"\nobject = "events"\n'
                                         'keys = "{exp}-{period}-{run}-{type}.h5"\n')


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timed(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--selected", type=int, default=237)
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-") as tmp:
        root = Path(tmp)
        write_files(root, args.files)
        write_attributes(root)
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0",
                                 "--no-index"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline()
            port = int(line.split(":")[-1].split()[0])
            c = fl.connect(f"grpc://127.0.0.1:{port}")
            many = fl.FlightDescriptor.for_command(json.dumps(
                {"dataset": "l200", "columns": ["energy"], "files": f"run < {args.selected}"}))
            info = c.get_flight_info(many)
            sizes = [len(ep.ticket.ticket) for ep in info.endpoints]
            print(f"query over {len(sizes)} files: tickets {sum(sizes):,} bytes in all, "
                  f"{statistics.mean(sizes):.0f} bytes per endpoint")
            lat = timed(lambda: c.get_flight_info(many), args.calls)
            print(f"GetFlightInfo ({len(sizes)} endpoints): p50 {pct(lat, .5):.2f} ms, p99 {pct(lat, .99):.2f} ms")
            tiny = fl.FlightDescriptor.for_command(json.dumps(
                {"dataset": "lh/00/l200-p00-r00005-phy.h5:events", "columns": ["energy"]}))

            def round_trip() -> None:
                i = c.get_flight_info(tiny)
                c.do_get(i.endpoints[0].ticket).read_all()

            round_trip()
            lat = timed(round_trip, args.calls)
            print(f"tiny read, GetFlightInfo + DoGet: p50 {pct(lat, .5):.2f} ms, p99 {pct(lat, .99):.2f} ms")
            tiny_p50 = pct(lat, .5)
            ticket = c.get_flight_info(tiny).endpoints[0].ticket
            lat = timed(lambda: c.do_get(ticket).read_all(), args.calls)
            print(f"tiny read, DoGet alone: p50 {pct(lat, .5):.2f} ms, p99 {pct(lat, .99):.2f} ms")
            attrs = fl.FlightDescriptor.for_command(json.dumps({"dataset": "attrs.h5:scan", "columns": ["x"]}))
            info = c.get_flight_info(attrs)
            print(f"HDF5 group with 200 attributes, one column: ticket {len(info.endpoints[0].ticket.ticket):,} bytes")
            bare = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE, text=True)
            try:
                b = fl.connect(f"grpc://127.0.0.1:{int(bare.stdout.readline())}")
                d = fl.FlightDescriptor.for_path("x")

                def bare_trip() -> None:
                    i = b.get_flight_info(d)
                    b.do_get(i.endpoints[0].ticket).read_all()

                bare_trip()
                lat = timed(bare_trip, args.calls)
                ref = pct(lat, .5)
                print(f"bare pyarrow Flight server, GetFlightInfo + DoGet: p50 {ref:.2f} ms")
                print(f"tiny read ÷ bare Flight round trip: {tiny_p50 / ref:.2f}")
            finally:
                bare.terminate()
                bare.wait(10)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
