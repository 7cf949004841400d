"""Soak: N clients × T seconds of mixed requests on every door of real server processes (a script, not a test).

    python bench/soak.py [--clients 32] [--processes 4] [--seconds 120] [--entries 200000] [--nodes 1] [--keep DIR]

Writes the sample files (ROOT + HDF5) and indexes them, then starts a coordinator (``arrowroot serve
--http``) and ``--nodes`` data nodes joined to it with a shared key, each in its own process. Then
``--clients`` threads loop over a weighted mix on every door at once:

- Flight: small reads (10 entries, 2 columns), large reads (every column of a dataset), cut reads
  (server-side ``where``) and listings; each endpoint is read where the coordinator points it, so
  with nodes the rows come from the nodes (counted as the ``node`` door);
- Flight SQL: aggregates;
- HTTP: small ``/api/data`` reads (Arrow IPC), CSV downloads of a cut, dataset listings and
  descriptions.

A probe asks ``/api/health`` every 0.2 s meanwhile. Prints requests and errors by kind, per-kind
latencies, the small-read p50/p99 of each door under load against that door's small-read p50 on
the idle servers measured first in the same run (the ratios are the figures), health latencies, and
the resident memory of each process (the coordinator with its SQL workers, each node) sampled over
time: it must stay flat.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.protos import flight_sql as fs

EVENTS = "hep/events.root:events"
DETECTOR = "lab/scan.h5:detector"
PAGE = os.sysconf("SC_PAGE_SIZE")
REUSE = "arrow-flight-reuse-connection://"
CLI = [sys.executable, "-m", "arrowroot.flight_server.cli"]


class Server:
    """An arrowroot process; its first lines name its locations."""

    def __init__(self, args: list[str], lines: int = 1):
        self.proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        head = "".join(self.proc.stdout.readline() for _ in range(lines))
        grpc = re.search(r"grpc://[\w.:]+", head)
        http = re.search(r"http://[\w.]+:\d+", head)
        if not grpc or (lines > 1 and not http):
            self.stop()
            raise SystemExit(f"{args[0]} did not start: {head!r}")
        self.location = grpc.group(0)
        self.url = http.group(0) if http else ""

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (the SQL sandbox workers), in MiB."""
        pid, total = self.proc.pid, 0
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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Session:
    """One client's connections: the coordinator over Flight and HTTP, and each node it is sent to."""

    def __init__(self, location: str, url: str, nodes: set[str]):
        self.coordinator = location
        self.flight = fl.connect(location)
        self.http = httpx.Client(base_url=url, timeout=60)
        self.nodes = nodes
        self.others: dict[str, fl.FlightClient] = {}

    def read(self, request: dict) -> tuple[int, str]:
        """Rows of a Flight read, each endpoint from its first location; the door that served it."""
        info = self.flight.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))
        rows, door = 0, "flight"
        for ep in info.endpoints:
            uri = ep.locations[0].uri.decode() if ep.locations else REUSE
            if uri.startswith(REUSE) or uri == self.coordinator:
                client = self.flight
            else:
                client = self.others.get(uri) or self.others.setdefault(uri, fl.connect(uri))
                door = "node" if uri in self.nodes else door
            rows += client.do_get(ep.ticket).read_all().num_rows
        return rows, door

    def sql(self, query: str) -> int:
        cmd = fs.pack(fs.CommandStatementQuery(query=query))
        info = self.flight.get_flight_info(fl.FlightDescriptor.for_command(cmd))
        return sum(self.flight.do_get(ep.ticket).read_all().num_rows for ep in info.endpoints)

    def close(self) -> None:
        self.http.close()
        for c in [self.flight, *self.others.values()]:
            c.close()


Call = Callable[[Session, random.Random], str]


