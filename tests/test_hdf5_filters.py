"""HDF5 filter plugins: what synchrotron detectors write is served; what cannot be decoded is
listed unreadable at index time with the filter named (never a mid-stream plugin-folder error)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from arrowroot.clients import Client
from arrowroot.clients.errors import InvalidRequest
from arrowroot.flight_server.sources.hdf5 import Hdf5Source

N = 3_000
FRAMES = 12

PLUGIN_FILTERS = {
    "bitshuffle_lz4": lambda: hdf5plugin.Bitshuffle(cname="lz4"),
    "bitshuffle_zstd": lambda: hdf5plugin.Bitshuffle(cname="zstd"),
    "blosc_lz4": lambda: hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc_zstd": lambda: hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "blosc2": lambda: hdf5plugin.Blosc2(cname="zstd"),
    "zstd": lambda: hdf5plugin.Zstd(),
    "lz4": lambda: hdf5plugin.LZ4(),
    "bzip2": lambda: hdf5plugin.BZip2(),
}


def _values(rng: np.random.Generator, name: str) -> np.ndarray:
    if "lz4" in name:
        return rng.integers(0, 4096, N, dtype=np.uint16)
    if "zstd" in name:
        return rng.normal(size=N).astype(np.float32)
    return np.cumsum(rng.integers(0, 5, N)).astype(np.int64)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("h5plugins")
    rng = np.random.default_rng(7)
    with h5py.File(d / "detector.h5", "w") as f:
        # An Eiger/Dectris-style image stack: one bitshuffle/LZ4 chunk per frame.
        frames = rng.poisson(3, (FRAMES, 64, 48)).astype(np.uint32)
        frames[:, 10, 10] = 2**31  # a hot pixel, so values span many bits
        f.create_dataset("entry/data/data", data=frames, chunks=(1, 64, 48), **hdf5plugin.Bitshuffle(cname="lz4"))
        g = f.create_group("scan")
        for name, make in PLUGIN_FILTERS.items():
            g.create_dataset(name, data=_values(rng, name), chunks=(500,), **make())
    return d


def _columns(infos, object_path):
    return {c.name: c for d in infos if d.object_path == object_path for c in d.columns}


def test_plugin_filters_read_through_the_source(plugin_dir):
    path = str(plugin_dir / "detector.h5")
    source = Hdf5Source()
    infos = source.scan(path)
    cols = _columns(infos, "scan")
    assert set(cols) == set(PLUGIN_FILTERS)
    assert all(c.readable for c in cols.values()), {n: c.reason for n, c in cols.items()}
    reader = source.open(path, "scan", "hdf5.table")
    try:
        got = reader.read(list(PLUGIN_FILTERS), 0, N)
        part = reader.read(list(PLUGIN_FILTERS), 777, 2_345)   # across chunk edges
    finally:
        reader.close()
    with h5py.File(path) as f:
        for name in PLUGIN_FILTERS:
            expected = f["scan"][name][...]
            assert got.column(name).type.to_pandas_dtype() == expected.dtype
            np.testing.assert_array_equal(got.column(name).to_numpy(), expected, err_msg=name)
            np.testing.assert_array_equal(part.column(name).to_numpy(), expected[777:2_345], err_msg=name)
    image = next(d for d in infos if d.object_path == "entry/data/data")
    assert image.columns[0].readable
    assert image.attributes["hdf5.filters"] == ["bitshuffle"]


def test_importing_the_source_registers_the_plugins():
    """A server process that never imports hdf5plugin itself still decodes Blosc/Bitshuffle/Zstd/LZ4."""
    code = ("import h5py, sys; import arrowroot.flight_server.sources.hdf5; "
            "sys.exit(0 if all(h5py.h5z.filter_avail(i) for i in (32001, 32004, 32008, 32015, 32026, 307)) else 1)")
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_plugin_filters_through_a_server(plugin_dir, serve):
    s = serve(plugin_dir, endpoint_bytes=20_000, chunk_bytes=8_000)
    with Client(s.location) as client, h5py.File(plugin_dir / "detector.h5") as f:
        table = client.read("detector.h5:scan")
        assert table.num_rows == N
        for name in PLUGIN_FILTERS:
            np.testing.assert_array_equal(table.column(name).to_numpy(), f["scan"][name][...], err_msg=name)
        images = client.read("detector.h5:entry/data/data")
        assert images.num_rows == FRAMES
        flat = images.column(0).combine_chunks().flatten().flatten().to_numpy()
        np.testing.assert_array_equal(flat.reshape(FRAMES, 64, 48), f["entry/data/data"][...])


def _unavailable_filter_file(path: Path) -> None:
    """A dataset whose pipeline names LZO (305), written as raw chunks since no LZO plugin is here."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("packed", shape=(100,), dtype="<i4", chunks=(50,), compression=305,
                              allow_unknown_filter=True)
        for k in range(2):
            ds.id.write_direct_chunk((k * 50,), np.arange(50, dtype="<i4").tobytes())
        t = f.create_group("table")
        t.create_dataset("plain", data=np.arange(100, dtype="<f8"))
        t.create_dataset("packed", shape=(100,), dtype="<i4", chunks=(100,), compression=305,
                         allow_unknown_filter=True)


