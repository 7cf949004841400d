"""Benchmarks over a real, rate-limited link: what pushdown and compression are worth on a network.

On loopback moving bytes is nearly free, so a server-side cut or aggregate saves little. Here
`arrowroot serve` runs in one network namespace and the client in another, joined by a veth
pair shaped with tbf on both ends (bench/link.py), and at each rate it measures, in one run:

  link check   a plain in-memory pyarrow.flight stream: MB/s against the configured rate
  cut          a 1%-selective cut returning 2 of 20 columns, server-side `where`
               ÷ fetching those columns plus the cut's and filtering in the client (goal ≥ 5× at 1 Gbit/s)
  SQL          a GROUP BY histogram and an aggregate over `unnest` of a jagged column through
               ADBC Flight SQL ÷ fetching the columns and aggregating with numpy (goal ≥ 10×)
  compression  IPC bodies none / lz4 / zstd for ROOT floats and an HDF5 image dataset
               (one server; each read asks for its codec: ReadRequest.compression)

Needs root and iproute2; otherwise it prints "skipped: <reason>" and exits 0. Nothing outside
the two namespaces it creates is touched, and they are removed at the end, even on failure.

    sudo python bench/network.py [--rates 1gbit,100mbit,unshaped] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cuts  # noqa: E402  (bench/cuts.py: the same 20-branch file and client-side reference)
import link  # noqa: E402
from sql import compare  # noqa: E402  (alternating median timing)

ROOT_DS = "events.root:events"
IMAGES_DS = "images.h5:frames"
CUT_OUTPUT = cuts.OUTPUT  # ["event", "Jet_pt"]
FLOATS = ["MET_pt", "MET_phi", "Jet_pt", "Jet_eta"]
CODECS = ("none", "lz4", "zstd")
IMAGE_SHAPE = (128, 128)


@dataclass(frozen=True)
class Request:
    """One read, independent of how it is compressed."""

    dataset: str
    columns: Sequence[str] | None = None
    entries: tuple[int, int] | None = None
    where: str | None = None


def fetch(client: Any, request: Request, compression: str) -> pa.Table:
    """Read ``request`` asking for IPC body compression ``compression`` ("none", "lz4", "zstd")
    per request: one server serves every codec."""
    kwargs: dict[str, Any] = {"where": request.where} if request.where else {}
    kwargs["compression"] = compression
    return client.read(request.dataset, list(request.columns) if request.columns else None, request.entries,
                       **kwargs)


# ---------------------------------------------------------------- data


def build_images(path: Path, n: int) -> None:
    """Detector-like frames: uint16 Poisson background with a few bright spots, 128×128."""
    import h5py

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:IMAGE_SHAPE[0], 0:IMAGE_SHAPE[1]]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", shape=(n, *IMAGE_SHAPE), dtype=np.uint16, chunks=(16, *IMAGE_SHAPE))
        for start in range(0, n, 64):
            m = min(64, n - start)
            frames = rng.poisson(2.0, (m, *IMAGE_SHAPE)).astype(np.float64)
            for k in range(m):
                for _ in range(8):
                    cy, cx = rng.uniform(0, IMAGE_SHAPE[0]), rng.uniform(0, IMAGE_SHAPE[1])
                    frames[k] += rng.uniform(200, 4000) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
            ds[start:start + m] = frames.astype(np.uint16)


# ---------------------------------------------------------------- inside the server namespace


def memory_server(host: str) -> None:
    """The transport's ceiling: a plain pyarrow.flight server streaming a 64 MB table from memory;
    the ticket says how many MB to send."""
    import pyarrow.flight as fl

    rng = np.random.default_rng(0)
    rows = 2_000_000
    table = pa.table({f"x{i}": rng.normal(size=rows) for i in range(4)})  # 4 × 8 B × 2M = 64 MB

    class MemoryServer(fl.FlightServerBase):
        def do_get(self, context: Any, ticket: Any) -> Any:
            mb = float(ticket.ticket.decode())
            n = min(rows, int(mb * 1e6 / 32))
            return fl.RecordBatchStream(pa.Table.from_batches(table.slice(0, n).to_batches(max_chunksize=131_072)))

    server = MemoryServer(f"grpc://{host}:0")
    print(f"serving grpc://{host}:{server.port}", flush=True)
    server.serve()


# ---------------------------------------------------------------- inside the client namespace


class Metered:
    """Wraps a call to also record the bytes that crossed the wire (the client veth's rx)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.wire: list[int] = []

    def __call__(self) -> Any:
        before = link.rx_bytes()
        out = self.fn()
        self.wire.append(link.rx_bytes() - before)
        return out

    @property
    def bytes(self) -> int:
        return int(statistics.median(self.wire))


def rounds(fns: dict[str, Callable[[], Any]], repeat: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median seconds of each function, run in rounds whose order alternates (a b c, c b a, ...) so
    load that drifts on a shared machine hits all alike; one warm-up each first (its output kept)."""
    outputs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def _say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def worker(cfg: dict) -> dict:
    """All measurements at the link's current rate; returns plain numbers for the parent to print."""
    import warnings

    import adbc_driver_flightsql.dbapi as flightsql
    import pyarrow.compute as pc
    import pyarrow.flight as fl

    from arrowroot.clients import Client

    warnings.simplefilter("ignore")
    repeat = cfg["repeat"]
    rate = cfg["rate"]
    plain = Client(cfg["server"], threads=4)
    out: dict[str, Any] = {"rate": rate}

    # link check ------------------------------------------------------------------------------
    mb = 64.0 if rate is None else min(64.0, max(8.0, rate / 8 * 1.5 / 1e6))
    mem = fl.connect(cfg["memory"])
    ticket = fl.Ticket(str(mb).encode())
    _say(f"link check ({mb:.0f} MB in-memory Flight stream)")
    m = Metered(lambda: mem.do_get(ticket).read_all())
    t_mem, _, table, _ = compare(m, lambda: None, max(2, repeat))
    out["link"] = {"seconds": t_mem, "arrow": table.nbytes, "wire": m.bytes}
    mem.close()

    # cut -------------------------------------------------------------------------------------
    where, threshold = cfg["where"], cfg["threshold"]
    _say(f"cut {where!r}")

    def pushdown() -> pa.Table:
        return fetch(plain, Request(ROOT_DS, CUT_OUTPUT, where=where), "none")

    def client_side() -> pa.Table:
        t = fetch(plain, Request(ROOT_DS, CUT_OUTPUT + ["nMuon", "MET_pt"]), "none")
        keep = pc.and_(pc.greater_equal(t["nMuon"], 2), pc.greater(t["MET_pt"], threshold))
        return t.filter(keep).select(CUT_OUTPUT)

    ma, mb_ = Metered(pushdown), Metered(client_side)
    t_a, t_b, a, b = compare(ma, mb_, repeat)
    if not a.equals(b):
        raise SystemExit(f"pushdown ({a.num_rows} rows) and client-side filtering ({b.num_rows}) disagree")
    out["cut"] = {"rows": a.num_rows, "pushdown": t_a, "client": t_b, "wire_pushdown": ma.bytes,
                  "wire_client": mb_.bytes}

    # SQL aggregates --------------------------------------------------------------------------
    conn = flightsql.connect(cfg["server"], autocommit=True)

    def adbc(query: str) -> pa.Table:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table()

    ds = f'"{ROOT_DS}"'
    q_hist = (f"SELECT floor(MET_pt / 5)::INTEGER AS bin, count(*) AS n, avg(MET_pt) AS mean "
              f"FROM {ds} WHERE nMuon >= 1 GROUP BY bin ORDER BY bin")

    def client_hist() -> tuple[np.ndarray, np.ndarray]:
        t = fetch(plain, Request(ROOT_DS, ["MET_pt", "nMuon"]), "none")
        met = t["MET_pt"].to_numpy()
        keep = t["nMuon"].to_numpy() >= 1
        bins = np.floor(met[keep] / 5).astype(np.int64)
        return np.bincount(bins), np.bincount(bins, weights=met[keep].astype(np.float64))

    _say("SQL GROUP BY histogram")
    ms, mc = Metered(lambda: adbc(q_hist)), Metered(client_hist)
    t_sql, t_cli, hist, (n, sums) = compare(ms, mc, repeat)
    nz = np.nonzero(n)[0]
    assert hist["bin"].to_pylist() == nz.tolist() and hist["n"].to_pylist() == n[nz].tolist()
    np.testing.assert_allclose(hist["mean"].to_numpy(), sums[nz] / n[nz], rtol=1e-9)
    out["hist"] = {"server": t_sql, "client": t_cli, "wire_server": ms.bytes, "wire_client": mc.bytes}

    q_mu = (f"SELECT count(*) AS muons, avg(pt) AS mean_pt, max(pt) AS max_pt FROM "
            f"(SELECT unnest(Muon_pt) AS pt FROM {ds})")

    def client_mu() -> tuple[int, float, float]:
        t = fetch(plain, Request(ROOT_DS, ["Muon_pt"]), "none")
        flat = pc.list_flatten(t["Muon_pt"]).to_numpy()
        return len(flat), float(flat.astype(np.float64).mean()), float(flat.max())

    _say("SQL aggregate over unnest(Muon_pt)")
    ms, mc = Metered(lambda: adbc(q_mu)), Metered(client_mu)
    t_sql, t_cli, mu, (count, mean, top) = compare(ms, mc, repeat)
    assert mu["muons"][0].as_py() == count and abs(mu["mean_pt"][0].as_py() - mean) < 1e-6 * mean
    assert mu["max_pt"][0].as_py() == top
    out["unnest"] = {"server": t_sql, "client": t_cli, "wire_server": ms.bytes, "wire_client": mc.bytes}
    conn.close()

    # IPC compression -------------------------------------------------------------------------
    requests = {"ROOT floats": Request(ROOT_DS, FLOATS, entries=(0, cfg["float_entries"])),
                "HDF5 images": Request(IMAGES_DS)}
    out["compression"] = {}
    for label, request in requests.items():
        _say(f"compression: {label}")
        meters = {codec: Metered(lambda codec=codec, request=request: fetch(plain, request, codec)) for codec in CODECS}
        times, tables = rounds(meters, cfg["compression_repeat"])
        for codec in CODECS[1:]:
            if not tables[codec].equals(tables["none"]):
                raise SystemExit(f"{label}: the {codec} read differs from the uncompressed one")
        out["compression"][label] = {codec: {"seconds": times[codec], "wire": meters[codec].bytes,
                                             "arrow": tables[codec].nbytes} for codec in CODECS}
    plain.close()
    return out


# ---------------------------------------------------------------- the parent (root namespace)


def _cli() -> str:
    """The `arrowroot` command of this interpreter's environment (not an internal module path)."""
    here = Path(sys.executable).parent / "arrowroot"
    found = str(here) if here.exists() else shutil.which("arrowroot")
    if not found:
        raise SystemExit("the `arrowroot` command is not installed (pip install -e .)")
    return found


def _start(ln: link.Link, argv: list[str]) -> str:
    proc = ln.popen("server", argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"grpc://[\d.]+:\d+", line)
    if not match:
        raise SystemExit(f"server did not start ({' '.join(argv[:3])}...): {line!r}")
    return match.group(0)


def run(args: argparse.Namespace, rates: list[int | None]) -> tuple[dict, list[dict]]:
    entries = 500_000 if args.quick else args.entries
    images = 256 if args.quick else args.images
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-net-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        t0 = time.perf_counter()
        threshold = float(f"{cuts.build(root / 'events.root', entries, args.root_compression):.4f}")
        build_images(root / "images.h5", images)
        size = (root / "events.root").stat().st_size / 1e6
        print(f"built {entries:,} entries × 20 branches ({args.root_compression.upper()}, {size:.0f} MB) "
              f"and {images} {IMAGE_SHAPE[0]}×{IMAGE_SHAPE[1]} uint16 frames in {time.perf_counter() - t0:.0f} s",
              flush=True)
        cli = _cli()
        subprocess.run([cli, "index", str(root)], check=True, capture_output=True)
        catalog = root / ".arrowroot" / "catalog.duckdb"
        setup = {"entries": entries, "root_compression": args.root_compression.upper(), "images": images,
                 "repeat": repeat, "threshold": threshold,
                 "where": f"nMuon >= 2 and MET_pt > {threshold}", "float_entries": min(entries, 500_000),
                 "compression_repeat": repeat if args.quick else max(repeat, 5)}
        results = []
        with link.Link() as ln:
            server = _start(ln, [cli, "serve", str(root), "--host", link.SERVER_IP, "--port", "0", "--no-index",
                                 "--catalog", str(catalog)])
            memory = _start(ln, [sys.executable, str(Path(__file__).resolve()), "--memory-server", link.SERVER_IP])
            for rate in rates:
                ln.shape(rate)
                print(f"\nmeasuring at {link.rate_label(rate)} ...", flush=True)
                cfg = dict(setup, rate=rate, server=server, memory=memory)
                proc = ln.popen("client", [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)],
                                stdout=subprocess.PIPE, text=True)
                try:
                    stdout, _ = proc.communicate(timeout=1800)
                except subprocess.TimeoutExpired:
                    raise SystemExit(f"the client at {link.rate_label(rate)} hung for 30 min") from None
                if proc.returncode != 0:
                    raise SystemExit(f"the client at {link.rate_label(rate)} failed (exit {proc.returncode})")
                results.append(json.loads(stdout.strip().splitlines()[-1]))
        setup["load"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
        return setup, results


def report(setup: dict, results: list[dict]) -> None:
    mb = 1e6
    print(f"\n{setup['entries']:,}-entry, 20-branch {setup['root_compression']} TTree; {setup['images']} HDF5 frames; "
          f"median of {setup['repeat']} alternating runs after a warm-up ({setup['compression_repeat']} rounds for "
          f"compression); wire = bytes received on the client veth; "
          f"load average {setup['load']} (2 cores shared: CPU-bound rows vary with it)\n")
    print("link check: plain in-memory pyarrow.flight stream")
    print(f"  {'rate':>12s} {'configured MB/s':>16s} {'Arrow MB/s':>11s} {'wire MB/s':>10s} {'wire ÷ rate':>12s}")
    for r in results:
        L = r["link"]
        conf = r["rate"] / 8 / mb if r["rate"] else float("nan")
        wire = L["wire"] / L["seconds"] / mb
        print(f"  {link.rate_label(r['rate']):>12s} {conf:16.1f} {L['arrow'] / L['seconds'] / mb:11.1f} {wire:10.1f} "
              f"{wire / conf if r['rate'] else float('nan'):12.2f}")
        if r["rate"] and wire / conf < 0.8:
            print(f"  {'':12s} below 0.8 of the rate: the CPUs, not the link, limit this run at {link.rate_label(r['rate'])}")

    c0 = results[0]["cut"]
    print(f"\ncut {setup['where']!r}: {c0['rows']:,} of {setup['entries']:,} rows "
          f"({100 * c0['rows'] / setup['entries']:.2f}%), 2 of 20 columns")
    print(f"  {'rate':>12s} {'pushdown s':>11s} {'wire MB':>8s} {'client-side s':>14s} {'wire MB':>8s} "
          f"{'ratio':>7s}   (goal ≥ 5× at 1 Gbit/s)")
    for r in results:
        c = r["cut"]
        print(f"  {link.rate_label(r['rate']):>12s} {c['pushdown']:11.3f} {c['wire_pushdown'] / mb:8.2f} "
              f"{c['client']:14.3f} {c['wire_client'] / mb:8.2f} {c['client'] / c['pushdown']:6.1f}×")

    print("\nSQL aggregates: ADBC Flight SQL on the server ÷ plain DoGet of the columns + numpy (goal ≥ 10×)")
    print(f"  {'rate':>12s} {'query':22s} {'server s':>9s} {'wire MB':>8s} {'client s':>9s} {'wire MB':>8s} {'ratio':>7s}")
    for r in results:
        for key, name in (("hist", "GROUP BY histogram"), ("unnest", "unnest(Muon_pt) agg.")):
            q = r[key]
            print(f"  {link.rate_label(r['rate']):>12s} {name:22s} {q['server']:9.3f} {q['wire_server'] / mb:8.2f} "
                  f"{q['client']:9.3f} {q['wire_client'] / mb:8.2f} {q['client'] / q['server']:6.1f}×")

    print("\nIPC body compression (asked per request): time, wire MB, speed-up over none")
    print(f"  {'rate':>12s} {'data':12s} {'Arrow MB':>9s} " + " ".join(f"{c + ' s':>8s} {'MB':>6s}" for c in CODECS)
          + "  lz4 ÷ none  zstd ÷ none")
    for r in results:
        for label, rows in r["compression"].items():
            cells = " ".join(f"{rows[c]['seconds']:8.3f} {rows[c]['wire'] / mb:6.1f}" for c in CODECS)
            speed = [rows["none"]["seconds"] / rows[c]["seconds"] for c in ("lz4", "zstd")]
            print(f"  {link.rate_label(r['rate']):>12s} {label:12s} {rows['none']['arrow'] / mb:9.1f} {cells}"
                  f"  {speed[0]:9.2f}×  {speed[1]:10.2f}×")
    crossover(results)


def crossover(results: list[dict]) -> None:
    """Where compression starts to pay, two ways.

    measured: between two shaped rates where the codec goes from slower to faster than none,
    interpolated in log(rate) on its speed-up. model: with the stream pipelined a read takes about
    max(CPU time, wire bytes ÷ rate), the CPU time being the time on the unshaped link, so a codec
    wins once the uncompressed wire bytes ÷ rate exceed its CPU time: rate* = wire_none ÷ t_codec."""
    free = next((r for r in results if r["rate"] is None), None)
    shaped = sorted((r for r in results if r["rate"] is not None), key=lambda r: -r["rate"])
    print("\ncrossover: compression pays on links slower than")
    print(f"  {'data':12s} {'codec':5s} {'bytes ÷':>7s}  {'measured':30s} model (unshaped CPU time)")
    for label in results[0]["compression"]:
        for codec in ("lz4", "zstd"):
            ref = (free or results[0])["compression"][label]
            gain = ref["none"]["wire"] / ref[codec]["wire"]
            speed = [(r["rate"], r["compression"][label]["none"]["seconds"] / r["compression"][label][codec]["seconds"])
                     for r in shaped]
            measured = "slower at every rate" if speed and all(x < 1 for _, x in speed) else ""
            if speed and speed[0][1] >= 1:
                measured = f"pays already at {link.rate_label(speed[0][0])}"
            for (r1, s1), (r2, s2) in zip(speed, speed[1:]):
                if s1 < 1 <= s2:
                    f = (1 - s1) / (s2 - s1)
                    measured = f"≈ {link.rate_label(int(np.exp(np.log(r1) + f * (np.log(r2) - np.log(r1)))))}"
                    break
            if gain < 1.03:
                measured = "never (no size gain)"
            model = ""
            if free:
                rows = free["compression"][label]
                if gain < 1.03:
                    model = "never: no size gain"
                elif rows[codec]["seconds"] <= rows["none"]["seconds"]:
                    model = "pays even unshaped"
                else:
                    model = f"≈ {link.rate_label(int(rows['none']['wire'] * 8 / rows[codec]['seconds']))}"
            print(f"  {label:12s} {codec:5s} {gain:7.2f}  {measured:30s} {model}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="1gbit,100mbit,unshaped",
                    help="comma-separated tbf rates (e.g. 1gbit,100mbit,10mbit); 'unshaped' = veth without tbf, "
                         "used for the compression crossover estimate")
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--images", type=int, default=768, help="HDF5 frames (32 KiB each)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--root-compression", choices=["zlib", "lz4", "none"], default="zlib",
                    help="the TTree's own compression (the server decompresses it for every read)")
    ap.add_argument("--quick", action="store_true", help="500k entries, 256 frames, 1 run after the warm-up")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--memory-server", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.memory_server:
        memory_server(args.memory_server)
        return
    try:
        rates = [link.parse_rate(r) for r in args.rates.split(",") if r.strip()]
    except ValueError as exc:
        ap.error(str(exc))
    reason = link.missing()
    if reason:
        print(f"skipped: {reason}")
        return
    t0 = time.perf_counter()
    setup, results = run(args, rates)
    report(setup, results)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
