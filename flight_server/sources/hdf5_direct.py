"""Direct chunk I/O for HDF5 datasets: the bytes from the file into Arrow buffers, decoded in threads.

h5py reads under one global lock, into numpy memory that is fresh (page-faulted) on every read,
and decodes on one core. For numeric datasets stored contiguous or chunked (along any axes) with
a filter pipeline ``hdf5_codecs.Pipeline`` can decode, the reader bypasses it:

* unfiltered rows go from the page cache straight into an Arrow-owned buffer (``os.preadv``,
  GIL released; the Arrow pool reuses its pages); pieces lying end to end in the file are merged;
* filtered chunks are read with ``os.pread`` and decoded in a thread pool (``core/readpool.py``,
  small reads first) by GIL-free decoders — into the output buffer itself when a chunk holds whole
  rows that the read wants whole, else into a scratch buffer copied into place;
* chunks that cut the other axes (``(100, 64, 64)`` chunks of ``(N, 512, 512)`` images) are
  decoded one by one and their boxes copied into the rows they cover.

The chunk index is the file's own: ``DatasetID.get_chunk_info_by_coord`` (remembered per chunk).
Anything else, or any doubt — a chunk never written (h5py supplies the fill value), a filter
skipped for one chunk, a short read, bytes that do not decode — goes to h5py.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import h5py
import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core import readpool

from .base import SourceError
from .hdf5_codecs import CorruptChunk, DecodeError, Pipeline

PARALLEL_BYTES = 4 << 20   # plain reads at least this large are spread over the threads too
MAX_CACHED_CHUNKS = 65_536  # chunk locations remembered per dataset
# Small reads go first (core/readpool.py): a small read does not wait behind large ones.
_POOL = readpool.shared("hdf5-inflate")


class Fallback(Exception):
    """A direct read cannot proceed: h5py reads this column instead."""


def _pipeline_of(ds: h5py.Dataset) -> Pipeline | None:
    plist = ds.id.get_create_plist()
    steps = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        steps.append((int(code), tuple(int(v) for v in values)))
    return Pipeline.of(steps, ds.dtype.itemsize)


def _arrow_numeric(dtype: np.dtype) -> bool:
    try:
        t = pa.from_numpy_dtype(dtype.newbyteorder("="))
    except (pa.ArrowNotImplementedError, TypeError):
        return False
    return pa.types.is_integer(t) or pa.types.is_floating(t)


class Layout:
    """Where a numeric dataset's values lie in the file and how they are encoded."""

    def __init__(self, ds: h5py.Dataset, offset: int, chunks: tuple[int, ...] | None, pipeline: Pipeline | None):
        self.dsid = ds.id
        self.shape = tuple(int(n) for n in ds.shape)
        self.rank = len(self.shape)
        self.dtype = ds.dtype
        self.itemsize = ds.dtype.itemsize
        self.row_bytes = int(self.itemsize * np.prod(self.shape[1:], dtype=np.int64))
        self.offset = offset                 # contiguous: byte offset of row 0
        self.chunks = chunks                 # chunked: the chunk shape (None: contiguous)
        self.pipeline = pipeline if pipeline is not None and not pipeline.empty else None
        self.whole_rows = chunks is not None and tuple(chunks[1:]) == self.shape[1:]
        self.chunk_bytes = int(self.itemsize * np.prod(chunks, dtype=np.int64)) if chunks else 0
        self.swap = not ds.dtype.isnative and ds.dtype.itemsize > 1
        self._where: dict[tuple[int, ...], tuple[int, int]] = {}   # chunk origin → (file offset, size)

    @classmethod
    def of(cls, ds: h5py.Dataset) -> Layout | None:
        """The layout of a dataset read directly, or None (h5py reads it)."""
        try:
            if ds.is_virtual or ds.external or ds.dtype.kind not in "iuf" or ds.dtype.names or ds.ndim == 0:
                return None
            if ds.dtype.subdtype is not None or not _arrow_numeric(ds.dtype):
                return None  # enums (strings) and odd floats are h5py's
            if h5py.check_enum_dtype(ds.dtype) is not None:
                return None
            pipeline = _pipeline_of(ds)
            if pipeline is None:
                return None
            if ds.chunks is None:
                offset = ds.id.get_offset()
                if offset is None or not pipeline.empty:
                    return None
                return cls(ds, int(offset), None, None)
            if 0 in ds.shape:
                return None
            return cls(ds, 0, tuple(int(c) for c in ds.chunks), pipeline)
        except Exception:  # any doubt: h5py reads it
            return None

    def where(self, origin: tuple[int, ...]) -> tuple[int, int]:
        """(file offset, stored bytes) of the chunk at ``origin``; Fallback if never written or
        some filter was skipped for it."""
        found = self._where.get(origin)
        if found is None:
            info = self.dsid.get_chunk_info_by_coord(origin)
            if info.byte_offset is None or info.filter_mask:
                raise Fallback
            if len(self._where) >= MAX_CACHED_CHUNKS:
                self._where.clear()  # bounded memory; a re-read costs ~5 µs per chunk
            found = self._where[origin] = (int(info.byte_offset), int(info.size))
        return found

    def jobs(self, start: int, stop: int) -> list[tuple]:
        """The pieces of work that fill rows [start, stop) of the output, each one of
        ("plain", file offset, bytes, first output row) — read straight into the output —
        ("rows", origin, rows lo, rows hi) — a chunk of whole rows to decode — or
        ("box", origin) — a chunk cutting the other axes, decoded and copied."""
        if self.chunks is None:
            return [("plain", self.offset + start * self.row_bytes, (stop - start) * self.row_bytes, 0)]
        c0 = self.chunks[0]
        firsts = range(start // c0 * c0, stop, c0)
        if not self.whole_rows:
            grids = [range(0, n, c) for n, c in zip(self.shape[1:], self.chunks[1:])]
            return [("box", (k, *rest)) for k in firsts for rest in itertools.product(*grids)]
        out: list[tuple] = []
        for k in firsts:
            origin = (k,) + (0,) * (self.rank - 1)
            lo, hi = max(start, k), min(stop, k + c0)
            if self.pipeline is not None:
                out.append(("rows", origin, lo, hi))
                continue
            file_offset, _ = self.where(origin)
            file_offset += (lo - k) * self.row_bytes
            nbytes = (hi - lo) * self.row_bytes
            last = out[-1] if out else None
            if last is not None and last[1] + last[2] == file_offset:
                out[-1] = ("plain", last[1], last[2] + nbytes, last[3])
            else:
                out.append(("plain", file_offset, nbytes, lo - start))
        return out

    def run(self, fd: int, job: tuple, start: int, stop: int, out: memoryview) -> None:
        """Do one job into ``out`` (rows [start, stop) of the dataset, C order)."""
        kind = job[0]
        if kind == "plain":
            _, file_offset, nbytes, row = job
            if os.preadv(fd, [out[row * self.row_bytes: row * self.row_bytes + nbytes]], file_offset) != nbytes:
                raise Fallback  # a short file: let h5py report it
            return
        origin = job[1]
        file_offset, size = self.where(origin)
        if kind == "rows":
            _, _, lo, hi = job
            k, c0 = origin[0], self.chunks[0]
            dest = out[(lo - start) * self.row_bytes: (hi - start) * self.row_bytes]
            # a chunk the read wants whole (and that lies inside the dataset) decodes in place
            into = dest if (lo, hi) == (k, k + c0) else None
            data = self._decoded(fd, file_offset, size, into)
            if into is None:
                skip = (lo - k) * self.row_bytes
                dest[:] = memoryview(data)[skip: skip + len(dest)]
            return
        data = self._decoded(fd, file_offset, size, None)
        chunk = np.frombuffer(data, self.dtype, count=self.chunk_bytes // self.itemsize).reshape(self.chunks)
        target = np.frombuffer(out, self.dtype).reshape((stop - start,) + self.shape[1:])
        box = tuple(slice(o, min(o + c, n)) for o, c, n in zip(origin, self.chunks, self.shape))
        rows = slice(max(start, box[0].start), min(stop, box[0].stop))
        src = (slice(rows.start - origin[0], rows.stop - origin[0]),) + tuple(
            slice(0, b.stop - b.start) for b in box[1:])
        target[(slice(rows.start - start, rows.stop - start),) + box[1:]] = chunk[src]

    def _decoded(self, fd: int, file_offset: int, size: int, into: memoryview | None):
        raw = os.pread(fd, size, file_offset)
        if len(raw) != size:
            raise Fallback
        if self.pipeline is None:
            if size != self.chunk_bytes:
                raise Fallback
            if into is not None:
                into[:] = raw
                return into
            return raw
        try:
            return self.pipeline.decode(raw, self.chunk_bytes, into)
        except CorruptChunk as exc:  # never handed to HDF5's own decoders, which do not check
            raise SourceError(f"the chunk at file offset {file_offset} is damaged ({exc})") from None
        except DecodeError:
            raise Fallback from None


class Column:
    """One dataset as a reader uses it: its h5py object, shape, type and direct-read layout."""

    def __init__(self, ds: h5py.Dataset, arrow_type: pa.DataType | None):
        self.ds = ds
        self.dtype = ds.dtype
        self.shape = tuple(int(n) for n in ds.shape)
        self.ndim = len(self.shape)
        self.layout = Layout.of(ds) if arrow_type is not None else None
        self.arrow_type = arrow_type


def read_direct(fd: int, cols: Sequence[Column], start: int, stop: int) -> list[pa.Array | None] | None:
    """Columns read straight into Arrow buffers (None where h5py must read); the chunks of all
    columns are decoded in parallel."""
    if not any(c.layout is not None for c in cols) or stop <= start:
        return None
    n = stop - start
    buffers: list[pa.Buffer | None] = []
    views: list[memoryview | None] = []
    jobs: list[tuple[int, Layout, tuple]] = []
    for i, col in enumerate(cols):
        layout = col.layout
        try:
            planned = layout.jobs(start, stop) if layout is not None else None
        except Fallback:
            planned = None
        if layout is None or planned is None:
            buffers.append(None)
            views.append(None)
            continue
        buf = pa.allocate_buffer(n * layout.row_bytes)
        buffers.append(buf)
        views.append(memoryview(buf).cast("B"))
        jobs.extend((i, layout, job) for job in planned)

    def run(item: tuple[int, Layout, tuple]) -> int | None:
        i, layout, job = item
        view = views[i]
        assert view is not None
        try:
            layout.run(fd, job, start, stop, view)
        except Fallback:
            return i
        return None

    decoding = sum(1 for _, _, job in jobs if job[0] != "plain")
    nbytes = sum(len(v) for v in views if v is not None)
    if decoding > 1 or (len(jobs) > 1 and nbytes >= PARALLEL_BYTES):
        results = list(_POOL.map(run, jobs, nbytes=nbytes))
    else:
        results = [run(job) for job in jobs]
    failed = {i for i in results if i is not None}
    arrays: list[pa.Array | None] = []
    for i, (col, buf, view) in enumerate(zip(cols, buffers, views)):
        if view is not None:
            view.release()
        if buf is None or col.layout is None or i in failed:
            arrays.append(None)
            continue
        if col.layout.swap:
            np.frombuffer(buf, col.dtype).byteswap(inplace=True)
        arrays.append(from_buffer(buf, col.arrow_type, n))
    return arrays


def from_buffer(buf: pa.Buffer, arrow_type: pa.DataType, n: int) -> pa.Array:
    """An Arrow array of ``arrow_type`` over ``buf`` (native-order values, rows × shape)."""
    sizes: list[int] = []
    inner = arrow_type
    while pa.types.is_fixed_size_list(inner):
        sizes.append(inner.list_size)
        inner = inner.value_type
    count = n * int(np.prod(sizes, dtype=np.int64))
    flat = pa.Array.from_buffers(inner, count, [None, buf])
    for size in reversed(sizes):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat
