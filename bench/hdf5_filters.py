"""HDF5 filters without the lock: concurrent readers of a Bitshuffle-LZ4 image stack, as ratios.

Writes an Eiger-like stack — N frames of 1024×1024 uint16, one Bitshuffle-LZ4 chunk per frame,
written with h5py + hdf5plugin — serves it with `arrowroot serve` (chunk cache off, so every read
decodes) and measures aggregate decoded MB/s of:

  frames    readers fetching one frame per request (a viewer), 4 concurrent readers ÷ 1 reader
            (one frame is one chunk, decoded in the request's own thread)     goal ≥ 1.7 on 2 cores
  stack     readers fetching the whole stack, 4 concurrent ÷ 1
  local     1 server reader (whole stack) ÷ h5py reading the same stack locally (`ds[:]`, one thread)
  decode    in-process, no Flight: threads reading one frame at a time through the HDF5 source (direct
            chunk reads, GIL-free decoders) vs through h5py, 4 threads ÷ 1 thread — what the
            server's read path can overlap, without its per-request Python work

Prints the load average: the figures are only as good as the cores left free by others.

    python bench/hdf5_filters.py [--frames 200] [--seconds 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from arrowroot.clients import Client

DS = "stack.h5:entry/data/data"
SHAPE = (1024, 1024)


def build(path: Path, frames: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    ring = (np.hypot(yy - SHAPE[0] // 2, xx - SHAPE[1] // 2) % 40 < 3) * 200
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("entry/data/data", shape=(frames, *SHAPE), dtype="<u2", chunks=(1, *SHAPE),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        for i in range(frames):  # photon counts: mostly small, a diffraction ring
            ds[i] = (rng.poisson(2, SHAPE) + ring).astype(np.uint16)


def rate(location: str, readers: int, seconds: float, frames: int, whole: bool) -> float:
    """Aggregate decoded MB/s of ``readers`` threads, each with its own connection, for ``seconds``."""
    done = [0] * readers
    stop = time.monotonic() + seconds
    frame_bytes = SHAPE[0] * SHAPE[1] * 2

    def work(k: int) -> None:
        rng = np.random.default_rng(k)
        with Client(location, threads=1) as c:
            while time.monotonic() < stop:
                if whole:
                    done[k] += c.read(DS).num_rows * frame_bytes
                else:
                    i = int(rng.integers(0, frames))
                    done[k] += c.read(DS, entries=(i, i + 1)).num_rows * frame_bytes

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0) / 1e6


def decode_rate(read, threads: int, seconds: float, frames: int) -> float:
    """Frames/s × frame bytes of ``threads`` threads calling ``read(i)`` on random frames."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def work(k: int) -> None:
        rng = np.random.default_rng(k)
        while time.monotonic() < stop:
            read(int(rng.integers(0, frames)))
            done[k] += 1

    t0 = time.monotonic()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done) * SHAPE[0] * SHAPE[1] * 2 / (time.monotonic() - t0) / 1e6


def paired(measure, rounds: int) -> tuple[float, float, float]:
    """Median 1-reader rate, median 4-reader rate and median of the per-round ratios: 1 and 4
    measured back to back in each round, so that a change in the machine's load between rounds
    (it is shared) moves both alike."""
    ones, fours, ratios = [], [], []
    for _ in range(rounds):
        one, four = measure(1), measure(4)
        ones.append(one)
        fours.append(four)
        ratios.append(four / one)
    return statistics.median(ones), statistics.median(fours), statistics.median(ratios)


def decode_figures(path: Path, frames: int, seconds: float, rounds: int) -> dict[str, tuple[float, float, float]]:
    from arrowroot.flight_server.sources.hdf5 import Hdf5Source

    reader = Hdf5Source().open(str(path), "entry/data/data", "hdf5.dataset")
    f = h5py.File(path)
    ds = f["entry/data/data"]
    try:
        out = {}
        for name, read in (("direct", lambda i: reader.read(["data"], i, i + 1)), ("h5py", lambda i: ds[i])):
            decode_rate(read, 1, 0.5, frames)
            out[name] = paired(lambda n, r=read: decode_rate(r, n, seconds, frames), rounds)
        return out
    finally:
        reader.close()
        f.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="1-reader / 4-reader pairs per figure")
    ap.add_argument("--python", default=sys.executable, help="interpreter running the server (another checkout)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrowroot-h5filters-") as tmp:
        root = Path(tmp)
        build(root / "stack.h5", args.frames)
        mb = args.frames * SHAPE[0] * SHAPE[1] * 2 / 1e6
        local = []
        for _ in range(3):
            with h5py.File(root / "stack.h5") as f:
                t0 = time.perf_counter()
                f["entry/data/data"][:]
                local.append(time.perf_counter() - t0)
        local_rate = mb / min(local)
        decode = decode_figures(root / "stack.h5", args.frames, args.seconds / 2, args.rounds)
        proc = subprocess.Popen([args.python, "-m", "arrowroot.flight_server.cli", "serve", str(root), "--port", "0",
                                 "--cache-mb", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        location = proc.stdout.readline().split()[1]
        try:
            with Client(location) as c:
                for _ in range(300):
                    if DS in c.datasets()["name"].to_pylist():
                        break
                    time.sleep(0.1)
                first = c.read(DS, entries=(0, 2)).column(0).combine_chunks().flatten().flatten().to_numpy()
                with h5py.File(root / "stack.h5") as f:
                    assert np.array_equal(first, f["entry/data/data"][0:2].reshape(-1))
            figures = {}
            for whole in (False, True):
                rate(location, 1, 1.0, args.frames, whole)   # warm-up: readers open, page cache filled
                figures[whole] = paired(lambda n, w=whole: rate(location, n, args.seconds, args.frames, w),
                                        args.rounds)
        finally:
            proc.terminate()
            proc.wait()
    load = os.getloadavg()
    print(f"{args.frames} frames of {SHAPE[0]}×{SHAPE[1]} uint16, Bitshuffle-LZ4, one chunk per frame ({mb:.0f} MB "
          f"decoded); medians of {args.rounds} rounds of 1 then 4 readers, {args.seconds:g} s each; "
          f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    for whole, label in ((False, "frames (1 per request)"), (True, "whole stack per request")):
        one, four, ratio = figures[whole]
        print(f"  {label:24s} 1 reader {one:7.0f} MB/s, 4 readers {four:7.0f} MB/s   4 ÷ 1 = {ratio:4.2f}×")
    for name, (one, four, ratio) in decode.items():
        print(f"  decode, in-process via {name:6s}   1 thread {one:7.0f} MB/s, 4 threads {four:7.0f} MB/s   "
              f"4 ÷ 1 = {ratio:4.2f}×")
    one_whole = figures[True][0]
    print(f"  local h5py ds[:] {local_rate:7.0f} MB/s;  1 server reader (whole stack) ÷ local = "
          f"{one_whole / local_rate:4.2f}×,  4 readers ÷ local = {figures[True][1] / local_rate:4.2f}×")


if __name__ == "__main__":
    main()
