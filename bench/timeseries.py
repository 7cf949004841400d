"""Time-series and compressed-waveform benchmark (a script, not a test). Prints, from one run:

1. compressed LH5 waveforms (radware-sigcompress, written by legend-lh5io) decoded by
   arrowroot and received through Flight ÷ legend-lh5io's own decompressed read of the
   same file (goal ≥ 1.0), plus the server-side decode with its thread pool ÷ one thread
   (what running the numba decoders without the GIL buys);
2. (when the server reads by time) a 1-hour slice of a 16 kHz channel spread over
   several files, by time through arrowroot ÷ a local h5py read of the same samples
   (goal ≥ 0.8).

    python bench/timeseries.py [--waveforms 40000] [--samples 1000] [--hours 1]
"""

from __future__ import annotations

import argparse
import statistics
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
    server = ArrowrootServer(Settings(root=root, port=0, **kw))
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
            print(f"  source decode: {lh5_encoded.MAX_THREADS} threads {mb / pool:7.0f} MB/s   1 thread "
                  f"{mb / one:7.0f} MB/s   ratio {one / pool:.2f}")
        finally:
            client.close()
            server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--waveforms", type=int, default=40_000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bench_decode(args.waveforms, args.samples, args.repeats)


if __name__ == "__main__":
    main()
