"""HDF5 files through h5py.

Datasets offered per file:

* every HDF5 dataset (``scan.h5:entry/data/image``): one row per first-axis index; a 1-D
  compound dataset is a table whose fields are the columns, anything else is one column
  named after the dataset;
* every group whose child datasets share their first-axis length
  (``run.h5:events``): a table with those children as columns.

Types: numbers and bools → Arrow primitives; N-D → nested ``fixed_size_list`` (the
per-entry shape also stands in the field metadata); compound → ``struct``; complex →
``struct<real, imag>``; strings → ``string``; enums → ``string`` (member names);
variable-length sequences → ``list``. Attributes go to the catalog and to Arrow
metadata; a dataset that follows a time-series convention (gwpy, GWDama, GWOSC, ASDF or a
site's own, see ``timeseries.py``) also gets ``attributes["timeseries"]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import re
from collections.abc import Sequence
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers Blosc(2), Bitshuffle, LZ4, Zstd, BZip2... with HDF5
import numpy as np
import pyarrow as pa

from . import timeseries
from arrowroot.flight_server.core.errors import InvalidRequest

from .base import (
    ColumnInfo,
    ColumnUnreadable,
    DatasetInfo,
    Reader,
    Source,
    SourceError,
    Units,
    fixed_shape_type,
    normalise_slices,
    without_paths,
)
from .hdf5_direct import Column, read_direct

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_BOUNDARIES = 1024
MAX_ATTRIBUTE_ITEMS = 1000
UNIT_BYTES = 8 << 20    # uncompressed bytes of one cached piece (whole chunks, at least one)


# ---------------------------------------------------------------- filters

# Registered HDF5 filter ids (https://github.com/HDFGroup/hdf5_plugins/blob/master/docs/RegisteredFilterPlugins.md)
FILTER_NAMES = {
    1: "deflate (gzip)", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
    305: "LZO", 307: "bzip2", 32000: "LZF", 32001: "Blosc", 32004: "LZ4", 32008: "bitshuffle",
    32013: "zfp", 32015: "Zstd", 32017: "SZ", 32018: "FCIDECOMP", 32024: "SZ3", 32026: "Blosc2",
    32028: "SPERR", 32029: "HTJ2K",
}


def filters(ds: h5py.Dataset) -> list[tuple[int, str]]:
    """The (id, name) of each filter in a dataset's pipeline, in order."""
    plist = ds.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _flags, _values, stored = plist.get_filter(i)
        name = FILTER_NAMES.get(code) or stored.decode("utf-8", "replace") or "unregistered"
        out.append((int(code), name))
    return out


def filter_problem(ds: h5py.Dataset) -> str:
    """Why a dataset's filter pipeline cannot be decoded here ('' when it can).

    Checked at index time: without it a dataset compressed with, say, LZO is listed
    readable and then fails mid-stream with HDF5's plugin-folder message.
    """
    try:
        pipeline = filters(ds)
    except Exception as exc:
        return f"HDF5 filter pipeline cannot be read ({type(exc).__name__})"
    missing = [f"{name} ({code})" for code, name in pipeline if not h5py.h5z.filter_avail(code)]
    if not missing:
        return ""
    what = ", ".join(missing)
    return f"HDF5 filter{'s' if len(missing) > 1 else ''} {what} {'are' if len(missing) > 1 else 'is'} not available"


# ---------------------------------------------------------------- types


