"""Histogram reads: arrowroot's table of bins vs building the same table locally with uproot.

Writes a TH3D (default 160^3 bins + flow = 4.4M rows) and a TH1D, then measures in one
run, after a warm-up:

  local      uproot.open + values/variances(flow=True) + edges, into an Arrow table of the
             same columns (what a user with the file does to get a table of bins)
  arrowroot  the arrowroot Client reading the dataset from `arrowroot serve` in another process

and prints MB/s (of Arrow data) and the ratio arrowroot / local.

    python bench/histograms.py [--bins 160] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import uproot

from arrowroot.clients import Client
from timing import best  # noqa: E402  (bench/timing.py)


def build(root: Path, bins: int) -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(0, 1, bins + 1)
    counts = rng.poisson(5.0, (bins, bins, bins)).astype(np.float64)
    with uproot.recreate(root / "hists.root") as f:
        f["cube"] = (counts, edges, edges, edges)
        f["line"] = np.histogram(rng.normal(size=100_000), bins=1000)


def local_table(path: Path, name: str) -> pa.Table:
    """The same table of bins, built directly from uproot's arrays."""
    with uproot.open(path) as f:
        h = f[name]
        shape = tuple(len(a.edges(flow=True)) - 1 for a in h.axes)
        index = np.unravel_index(np.arange(int(np.prod(shape))), shape, order="F")
        cols = {}
        for axis_name, axis, ix, n in zip("xyz", h.axes, index, shape):
            e = axis.edges(flow=True)
            cols[f"{axis_name}_bin"] = ix.astype(np.int32)
            cols[f"{axis_name}_low"] = e[ix]
            cols[f"{axis_name}_high"] = e[ix + 1]
            cols[f"{axis_name}_flow"] = (ix == 0) | (ix == n - 1)
        cols["content"] = np.ravel(h.values(flow=True), order="F")
        cols["variance"] = np.ravel(h.variances(flow=True), order="F")
        return pa.table(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.bins)
        port = 18000 + (int(time.time()) % 1000)
        proc = subprocess.Popen([sys.executable, "-m", "arrowroot.flight_server.cli", "serve", str(root),
                                 "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = Client(f"grpc://127.0.0.1:{port}")
            for _ in range(300):
                try:
                    if len(client.datasets()) >= 2:
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            for name in ("cube", "line"):
                t_local, local = best(lambda n=name: local_table(root / "hists.root", n), args.repeat)
                t_server, served = best(lambda n=name: client.read(f"hists.root:{n}"), args.repeat)
                assert served.num_rows == local.num_rows
                for col in local.column_names:
                    assert served[col].equals(local[col]), col
                mb = local.nbytes / 1e6
                print(f"{name}: {local.num_rows:,} bins, {mb:.0f} MB  local {mb / t_local:,.0f} MB/s  "
                      f"arrowroot {mb / t_server:,.0f} MB/s  ratio {t_local / t_server:.2f}x")
            client.close()
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
