"""Direct HDF5 reads (bytes from the file straight into Arrow buffers; chunks decoded in threads
by GIL-free decoders) give exactly what h5py reads, for every layout and filter they take — files
written by h5py + hdf5plugin — and the ones they leave to h5py."""

from __future__ import annotations

import threading

import h5py
import hdf5plugin
import numpy as np
import pyarrow as pa
import pytest

from arrowroot.flight_server.sources import hdf5_direct
from arrowroot.flight_server.sources.hdf5 import Hdf5Source
from arrowroot.flight_server.sources.hdf5_direct import Layout

N = 10_007  # not a multiple of any chunk size: the last chunk is partial

LAYOUTS = {
    # name: (dtype, per-row shape, create_dataset options, direct?)
    "contiguous_f8": ("<f8", (), {}, True),
    "contiguous_be_i4": (">i4", (), {}, True),
    "contiguous_image": ("<u2", (6, 5), {}, True),
    "chunked_f4": ("<f4", (), {"chunks": (1000,)}, True),
    "chunked_be_f8": (">f8", (), {"chunks": (333,)}, True),
    "chunked_image": ("<i2", (4, 3), {"chunks": (250, 4, 3)}, True),
    "gzip_i8": ("<i8", (), {"chunks": (1000,), "compression": "gzip"}, True),
    "gzip_shuffle_f4": ("<f4", (), {"chunks": (777,), "compression": "gzip", "shuffle": True}, True),
    "gzip_shuffle_be_u2": (">u2", (), {"chunks": (512,), "compression": "gzip", "shuffle": True}, True),
    "gzip_shuffle_image": ("<f8", (3, 2), {"chunks": (100, 3, 2), "compression": "gzip", "shuffle": True}, True),
    "gzip_i1": ("<i1", (), {"chunks": (4096,), "compression": "gzip", "shuffle": True}, True),
    "gzip_f2": ("<f2", (), {"chunks": (600,), "compression": "gzip"}, True),
    # chunked along the other axes too: chunks decoded whole, their boxes copied into place
    "chunks_cut_rows": ("<f4", (8,), {"chunks": (100, 3)}, True),
    "chunks_cut_image_gzip": ("<u2", (6, 5), {"chunks": (64, 4, 2), "compression": "gzip", "shuffle": True}, True),
    # hdf5plugin's filters, decoded without HDF5 (and without the GIL)
    "bitshuffle_lz4_u2": ("<u2", (), {"chunks": (1000,), **hdf5plugin.Bitshuffle(cname="lz4")}, True),
    "bitshuffle_lz4_image": ("<u4", (6, 5), {"chunks": (50, 6, 5), **hdf5plugin.Bitshuffle(cname="lz4")}, True),
    "bitshuffle_lz4_blocks": ("<i8", (), {"chunks": (3001,), **hdf5plugin.Bitshuffle(nelems=256, cname="lz4")}, True),
    "bitshuffle_zstd_f4": ("<f4", (), {"chunks": (1000,), **hdf5plugin.Bitshuffle(cname="zstd")}, True),
    "bitshuffle_none_be_i4": (">i4", (), {"chunks": (999,), **hdf5plugin.Bitshuffle(cname="none")}, True),
    "bitshuffle_cut_image": ("<u2", (6, 5), {"chunks": (40, 3, 5), **hdf5plugin.Bitshuffle(cname="lz4")}, True),
    "blosc_lz4_shuffle_f8": ("<f8", (), {"chunks": (1000,), **hdf5plugin.Blosc(cname="lz4", shuffle=1)}, True),
    "blosc_zstd_bitshuffle_i2": ("<i2", (), {"chunks": (700,),
                                             **hdf5plugin.Blosc(cname="zstd", shuffle=2, clevel=5)}, True),
    "blosc_blosclz_image": ("<f4", (3, 2), {"chunks": (128, 3, 2), **hdf5plugin.Blosc(cname="blosclz")}, True),
    "zstd_u8": ("<u8", (), {"chunks": (1000,), **hdf5plugin.Zstd(clevel=3)}, True),
    "zstd_shuffle_f4": ("<f4", (), {"chunks": (555,), "shuffle": True, **hdf5plugin.Zstd()}, True),
    "lz4_i4": ("<i4", (), {"chunks": (1000,), **hdf5plugin.LZ4()}, True),
    "lz4_small_blocks_f8": ("<f8", (), {"chunks": (2000,), **hdf5plugin.LZ4(nbytes=1024)}, True),
    "lz4_cut_image": ("<i1", (6, 5), {"chunks": (100, 2, 5), **hdf5plugin.LZ4()}, True),
    # left to h5py
    "fletcher32": ("<i4", (), {"chunks": (1000,), "fletcher32": True}, False),
    "lzf": ("<i4", (), {"chunks": (1000,), "compression": "lzf"}, False),
    "scaleoffset": ("<i4", (), {"chunks": (1000,), "scaleoffset": 0}, False),
}
RANGES = [(0, N), (0, 1), (999, 1001), (1234, 5678), (N - 3, N), (500, 500 + 777 * 3)]


@pytest.fixture(scope="module")
def direct_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("direct") / "layouts.h5"
    rng = np.random.default_rng(11)
    with h5py.File(path, "w") as f:
        g = f.create_group("t")
        for name, (dtype, shape, opts, _) in LAYOUTS.items():
            dt = np.dtype(dtype)
            if dt.kind == "f":
                values = rng.normal(scale=100, size=(N,) + shape).astype(dt)
            else:
                info = np.iinfo(dt)
                values = rng.integers(info.min, info.max, size=(N,) + shape, dtype=dt.newbyteorder("=")).astype(dt)
            g.create_dataset(name, data=values, **opts)
        # Chunks of two datasets interleaved in the file (appended in turns): pieces are not adjacent.
        a = g.create_dataset("interleaved_a", shape=(0,), maxshape=(None,), dtype="<i8", chunks=(400,))
        b = g.create_dataset("interleaved_b", shape=(0,), maxshape=(None,), dtype="<f8", chunks=(400,))
        for start in range(0, N, 400):
            stop = min(N, start + 400)
            for ds, values in ((a, np.arange(start, stop)), (b, np.arange(start, stop) * 0.25)):
                ds.resize((stop,))
                ds[start:stop] = values
        # Chunks never written (h5py supplies the fill value) and one compressed chunk left raw.
        sparse = g.create_dataset("sparse", shape=(N,), dtype="<f4", chunks=(1000,), fillvalue=-1.5)
        sparse[2000:3000] = 7.0
        # a random-looking stretch LZ4 cannot shrink (its blocks are stored as they are)
        raw = g.create_dataset("lz4_incompressible", shape=(N,), dtype="<u8", chunks=(3000,), **hdf5plugin.LZ4(nbytes=4096))
        raw[:] = rng.integers(0, 2**63, N, dtype=np.uint64)
        partly = g.create_dataset("partly_filtered", shape=(N,), dtype="<i4", chunks=(N,), compression="gzip")
        partly.id.write_direct_chunk((0,), np.arange(N, dtype="<i4").tobytes(), filter_mask=1)
    return path


def _compare(table: pa.Table, f: h5py.File, start: int, stop: int) -> None:
    for name in table.column_names:
        expected = f["t"][name][start:stop]
        got = table.column(name).combine_chunks()
        while pa.types.is_fixed_size_list(got.type):
            got = got.flatten()
        values = got.to_numpy(zero_copy_only=False).reshape(expected.shape)
        assert values.dtype == expected.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(values, expected, err_msg=f"{name}[{start}:{stop}]")


def test_direct_reads_equal_h5py(direct_file):
    names = [*LAYOUTS, "interleaved_a", "interleaved_b", "sparse", "partly_filtered", "lz4_incompressible"]
    reader = Hdf5Source().open(str(direct_file), "t", "hdf5.table")
    try:
        with h5py.File(direct_file) as f:
            for start, stop in RANGES:
                _compare(reader.read(names, start, stop), f, start, stop)
            # the types are those the scan reported
            info = next(d for d in Hdf5Source().scan(str(direct_file)) if d.object_path == "t")
            got = reader.read(names, 0, 10).schema
            assert {f.name: f.type for f in got} == {c.name: c.arrow_type for c in info.columns}
    finally:
        reader.close()


def test_which_layouts_are_read_directly(direct_file):
    with h5py.File(direct_file) as f:
        for name, (_, _, _, direct) in LAYOUTS.items():
            assert (Layout.of(f["t"][name]) is not None) == direct, name


def test_direct_reads_land_in_arrow_memory(direct_file):
    """The values are read into buffers of Arrow's memory pool (reused between reads), not numpy
    arrays wrapped afterwards."""
    reader = Hdf5Source().open(str(direct_file), "t", "hdf5.table")
    try:
        reader.read(["chunked_f4"], 0, 10)
        before = pa.total_allocated_bytes()
        table = reader.read(["contiguous_f8", "chunked_f4", "gzip_i8"], 0, N)
        assert pa.total_allocated_bytes() - before >= N * (8 + 4 + 8)
        del table
    finally:
        reader.close()


def test_deflate_chunks_inflate_in_threads(direct_file):
    reader = Hdf5Source().open(str(direct_file), "t", "hdf5.table")
    try:
        reader.read(["gzip_i8", "gzip_shuffle_f4"], 0, N)
    finally:
        reader.close()
    assert any(t.name.startswith("hdf5-inflate") for t in threading.enumerate())


