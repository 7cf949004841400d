"""LH5 files (LEGEND / pygama): HDF5 whose objects carry a ``datatype`` attribute.

The LH5 conventions (legend-pydataobj) mapped to Arrow:

* ``table{a,b,...}`` group → a dataset (the tables nested in it become struct columns);
* ``array<1>{real|bool}`` dataset → a column (``bool`` is stored as uint8 and read as bool);
* ``array_of_equalsized_arrays<1,1>{real}`` (and ``array<N>{real}``) → ``fixed_size_list``;
* ``array<1>{array<1>{real}}`` (VectorOfVectors: ``flattened_data`` + ``cumulative_length``)
  → ``list``: the offsets are ``cumulative_length`` with a leading 0 and only the
  ``flattened_data`` range of the requested entries is read, straight into the Arrow
  values buffer (no per-entry Python work, no copy);
* a nested ``table{...}``/``struct{...}`` (e.g. a waveform table ``t0, dt, values``) →
  ``struct`` of its columns.

Each field keeps the LH5 ``datatype`` (``lh5.datatype``) and ``units`` as Arrow field
metadata. Encoded (compressed) waveforms — ``array_of_encoded_equalsized_arrays`` and
``array<1>{encoded_array<1>{real}}`` — are decoded with legend-lh5io's decoders into
``fixed_size_list<int32>`` / ``list<int32>`` (``lh5_encoded``); per-table scalars are
listed as unreadable columns with the reason. Per-channel layouts (``ch1027201/dsp``) are one dataset per
table; the multi-file layer joins channels into one dataset with a ``channel`` column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import pyarrow as pa

from . import lh5_encoded, timeseries
from .base import ColumnInfo, ColumnUnreadable, DatasetInfo, Reader, Source, SourceError, without_paths
from .hdf5 import HDF5_SIGNATURE, _chunk_boundaries, attributes, element_type, to_arrow
from arrowroot.flight_server.core.errors import InvalidRequest

META_DATATYPE = "lh5.datatype"
META_UNITS = "units"
META_CODEC = "lh5.codec"
_TABLE = re.compile(r"^(table|struct)\{(.*)\}$")
_ARRAY = re.compile(r"^array<(\d+)>\{(.*)\}$")
_AOESA = re.compile(r"^array_of_equalsized_arrays<(\d+),(\d+)>\{(.*)\}$")
# What an LH5 ``datatype`` looks like (other writers, e.g. km3pipe, use the attribute too).
LH5_DATATYPE = re.compile(r"^((table|struct)\{.*\}|(array|array_of_equalsized_arrays|array_of_encoded_equalsized_arrays"
                          r"|encoded_array)<[\d,]+>\{.*\}|real|string|bool|complex|blob)$")


def datatype_of(obj: h5py.HLObject) -> str:
    """The LH5 ``datatype`` attribute of an object ('' when absent)."""
    value = obj.attrs.get("datatype")
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Node:
    """How one LH5 column is read: its kind, its HDF5 path (relative to the table) and type."""

    kind: str                       # 'array' | 'vov' | 'struct' | 'encoded'
    path: str
    arrow_type: pa.DataType
    datatype: str
    children: tuple["Node", ...] = ()
    bool_storage: bool = False      # array<1>{bool} stored as uint8
    encoded: lh5_encoded.Encoded | None = None


def _field(name: str, node: Node, obj: h5py.HLObject) -> pa.Field:
    meta = {META_DATATYPE: node.datatype}
    units = obj.attrs.get(META_UNITS)
    if units is not None:
        meta[META_UNITS] = units.decode() if isinstance(units, bytes) else str(units)
    return pa.field(name, node.arrow_type, nullable=True, metadata=meta)


def build_node(obj: h5py.HLObject, path: str) -> tuple[Node, pa.Field | None]:
    """Inspect one table member; raises ColumnUnreadable with the reason."""
    dt = datatype_of(obj)
    name = path.rsplit("/", 1)[-1]
    if lh5_encoded.is_encoded(dt):
        spec = lh5_encoded.inspect(obj, dt)
        node = Node("encoded", path, spec.arrow_type, dt, encoded=spec)
        f = _field(name, node, obj)
        meta = dict(f.metadata or {})
        meta[META_CODEC.encode()] = spec.codec.encode()
        return node, f.with_metadata(meta)
    if "encoded" in dt:
        raise ColumnUnreadable(f"encoded LH5 data {dt!r} of a layout arrowroot does not decode")
    m = _TABLE.match(dt)
    if m and isinstance(obj, h5py.Group):
        children, fields = [], []
        for key in [k for k in m.group(2).split(",") if k]:
            if key not in obj:
                raise ColumnUnreadable(f"{dt!r} names {key!r}, which the group lacks")
            child, f = build_node(obj[key], f"{path}/{key}")
            children.append(child)
            fields.append(f)
        node = Node("struct", path, pa.struct(fields), dt, tuple(children))
        return node, _field(name, node, obj)
    m = _ARRAY.match(dt)
    if m and isinstance(obj, h5py.Group):  # VectorOfVectors
        if "flattened_data" not in obj or "cumulative_length" not in obj:
            raise ColumnUnreadable(f"{dt!r} group without flattened_data/cumulative_length")
        inner, inner_field = build_node(obj["flattened_data"], f"{path}/flattened_data")
        node = Node("vov", path, pa.list_(inner.arrow_type), dt, (inner,))
        return node, _field(name, node, obj)
    if isinstance(obj, h5py.Dataset) and (m or _AOESA.match(dt) or not dt):
        if obj.ndim == 0:
            raise ColumnUnreadable(f"scalar {dt or obj.dtype} (one value per table, not per entry)")
        is_bool = dt.endswith("{bool}") and obj.dtype.kind in "ui"
        if is_bool:
            base: pa.DataType = pa.bool_()
            for n in reversed(obj.shape[1:]):
                base = pa.list_(base, int(n))
            arrow_type = base
        else:
            arrow_type = element_type(obj.dtype)
            for n in reversed(obj.shape[1:]):
                arrow_type = pa.list_(arrow_type, int(n))
        node = Node("array", path, arrow_type, dt, (), is_bool)
        return node, _field(name, node, obj)
    raise ColumnUnreadable(f"LH5 datatype {dt!r} is not supported")


def _entries(obj: h5py.HLObject, node: Node) -> int:
    if node.kind == "array":
        return int(obj.shape[0])
    if node.kind == "vov":
        return int(obj["cumulative_length"].shape[0])
    if node.kind == "encoded":
        return lh5_encoded.entries(obj)
    for child in node.children:
        return _entries(obj[child.path.rsplit("/", 1)[-1]], child)
    return 0


def _nbytes(obj: h5py.HLObject) -> int:
    if isinstance(obj, h5py.Dataset):
        return int(obj.size * obj.dtype.itemsize)
    return sum(_nbytes(v) for v in obj.values())


def _column_bytes(obj: h5py.HLObject, node: Node) -> int:
    """Bytes a column takes once read (encoded waveforms count decoded: the planner sizes
    endpoints and reads by it)."""
    if node.kind == "encoded":
        return 4 * _decoded_samples(obj, node)
    if node.kind == "struct":
        return sum(_column_bytes(obj[c.path.rsplit("/", 1)[-1]], c) for c in node.children)
    return _nbytes(obj)


def _decoded_samples(obj: h5py.Group, node: Node) -> int:
    """Samples an encoded column decodes to (the catalog's uncompressed size)."""
    assert node.encoded is not None
    if node.encoded.equal_size is not None:
        return node.encoded.equal_size * lh5_encoded.entries(obj)
    return int(np.asarray(obj["decoded_size"][()], dtype=np.int64).sum())


def _first_chunk_rows(obj: h5py.HLObject, node: Node) -> int | None:
    if node.kind == "array":
        return obj.chunks[0] if obj.chunks else None
    if node.kind == "vov":
        cl = obj["cumulative_length"]
        return cl.chunks[0] if cl.chunks else None
    if node.kind == "encoded":
        return lh5_encoded.chunk_rows(obj)
    for child in node.children:
        return _first_chunk_rows(obj[child.path.rsplit("/", 1)[-1]], child)
    return None


def read_node(obj: h5py.HLObject, node: Node, start: int, stop: int) -> pa.Array:
    """Entries [start, stop) of one LH5 column as an Arrow array of ``node.arrow_type``."""
    if node.kind == "array":
        values = obj[start:stop]
        if node.bool_storage:
            values = values.astype(np.bool_, copy=False)
            return to_arrow(values, values.dtype, node.arrow_type)
        return to_arrow(values, obj.dtype, node.arrow_type)
    if node.kind == "encoded":
        return lh5_encoded.read(obj, node.encoded, start, stop)
    if node.kind == "vov":
        cl = obj["cumulative_length"]
        n = max(0, stop - start)
        ends = np.asarray(cl[start:stop], dtype=np.int64)
        base = int(cl[start - 1]) if start > 0 and n else 0
        last = int(ends[-1]) if n else base
        inner = read_node(obj["flattened_data"], node.children[0], base, last)
        offsets = np.empty(n + 1, dtype=np.int32 if last - base < 2**31 else np.int64)
        offsets[0] = 0
        np.subtract(ends, base, out=offsets[1:], casting="unsafe")
        if offsets.dtype == np.int64:
            return pa.LargeListArray.from_arrays(pa.array(offsets), inner).cast(node.arrow_type)
        return pa.ListArray.from_arrays(pa.array(offsets), inner, type=node.arrow_type)
    children = [read_node(obj[c.path.rsplit("/", 1)[-1]], c, start, stop) for c in node.children]
    return pa.StructArray.from_arrays(children, fields=list(node.arrow_type))


def _tables(f: h5py.File) -> list[tuple[str, h5py.Group]]:
    """Every top-most ``table{...}`` group (tables inside tables are struct columns)."""
    found: list[tuple[str, h5py.Group]] = []

    def walk(prefix: str, group: h5py.Group) -> None:
        for key in group:
            try:
                child = group[key]
            except Exception:  # broken/external link: not ours to serve
                continue
            if not isinstance(child, h5py.Group):
                continue
            path = f"{prefix}{key}"
            if datatype_of(child).startswith("table{"):
                found.append((path, child))
            else:
                walk(path + "/", child)

    walk("", f)
    return found


class Lh5Reader(Reader):
    def __init__(self, path: str, object_path: str, kind: str):
        try:
            self._file = h5py.File(path, "r", locking=False)
            self._group = self._file[object_path]
        except Exception as exc:
            raise SourceError(f"{os.path.basename(path)}: cannot open {object_path!r}: "
                              f"{without_paths(str(exc), path)}") from exc
        # nodes are built when a column is first read: opening a wide table (a raw tier with waveforms)
        # to read two columns should not inspect all of them (levels open many tables per read)
        self._nodes: dict[str, Node | None] = {}
        self.entries = 0
        for key in self._group:
            node = self._node(key)
            if node is not None:
                self.entries = _entries(self._group[key], node)
                break

    def _node(self, name: str) -> Node | None:
        if name not in self._nodes:
            try:
                self._nodes[name] = build_node(self._group[name], name)[0] if name in self._group else None
            except ColumnUnreadable:
                self._nodes[name] = None
        return self._nodes[name]

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int, slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise InvalidRequest("slices apply to plain HDF5 N-D datasets; LH5 tables are sliced by entries")
        if not columns:
            raise InvalidRequest("read needs at least one column")
        arrays = []
        for name in columns:
            node = self._node(name)
            if node is None:
                raise KeyError(f"{os.path.basename(self._file.filename)}:{self._group.name}: no readable column {name!r}")
            try:
                arrays.append(read_node(self._group[name], node, entry_start, entry_stop))
            except Exception as exc:
                raise SourceError(f"{os.path.basename(self._file.filename)}:{self._group.name}: reading {name!r} "
                                  f"[{entry_start}:{entry_stop}] failed: {type(exc).__name__}: "
                                  f"{without_paths(str(exc), self._file.filename)}") from exc
        return pa.Table.from_arrays(arrays, names=list(columns))

    def close(self) -> None:
        self._file.close()


class Lh5Source(Source):
    format = "lh5"

    @staticmethod
    def recognises(head: bytes) -> bool:
        return head[:8] == HDF5_SIGNATURE or head[512:520] == HDF5_SIGNATURE

    def claims(self, path: str) -> bool:
        """An HDF5 file is LH5 when its root or a top-level object has an LH5 ``datatype``
        attribute (``struct{...}``, ``table{...}``, ``array<1>{real}``, ...)."""
        try:
            with h5py.File(path, "r", locking=False) as f:
                if LH5_DATATYPE.match(datatype_of(f)):
                    return True
                for i, key in enumerate(f):
                    if i >= 8:
                        break
                    try:
                        if LH5_DATATYPE.match(datatype_of(f[key])):
                            return True
                    except Exception:
                        continue
        except Exception:
            return False
        return False

    def scan(self, path: str) -> list[DatasetInfo]:
        try:
            f = h5py.File(path, "r", locking=False)
        except Exception as exc:
            raise SourceError(f"{os.path.basename(path)}: not a readable HDF5 file "
                              f"({type(exc).__name__}: {without_paths(str(exc), path)})") from exc
        with f:
            return [self._scan_table(name, group) for name, group in _tables(f)]

    def _scan_table(self, name: str, group: h5py.Group) -> DatasetInfo:
        columns: list[ColumnInfo] = []
        entries: int | None = None
        chunk_rows: int | None = None
        m = _TABLE.match(datatype_of(group))
        order = [k for k in (m.group(2).split(",") if m else []) if k in group]
        order += [k for k in group if k not in order]
        for key in order:
            obj = group[key]
            dt = datatype_of(obj)
            try:
                node, field = build_node(obj, key)
            except ColumnUnreadable as exc:
                columns.append(ColumnInfo(key, None, dt or "hdf5", readable=False, reason=str(exc)))
                continue
            n = _entries(obj, node)
            if entries is None:
                entries, chunk_rows = n, _first_chunk_rows(obj, node)
            elif n != entries:
                columns.append(ColumnInfo(key, None, dt, readable=False,
                                          reason=f"{n} entries where the table has {entries}"))
                continue
            meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            if node.kind == "encoded":
                columns.append(ColumnInfo(key, node.arrow_type, dt, compressed_bytes=lh5_encoded.nbytes(obj),
                                          uncompressed_bytes=4 * _decoded_samples(obj, node), metadata=meta))
                continue
            columns.append(ColumnInfo(key, node.arrow_type, dt, uncompressed_bytes=_column_bytes(obj, node),
                                      metadata=meta))
        attrs: dict[str, Any] = {k: v for k, v in attributes(group).items() if k != "datatype"}
        attrs["lh5.datatype"] = datatype_of(group)
        series = timeseries.describe_lh5_table(name, group)
        if series is not None:
            attrs[timeseries.KEY] = series
        entries = entries or 0
        return DatasetInfo(name, "lh5.table", entries, tuple(columns), attrs, _chunk_boundaries(entries, chunk_rows))

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        return Lh5Reader(path, object_path, kind)
