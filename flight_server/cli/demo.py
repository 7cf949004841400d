"""Sample files and the ``arrowroot demo`` run: write, serve, read back, stop."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import uproot


def write_sample_files(root: str | Path, entries: int = 20_000, seed: int = 1) -> Path:
    """A small ROOT file with jagged branches and an HDF5 file with an image stack and a
    detector table, the shapes users bring. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "hep").mkdir(parents=True, exist_ok=True)
    (root / "lab").mkdir(parents=True, exist_ok=True)

    with uproot.recreate(root / "hep" / "events.root") as f:
        tree = f.mktree(
            "events",
            {"run": "int32", "event": "int64", "nMuon": "int32", "Muon_pt": "var * float32",
             "Muon_eta": "var * float32", "MET_pt": "float32"},
            title="sample collider events",
        )
        per_cluster = max(1, entries // 4)
        for start in range(0, entries, per_cluster):
            n = min(per_cluster, entries - start)
            counts = rng.poisson(1.5, n).astype(np.int32)
            total = int(counts.sum())
            tree.extend({
                "run": np.full(n, 1 + start // (2 * per_cluster), dtype=np.int32),
                "event": np.arange(start, start + n, dtype=np.int64),
                "nMuon": counts,
                "Muon_pt": ak.unflatten(rng.exponential(20.0, total).astype(np.float32), counts),
                "Muon_eta": ak.unflatten(rng.normal(0.0, 1.5, total).astype(np.float32), counts),
                "MET_pt": rng.exponential(30.0, n).astype(np.float32),
            })

    with h5py.File(root / "lab" / "scan.h5", "w") as f:
        f.attrs["instrument"] = "demo beamline"
        images = f.create_dataset(
            "entry/data/image", data=rng.integers(0, 4096, (200, 32, 32), dtype=np.uint16),
            chunks=(10, 32, 32), compression="gzip",
        )
        images.attrs["units"] = "counts"
        det = f.create_group("detector")
        det.attrs["sample_rate_hz"] = 1000.0
        det.create_dataset("time", data=np.arange(entries) / 1000.0, chunks=(min(4096, entries),))
        det.create_dataset("energy", data=rng.gamma(2.0, 100.0, entries).astype(np.float32), chunks=(min(4096, entries),))
        det.create_dataset("channel", data=rng.integers(0, 16, entries, dtype=np.int32), chunks=(min(4096, entries),))
    return root


def run_demo(out=print) -> None:
    """Write the sample files to a temporary folder, serve them, read slices back, stop."""
    from arrowroot.clients import Client

    from arrowroot.flight_server.core.settings import Settings
    from arrowroot.flight_server.server.flight import ArrowrootServer

    with tempfile.TemporaryDirectory(prefix="arrowroot-demo-") as tmp:
        root = write_sample_files(tmp)
        settings = Settings(root=Path(root), port=0)
        server = ArrowrootServer(settings)
        server.indexer.run()
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        location = f"grpc://127.0.0.1:{server.port}"
        out(f"serving {location} ({len(server.catalog.datasets())} datasets) from {root}")
        try:
            with Client(location) as client:
                listing = client.datasets()
                for name, n in zip(listing["name"].to_pylist(), listing["entries"].to_pylist()):
                    out(f"  {name:40s} {n:>8d} entries")
                muons = client.read("hep/events.root:events", ["nMuon", "Muon_*"], entries=(100, 2100))
                out(f"\nhep/events.root:events, columns nMuon + Muon_*, entries 100-2100: {muons.num_rows} rows")
                for row in muons.slice(0, 5).to_pylist():
                    cells = ", ".join(f"{k}={[round(x, 2) for x in v] if isinstance(v, list) else v}"
                                      for k, v in row.items())
                    out(f"  {cells}")
                image = client.read("lab/scan.h5:entry/data/image", entries=(10, 12),
                                    slices=[slice(0, 4), slice(0, 32, 8)], library="np")["image"]
                out(f"\nlab/scan.h5:entry/data/image[10:12, 0:4, ::8] → numpy {image.shape} {image.dtype}")
                out(str(image[0]))
        finally:
            server.shutdown()
