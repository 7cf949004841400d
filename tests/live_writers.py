"""Writers that run in their own process for the live-data tests and bench (tests/test_live.py,
bench/live.py): the field's own libraries writing as an acquisition would.

    python tests/live_writers.py root-files DIR N ROWS PAUSE [FIRST]  a new uproot file per cycle (FIRST..N-1)
    python tests/live_writers.py root-file FILE FIRST ROWS         one uproot file, entries FIRST..
    python tests/live_writers.py root-grow FILE N ROWS PAUSE      one uproot TTree extended per cycle
    python tests/live_writers.py swmr FILE N ROWS PAUSE           h5py in SWMR mode, a flush per cycle
    python tests/live_writers.py gwpy DIR N RATE T0               a gwpy TimeSeries file per second of data
    python tests/live_writers.py h5-open FILE                     h5py (libver latest) holding a file open

Each prints ``closed <i> <unix time>`` (or ``flushed``) when a cycle's data is on disk, so the reader
can time it. Values are predictable: entry k holds k (gwpy: sample k after a multiple of 1000 s).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def root_files(d: str, n: int, rows: int, pause: float, first: int = 0) -> None:
    import uproot

    os.makedirs(d, exist_ok=True)
    for i in range(first, n):
        with uproot.recreate(os.path.join(d, f"run{i:05d}.root")) as f:
            f.mktree("events", {"i": "i8", "x": "f8"})
            k = np.arange(i * rows, (i + 1) * rows, dtype="i8")
            f["events"].extend({"i": k, "x": k * 0.5})
        print("closed", i, repr(time.time()), flush=True)
        time.sleep(pause)


def root_file(path: str, first: int, rows: int) -> None:
    import uproot

    with uproot.recreate(path) as f:
        f.mktree("events", {"i": "i8", "x": "f8"})
        k = np.arange(first, first + rows, dtype="i8")
        f["events"].extend({"i": k, "x": k * 0.5})
    print("closed", 0, repr(time.time()), flush=True)


def root_grow(path: str, n: int, rows: int, pause: float) -> None:
    import uproot

    with uproot.recreate(path) as f:
        f.mktree("events", {"i": "i8", "x": "f8"})
        for i in range(n):
            k = np.arange(i * rows, (i + 1) * rows, dtype="i8")
            f["events"].extend({"i": k, "x": k * 0.5})
            print("flushed", i, repr(time.time()), flush=True)
            time.sleep(pause)


def swmr(path: str, n: int, rows: int, pause: float) -> None:
    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        g = f.create_group("scan")
        cols = {name: g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(256,))
                for name, dt in (("i", "i8"), ("x", "f8"))}
        f.swmr_mode = True
        for c in range(n):   # SWMR's way: each column extended, written and flushed in turn
            m = cols["i"].shape[0]
            for name, ds in cols.items():
                ds.resize((m + rows,))
                ds[m:] = np.arange(m, m + rows) * (1 if name == "i" else 0.5)
                ds.flush()
            print("flushed", c, repr(time.time()), flush=True)
            time.sleep(pause)


def gwpy_files(d: str, n: int, rate: float, t0: float) -> None:
    from gwpy.timeseries import TimeSeries

    os.makedirs(d, exist_ok=True)
    per = int(rate)
    for i in range(n):
        start = t0 + i
        first = int(round((start % 1000) * rate))   # sample k after a whole thousand seconds holds k
        data = np.arange(first, first + per, dtype="f8")
        ts = TimeSeries(data, t0=start, sample_rate=rate, unit="m", name="X1:LIVE", channel="X1:LIVE")
        final = os.path.join(d, f"X-X1_LIVE-{int(start)}-1.hdf5")
        tmp = os.path.join(d, f".X-X1_LIVE-{int(start)}-1.hdf5.part")
        ts.write(tmp, format="hdf5", path="strain")
        os.replace(tmp, final)   # the usual way to publish a finished file
        print("closed", i, repr(time.time()), flush=True)
        time.sleep(1.0)


def h5_open(path: str) -> None:
    import h5py

    f = h5py.File(path, "w", libver="latest")
    f.create_dataset("x", data=np.arange(1000))
    f.flush()
    print("open", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "root-files":
        root_files(args[0], int(args[1]), int(args[2]), float(args[3]), int(args[4]) if len(args) > 4 else 0)
    elif kind == "root-file":
        root_file(args[0], int(args[1]), int(args[2]))
    elif kind == "root-grow":
        root_grow(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif kind == "swmr":
        swmr(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif kind == "gwpy":
        gwpy_files(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif kind == "h5-open":
        h5_open(args[0])
    else:
        raise SystemExit(f"unknown writer {kind!r}")