def element_type(dtype: np.dtype) -> pa.DataType:
    """Arrow type of one HDF5 element; raises ColumnUnreadable with the reason."""
    if h5py.check_string_dtype(dtype) is not None:
        return pa.string()
    enum = h5py.check_enum_dtype(dtype)
    if enum is not None and dtype.kind != "b":
        # Enum members as their names: plain strings read everywhere; dictionary arrays
        # would need per-stream dictionary handling in every client.
        return pa.string()
    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        return pa.list_(element_type(np.dtype(vlen)))
    if h5py.check_ref_dtype(dtype) is not None:
        raise ColumnUnreadable("HDF5 object/region references have no Arrow equivalent")
    if dtype.names:
        return pa.struct([pa.field(n, _field_type(dtype.fields[n][0])) for n in dtype.names])
    if dtype.kind == "c":
        part = element_type(np.dtype(f"f{dtype.itemsize // 2}"))
        return pa.struct([pa.field("real", part), pa.field("imag", part)])
    if dtype.kind == "V":
        return pa.binary(dtype.itemsize)
    if dtype.kind in "biuf":
        try:
            return pa.from_numpy_dtype(dtype.newbyteorder("="))
        except (pa.ArrowNotImplementedError, TypeError):
            raise ColumnUnreadable(f"HDF5 type {dtype} ({dtype.itemsize * 8}-bit) has no Arrow equivalent") from None
    raise ColumnUnreadable(f"HDF5 type {dtype} has no Arrow mapping")


def is_vlunicode(ds: h5py.Dataset) -> bool:
    """PyTables' ``vlunicode`` pseudo-atom: a VLArray of UCS-4 code points per string."""
    try:
        pseudo = ds.attrs.get("PSEUDOATOM")
    except Exception:
        return False
    if isinstance(pseudo, bytes):
        pseudo = pseudo.decode("ascii", "replace")
    base = h5py.check_vlen_dtype(ds.dtype)
    return pseudo == "vlunicode" and base is not None and np.dtype(base).kind == "u" and np.dtype(base).itemsize == 4


def vlunicode_to_arrow(values: np.ndarray, dtype: np.dtype) -> pa.Array:
    """Code-point rows as strings, as PyTables decodes them (the file's byte order kept)."""
    base = np.dtype(h5py.check_vlen_dtype(dtype))
    out = [_vlen_items(v, base).astype("<u4").tobytes().decode("utf-32-le", "replace") for v in values.tolist()]
    return pa.array(out, type=pa.string())


def _vlen_items(row: np.ndarray, base: np.dtype) -> np.ndarray:
    """One row of a variable-length dataset in its real type: h5py hands the elements of a
    non-native (big-endian) base type over unconverted, labelled native."""
    row = np.asarray(row)
    if not base.isnative and row.dtype.isnative and row.dtype.itemsize == base.itemsize and row.dtype.kind == base.kind:
        return row.view(base)
    return row


def _field_type(dtype: np.dtype) -> pa.DataType:
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return fixed_shape_type(element_type(base), shape)
    return element_type(dtype)


def column_type(dtype: np.dtype, shape_after_first: Sequence[int]) -> pa.DataType:
    return fixed_shape_type(_field_type(dtype), shape_after_first)


def _elements_to_arrow(values: np.ndarray, arrow_type: pa.DataType, dtype: np.dtype) -> pa.Array:
    """Convert a 1-D numpy array of HDF5 elements to Arrow (``arrow_type`` from element_type)."""
    if pa.types.is_fixed_size_list(arrow_type):
        base, shape = dtype.subdtype
        return _nd_to_arrow(np.ascontiguousarray(values).reshape((len(values),) + tuple(shape)), base, arrow_type)
    if pa.types.is_string(arrow_type) and h5py.check_enum_dtype(dtype) is not None:
        mapping = h5py.check_enum_dtype(dtype)
        names = sorted(mapping, key=mapping.get)
        codes = np.array([mapping[n] for n in names])
        index = np.searchsorted(codes, values.astype(codes.dtype))
        known = (index < len(codes)) & (codes[np.minimum(index, len(codes) - 1)] == values)
        return pa.array(np.array(names, dtype=object)[np.minimum(index, len(codes) - 1)], type=pa.string(),
                        mask=~known)
    if pa.types.is_string(arrow_type):
        out = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values.tolist()]
        return pa.array(out, type=pa.string())
    if pa.types.is_list(arrow_type):
        base = np.dtype(h5py.check_vlen_dtype(dtype))
        lengths = np.fromiter((len(v) for v in values), dtype=np.int32, count=len(values))
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        content = np.concatenate([_vlen_items(v, base) for v in values]) if len(values) else np.array([], dtype=base)
        child = _elements_to_arrow(content.astype(base, copy=False), arrow_type.value_type, base)
        return pa.ListArray.from_arrays(pa.array(offsets), child)
    if pa.types.is_struct(arrow_type):
        if dtype.kind == "c":
            return pa.StructArray.from_arrays(
                [pa.array(np.ascontiguousarray(values.real)), pa.array(np.ascontiguousarray(values.imag))],
                names=["real", "imag"],
            )
        children = [
            _elements_to_arrow(values[n], arrow_type.field(i).type, dtype.fields[n][0])
            for i, n in enumerate(dtype.names)
        ]
        return pa.StructArray.from_arrays(children, fields=list(arrow_type))
    if pa.types.is_fixed_size_binary(arrow_type):
        data = pa.py_buffer(np.ascontiguousarray(values).tobytes())
        return pa.FixedSizeBinaryArray.from_buffers(arrow_type, len(values), [None, data])
    arr = np.ascontiguousarray(values)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return pa.array(arr, type=arrow_type)