def mix(entries: int) -> list[tuple[str, float, Call]]:
    """(kind, weight, call); a call checks its answer and returns the door that served it."""
    def small(s: Session, rng: random.Random) -> str:
        start = rng.randrange(0, entries - 10)
        n, door = s.read({"dataset": EVENTS, "columns": ["event", "nMuon"], "entry_start": start,
                          "entry_stop": start + 10})
        assert n == 10, n
        return door

    def large(s: Session, rng: random.Random) -> str:
        n, door = s.read({"dataset": rng.choice([EVENTS, DETECTOR])})
        assert n == entries, n
        return door

    def cut(s: Session, rng: random.Random) -> str:
        return s.read({"dataset": EVENTS, "columns": ["MET_pt", "Muon_pt"], "where": "MET_pt > 60 and nMuon >= 2"})[1]

    def aggregate(s: Session, rng: random.Random) -> str:
        k = rng.randint(1, 5)
        assert s.sql(f'SELECT nMuon, count(*) AS n, avg(MET_pt) FROM "{EVENTS}" WHERE nMuon < {k} '
                     "GROUP BY nMuon") >= 1
        return "sql"

    def listing(s: Session, rng: random.Random) -> str:
        pattern = rng.choice(["hep/*", "lab/*", "*"])
        assert len(list(s.flight.list_flights(json.dumps({"name": pattern}).encode()))) >= 1
        return "flight"

    def http_small(s: Session, rng: random.Random) -> str:
        start = rng.randrange(0, entries - 10)
        r = s.http.get(f"/api/data/{EVENTS}", params={"columns": "event,nMuon", "entry_start": start,
                                                      "entry_stop": start + 10, "format": "arrow"})
        assert r.status_code == 200, (r.status_code, r.text[:200])
        table = pa.ipc.open_stream(io.BytesIO(r.content)).read_all()
        assert table.num_rows == 10 and table.column("event")[0].as_py() == start, table
        return "http"

    def http_csv(s: Session, rng: random.Random) -> str:
        with s.http.stream("GET", f"/api/data/{EVENTS}", params={"columns": "event,MET_pt", "format": "csv",
                                                                  "where": "MET_pt > 60", "entry_stop": 20_000}) as r:
            assert r.status_code == 200, r.status_code
            lines = sum(chunk.count(b"\n") for chunk in r.iter_bytes())
        assert lines >= 2, lines
        return "http"

    def http_list(s: Session, rng: random.Random) -> str:
        r = s.http.get("/api/datasets")
        assert r.status_code == 200 and r.json()["datasets"], r.status_code
        r = s.http.get(f"/api/datasets/{rng.choice([EVENTS, DETECTOR])}")
        assert r.status_code == 200, r.status_code
        return "http"

    return [("small", 0.22, small), ("large", 0.06, large), ("cut", 0.10, cut), ("sql", 0.10, aggregate),
            ("list", 0.07, listing), ("http_small", 0.25, http_small), ("http_csv", 0.10, http_csv),
            ("http_list", 0.10, http_list)]


def client_process(seeds: list[int], location: str, url: str, nodes: set[str], entries: int,
                   start_at: float, stop_at: float) -> dict:
    """One client process: a thread per seed, each looping over the mix from ``start_at`` to
    ``stop_at`` (wall clock). In processes of their own, clients do not queue behind each other's GIL."""
    kinds = mix(entries)
    calls = {k[0]: k[2] for k in kinds}
    names, weights = [k[0] for k in kinds], [k[1] for k in kinds]
    lat: dict[str, list[float]] = collections.defaultdict(list)
    doors: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    lock = threading.Lock()

    def loop(seed: int) -> None:
        rng = random.Random(seed)
        session = Session(location, url, nodes)
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            kind = rng.choices(names, weights)[0]
            t0 = time.perf_counter()
            try:
                door = calls[kind](session, rng)
                with lock:
                    lat[kind].append(time.perf_counter() - t0)
                    doors[door] += 1
            except Exception as exc:  # noqa: BLE001 - counted by kind, reported by the parent
                with lock:
                    errors[f"{kind}:{type(exc).__name__}"] += 1
                    examples.setdefault(f"{kind}:{type(exc).__name__}", str(exc)[:200])
        session.close()

    threads = [threading.Thread(target=loop, args=(seed,)) for seed in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"lat": dict(lat), "doors": dict(doors), "errors": dict(errors), "examples": examples}


def health_probe(url: str, start_at: float, stop_at: float) -> tuple[list[float], list[str]]:
    """``/api/health`` every 0.2 s until ``stop_at``, from a process of its own (as a probe is)."""
    times: list[float] = []
    failed: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as h:
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            t0 = time.perf_counter()
            try:
                r = h.get("/api/health")
                if r.status_code != 200:
                    failed.append(str(r.status_code))
            except httpx.HTTPError as exc:
                failed.append(type(exc).__name__)
            times.append(time.perf_counter() - t0)
            time.sleep(0.2)
    return times, failed


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def start(root: Path, nodes: int, key: Path) -> tuple[Server, list[Server]]:
    coordinator = Server(["serve", str(root), "--port", "0", "--http", "0", "--no-index", "--key-file", str(key)],
                         lines=2)
    started = [Server(["node", str(root), "--port", "0", "--join", coordinator.location, "--key-file", str(key),
                       "--id", f"n{i}"]) for i in range(nodes)]
    want = {n.location for n in started}
    probe = Session(coordinator.location, coordinator.url, want)
    deadline = time.monotonic() + 60
    while want:
        info = probe.flight.get_flight_info(fl.FlightDescriptor.for_command(
            json.dumps({"dataset": EVENTS, "columns": ["nMuon"]})))
        want -= {loc.uri.decode() for ep in info.endpoints for loc in ep.locations}
        if want and time.monotonic() > deadline:
            raise SystemExit(f"nodes never joined: {sorted(want)}")
        time.sleep(0.2)
    probe.close()
    return coordinator, started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--processes", type=int, default=4, help="client processes the clients are spread over")
    ap.add_argument("--nodes", type=int, default=1, help="data nodes joined to the coordinator (0: none)")
    ap.add_argument("--keep", type=Path, help="write the data here (default: a temp dir, removed after)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "data"
        write_sample_files(root, entries=args.entries)
        subprocess.run([*CLI, "index", str(root)], check=True, capture_output=True)
        key = Path(tmp) / "cluster.key"
        key.write_text("the soak's shared ticket key\n")
        coordinator, nodes = start(root, args.nodes, key)
        servers = {"coordinator": coordinator, **{f"node n{i}": n for i, n in enumerate(nodes)}}
        node_locations = {n.location for n in nodes}
        try:
            kinds = mix(args.entries)
            calls = {k[0]: k[2] for k in kinds}
            idle_session, rng = Session(coordinator.location, coordinator.url, node_locations), random.Random(0)
            idle: dict[str, float] = {}
            for kind in ("small", "http_small"):
                for _ in range(5):
                    calls[kind](idle_session, rng)
                times = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    calls[kind](idle_session, rng)
                    times.append(time.perf_counter() - t0)
                idle[kind] = statistics.median(times)
            idle_session.close()

            rss: list[tuple[float, dict[str, float]]] = [(0.0, {k: s.rss_mb() for k, s in servers.items()})]
            start_at = time.time() + 10  # wall clock, shared by the client processes (time to start them)
            stop_at = start_at + args.seconds
            where = (coordinator.location, coordinator.url, node_locations, args.entries, start_at, stop_at)
            spawn = multiprocessing.get_context("spawn")
            per = [list(range(i, args.clients, args.processes)) for i in range(args.processes)]
            with spawn.Pool(args.processes + 1) as pool:
                health_job = pool.apply_async(health_probe, (coordinator.url, start_at, stop_at))
                client_jobs = [pool.apply_async(client_process, (seeds, *where)) for seeds in per if seeds]
                time.sleep(max(0.0, start_at - time.time()))
                t_start = time.monotonic()
                while time.time() < stop_at:
                    time.sleep(min(5.0, max(0.5, args.seconds / 24), max(0.0, stop_at - time.time())))
                    rss.append((time.monotonic() - t_start, {k: s.rss_mb() for k, s in servers.items()}))
                results = [job.get(timeout=args.seconds + 300) for job in client_jobs]
                health, health_errors = health_job.get(timeout=300)
            wall = args.seconds
            lat: dict[str, list[float]] = collections.defaultdict(list)
            doors: collections.Counter[str] = collections.Counter()
            errors: collections.Counter[str] = collections.Counter()
            examples: dict[str, str] = {}
            for r in results:
                for kind, values in r["lat"].items():
                    lat[kind] += values
                doors.update(r["doors"])
                errors.update(r["errors"])
                examples = {**r["examples"], **examples}

            total = sum(len(v) for v in lat.values()) + sum(errors.values())
            print(f"coordinator {coordinator.location} + {coordinator.url}, {len(nodes)} node(s); "
                  f"{args.clients} clients × {args.seconds:g} s, {args.entries} entries per dataset")
            print(f"requests: {total} ({total / wall:.1f}/s), errors: {sum(errors.values())}; served by door: "
                  + ", ".join(f"{d} {n}" for d, n in sorted(doors.items())))
            for key_, n in sorted(errors.items()):
                print(f"  error {key_}: {n}  e.g. {examples[key_]!r}")
            print(f"{'kind':10s} {'count':>7s} {'p50 ms':>9s} {'p99 ms':>9s}")
            for kind in calls:
                v = lat[kind]
                print(f"{kind:10s} {len(v):7d} {pct(v, 0.5) * 1e3:9.1f} {pct(v, 0.99) * 1e3:9.1f}")
            for kind, label in (("small", "Flight"), ("http_small", "HTTP")):
                p50, p99, base = pct(lat[kind], 0.5), pct(lat[kind], 0.99), idle[kind]
                print(f"small read over {label}: idle p50 {base * 1e3:.1f} ms; under load p50 {p50 * 1e3:.1f} ms "
                      f"({p50 / base:.1f}× idle), p99 {p99 * 1e3:.1f} ms ({p99 / base:.1f}× idle p50)")
            print(f"/api/health under load: {len(health)} probes, {len(health_errors)} failed; "
                  f"p50 {pct(health, 0.5) * 1e3:.1f} ms, p99 {pct(health, 0.99) * 1e3:.1f} ms, "
                  f"max {max(health, default=float('nan')) * 1e3:.1f} ms")
            print("resident memory (MiB) over time:")
            for name in servers:
                print(f"  {name:12s} " + "  ".join(f"{t:4.0f}s {m[name]:5.0f}" for t, m in rss))
            for name in servers:
                warm = [m[name] for t, m in rss if t >= args.seconds / 4] or [rss[-1][1][name]]
                print(f"{name}: after the first quarter {min(warm):.0f}-{max(warm):.0f} MiB; last ÷ first of "
                      f"those {warm[-1] / warm[0]:.2f} (flat is 1.00)")
            down = [name for name, s in servers.items() if not s.alive()]
            print(f"processes up at the end: {len(servers) - len(down)}/{len(servers)}" + (f" (down: {down})" if down else ""))
        finally:
            for s in servers.values():
                s.stop()


if __name__ == "__main__":
    main()
