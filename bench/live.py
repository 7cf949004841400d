"""Live data: how soon a follower sees a new file, and what indexing a storm of files costs, as
ratios against references measured in the same run.

Real processes: ``arrowroot serve`` (from the CLI, loopback) and an uproot writer that closes a new
ROOT file of ROWS entries into a folder every PAUSE seconds, printing the time each was closed.

  latency   close → first row of that file at the client, p50/p99 over FILES files (goal p99 ≤ 1 s):
              follow   ``Client.follow`` on a server that watches the directory (inotify)
              poll     the reference, what a client did before: a server without the watcher, and a loop
                       that asks for a rescan of the folder and reads the entries after the last it had,
                       every POLL seconds (the shortest period an operator would let clients rescan at)
  indexing  STORM new files copied into the served directory at once: files per second until the
            catalog has them all, live (the watcher, in batches, at a lower CPU priority) vs the
            reference, a cold whole-tree index (``arrowroot index``) of the same files into a fresh catalog; and a small
            read's p50/p99 while the storm is indexed vs with the server idle ("without starving reads")

    python bench/live.py [--files 200] [--pause 0.05] [--poll 0.5] [--storm 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from arrowroot.clients import Client

HERE = Path(__file__).resolve().parent
WRITERS = str(HERE.parent / "tests" / "live_writers.py")
DS = "runs/*.root:events"
ROWS = 100
#: the reference: a cold whole-tree index of a directory into a fresh catalog, timed without the
#: interpreter's start (what ``arrowroot index`` does; its zone maps are left queued, as the live
#: indexer's are when the catalog lists the files)
COLD = """
import sys, time
from pathlib import Path
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.index.indexer import Indexer
root = Path(sys.argv[1])
(root / ".arrowroot").mkdir(exist_ok=True)
cat = Catalog(root / ".arrowroot" / "catalog.duckdb")
indexer = Indexer(root, cat)
t0 = time.monotonic()
indexer.run()
print(time.monotonic() - t0)
"""


class Server:
    """``arrowroot serve`` in its own process (``watch``: the live indexer on or off), once it lists ``DS``."""

    def __init__(self, root: Path, watch: bool):
        env = {**os.environ, "ARROWROOT_WATCH": "1" if watch else "0", "ARROWROOT_FOLLOW_HEARTBEAT": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env)
        self.location = self.proc.stdout.readline().split()[1]
        with Client(self.location) as c:
            end = time.monotonic() + 120
            while DS not in c.datasets("runs/*")["name"].to_pylist() and time.monotonic() < end:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def write_runs(runs: Path, first: int, n: int, pause: float) -> tuple[subprocess.Popen, dict[int, float]]:
    """The writer process (files ``first`` .. ``first + n - 1``) and, filled as it goes, file → close time."""
    closed: dict[int, float] = {}
    proc = subprocess.Popen([sys.executable, WRITERS, "root-files", str(runs), str(first + n), str(ROWS),
                             str(pause), str(first)], stdout=subprocess.PIPE, text=True)

    def lines() -> None:
        for line in proc.stdout:
            _, i, t = line.split()
            closed[int(i)] = float(t)

    threading.Thread(target=lines, daemon=True).start()
    return proc, closed


def percentiles(lags: list[float]) -> tuple[float, float]:
    return float(np.percentile(lags, 50)), float(np.percentile(lags, 99))


def follow_latency(root: Path, files: int, pause: float) -> list[float]:
    server = Server(root, watch=True)
    try:
        c = Client(server.location)
        f = c.follow(DS, ["i"])
        seen: dict[int, float] = {}
        proc, closed = write_runs(root / "runs", 2, files, pause)
        deadline = time.monotonic() + files * pause + 120
        for batch in f:
            now = time.time()
            for i in np.unique(batch.column("i").to_numpy() // ROWS):
                seen.setdefault(int(i), now)
            if len(seen) >= files + 2 or time.monotonic() > deadline:
                break
        f.close()
        proc.wait(60)
        c.close()
        return [seen[i] - closed[i] for i in closed if i in seen]
    finally:
        server.stop()


def poll_latency(root: Path, files: int, pause: float, period: float) -> list[float]:
    server = Server(root, watch=False)
    try:
        c = Client(server.location)
        have = c.read(DS, ["i"]).num_rows
        seen: dict[int, float] = {}
        proc, closed = write_runs(root / "runs", 2 + files, files, pause)
        deadline = time.monotonic() + files * pause + 120
        while len(seen) < files and time.monotonic() < deadline:
            t0 = time.monotonic()
            c.action("rescan", {"path": "runs", "wait": True})
            t = c.read(DS, ["i"], (have, None))
            now = time.time()
            have += t.num_rows
            for i in np.unique(t.column("i").to_numpy() // ROWS):
                seen.setdefault(int(i), now)
            time.sleep(max(0.0, period - (time.monotonic() - t0)))
        proc.wait(60)
        c.close()
        return [seen[i] - closed[i] for i in closed if i in seen]
    finally:
        server.stop()


def small_reads(c: Client, until: threading.Event, out: list[float]) -> None:
    while not until.is_set():
        t0 = time.perf_counter()
        c.read("runs/run00000.root:events", ["i"], (0, 10))
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)


def storm(root: Path, n: int) -> dict[str, float]:
    src = (root / "runs" / "run00000.root").read_bytes()
    server = Server(root, watch=True)
    try:
        c = Client(server.location)
        idle: list[float] = []
        done = threading.Event()
        t = threading.Thread(target=small_reads, args=(c, done, idle))
        t.start()
        time.sleep(3)
        done.set()
        t.join()
        busy: list[float] = []
        done = threading.Event()
        t = threading.Thread(target=small_reads, args=(c, done, busy))
        target = root / "storm"
        target.mkdir()
        t0 = time.monotonic()
        for i in range(n):
            (target / f"f{i:05d}.root").write_bytes(src)
        t.start()
        deadline = t0 + 1800
        while time.monotonic() < deadline:
            names = set(c.datasets("storm/*")["name"].to_pylist())
            if "storm/*.root:events" in names and \
                    c.flight_info("storm/*.root:events", ["i"]).total_records == n * ROWS:
                break
            time.sleep(0.2)
        live_s = time.monotonic() - t0
        done.set()
        t.join()
        c.close()
    finally:
        server.stop()
    copy = root.parent / "cold"
    (copy / "storm").mkdir(parents=True)
    for p in (root / "storm").iterdir():
        shutil.copyfile(p, copy / "storm" / p.name)
    cold_s = float(subprocess.run([sys.executable, "-c", COLD, str(copy)], check=True, capture_output=True,
                                  text=True).stdout)
    ip50, ip99 = percentiles(idle)
    bp50, bp99 = percentiles(busy)
    return {"live_s": live_s, "cold_s": cold_s, "idle_p50": ip50, "idle_p99": ip99, "busy_p50": bp50,
            "busy_p99": bp99}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--pause", type=float, default=0.05)
    ap.add_argument("--poll", type=float, default=0.5)
    ap.add_argument("--storm", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-live-") as tmp:
        root = Path(tmp) / "data"
        subprocess.run([sys.executable, WRITERS, "root-files", str(root / "runs"), "2", str(ROWS), "0"], check=True,
                       capture_output=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the start; {args.files} files of {ROWS} entries, "
              f"one every {args.pause:g} s")
        follow = follow_latency(root, args.files, args.pause)
        poll = poll_latency(root, args.files, args.pause, args.poll)
        fp50, fp99 = percentiles(follow)
        pp50, pp99 = percentiles(poll)
        print(f"close → first row   follow p50 {fp50 * 1000:.0f} ms, p99 {fp99 * 1000:.0f} ms ({len(follow)} files; "
              f"goal p99 ≤ 1000 ms)")
        print(f"                    poll every {args.poll:g} s (rescan + read) p50 {pp50 * 1000:.0f} ms, "
              f"p99 {pp99 * 1000:.0f} ms ({len(poll)} files)")
        print(f"                    follow ÷ poll: p50 {fp50 / pp50:.2f}×, p99 {fp99 / pp99:.2f}× the latency")
        if args.storm <= 0:
            return
        s = storm(root, args.storm)
        print(f"storm of {args.storm} files   live {args.storm / s['live_s']:.0f} files/s ({s['live_s']:.1f} s), "
              f"cold whole-tree index {args.storm / s['cold_s']:.0f} files/s ({s['cold_s']:.1f} s): "
              f"live ÷ cold {s['cold_s'] / s['live_s']:.2f}× the rate")
        print(f"small read meanwhile  p50 {s['busy_p50'] * 1000:.1f} ms, p99 {s['busy_p99'] * 1000:.1f} ms vs idle "
              f"p50 {s['idle_p50'] * 1000:.1f} ms, p99 {s['idle_p99'] * 1000:.1f} ms "
              f"({s['busy_p50'] / s['idle_p50']:.2f}× / {s['busy_p99'] / s['idle_p99']:.2f}×)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
