"""Memory per stalled stream: N clients open a read and then read nothing (a script, not a test).

    python bench/stalled.py [--streams 32] [--entries 2000000] [--door flight|node|http] [--rounds 2]
                            [--cache-mb 0]

Writes the sample files, serves them in their own process (``arrowroot serve``, or a data node for
``--door node``, or its HTTP API for ``--door http``), then, for each round, opens ``--streams`` reads
that take their first batch and stop reading: every column of the events tree, each stream from its
own first entry (so no two share a chunk, in the cache or out of it) and long enough to outlast any
socket buffer. It samples the server's resident memory before, while they are held, and after they
are closed (right away and a few seconds later). The figure is (held − before) / N in MiB per stalled
stream, against the memory of the data one such read returns (its Arrow size, the same-run
reference), and after/start, which should be within 10%. The column-chunk cache is off by default
(``--cache-mb``): it is bounded and shared, not per stream.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.flight as fl

from arrowroot.flight_server.cli.demo import write_sample_files

EVENTS = "hep/events.root:events"


def cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {})})


def rss_mb(p: psutil.Process) -> float:
    return p.memory_info().rss / 2**20


def settle(p: psutil.Process, seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return rss_mb(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--door", choices=["flight", "node", "http"], default="flight")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-mb", type=float, default=0.0)
    ap.add_argument("--batch-rows", type=int, default=0, help="the requests' batch_rows (0: the server's)")
    args = ap.parse_args()
    env = {"ARROWROOT_MAX_STREAMS": str(max(64, args.streams + 8)),
           "ARROWROOT_MAX_STREAMS_PER_PRINCIPAL": str(max(16, args.streams + 8)),
           "ARROWROOT_STREAM_IDLE_TIMEOUT": "600", "ARROWROOT_CACHE_MB": str(args.cache_mb)}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_sample_files(Path(tmp), entries=args.entries)
        subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                       capture_output=True)
        key = Path(tmp) / "key"
        key.write_text("bench/stalled.py shared secret\n")
        server = cli("serve", str(root), "--port", "0", "--no-index", "--key-file", str(key),
                     *(["--http", "0"] if args.door == "http" else []), env=env)
        location = re.search(r"grpc://[\w.:]+", server.stdout.readline()).group(0)
        http = re.search(r"http://([\w.]+):(\d+)/", server.stdout.readline()) if args.door == "http" else None
        node = None
        target = psutil.Process(server.pid)
        if args.door == "node":
            node = cli("node", str(root), "--port", "0", "--key-file", str(key), env=env)
            node_location = re.search(r"grpc://[\w.:]+", node.stdout.readline()).group(0)
            target = psutil.Process(node.pid)
        try:
            coordinator = fl.connect(location)
            span = args.entries // 2              # each stream: half the dataset, from its own first entry
            step = max(1, (args.entries - span) // max(1, 2 * args.streams))

            def request(i: int) -> dict:
                return {"dataset": EVENTS, "entry_start": i * step, "entry_stop": i * step + span,
                        **({"batch_rows": args.batch_rows} if args.batch_rows else {})}

            def info(i: int) -> fl.FlightInfo:
                return coordinator.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request(i))))

            def stats() -> dict:
                """The server's own account (the stats action), where it has one."""
                try:
                    with fl.connect(node_location if node else location) as c:
                        m = json.loads(next(iter(c.do_action(fl.Action("stats", b"")))).body.to_pybytes())["memory"]
                    return {"arrow": round(m["arrow_allocated_bytes"] / 2**20), "open": m["open_streams"]}
                except (KeyError, fl.FlightError, StopIteration):
                    return {}

            # the same-run reference: the Arrow size of what one such read returns (read through the
            # door measured, so that its start already includes what a first read loads)
            door = fl.connect(node_location) if node else coordinator
            ref = sum(door.do_get(e.ticket).read_all().nbytes for e in info(0).endpoints) / 2**20
            if http:
                q = "&".join(f"{a}={b}" for a, b in request(0).items() if a != "dataset")
                with socket.create_connection((http.group(1), int(http.group(2)))) as s:
                    s.sendall(f"GET /api/data/{EVENTS}?format=arrow&{q} HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n".encode())
                    while s.recv(1 << 20):
                        pass
            start = settle(target, 2.0)
            print(f"door {args.door}; {args.streams} stalled streams per round, each reading {span} entries "
                  f"({ref:.1f} MiB of Arrow data) from its own start; chunk cache {args.cache_mb:g} MiB")
            print(f"server RSS at start (after one such read): {start:.0f} MiB")
            for rnd in range(args.rounds):
                before = rss_mb(target)
                held: list = []
                for k in range(args.streams):
                    i = rnd * args.streams + k
                    if args.door == "http":
                        q = "&".join(f"{a}={b}" for a, b in request(i).items() if a != "dataset")
                        s = socket.create_connection((http.group(1), int(http.group(2))))
                        s.sendall(f"GET /api/data/{EVENTS}?format=arrow&{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                        s.recv(4096)
                        held.append(s)
                    else:
                        # no BDP probing: the client's windows stay small, as a stalled client's do
                        c = fl.connect(node_location if node else location,
                                       generic_options=[("grpc.http2.bdp_probe", 0)])
                        r = c.do_get(info(i).endpoints[0].ticket)
                        r.read_chunk()
                        held.append((c, r))
                early = settle(target, 2.0)
                during = settle(target, 8.0)  # the streams' read-ahead and chunks let go after 5 s quiet
                threads = target.num_threads()
                mem = stats()
                for h in held:
                    if isinstance(h, socket.socket):
                        h.close()
                    else:
                        h[1].cancel()
                        h[0].close()
                held.clear()
                right_after = settle(target, 1.0)
                later = settle(target, 5.0)
                mem_after = stats()
                per = (during - before) / args.streams
                print(f"round {rnd + 1}: before {before:.0f} MiB, {args.streams} held {early:.0f} MiB at 2 s, "
                      f"{during:.0f} MiB at 10 s ({threads} threads; Arrow allocator {mem.get('arrow', '?')} MiB) "
                      f"→ {per:.1f} MiB per stalled stream ({per / ref:.2f}× the {ref:.1f} MiB one read returns); "
                      f"closed: {right_after:.0f} MiB, 5 s later {later:.0f} MiB ({later / start:.2f}× start; Arrow allocator "
                      f"{mem_after.get('arrow', '?')} MiB, {mem_after.get('open', '?')} streams open)")
        finally:
            for p in (node, server):
                if p is not None:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    main()
