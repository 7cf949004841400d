"""Shared fixtures: real files written by uproot/h5py in temp dirs, real servers on port 0."""

from __future__ import annotations

import os

# The servers under test run in this process and keep HDF5/LH5 files open without file locking (as a
# server should: it never blocks a writer); HDF5 refuses to open a file twice in one process with
# different locking flags, so the tests' own h5py/pygama opens use the same setting. Set before h5py loads.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients import Client
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.server.flight import ArrowrootServer


@dataclass
class RunningServer:
    server: ArrowrootServer
    location: str
    data_dir: Path

    def client(self, **kwargs) -> Client:
        return Client(self.location, **kwargs)

    def flight(self) -> fl.FlightClient:
        return fl.connect(self.location)

    def stop(self) -> None:
        self.server.shutdown()


def indexed_data_with_a_big_tree(root: Path, entries: int) -> Path:
    """The sample files plus ``big/stall.root:t`` (4M entries, 61 MiB uncompressed: more than any
    socket buffer holds, so a client that stops reading really stalls its stream), indexed by the
    CLI so server processes start with --no-index."""
    import subprocess
    import sys

    import numpy as np
    import uproot

    root = write_sample_files(root, entries=entries)
    (root / "big").mkdir()
    with uproot.recreate(root / "big" / "stall.root", compression=None) as f:
        f.mktree("t", {"i": "int64", "x": "float64"})
        for start in range(0, 4_000_000, 500_000):
            i = np.arange(start, start + 500_000, dtype=np.int64)
            f["t"].extend({"i": i, "x": i * 0.5})
    subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "index", str(root)], check=True,
                   capture_output=True)
    return root


def start_server(root: Path, index: bool = True, **settings: object) -> RunningServer:
    """Index ``root`` (synchronously) and serve it on a free loopback port in a thread."""
    server = ArrowrootServer(Settings(root=Path(root), port=0, **settings))
    if index:
        server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    return RunningServer(server, f"grpc://127.0.0.1:{server.port}", Path(root))


def read_request(server: RunningServer, request: dict) -> pa.Table:
    """A JSON ReadRequest through get_flight_info and every endpoint, checked against the FlightInfo."""
    c = server.flight()
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))
    parts = [c.do_get(ep.ticket).read_all() for ep in info.endpoints]
    table = pa.concat_tables(parts) if parts else info.schema.empty_table()
    assert table.num_rows == info.total_records
    assert table.schema.equals(info.schema)
    # a DoGet stream carries names, types and column metadata; the dataset's attributes come with
    # the FlightInfo (tickets do not repeat them): a client puts the two together, as Client.read does
    return pa.Table.from_batches(table.to_batches(), schema=info.schema)


@pytest.fixture
def serve() -> Iterator:
    """Factory fixture: ``serve(dir, **settings)`` → RunningServer, stopped after the test."""
    running: list[RunningServer] = []

    def _serve(root: Path, **settings: object) -> RunningServer:
        r = start_server(root, **settings)
        running.append(r)
        return r

    yield _serve
    for r in running:
        r.stop()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_files(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def sample_server(sample_dir: Path) -> Iterator[RunningServer]:
    r = start_server(sample_dir)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def skhep_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every ROOT file of scikit-hep-testdata, indexed once (about a minute): the corpus sweep and
    the ROOT-file tests each start from a copy (``copy_catalog``), and their rescan finds them unchanged."""
    from arrowroot.catalog.store import Catalog
    from arrowroot.flight_server.index.indexer import Indexer

    skhep = pytest.importorskip("skhep_testdata")
    root = Path(skhep.data_path("uproot-HZZ.root")).parent
    path = tmp_path_factory.mktemp("skhep-catalog") / "catalog.duckdb"
    cat = Catalog(path)
    try:
        Indexer(root, cat).run()
    finally:
        cat.close()
    return path


def copy_catalog(catalog: Path, into: Path) -> Path:
    """A private copy of an indexed catalog file (a test may change its own)."""
    import shutil

    into.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(catalog, into / catalog.name))