def test_unavailable_filter_is_unreadable_at_index_time(tmp_path):
    assert not h5py.h5z.filter_avail(305), "this test needs HDF5 without an LZO plugin"
    _unavailable_filter_file(tmp_path / "lzo.h5")
    infos = Hdf5Source().scan(str(tmp_path / "lzo.h5"))
    packed = _columns(infos, "packed")["packed"]
    assert not packed.readable
    assert packed.reason == "HDF5 filter LZO (305) is not available"
    table = _columns(infos, "table")
    assert table["plain"].readable and not table["packed"].readable
    assert table["packed"].reason == "HDF5 filter LZO (305) is not available"


def test_pytables_lzo_files_through_a_server(tmp_path, serve):
    """PyTables' shipped LZO tables: listed with the reason; a read says why instead of failing mid-stream."""
    tables = pytest.importorskip("tables")
    base = Path(os.path.dirname(tables.__file__)) / "tests"
    names = [n for n in ("Tables_lzo1.h5", "Tables_lzo2_shuffle.h5", "blosc_bigendian.h5") if (base / n).exists()]
    if len(names) < 3:
        pytest.skip("this PyTables wheel ships no LZO/Blosc test files")
    for n in names:
        shutil.copy(base / n, tmp_path / n)
    _unavailable_filter_file(tmp_path / "lzo.h5")
    s = serve(tmp_path)
    records = {r.name: r for r in s.server.catalog.datasets()}
    lzo = records["Tables_lzo1.h5:tuple0"]
    assert [c.readable for c in lzo.columns] == [False, False, False]
    assert {c.reason for c in lzo.columns} == {"HDF5 filter LZO (305) is not available"}
    with Client(s.location) as client:
        with pytest.raises(InvalidRequest, match=r"LZO \(305\) is not available") as err:
            client.read("Tables_lzo2_shuffle.h5:group0/tuple1", ["var1"])
        assert "directory" not in str(err.value) and str(tmp_path) not in str(err.value)
        with pytest.raises(InvalidRequest, match="no readable columns"):
            client.read("Tables_lzo1.h5:tuple0")
        t = client.read("lzo.h5:table")
        assert t.column_names == ["plain"]
        np.testing.assert_array_equal(t.column("plain").to_numpy(), np.arange(100.0))
        # Blosc-compressed big-endian arrays written by PyTables decode through hdf5plugin.
        with h5py.File(tmp_path / "blosc_bigendian.h5") as f:
            for key in f:
                got = client.read(f"blosc_bigendian.h5:{key}")
                np.testing.assert_array_equal(got.column(0).to_numpy(), f[key][...], err_msg=key)