def _nd_to_arrow(values: np.ndarray, dtype: np.dtype, arrow_type: pa.DataType) -> pa.Array:
    """(N, a, b, ...) numpy → nested fixed_size_list, reusing the contiguous buffer."""
    if values.ndim == 1:
        return _elements_to_arrow(values, arrow_type, dtype)
    inner = arrow_type
    sizes = []
    while pa.types.is_fixed_size_list(inner) and len(sizes) < values.ndim - 1:
        sizes.append(inner.list_size)
        inner = inner.value_type
    flat = _elements_to_arrow(np.ascontiguousarray(values).reshape(-1), inner, dtype)
    for size in reversed(sizes):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def to_arrow(values: np.ndarray, dtype: np.dtype, arrow_type: pa.DataType) -> pa.Array:
    """Convert what h5py read (first axis = entries) to the column's Arrow type."""
    return _nd_to_arrow(values, dtype, arrow_type)


# ---------------------------------------------------------------- attributes


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size > MAX_ATTRIBUTE_ITEMS:
            return f"<array {value.dtype} {list(value.shape)}>"
        return [_jsonable(v) for v in value.tolist()] if value.dtype.kind != "O" else [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def attributes(obj: h5py.HLObject) -> dict[str, Any]:
    """An HDF5 object's attributes as JSON-able values (unreadable ones as their error)."""
    out: dict[str, Any] = {}
    for key in obj.attrs:
        try:
            out[key] = _jsonable(obj.attrs[key])
        except Exception as exc:  # exotic attribute types must not stop indexing
            out[key] = f"<unreadable: {type(exc).__name__}>"
    return out


# ---------------------------------------------------------------- scanning


def thin(boundaries: list[int]) -> tuple[int, ...]:
    """Keep at most MAX_BOUNDARIES evenly spaced boundaries (always starting at 0)."""
    if not boundaries:
        return (0,)
    step = max(1, -(-len(boundaries) // MAX_BOUNDARIES))
    return tuple(boundaries[::step])


def _chunk_boundaries(entries: int, chunk_rows: int | None) -> tuple[int, ...]:
    if not chunk_rows or entries <= chunk_rows:
        return (0,)
    return thin(list(range(0, entries, chunk_rows)))


def _column_info(name: str, ds: h5py.Dataset) -> ColumnInfo:
    shape = tuple(int(n) for n in ds.shape[1:])
    try:
        arrow_type, readable, reason = column_type(ds.dtype, shape), True, ""
    except ColumnUnreadable as exc:
        arrow_type, readable, reason = None, False, str(exc)
    if readable and is_vlunicode(ds):
        arrow_type = pa.string()
    problem = filter_problem(ds)
    if problem:
        readable, reason = False, problem
    try:
        compressed = int(ds.id.get_storage_size())
    except Exception:
        compressed = None
    meta = {}
    attrs = attributes(ds)
    if attrs:
        meta["arrowroot.attributes"] = json.dumps(attrs)
    return ColumnInfo(
        name=name,
        arrow_type=arrow_type,
        source_type=str(ds.dtype),
        shape=shape,
        compressed_bytes=compressed,
        uncompressed_bytes=int(ds.size * ds.dtype.itemsize),
        readable=readable,
        reason=reason,
        metadata=meta,
    )


def _dataset_columns(ds: h5py.Dataset) -> tuple[ColumnInfo, ...]:
    name = ds.name.rsplit("/", 1)[-1] or "value"
    if ds.dtype.names and ds.ndim == 1:
        cols = []
        problem = filter_problem(ds)
        for field_name in ds.dtype.names:
            fdt = ds.dtype.fields[field_name][0]
            try:
                arrow_type, readable, reason = _field_type(fdt), True, ""
            except ColumnUnreadable as exc:
                arrow_type, readable, reason = None, False, str(exc)
            if problem:
                readable, reason = False, problem
            cols.append(
                ColumnInfo(field_name, arrow_type, str(fdt),
                           shape=tuple(fdt.shape), uncompressed_bytes=int(ds.shape[0] * fdt.itemsize),
                           readable=readable, reason=reason)
            )
        return tuple(cols)
    return (_column_info(name, ds),)


def _unreadable_dataset(name: str, ds: h5py.Dataset, message: str, exc: Exception) -> DatasetInfo:
    """A dataset h5py cannot even describe: listed, with the reason, never served."""
    reason = f"h5py cannot read this dataset's type ({type(exc).__name__}: {message})"
    column = ColumnInfo(name.rsplit("/", 1)[-1], None, "unknown", readable=False, reason=reason)
    try:
        entries = _entries(ds)
    except Exception:
        entries = 0
    return DatasetInfo(name, "hdf5.dataset", entries, (column,), {"error": reason})


def _entries(ds: h5py.Dataset) -> int:
    return int(ds.shape[0]) if ds.ndim else 1


class _SwmrFiles:
    """The files this process reads while another process writes them in SWMR mode: one h5py handle
    per file and one per object, refreshed before use, shared by every reader and scan.

    HDF5 shares an open file between the handles of one process, and after a second handle of a
    growing dataset is refreshed, reads through the first follow stale chunk locations (measured:
    rows of the wrong chunk). One handle each, refreshed, reads right at every flush."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._files: dict[str, list] = {}   # real path → [h5py.File, users, {object path: handle}]

    def get(self, real: str) -> h5py.File | None:
        with self._lock:
            entry = self._files.get(real)
            if entry is None:
                return None
            entry[1] += 1
            return entry[0]

    def open(self, real: str, **kwargs: Any) -> h5py.File:
        with self._lock:
            f = self.get(real)
            if f is None:
                f = h5py.File(real, "r", swmr=True, **kwargs)
                self._files[real] = [f, 1, {}]
            return f

    def owns(self, f: h5py.File) -> bool:
        with self._lock:
            return any(e[0] is f for e in self._files.values())

    def node(self, f: h5py.File, name: str) -> Any:
        """The one handle of an object of a shared file, refreshed (datasets, and a group's datasets)."""
        with self._lock:
            entry = next(e for e in self._files.values() if e[0] is f)
            key = "/" + name.strip("/")
            obj = entry[2].get(key)
            if obj is None:
                obj = entry[2][key] = f[key]
            if isinstance(obj, h5py.Dataset):
                obj.refresh()
            return obj

    def release(self, f: h5py.File) -> bool:
        """Drop one user of a shared file (closed with the last); False when ``f`` is not shared."""
        with self._lock:
            for real, entry in list(self._files.items()):
                if entry[0] is f:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self._files[real]
                        entry[2].clear()
                        f.close()
                    return True
        return False


_SWMR = _SwmrFiles()


def open_h5(path: str, **kwargs: Any) -> h5py.File:
    """``h5py.File(path, "r")``; a file another process is writing in SWMR mode (HDF5 refuses a
    plain reader: "already open for write") is opened as a SWMR reader, which sees it consistent
    as of the writer's last flush (live data, ``sources/writing.py``), through the process's one
    shared handle of it. Close with :func:`close_h5`."""
    real = os.path.realpath(path)
    shared = _SWMR.get(real)
    if shared is not None:
        return shared
    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise
        try:
            return _SWMR.open(real, **kwargs)
        except OSError:
            raise exc from None


def close_h5(f: h5py.File) -> None:
    if not _SWMR.release(f):
        f.close()


class Hdf5Reader(Reader):
    def __init__(self, path: str, object_path: str, kind: str):
        self._path = path
        try:
            self._file = open_h5(path)
            self._shared = _SWMR.owns(self._file)   # written in SWMR mode right now (_SwmrFiles)
            # ... and then not through the column-chunk cache: a flush may fill rows of a chunk already
            # allocated without moving the file's size (and within its mtime's tick), so the file's
            # identity would not tell a cached piece from the new bytes
            self.cacheable = not self._shared
            self._obj = _SWMR.node(self._file, object_path) if self._shared else self._file[object_path]
        except Exception as exc:
            raise SourceError(f"{os.path.basename(path)}: cannot open {object_path!r}: "
                              f"{without_paths(str(exc), path)}") from exc
        self.kind = kind
        if self._shared and isinstance(self._obj, h5py.Group):
            for key in list(self._obj):
                _SWMR.node(self._file, f"{self._obj.name}/{key}")
        if isinstance(self._obj, h5py.Dataset):
            self.entries = _entries(self._obj)
        else:
            shapes = [int(v.shape[0]) for v in self._obj.values() if isinstance(v, h5py.Dataset) and v.ndim]
            self.entries = min(shapes) if self._shared else shapes[0]  # SWMR: the rows every column has
        self._fd = os.open(path, os.O_RDONLY)
        self._columns: dict[str, Column] = {}
        self._units: dict[str, Units] = {}

    def units(self, column: str) -> Units | None:
        """Blocks of whole chunks along the first axis (about UNIT_BYTES each), or of rows of a
        contiguous dataset: what the column-chunk cache keys on."""
        found = self._units.get(column)
        if found is None:
            obj = self._obj
            ds = obj if isinstance(obj, h5py.Dataset) else obj[column]
            if not isinstance(ds, h5py.Dataset) or ds.ndim == 0:
                return None
            row_bytes = max(1, int(ds.dtype.itemsize * np.prod(ds.shape[1:], dtype=np.int64)))
            chunk = int(ds.chunks[0]) if ds.chunks else 1
            rows = chunk * max(1, UNIT_BYTES // (chunk * row_bytes))
            found = self._units[column] = Units(self.entries, step=rows)
        return found

    def _column(self, name: str) -> Column:
        """What a read of one column needs, looked up once per reader (h5py calls cost µs each)."""
        col = self._columns.get(name)
        if col is None:
            if self._shared:  # one refreshed handle per object (_SwmrFiles)
                ds = _SWMR.node(self._file, self._obj.name if isinstance(self._obj, h5py.Dataset)
                                else f"{self._obj.name}/{name}")
            else:
                ds = self._obj if isinstance(self._obj, h5py.Dataset) else self._obj[name]
            try:
                arrow_type = column_type(ds.dtype, tuple(int(n) for n in ds.shape[1:])) if ds.ndim else None
            except ColumnUnreadable:
                arrow_type = None
            col = self._columns[name] = Column(ds, arrow_type)
        elif self._shared:
            _SWMR.node(self._file, col.ds.name)  # refreshed: as of the writer's last flush
        return col

    def _read_dataset(self, col: Column, start: int, stop: int, slices: Sequence[slice]) -> np.ndarray:
        ds = col.ds
        if col.ndim == 0:
            return np.asarray(ds[()]).reshape(1)[start:stop]
        norm = normalise_slices(slices, col.shape[1:]) if slices else []
        sel = (slice(start, stop),) + tuple(norm)
        if h5py.check_string_dtype(col.dtype) is not None:
            return ds.asstr()[sel] if col.dtype.kind == "O" else ds[sel]
        return ds[sel]

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int, slices: Sequence[slice] = ()) -> pa.Table:
        if not columns:
            raise InvalidRequest("read needs at least one column")
        arrays = []
        obj = self._obj
        try:
            if isinstance(obj, h5py.Dataset) and obj.dtype.names and obj.ndim == 1:
                if slices:
                    raise InvalidRequest("slices apply to N-D datasets; this is a 1-D compound table")
                values = obj.fields(list(columns))[entry_start:entry_stop] if len(columns) > 1 else None
                for name in columns:
                    col = values[name] if values is not None else obj.fields(name)[entry_start:entry_stop]
                    fdt = obj.dtype.fields[name][0]
                    arrays.append(_elements_to_arrow(col, _field_type(fdt), fdt) if fdt.subdtype is None
                                  else _nd_to_arrow(col, fdt.subdtype[0], _field_type(fdt)))
            else:
                cols = [self._column(name) for name in columns]
                # a file written in SWMR mode right now: HDF5's own reads follow its chunk index as the
                # writer flushes it; the direct path's view of the index can be stale
                direct = (read_direct(self._fd, cols, entry_start, entry_stop)
                          if not slices and not self._shared else None)
                for i, col in enumerate(cols):
                    if direct is not None and direct[i] is not None:
                        arrays.append(direct[i])
                        continue
                    values = self._read_dataset(col, entry_start, entry_stop, slices)
                    shape = values.shape[1:max(col.ndim, 1)]  # subarray element dims follow
                    if col.ndim == 1 and is_vlunicode(col.ds):
                        arrays.append(vlunicode_to_arrow(values, col.dtype))
                        continue
                    arrays.append(to_arrow(values, col.dtype, column_type(col.dtype, shape)))
        except (ValueError, KeyError):
            raise
        except Exception as exc:
            raise SourceError(f"{os.path.basename(self._path)}:{self._obj.name}: reading {list(columns)} "
                              f"[{entry_start}:{entry_stop}] failed: {without_paths(str(exc), self._path)}") from exc
        return pa.Table.from_arrays(arrays, names=list(columns))

    def close(self) -> None:
        close_h5(self._file)
        os.close(self._fd)


# PyTables hides nodes whose name starts with _i_ (a table's index: TINDEX groups of sorted
# copies and bounds) or _p_ (PyTables' own bookkeeping); tables.path uses the same pattern.
_PYTABLES_HIDDEN = re.compile(r"(^|/)_[pi]_")
_INDEX_CLASSES = {b"TINDEX", b"INDEX", b"CINDEX"}


def _pytables_hidden(name: str, f: h5py.File, written_by_pytables: bool) -> bool:
    """Whether an object lies under a PyTables hidden node (index arrays and the like)."""
    m = _PYTABLES_HIDDEN.search(name)
    if m is None:
        return False
    if written_by_pytables:
        return True
    top = name[: name.find("/", m.end())] if "/" in name[m.end():] else name
    try:
        return f[top].attrs.get("CLASS") in _INDEX_CLASSES
    except Exception:
        return False


def _zero_column(info: DatasetInfo) -> bool:
    """No column, or no value in any column (every per-entry shape has a 0 axis)."""
    return not info.columns or all(0 in c.shape for c in info.columns)


class Hdf5Source(Source):
    """Plain HDF5 files.

    ``show_internal=False`` (the default) leaves out what users did not write as data:
    objects under PyTables' hidden nodes (``_i_*`` index groups, ``_p_*``) and objects with
    no column or no value per entry. ``True`` lists them too (to inspect a file's internals).
    """

    format = "hdf5"
    supports_slices = True

    def __init__(self, show_internal: bool = False):
        self.show_internal = show_internal

    @staticmethod
    def recognises(head: bytes) -> bool:
        # The signature may follow a user block of 512, 1024, 2048... bytes; 0 and 512 fit in head.
        return head[:8] == HDF5_SIGNATURE or head[512:520] == HDF5_SIGNATURE

    def scan(self, path: str) -> list[DatasetInfo]:
        try:
            f = open_h5(path)
        except Exception as exc:
            raise SourceError(f"{os.path.basename(path)}: not a readable HDF5 file "
                              f"({type(exc).__name__}: {without_paths(str(exc), path)})") from exc
        found: list[DatasetInfo] = []
        if _SWMR.owns(f):  # refresh the shared handles first: the walk below then sees the last flush
            names: list[str] = []
            f.visit(names.append)
            for name in names:
                if isinstance(f.get(name, getlink=True), h5py.HardLink):
                    try:
                        _SWMR.node(f, name)
                    except Exception:
                        pass
        with contextlib.ExitStack() as stack:
            stack.callback(close_h5, f)
            groups: list[tuple[str, h5py.Group]] = [("/", f)]
            pytables = "PYTABLES_FORMAT_VERSION" in f.attrs

            def visit(name: str, obj: Any) -> None:
                if not self.show_internal and _pytables_hidden(name, f, pytables):
                    return
                if isinstance(obj, h5py.Group):
                    groups.append((name, obj))
                elif isinstance(obj, h5py.Dataset):
                    try:
                        found.append(self._scan_dataset(name, obj))
                    except Exception as exc:  # e.g. a float type numpy cannot hold
                        found.append(_unreadable_dataset(name, obj, without_paths(str(exc), path), exc))

            try:
                f.visititems(visit)
            except Exception as exc:
                raise SourceError(f"{os.path.basename(path)}: cannot walk the file "
                                  f"({type(exc).__name__}: {without_paths(str(exc), path)})") from exc
            for name, group in groups:
                table = self._scan_group(name, group, pytables, live=_SWMR.owns(f))
                if table is not None:
                    found.append(table)
        if not self.show_internal:
            found = [d for d in found if not _zero_column(d)]
        return sorted(found, key=lambda d: d.object_path)

    def _scan_dataset(self, name: str, ds: h5py.Dataset) -> DatasetInfo:
        kind = "hdf5.compound" if ds.dtype.names and ds.ndim == 1 else "hdf5.dataset"
        entries = _entries(ds)
        chunks = ds.chunks[0] if ds.chunks else None
        attrs = attributes(ds)
        attrs.setdefault("hdf5.shape", list(ds.shape))
        if ds.compression:
            attrs.setdefault("hdf5.compression", ds.compression)
        try:
            pipeline = filters(ds)
        except Exception:
            pipeline = []
        if pipeline:
            attrs.setdefault("hdf5.filters", [name for _, name in pipeline])
        series = timeseries.describe(ds)
        if series is not None:
            attrs[timeseries.KEY] = series
        return DatasetInfo(name, kind, entries, _dataset_columns(ds), attrs, _chunk_boundaries(entries, chunks))

    def _scan_group(self, name: str, group: h5py.Group, pytables: bool = False,
                    live: bool = False) -> DatasetInfo | None:
        """A group of same-length datasets as one table. ``live`` (written in SWMR mode right now): a
        writer extends its columns one after the other, so the table has the rows every column has."""
        children = []
        for key in group:
            if not self.show_internal and pytables and _PYTABLES_HIDDEN.match(key):
                continue
            try:
                link = group.get(key, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    continue
                child = group[key]
            except Exception:
                continue
            try:
                if isinstance(child, h5py.Dataset) and child.ndim >= 1:
                    child.dtype  # noqa: B018 - raises for types h5py cannot map
                    children.append((key, child))
            except Exception:
                continue
        if not children:
            return None
        lengths = {int(c.shape[0]) for _, c in children}
        if len(lengths) != 1 and not live:
            return None
        entries = min(lengths)
        columns = tuple(_column_info(key, child) for key, child in children)
        chunk_rows = max((c.chunks[0] for _, c in children if c.chunks), default=None)
        return DatasetInfo(name, "hdf5.table", entries, columns, attributes(group),
                           _chunk_boundaries(entries, chunk_rows))

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        return Hdf5Reader(path, object_path, kind)
