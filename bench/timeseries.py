"""Time-series and compressed-waveform benchmark (a script, not a test). Prints, from one run:

1. compressed LH5 waveforms (radware-sigcompress, written by legend-lh5io) decoded by
   arrowroot and received through Flight ÷ legend-lh5io's own decompressed read of the
   same file (goal ≥ 1.0), plus the server-side decode with its thread pool ÷ one thread
   (what running the numba decoders without the GIL buys);
2. a 1-hour slice of a 16 kHz channel spread over several GWOSC-layout files, read by
   time through arrowroot (``Client.read(name, time=(a, b))``) ÷ a local h5py read of the
   same samples (goal ≥ 0.8).

    python bench/timeseries.py [--waveforms 40000] [--samples 1000] [--files 5] [--seconds 900]
                               [--hours 1] [--compression gzip] [--only decode|time]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from arrowroot.clients import Client
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer


def best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up: numba compiles, page cache filled
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def serve(root: Path, **kw) -> tuple[ArrowrootServer, Client]:
    # cache_mb=0: every repeat decodes again, like the local reference (no column-chunk cache hits)
    server = ArrowrootServer(Settings(root=root, port=0, cache_mb=0, **kw))
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    return server, Client(f"grpc://127.0.0.1:{server.port}", threads=4)


def write_compressed(path: Path, n: int, samples: int) -> None:
    import lh5
    from lgdo import types as lt
    from lh5.compression import RadwareSigcompress

    rng = np.random.default_rng(5)
    block = 10_000
    for start in range(0, n, block):
        m = min(block, n - start)
        wf = (rng.normal(0, 12, (m, samples)).cumsum(axis=1) + 14000).astype(np.uint16)
        values = lt.ArrayOfEqualSizedArrays(nda=wf)
        values.attrs["compression"] = RadwareSigcompress(codec_shift=-32768)
        table = lt.Table(col_dict={"waveform": lt.WaveformTable(
            t0=lt.Array(np.zeros(m)), dt=lt.Array(np.full(m, 16.0)), dt_units="ns", values=values)})
        lh5.write(table, "raw", str(path), group="ch1027201", wo_mode="append" if start else "overwrite_file")


def bench_decode(waveforms: int, samples: int, repeats: int) -> None:
    import lh5

    from arrowroot.flight_server.sources import lh5_encoded

    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-ts-") as tmp:
        root = Path(tmp)
        path = root / "raw.lh5"
        write_compressed(path, waveforms, samples)
        size = path.stat().st_size
        print(f"compressed waveforms: {waveforms} x {samples} samples, {size / 1e6:.0f} MB on disk "
              f"({waveforms * samples * 2 / size:.1f}x smaller than uint16)")
        server, client = serve(root)
        try:
            (name,) = [n for n in client.datasets()["name"].to_pylist() if n.endswith("raw")]

            def ours() -> int:
                t = client.read(name, ["waveform"])
                return t.num_rows

            def theirs() -> int:
                obj = lh5.read("ch1027201/raw", str(path), field_mask=["waveform"])
                return len(obj)

            assert ours() == theirs() == waveforms
            t_ours, t_theirs = best(ours, repeats), best(theirs, repeats)
            mb = waveforms * samples * 4 / 1e6
            print(f"  arrowroot (Flight, decoded int32) {mb / t_ours:7.0f} MB/s   lh5io read {mb / t_theirs:7.0f} MB/s"
                  f"   ratio {t_theirs / t_ours:.2f}  (goal >= 1.0)")

            with h5py.File(path, "r", locking=False) as f:
                group = f["ch1027201/raw/waveform/values"]
                spec = lh5_encoded.inspect(group, "array_of_encoded_equalsized_arrays<1,1>{real}")
                one = best(lambda: lh5_encoded.read(group, spec, 0, waveforms, threads=1), repeats)
                pool = best(lambda: lh5_encoded.read(group, spec, 0, waveforms), repeats)
            print(f"  source decode: {lh5_encoded._thread_pool().workers} threads {mb / pool:7.0f} MB/s   1 thread "
                  f"{mb / one:7.0f} MB/s   ratio {one / pool:.2f}")
        finally:
            client.close()
            server.shutdown()


def write_strain_files(root: Path, files: int, seconds: int, rate: int, compression: str | None) -> list[Path]:
    """GWOSC-layout strain files (strain/Strain with Xstart/Xspacing), back to back in time."""
    rng = np.random.default_rng(3)
    (root / "H1").mkdir()
    paths = []
    for i in range(files):
        t0 = 1_126_000_000 + i * seconds
        path = root / "H1" / f"H-H1_GWOSC_16KHZ_R1-{t0}-{seconds}.hdf5"
        with h5py.File(path, "w") as f:
            f["meta/Detector"] = "H1"
            f["meta/GPSstart"] = t0
            s = f.create_dataset("strain/Strain", data=rng.normal(0, 1e-21, seconds * rate),
                                 chunks=(1 << 20,), compression=compression)
            s.attrs.update({"Xstart": t0, "Xspacing": 1.0 / rate, "Npoints": seconds * rate, "Xunits": "second"})
        paths.append(path)
    return paths


def bench_by_time(files: int, seconds: int, rate: int, hours: float, compression: str | None, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="arrowroot-bench-ts-") as tmp:
        root = Path(tmp)
        paths = write_strain_files(root, files, seconds, rate, compression)
        t_first = 1_126_000_000
        a = t_first + 0.3 * seconds + 0.5 / rate          # starts between two samples
        b = a + hours * 3600
        print(f"by time: {files} files x {seconds} s at {rate} Hz ({compression or 'uncompressed'}), "
              f"slice of {hours:g} h = {int((b - a) * rate):,} samples")
        server, client = serve(root)
        try:
            (name,) = [n for n in client.datasets()["name"].to_pylist() if n.startswith("H1/*")
                       and n.endswith("strain/Strain")]

            def ours() -> int:
                return client.read(name, time=(a, b)).num_rows

            def local() -> int:
                out = []
                for i, p in enumerate(paths):
                    t0 = t_first + i * seconds
                    lo = min(max(int(np.ceil((a - t0) * rate - 1e-6)), 0), seconds * rate)
                    hi = min(max(int(np.ceil((b - t0) * rate - 1e-6)), 0), seconds * rate)
                    if hi > lo:
                        with h5py.File(p, "r") as f:
                            out.append(f["strain/Strain"][lo:hi])
                return len(np.concatenate(out))

            assert ours() == local()
            t_ours, t_local = best(ours, repeats), best(local, repeats)
            mb = (b - a) * rate * 8 / 1e6
            print(f"  arrowroot by time {mb / t_ours:7.0f} MB/s   local h5py {mb / t_local:7.0f} MB/s   "
                  f"ratio {t_local / t_ours:.2f}  (goal >= 0.8)")
        finally:
            client.close()
            server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--waveforms", type=int, default=40_000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=900, help="seconds per file")
    ap.add_argument("--rate", type=int, default=16384)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--compression", default=None, help="HDF5 filter of the strain files, e.g. gzip")
    ap.add_argument("--only", choices=("decode", "time"), default=None)
    args = ap.parse_args()
    if args.only != "time":
        bench_decode(args.waveforms, args.samples, args.repeats)
    if args.only != "decode":
        bench_by_time(args.files, args.seconds, args.rate, args.hours, args.compression, args.repeats)


if __name__ == "__main__":
    main()
