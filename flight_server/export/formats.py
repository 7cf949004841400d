"""Record batches → the bytes of a download or an exported file, with bounded memory.

Arrow IPC (stream and file/Feather), Parquet and CSV are written batch by batch into a small
in-memory sink that is emptied after every batch, so the response streams as the data is
read. HDF5, ROOT and TIFF need to seek (their metadata is written last), so a download is
written to a temporary file on disk and streamed from there; ``max_bytes`` bounds that file
as well as every stream. ``write`` puts any format straight into a file (``arrowroot get``).

* **hdf5** (``.h5``): one dataset per column (N-D cells as extra axes), jagged lists as an
  LH5-style group (``flattened_data`` + ``cumulative_length``), anything else as JSON text.
* **root** (``.root``): a TTree written with uproot, one branch per column: numbers, bools,
  strings, fixed-size arrays, and jagged lists as ROOT jagged arrays (uproot adds the
  counter branch ``n<name>``). ``rntuple``: the same as an RNTuple (records too). ROOT has
  no nulls: a column with nulls is refused, naming it. ``/`` in a column name becomes ``_``.
* **tiff** (``.tiff``): one image column, 2-D data (rows × width: one image) or 3-D (a stack
  of height × width pages); ImageJ-compatible for uint8, uint16 and float32.
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from arrowroot.flight_server.core.errors import InvalidRequest

if TYPE_CHECKING:   # h5py is imported by the HDF5 writer only: a client-only install writes the rest
    import h5py

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
    "root": Format("root", "application/x-root", ".root"),
    "rntuple": Format("rntuple", "application/x-root", ".root"),
    "tiff": Format("tiff", "image/tiff", ".tiff"),
}
FILE_FORMATS = ("hdf5", "root", "rntuple", "tiff")   # written to a (temporary) file, then streamed
SUFFIXES = {".arrows": "arrow", ".arrow": "feather", ".feather": "feather", ".parquet": "parquet", ".pq": "parquet",
            ".csv": "csv", ".h5": "hdf5", ".hdf5": "hdf5", ".root": "root", ".tif": "tiff", ".tiff": "tiff"}


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
    """Cells CSV cannot hold as they are: lists, N-D cells, structs (and dictionary-encoded values)."""
    return pa.types.is_nested(t) or pa.types.is_dictionary(t)


def _leaf(t: pa.DataType) -> pa.DataType:
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return t


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """Nested columns (jagged lists, N-D cells, structs) become JSON text in CSV."""
    return pa.schema([pa.field(f.name, pa.string()) if _is_nested(f.type) else f for f in schema])


def csv_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The one CSV cell converter (CLI ``get``, ``sql -o``, HTTP downloads): nested cells become JSON
    text (``[1.5, 2.0]``, ``{"fX": 1.0}``; NaN as ``NaN``, timestamps and decimals as their text; null stays
    an empty cell), so a script reads them back with ``json.loads``."""
    cols = []
    for col, f in zip(batch.columns, batch.schema):
        if pa.types.is_dictionary(f.type):
            cols.append(col.cast(f.type.value_type).cast(pa.string()))
        elif _is_nested(f.type):
            cols.append(pa.array([None if v is None else json.dumps(v, default=str, allow_nan=True)
                                  for v in col.to_pylist()], pa.string()))
        else:
            cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def format_for(path: str, name: str | None = None) -> Format:
    """The format named, or the one a file name's suffix says; InvalidRequest if neither."""
    if name:
        return get_format(name)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise InvalidRequest(f"cannot tell the format from {suffix or 'a name without a suffix'!r}; "
                             f"use one of {', '.join(sorted(SUFFIXES))} or name the format")
    return FORMATS[SUFFIXES[suffix]]


