"""Record batches → the bytes of a download, in pieces, with bounded memory.

Arrow IPC (stream and file/Feather), Parquet and CSV are written batch by batch into a small
in-memory sink that is emptied after every batch, so the response streams as the data is
read. HDF5 needs to seek (its metadata is written last), so it is written to a temporary
file on disk and streamed from there; ``max_bytes`` bounds that file as well as every stream.
"""

from __future__ import annotations

import io
import json
import os
import queue
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from arrowroot.flight_server.core.errors import InvalidRequest

PIECE = 1 << 20


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    suffix: str


FORMATS = {
    "arrow": Format("arrow", "application/vnd.apache.arrow.stream", ".arrows"),
    "feather": Format("feather", "application/vnd.apache.arrow.file", ".feather"),
    "parquet": Format("parquet", "application/vnd.apache.parquet", ".parquet"),
    "csv": Format("csv", "text/csv; charset=utf-8", ".csv"),
    "hdf5": Format("hdf5", "application/x-hdf5", ".h5"),
}


def get_format(name: str) -> Format:
    fmt = FORMATS.get((name or "").lower())
    if fmt is None:
        raise InvalidRequest(f"format: {name!r} is not one of {', '.join(FORMATS)}")
    return fmt


class TooLarge(InvalidRequest):
    """The download passed the server's size limit (``--http-max-mb``)."""


class _Sink(io.RawIOBase):
    """A write-only file that hands out what was written since the last ``take``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        b = bytes(data)
        self._parts.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _limit(total: int, max_bytes: int) -> None:
    if max_bytes and total > max_bytes:
        raise TooLarge(f"the download passed the server's limit of {max_bytes / (1 << 20):.0f} MiB "
                       "(--http-max-mb); select fewer columns or entries")


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def _leaf(t: pa.DataType) -> pa.DataType:
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return t


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """Nested columns (jagged lists, N-D cells, structs) become JSON text in CSV."""
    return pa.schema([pa.field(f.name, pa.string()) if _is_nested(f.type) else f for f in schema])


def csv_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    cols = []
    for col, f in zip(batch.columns, batch.schema):
        if _is_nested(f.type):
            cols.append(pa.array([None if v is None else json.dumps(v) for v in col.to_pylist()], pa.string()))
        else:
            cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def encode(fmt: Format, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int = 0) -> Iterator[bytes]:
    """The bytes of ``batches`` in ``fmt``, piece by piece."""
    if fmt.name == "hdf5":
        yield from _hdf5(schema, batches, max_bytes)
        return
    sink = _Sink()
    out_schema = csv_schema(schema) if fmt.name == "csv" else schema
    if fmt.name == "arrow":
        writer = pa.ipc.new_stream(sink, schema)
    elif fmt.name == "feather":
        writer = pa.ipc.new_file(sink, schema)
    elif fmt.name == "parquet":
        # dictionary encoding of floats costs ~4x the write time and rarely pays: only for the rest
        keep = [f.name for f in schema if not pa.types.is_floating(_leaf(f.type))]
        writer = pq.ParquetWriter(sink, schema, compression="snappy", use_dictionary=keep)
    else:
        writer = pcsv.CSVWriter(sink, out_schema)
    try:
        for batch in batches:
            if fmt.name == "csv":
                batch = csv_batch(batch, out_schema)
            writer.write_batch(batch)
            _limit(sink.tell(), max_bytes)
            piece = sink.take()
            if piece:
                yield piece
    finally:
        writer.close()
    tail = sink.take()
    if tail:
        yield tail


# ---------------------------------------------------------------- HDF5


def _numpy_dtype(t: pa.DataType) -> np.dtype | None:
    if pa.types.is_boolean(t):
        return np.dtype(bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype())
    return None


def _shape_of(t: pa.DataType) -> tuple[tuple[int, ...], pa.DataType]:
    shape = []
    while pa.types.is_fixed_size_list(t):
        shape.append(t.list_size)
        t = t.value_type
    return tuple(shape), t


class _Hdf5Column:
    """One output column: a resizable dataset, or an LH5-style flattened_data +
    cumulative_length pair for jagged lists; anything else as JSON text."""

    def __init__(self, f: h5py.File, field: pa.Field):
        self.name = field.name
        shape, inner = _shape_of(field.type)
        self.shape = shape
        self.jagged = (pa.types.is_list(field.type) or pa.types.is_large_list(field.type)) and \
            _numpy_dtype(field.type.value_type) is not None
        self.text = False
        if self.jagged:
            g = f.create_group(field.name)
            g.attrs["datatype"] = "array<1>{array<1>{real}}"
            dt = _numpy_dtype(field.type.value_type)
            self.values = g.create_dataset("flattened_data", (0,), dtype=dt, maxshape=(None,), chunks=(16384,))
            self.lengths = g.create_dataset("cumulative_length", (0,), dtype=np.uint64, maxshape=(None,),
                                            chunks=(16384,))
            self.total = 0
            target = g
        else:
            dt = _numpy_dtype(inner)
            if dt is None:
                dt, self.text = h5py.string_dtype(), True
                shape = ()
                self.shape = ()
            rows = max(1, min(8192, (1 << 20) // max(1, int(np.prod(shape or (1,))) * dt.itemsize)))
            self.ds = f.create_dataset(field.name, (0, *shape), dtype=dt, maxshape=(None, *shape),
                                       chunks=(rows, *shape))
            target = self.ds
        meta = field.metadata or {}
        if b"arrowroot.attributes" in meta:
            for k, v in json.loads(meta[b"arrowroot.attributes"]).items():
                try:
                    target.attrs[k] = v
                except (TypeError, ValueError):
                    target.attrs[k] = json.dumps(v)

    def append(self, col: pa.Array) -> None:
        n = len(col)
        if self.jagged:
            offsets = col.offsets.to_numpy()
            values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
            a = self.values.shape[0]
            self.values.resize((a + len(values),))
            self.values[a:] = values
            ends = (offsets[1:] - offsets[0]).astype(np.uint64) + np.uint64(self.total)
            self.total += int(offsets[-1] - offsets[0])
            b = self.lengths.shape[0]
            self.lengths.resize((b + n,))
            self.lengths[b:] = ends
            return
        if self.text:
            data = [v if isinstance(v, str) else json.dumps(v) if v is not None else "" for v in col.to_pylist()]
            arr = np.array(data, dtype=object)
        elif self.shape:
            flat = col
            for _ in self.shape:
                flat = pc.list_flatten(flat)
            arr = flat.to_numpy(zero_copy_only=False).reshape((n, *self.shape))
        else:
            arr = col.to_numpy(zero_copy_only=False)
        a = self.ds.shape[0]
        self.ds.resize((a + n, *self.shape))
        self.ds[a:] = arr


def _hdf5(schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int) -> Iterator[bytes]:
    with tempfile.TemporaryFile(prefix="arrowroot-", suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["arrowroot.schema"] = schema.to_string(show_schema_metadata=False)
            cols = [_Hdf5Column(f, field) for field in schema]
            for batch in batches:
                for c, col in zip(cols, batch.columns):
                    c.append(col)
                f.flush()
                _limit(os.fstat(tmp.fileno()).st_size, max_bytes)
        tmp.seek(0)
        while True:
            piece = tmp.read(PIECE)
            if not piece:
                break
            yield piece


_END = object()


def ahead(pieces: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """Produce ``pieces`` in a thread, at most ``depth`` ahead of the consumer, so encoding the
    next piece overlaps sending this one. Closing this generator closes ``pieces``."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for piece in pieces:
                if not put(piece):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=run, name="http-encode", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass
