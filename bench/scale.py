"""Scale-out: data nodes, the column-chunk cache, cache affinity and Dask, as ratios in one run.

Builds a multi-file ROOT dataset (zlib, flat + jagged branches), starts real processes from
the CLI (`arrowroot serve`, `arrowroot node --join`) on loopback, and measures:

  scale     aggregate MB/s of 16 concurrent clients: coordinator + 2 nodes ÷ 1 process
            (chunk cache off in both, so decoding is what is spread)             goal ≥ 1.5
  fan-in    16 clients ÷ 1 client on one process (aggregate MB/s)
  warm      a read served from the chunk cache (Client, one endpoint at a time) ÷ a plain
            in-memory Flight stream of the same table from another process         goal ≥ 0.8
  cold      a fresh server's first read with the cache on ÷ with it off (time)    goal ≈ 1
  affinity  second identical query's cache hit rate over 2 nodes                  goal ≥ 95 %
            share of endpoints whose node changed after a third node joined       goal ≈ 1/3
  dask      read_dask(...).sum().compute() on a LocalCluster (2 workers) ÷ the Client
            reading the same columns and summing them

    python bench/scale.py [--files 8] [--entries 250000] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import uproot

from arrowroot.clients import Client

DATASET = "events"
COLUMNS = ["MET_pt", "MET_phi", "nMuon", "Muon_pt", "Muon_eta"]
REUSE = "arrow-flight-reuse-connection://?"


def build(root: Path, files: int, entries: int) -> None:
    rng = np.random.default_rng(0)
    (root / "runs").mkdir()
    for i in range(files):
        with uproot.recreate(root / "runs" / f"run-{i:03d}.root", compression=uproot.ZLIB(1)) as f:
            tree = f.mktree("Events", {"MET_pt": "float32", "MET_phi": "float32", "nMuon": "int32",
                                       "Muon_pt": "var * float32", "Muon_eta": "var * float32"})
            step = max(1, entries // 4)
            for start in range(0, entries, step):
                m = min(step, entries - start)
                n = rng.poisson(1.5, m).astype(np.int32)
                t = int(n.sum())
                tree.extend({"MET_pt": rng.exponential(30, m).astype(np.float32),
                             "MET_phi": rng.uniform(-3.14, 3.14, m).astype(np.float32), "nMuon": n,
                             "Muon_pt": ak.unflatten(rng.exponential(20, t).astype(np.float32), n),
                             "Muon_eta": ak.unflatten(rng.normal(0, 1.5, t).astype(np.float32), n)})
    (root / "arrowroot.toml").write_text(f'[[dataset]]\nname = "{DATASET}"\nfiles = "runs/*.root"\n'
                                         'object = "Events"\nkeys = "run-{run}.root"\n')


def arrowroot_cmd() -> list[str]:
    script = Path(sys.executable).with_name("arrowroot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arrowroot.flight_server.cli"]


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.proc = subprocess.Popen(arrowroot_cmd() + args, stdout=subprocess.PIPE, stderr=open(log, "w"),
                                     text=True, env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        found = re.search(r"grpc://[\w.:-]+", line)
        if not found:
            raise SystemExit(f"{args[0]} did not start: {line!r}\n{log.read_text()[-2000:]}")
        self.location = found.group(0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def read_once_direct(root: Path, columns: list[str]) -> None:
    for path in sorted((root / "runs").glob("*.root")):
        with uproot.open(path) as f:
            f["Events"].arrays(columns, library="np")


def read_once(location: str, columns: list[str], threads: int = 2) -> int:
    with Client(location, threads=threads) as c:
        return c.read(DATASET, columns).nbytes


def aggregate(location: str, clients: int, columns: list[str]) -> float:
    """MB/s of Arrow data over ``clients`` concurrent readers (one Client each)."""
    sizes = [0] * clients

    def work(i: int) -> None:
        sizes[i] = read_once(location, columns)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sizes) / (time.perf_counter() - t0) / 1e6


def best(fn, repeat: int = 3) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


MEMORY_SERVER = """
import sys, pyarrow as pa, pyarrow.flight as fl
table = pa.ipc.open_file(sys.argv[1]).read_all()
class Memory(fl.FlightServerBase):
    def do_get(self, context, ticket):
        return fl.RecordBatchStream(table)
server = Memory("grpc://127.0.0.1:0")
print(server.port, flush=True)
server.serve()
"""


def memory_flight(table: pa.Table, tmp: Path) -> tuple[subprocess.Popen, str]:
    """A plain pyarrow.flight server in its own process streaming ``table`` from memory."""
    path = tmp / "table.arrow"
    with pa.ipc.new_file(path, table.schema) as w:
        w.write_table(table)
    proc = subprocess.Popen([sys.executable, "-c", MEMORY_SERVER, str(path)], stdout=subprocess.PIPE, text=True)
    return proc, f"grpc://127.0.0.1:{int(proc.stdout.readline())}"


def cache_counts(locations: list[str]) -> tuple[int, int]:
    hits = misses = 0
    for loc in locations:
        with Client(loc) as c:
            s = c.action("stats")["cache"]
        hits, misses = hits + s["hits"], misses + s["misses"]
    return hits, misses


def first_locations(location: str) -> list[str]:
    with Client(location) as c:
        info = c.flight_info(DATASET, COLUMNS)
    return [ep.locations[0].uri.decode() if ep.locations else "" for ep in info.endpoints]


def wait_nodes(location: str, n: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        with Client(location) as c:
            if sum(x["alive"] for x in c.action("nodes")["nodes"]) == n:
                return
        time.sleep(0.1)
    raise SystemExit(f"{n} nodes did not register")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--entries", type=int, default=250_000, help="entries per file")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--endpoint-mb", default="2")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        logs = Path(tmp)
        build(root, args.files, args.entries)
        subprocess.run(arrowroot_cmd() + ["index", str(root)], check=True, capture_output=True)
        key = logs / "key"
        key.write_text("benchmark secret shared by the coordinator and its nodes\n")
        common = ["--port", "0", "--no-index", "--endpoint-mb", args.endpoint_mb]
        env = {"ARROWROOT_NODE_TTL": "2"}
        results: dict[str, str] = {}

        # --- one process, cache off: 1 client, then N clients -------------------------
        read_once_direct(root, COLUMNS)  # the files in the page cache for everyone
        single = Proc(["serve", str(root), *common, "--cache-mb", "0"], logs / "single.log")
        t0 = time.perf_counter()
        read_once(single.location, COLUMNS)  # a fresh process's first read, cache off
        cold_off = time.perf_counter() - t0
        one = aggregate(single.location, 1, COLUMNS)
        many_single = aggregate(single.location, args.clients, COLUMNS)
        table_bytes = read_once(single.location, COLUMNS)
        single.stop()
        results["fan-in"] = f"{args.clients} clients ÷ 1 client, one process: {many_single:.0f} ÷ {one:.0f} MB/s " \
                            f"= {many_single / one:.2f}"

        # --- coordinator + 2 nodes, cache off -----------------------------------------
        coord = Proc(["serve", str(root), *common, "--cache-mb", "0", "--key-file", str(key)],
                     logs / "coord.log", env)
        nodes = [Proc(["node", str(root), "--port", "0", "--join", coord.location, "--key-file", str(key),
                       "--cache-mb", "0", "--id", f"n{i}"], logs / f"n{i}.log", env) for i in (1, 2)]
        read_once(coord.location, COLUMNS)
        many_nodes = aggregate(coord.location, args.clients, COLUMNS)
        for p in nodes + [coord]:
            p.stop()
        results["scale"] = f"{args.clients} clients, coordinator + 2 nodes ÷ 1 process: {many_nodes:.0f} ÷ " \
                           f"{many_single:.0f} MB/s = {many_nodes / many_single:.2f} (goal ≥ 1.5)"

        # --- one process, cache on: cold, warm vs an in-memory Flight stream ------------
        # default-size endpoints (64 MiB; one per file here), as a single server is run
        default = ["--port", "0", "--no-index"]
        cold = {}
        for mb in ("0", "2048"):  # a fresh server's first read, cache off then on (all misses)
            cached = Proc(["serve", str(root), *default, "--cache-mb", mb], logs / f"cached{mb}.log")
            t0 = time.perf_counter()
            read_once(cached.location, COLUMNS)
            cold[mb] = time.perf_counter() - t0
            if mb == "0":
                cached.stop()
        cold_off, cold_on = cold["0"], cold["2048"]
        warm = best(lambda: read_once(cached.location, COLUMNS, threads=1))
        with Client(cached.location) as c:
            table = c.read(DATASET, COLUMNS)
        cached.stop()
        server, mem = memory_flight(table, logs)
        read_memory = lambda: fl.connect(mem).do_get(fl.Ticket(b"x")).read_all()  # noqa: E731
        read_memory()
        flight = best(read_memory)
        server.kill()
        server.wait()
        results["warm"] = f"warm read from the chunk cache ÷ in-memory Flight stream: {table_bytes / warm / 1e6:.0f} ÷ " \
                          f"{table_bytes / flight / 1e6:.0f} MB/s = {flight / warm:.2f} (goal ≥ 0.8)"
        results["cold"] = f"a fresh server's first read, cache on ÷ cache off (time): {cold_on:.2f} ÷ {cold_off:.2f} s = " \
                          f"{cold_on / cold_off:.2f} (goal ≈ 1)"

        # --- cache affinity over 2 nodes, then a third joins ---------------------------
        fine = ["--port", "0", "--no-index", "--endpoint-mb", "0.25"]  # ~256 endpoints: movement over many keys
        coord = Proc(["serve", str(root), *fine, "--key-file", str(key)], logs / "coord2.log", env)
        nodes = [Proc(["node", str(root), "--port", "0", "--join", coord.location, "--key-file", str(key),
                       "--id", f"a{i}"], logs / f"a{i}.log", env) for i in (1, 2)]
        locs = [n.location for n in nodes]
        read_once(coord.location, COLUMNS)
        h0, m0 = cache_counts(locs)
        read_once(coord.location, COLUMNS)
        h1, m1 = cache_counts(locs)
        rate = (h1 - h0) / max(1, (h1 - h0) + (m1 - m0))
        before = first_locations(coord.location)
        nodes.append(Proc(["node", str(root), "--port", "0", "--join", coord.location, "--key-file", str(key),
                           "--id", "a3"], logs / "a3.log", env))
        wait_nodes(coord.location, 3)
        after = first_locations(coord.location)
        moved = sum(a != b for a, b in zip(before, after)) / len(before)
        to_new = all(b == nodes[2].location for a, b in zip(before, after) if a != b)
        for p in nodes + [coord]:
            p.stop()
        results["affinity"] = f"second identical query's hit rate over 2 nodes: {rate:.1%} (goal ≥ 95%); " \
                              f"endpoints moved when a third node joined: {moved:.1%} of {len(before)} " \
                              f"(goal ≈ 33%), all to the new node: {to_new}"

        # --- Dask on a LocalCluster vs the Client --------------------------------------
        try:
            import distributed

            from arrowroot.clients.dask import read_dask
        except ImportError:
            results["dask"] = "skipped: pip install arrowroot[dask]"
        else:
            flat = ["MET_pt", "MET_phi", "nMuon"]
            srv = Proc(["serve", str(root), *common], logs / "dask.log")
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as lc, distributed.Client(lc):
                read_dask(srv.location, DATASET, flat).sum().compute()  # workers warm, caches warm
                t_dask = best(lambda: read_dask(srv.location, DATASET, flat).sum().compute())
            t_client = best(lambda: Client(srv.location).read(DATASET, flat, library="pd").sum())
            srv.stop()
            results["dask"] = f"read_dask(...).sum().compute() ÷ Client.read + sum (time): {t_dask:.2f} ÷ " \
                              f"{t_client:.2f} s = {t_dask / t_client:.2f}"

    print(f"dataset: {args.files} files × {args.entries} entries, columns {COLUMNS}, "
          f"{table_bytes / 1e6:.0f} MB of Arrow per read, endpoints of {args.endpoint_mb} MiB")
    for name, text in results.items():
        print(f"{name:9s} {text}")


if __name__ == "__main__":
    main()