def write(fmt: Format, schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: str, max_bytes: int = 0,
          object_name: str = "") -> int:
    """Write ``batches`` to the file ``path`` in ``fmt``; returns the rows written."""
    counted = _Counted(batches)
    if fmt.name in FILE_FORMATS:
        _write_file(fmt.name, schema, counted, path, max_bytes, object_name)
    else:
        with open(path, "wb") as out:
            for piece in encode(fmt, schema, counted, max_bytes):
                out.write(piece)
    return counted.rows


class _Counted:
    def __init__(self, batches: Iterable[pa.RecordBatch]):
        self.batches, self.rows = batches, 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for b in self.batches:
            self.rows += b.num_rows
            yield b


def _write_file(name: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: str, max_bytes: int,
                object_name: str) -> None:
    if name == "hdf5":
        with open(path, "w+b") as f:
            _write_hdf5(f, schema, batches, max_bytes)
    elif name in ("root", "rntuple"):
        _write_root(path, schema, batches, max_bytes, object_name, rntuple=name == "rntuple")
    else:
        _write_tiff(path, schema, batches, max_bytes)


def encode(fmt: Format, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int = 0,
           object_name: str = "", compression: str = "") -> Iterator[bytes]:
    """The bytes of ``batches`` in ``fmt``, piece by piece; ``compression`` (``lz4``, ``zstd``)
    compresses Arrow and Feather record-batch bodies."""
    if fmt.name in FILE_FORMATS:
        yield from _via_file(fmt.name, schema, batches, max_bytes, object_name)
        return
    sink = _Sink()
    out_schema = csv_schema(schema) if fmt.name == "csv" else schema
    ipc = pa.ipc.IpcWriteOptions(compression=compression or None)
    if fmt.name == "arrow":
        writer = pa.ipc.new_stream(sink, schema, options=ipc)
    elif fmt.name == "feather":
        writer = pa.ipc.new_file(sink, schema, options=ipc)
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
                import h5py

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


def _write_hdf5(tmp: Any, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.attrs["arrowroot.schema"] = schema.to_string(show_schema_metadata=False)
        cols = [_Hdf5Column(f, field) for field in schema]
        for batch in batches:
            for c, col in zip(cols, batch.columns):
                c.append(col)
            f.flush()
            _limit(os.fstat(tmp.fileno()).st_size, max_bytes)


def _via_file(name: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int,
              object_name: str) -> Iterator[bytes]:
    """Write to a temporary file (removed at the end, also on failure), then stream it."""
    with tempfile.TemporaryDirectory(prefix="arrowroot-") as tmp:
        path = os.path.join(tmp, "export" + FORMATS[name].suffix)
        _write_file(name, schema, batches, path, max_bytes, object_name)
        with open(path, "rb") as f:
            while True:
                piece = f.read(PIECE)
                if not piece:
                    break
                yield piece


# ---------------------------------------------------------------- ROOT


def _root_name(text: str, fallback: str) -> str:
    """A ROOT object or branch name: no '/', not empty."""
    out = text.rsplit(":", 1)[-1].strip("/").replace("/", "_") or fallback
    return out


def _branch_type(field: pa.Field) -> Any:
    """uproot's ``mktree`` type of a column, or InvalidRequest naming it."""
    t = field.type
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(bool) if pa.types.is_boolean(t) else np.dtype(t.to_pandas_dtype())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    shape, inner = _shape_of(t)
    if shape and _numpy_dtype(inner) is not None:
        return np.dtype((_numpy_dtype(inner), shape))
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _numpy_dtype(t.value_type) is not None:
        return "var * " + str(np.dtype(_numpy_dtype(t.value_type)))
    raise InvalidRequest(f"format root: column {field.name!r} ({t}) has no TTree branch type; select other "
                         "columns, or use format rntuple, parquet or arrow")


def _root_columns(schema: pa.Schema, batch: pa.RecordBatch) -> dict[str, Any]:
    import awkward as ak

    out = {}
    for field, col in zip(schema, batch.columns):
        if col.null_count:
            raise InvalidRequest(f"format root: column {field.name!r} has {col.null_count} null values and ROOT has "
                                 "none; read without allow_missing, or use parquet or arrow")
        out[_root_name(field.name, "column")] = _root_array(col, ak)
    return out


def _root_array(col: pa.Array, ak: Any) -> Any:
    """A column as uproot writes it: numpy for numbers and fixed-size arrays, awkward for
    jagged lists (no option type: Arrow's nullable fields would make one) and strings."""
    t = col.type
    if pa.types.is_primitive(t):
        return col.to_numpy(zero_copy_only=False)
    shape, inner = _shape_of(t)
    if shape and _numpy_dtype(inner) is not None:
        flat = col
        for _ in shape:
            flat = pc.list_flatten(flat)
        return flat.to_numpy(zero_copy_only=False).reshape((len(col), *shape))
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _numpy_dtype(t.value_type) is not None:
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        return ak.unflatten(pc.list_flatten(col).to_numpy(zero_copy_only=False), lengths)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ak.Array(col.to_pylist())
    return ak.from_arrow(col)


def _write_root(path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int,
                object_name: str, rntuple: bool) -> None:
    import uproot

    name = _root_name(object_name, "data")
    names = [_root_name(f.name, "column") for f in schema]
    if len(set(names)) != len(names):
        raise InvalidRequest("format root: two columns have the same branch name once '/' becomes '_'")
    with uproot.recreate(path) as f:
        tree = None
        if not rntuple:
            tree = f.mktree(name, {n: _branch_type(field) for n, field in zip(names, schema)})
        for batch in batches:
            if not batch.num_rows:
                continue
            data = _root_columns(schema, batch)
            try:
                if tree is None:
                    f[name] = data
                    tree = f[name]
                else:
                    tree.extend(data)
            except (TypeError, ValueError, NotImplementedError) as exc:
                raise InvalidRequest(f"format {'rntuple' if rntuple else 'root'}: uproot cannot write these "
                                     f"columns ({exc}); select other columns or use parquet or arrow") from None
            _limit(os.path.getsize(path), max_bytes)
        if tree is None and rntuple:
            raise InvalidRequest("format rntuple: no rows to write (an RNTuple needs at least one)")


# ---------------------------------------------------------------- TIFF


def _write_tiff(path: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], max_bytes: int) -> None:
    """One image column: rows × width (2-D data) or a stack of height × width pages (3-D).
    Rows are spooled to a raw file beside the output, then written from a memory map."""
    import tifffile

    shape, inner = _shape_of(schema[0].type) if len(schema) == 1 else ((), None)
    dtype = _numpy_dtype(inner) if inner is not None else None
    if len(schema) != 1 or len(shape) not in (1, 2) or dtype is None:
        raise InvalidRequest("format tiff: select one image column of 2-D or 3-D numbers (one row per entry of "
                             f"a width, or height × width, array); got {', '.join(f'{f.name}: {f.type}' for f in schema)}")
    raw = path + ".raw"
    rows = 0
    try:
        with open(raw, "wb") as spool:
            for batch in batches:
                col = batch.column(0)
                if col.null_count:
                    raise InvalidRequest("format tiff: the image column has null rows")
                flat = col
                for _ in shape:
                    flat = pc.list_flatten(flat)
                spool.write(flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False).tobytes())
                rows += batch.num_rows
                _limit(spool.tell(), max_bytes)
        if not rows:
            raise InvalidRequest("format tiff: no rows to write")
        data = np.memmap(raw, dtype=dtype, mode="r", shape=(rows, *shape))
        imagej = dtype in (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
        tifffile.imwrite(path, data, imagej=imagej, photometric="minisblack",
                         metadata={"axes": "YX" if len(shape) == 1 else "ZYX"} if imagej else {})
        del data
    finally:
        if os.path.exists(raw):
            os.unlink(raw)


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