def test_single_dataset_and_slices(direct_file):
    """A dataset read on its own, and a sliced read (h5py's path), agree with h5py."""
    reader = Hdf5Source().open(str(direct_file), "t/gzip_shuffle_image", "hdf5.dataset")
    try:
        with h5py.File(direct_file) as f:
            ds = f["t/gzip_shuffle_image"]
            got = reader.read(["gzip_shuffle_image"], 17, 4321)
            flat = got.column(0).combine_chunks().flatten().flatten().to_numpy()
            np.testing.assert_array_equal(flat.reshape(-1, 3, 2), ds[17:4321])
            sliced = reader.read(["gzip_shuffle_image"], 5, 50, [slice(1, 3)])
            flat = sliced.column(0).combine_chunks().flatten().flatten().to_numpy()
            np.testing.assert_array_equal(flat.reshape(-1, 2, 2), ds[5:50, 1:3])
    finally:
        reader.close()


def test_large_plain_reads_spread_over_threads(tmp_path):
    """Reads of several MiB go through the thread pool: still h5py's values, in order."""
    rows = hdf5_direct.PARALLEL_BYTES // 8 + 12_345
    rng = np.random.default_rng(5)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("t/a", data=rng.normal(size=rows), chunks=(65_536,))
        f.create_dataset("t/b", data=np.arange(rows, dtype=">i4"))
        f.create_dataset("t/c", data=rng.integers(0, 9, (rows, 2), dtype=np.int16), chunks=(10_000, 2))
    reader = Hdf5Source().open(str(tmp_path / "big.h5"), "t", "hdf5.table")
    try:
        with h5py.File(tmp_path / "big.h5") as f:
            for start, stop in [(0, rows), (70_001, rows - 3)]:
                table = reader.read(["a", "b", "c"], start, stop)
                np.testing.assert_array_equal(table.column("a").to_numpy(), f["t/a"][start:stop])
                np.testing.assert_array_equal(table.column("b").to_numpy(), f["t/b"][start:stop])
                flat = table.column("c").combine_chunks().flatten().to_numpy()
                np.testing.assert_array_equal(flat.reshape(-1, 2), f["t/c"][start:stop])
    finally:
        reader.close()


def test_a_forked_child_inflates_with_its_own_threads(direct_file):
    """After a fork the parent's pool threads do not exist in the child; its reads still finish."""
    import multiprocessing as mp

    reader = Hdf5Source().open(str(direct_file), "t", "hdf5.table")
    reader.read(["gzip_i8", "gzip_shuffle_f4"], 0, N)   # the pool exists in the parent now
    reader.close()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(str(direct_file), queue))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the child's read hung on the parent's pool"
    assert queue.get(timeout=5) == N


def _read_in_child(path: str, queue) -> None:
    reader = Hdf5Source().open(path, "t", "hdf5.table")
    table = reader.read(["gzip_i8", "gzip_shuffle_f4"], 0, N)
    queue.put(table.num_rows)


def test_a_damaged_chunk_is_a_clear_error_not_a_crash(tmp_path):
    """Block sizes in a Bitshuffle-LZ4 chunk that run past its end: bitshuffle's decoder (HDF5's
    too) would trust them and read beyond the buffer; the direct reader checks the framing first."""
    from arrowroot.flight_server.sources.base import SourceError

    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("frames", data=np.arange(4096, dtype="<u2").reshape(4, 1024), chunks=(1, 1024),
                              **hdf5plugin.Bitshuffle(cname="lz4"))
        good = ds.id.read_direct_chunk((0, 0))[1]
        bad = bytearray(good)
        bad[12:16] = (1 << 30).to_bytes(4, "big")           # the first block claims 1 GiB
        ds.id.write_direct_chunk((2, 0), bytes(bad))
    reader = Hdf5Source().open(str(path), "frames", "hdf5.dataset")
    try:
        got = reader.read(["frames"], 0, 2).column(0).combine_chunks().flatten().to_numpy()
        np.testing.assert_array_equal(got, np.arange(2048, dtype=np.uint16))
        with pytest.raises(SourceError, match="damaged"):
            reader.read(["frames"], 0, 4)
    finally:
        reader.close()


def test_decoders_run_outside_the_gil():
    """The decoders are C functions called through ctypes.CDLL, which releases the GIL for each
    call (a PyDLL would not); they come from hdf5plugin's own libraries."""
    import ctypes

    from arrowroot.flight_server.sources import hdf5_codecs as codecs

    functions = [codecs._bshuf(codecs._BSHUF_LZ4), codecs._bshuf(codecs._BSHUF_ZSTD), *codecs._blosc(),
                 *codecs._zstd(), codecs._lz4()]
    assert all(fn is not None for fn in functions)
    for lib in ("bshuf", "blosc", "zstd", "lz4"):
        found = codecs._library(lib)
        assert type(found) is ctypes.CDLL and hdf5plugin.PLUGIN_PATH in found._name
