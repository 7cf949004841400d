"""Ticket and planning overhead (a script, not a test): what plan-once costs and saves.

Prints, from one run against a real server process (started with the CLI):
1. ticket bytes of a query matching N_SELECTED files of a declared multi-file dataset
   (one endpoint per file): total and per endpoint;
2. GetFlightInfo p50/p99 for that query;
3. a tiny read (10 entries of one column): GetFlightInfo + DoGet p50/p99, the round trip a
   user's small request costs; and DoGet alone p50.

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
            ticket = c.get_flight_info(tiny).endpoints[0].ticket
            lat = timed(lambda: c.do_get(ticket).read_all(), args.calls)
            print(f"tiny read, DoGet alone: p50 {pct(lat, .5):.2f} ms, p99 {pct(lat, .99):.2f} ms")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
