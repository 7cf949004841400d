"""What the Prometheus metrics cost a tiny read (a script, not a test).

Two server processes over the same files, started with the CLI: one with metrics on (the
default), one with ``--no-metrics`` (the reference, same run). A tiny read — GetFlightInfo +
DoGet of 10 entries of one column — alternates between them, so drift in machine load hits both
alike. Prints each p50/p99, the ratio on ÷ off (goal ≤ 1.05), and what one scrape of /metrics
costs after the run.

    python bench/metrics.py [--calls 1000] [--rounds 5]
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

import pyarrow.flight as fl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASET = "hep/events.root:events"
TINY = b'{"dataset": "hep/events.root:events", "columns": ["nMuon"], "entry_start": 100, "entry_stop": 110}'


def start(data: Path, catalog: Path, *flags: str) -> tuple[subprocess.Popen, str, str | None]:
    proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(data), "--port", "0",
                             "--catalog", str(catalog), "--no-index", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    location = re.search(r"grpc://[\d.]+:\d+", proc.stdout.readline()).group(0)
    line = proc.stdout.readline() if "--metrics-port" in flags else ""
    found = re.search(r"http://\S+/metrics", line)
    return proc, location, found.group(0) if found else None


def tiny(client: fl.FlightClient) -> float:
    t0 = time.perf_counter()
    info = client.get_flight_info(fl.FlightDescriptor.for_command(TINY))
    for ep in info.endpoints:
        client.do_get(ep.ticket).read_all()
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="tiny reads per server per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from arrowroot.flight_server.cli.demo import write_sample_files

    with tempfile.TemporaryDirectory() as tmp:
        data = write_sample_files(Path(tmp) / "data")
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(data)], check=True,
                       capture_output=True)
        import shutil

        cat = data / ".arrowroot" / "catalog.duckdb"
        shutil.copy(cat, Path(tmp) / "off.duckdb")
        on, on_loc, scrape_url = start(data, cat, "--metrics-port", "0")
        off, off_loc, _ = start(data, Path(tmp) / "off.duckdb", "--no-metrics")
        try:
            clients = {"on": fl.connect(on_loc), "off": fl.connect(off_loc)}
            for c in clients.values():
                for _ in range(50):
                    tiny(c)  # warm: connections, reader cache, page cache
            times: dict[str, list[float]] = {"on": [], "off": []}
            ratios = []
            for r in range(args.rounds):
                this = {"on": [], "off": []}
                for _ in range(args.calls):
                    for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                        this[name].append(tiny(clients[name]))
                ratios.append(statistics.median(this["on"]) / statistics.median(this["off"]))
                for k in times:
                    times[k] += this[k]
            t0 = time.perf_counter()
            for _ in range(20):
                body = urllib.request.urlopen(scrape_url).read()
            scrape_ms = (time.perf_counter() - t0) / 20 * 1000
        finally:
            for p in (on, off):
                p.terminate()
                p.wait(30)
    n = len(times["on"])
    print(f"tiny read (GetFlightInfo + DoGet of 10 entries), {n} calls per server, alternating")
    for k in ("on", "off"):
        print(f"  metrics {k:3s}: p50 {pct(times[k], 0.5) * 1e3:.3f} ms   p99 {pct(times[k], 0.99) * 1e3:.3f} ms")
    print(f"  ratio on / off, p50: {pct(times['on'], 0.5) / pct(times['off'], 0.5):.3f}   "
          f"(per round: {', '.join(f'{x:.3f}' for x in ratios)}; goal <= 1.05)")
    print(f"  one scrape of /metrics: {scrape_ms:.2f} ms, {len(body)} bytes")


if __name__ == "__main__":
    main()
