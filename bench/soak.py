"""Soak: N clients × T seconds of mixed requests against a real server process (a script, not a test).

    python bench/soak.py [--clients 32] [--seconds 120] [--entries 200000] [--keep DIR]

Writes the sample files (ROOT + HDF5), serves them with ``arrowroot serve`` in its own process,
then runs ``--clients`` threads, each looping over a weighted mix: small reads (10 entries,
2 columns), large reads (every column of a dataset), cut reads (server-side ``where``), Flight
SQL aggregates, and listings. Prints requests and errors by status, per-kind latencies, the
small-read p50/p99 under load against the small-read p50 of an idle server measured first in
the same run (the ratio is the figure), and the server's resident memory (its process plus
its SQL workers) sampled over time: it must stay flat.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.flight as fl

from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.protos import flight_sql as fs

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
PAGE = os.sysconf("SC_PAGE_SIZE")


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


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the SQL sandbox workers), in MiB."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total / 2**20


def read(c: fl.FlightClient, request: dict) -> int:
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))
    return sum(c.do_get(ep.ticket).read_all().num_rows for ep in info.endpoints)


def sql(c: fl.FlightClient, query: str) -> int:
    cmd = fs.pack(fs.CommandStatementQuery(query=query))
    info = c.get_flight_info(fl.FlightDescriptor.for_command(cmd))
    return sum(c.do_get(ep.ticket).read_all().num_rows for ep in info.endpoints)


def mix(entries: int) -> list[tuple[str, float, object]]:
    def small(c: fl.FlightClient) -> None:
        start = random.randrange(0, entries - 10)
        n = read(c, {"dataset": EVENTS, "columns": ["event", "nMuon"], "entry_start": start, "entry_stop": start + 10})
        assert n == 10

    def large(c: fl.FlightClient) -> None:
        assert read(c, {"dataset": random.choice([EVENTS, DETECTOR])}) == entries

    def cut(c: fl.FlightClient) -> None:
        read(c, {"dataset": EVENTS, "columns": ["MET_pt", "Muon_pt"], "where": "MET_pt > 60 and nMuon >= 2"})

    def aggregate(c: fl.FlightClient) -> None:
        k = random.randint(1, 5)
        assert sql(c, f'SELECT nMuon, count(*) AS n, avg(MET_pt) FROM "{EVENTS}" WHERE nMuon < {k} '
                      "GROUP BY nMuon") >= 1

    def listing(c: fl.FlightClient) -> None:
        assert len(list(c.list_flights(json.dumps({"name": random.choice(["hep/*", "lab/*", "*"])}).encode()))) >= 1

    return [("small", 0.45, small), ("large", 0.10, large), ("cut", 0.15, cut),
            ("sql", 0.15, aggregate), ("list", 0.15, listing)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--keep", type=Path, help="write the data here (default: a temp dir, removed after)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        write_sample_files(root, entries=args.entries)
        proc, location = start_server(root)
        try:
            kinds = mix(args.entries)
            idle_client = fl.connect(location)
            small = kinds[0][2]
            for _ in range(5):
                small(idle_client)
            idle = []
            for _ in range(50):
                t0 = time.perf_counter()
                small(idle_client)
                idle.append(time.perf_counter() - t0)
            idle_p50 = statistics.median(idle)

            lat: dict[str, list[float]] = collections.defaultdict(list)
            errors: collections.Counter[str] = collections.Counter()
            examples: dict[str, str] = {}
            lock = threading.Lock()
            stop_at = time.monotonic() + args.seconds
            names, weights = [k[0] for k in kinds], [k[1] for k in kinds]
            calls = {k[0]: k[2] for k in kinds}

            def client_loop(seed: int) -> None:
                rng = random.Random(seed)
                c = fl.connect(location)
                while time.monotonic() < stop_at:
                    kind = rng.choices(names, weights)[0]
                    t0 = time.perf_counter()
                    try:
                        calls[kind](c)
                        with lock:
                            lat[kind].append(time.perf_counter() - t0)
                    except Exception as exc:  # noqa: BLE001 - counted by status, reported below
                        with lock:
                            errors[f"{kind}:{type(exc).__name__}"] += 1
                            examples.setdefault(f"{kind}:{type(exc).__name__}", str(exc)[:200])

            rss: list[tuple[float, float]] = [(0.0, rss_mb(proc.pid))]
            t_start = time.monotonic()

            def sample() -> None:
                while time.monotonic() < stop_at:
                    time.sleep(min(5.0, max(0.5, args.seconds / 24)))
                    rss.append((time.monotonic() - t_start, rss_mb(proc.pid)))

            threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
            sampler = threading.Thread(target=sample, daemon=True)
            for t in [*threads, sampler]:
                t.start()
            for t in [*threads, sampler]:
                t.join()
            wall = time.monotonic() - t_start

            total = sum(len(v) for v in lat.values()) + sum(errors.values())
            print(f"server {location}; {args.clients} clients × {args.seconds:g} s, {args.entries} entries per dataset")
            print(f"requests: {total} ({total / wall:.1f}/s), errors: {sum(errors.values())}")
            for key, n in sorted(errors.items()):
                print(f"  error {key}: {n}  e.g. {examples[key]!r}")
            print(f"{'kind':8s} {'count':>7s} {'p50 ms':>9s} {'p99 ms':>9s}")
            for kind in names:
                v = lat[kind]
                print(f"{kind:8s} {len(v):7d} {pct(v, 0.5) * 1e3:9.1f} {pct(v, 0.99) * 1e3:9.1f}")
            sp50, sp99 = pct(lat["small"], 0.5), pct(lat["small"], 0.99)
            print(f"small read: idle p50 {idle_p50 * 1e3:.1f} ms; under load p50 {sp50 * 1e3:.1f} ms "
                  f"({sp50 / idle_p50:.1f}× idle), p99 {sp99 * 1e3:.1f} ms ({sp99 / idle_p50:.1f}× idle p50)")
            print("server RSS (MiB, process + SQL workers) over time:")
            print("  " + "  ".join(f"{t:5.0f}s {m:6.0f}" for t, m in rss))
            warm = [m for t, m in rss if t >= args.seconds / 4] or [rss[-1][1]]
            print(f"RSS after the first quarter: {min(warm):.0f}-{max(warm):.0f} MiB; last vs first of those: "
                  f"{warm[-1] / warm[0]:.2f}× (flat is 1.00×)")
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
