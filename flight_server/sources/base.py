"""The one small interface every file format implements.

A source knows how to list the tabular objects in a file (``scan``) and how to read a
column subset over an entry range of one of them (``open(...).read``). Sources know
nothing of Flight, protobuf or the catalog: they take paths and return Arrow, so each
format can be tested on its own and the server can wire them however it likes.

Errors raised here:

    SourceError (RuntimeError)      the file cannot be read (truncated, corrupt, vanished)
    └── ColumnUnreadable            one column cannot be interpreted; others still can
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

# Arrow field-metadata keys shared by all sources (documented in the README).
META_SOURCE_TYPE = b"arrowroot.source_type"
META_SHAPE = b"arrowroot.shape"


class SourceError(RuntimeError):
    """A file could not be read; the message names the file and the cause."""


class ColumnUnreadable(SourceError):
    """One column's bytes cannot be interpreted as Arrow."""


@dataclass(frozen=True)
class ColumnInfo:
    """One column as the catalog records it."""

    name: str
    arrow_type: pa.DataType | None
    source_type: str
    shape: tuple[int, ...] = ()
    compressed_bytes: int | None = None
    uncompressed_bytes: int | None = None
    readable: bool = True
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def arrow_field(self) -> pa.Field:
        meta = {META_SOURCE_TYPE: self.source_type.encode()}
        if self.shape:
            meta[META_SHAPE] = json.dumps(list(self.shape)).encode()
        for key, value in self.metadata.items():
            meta[key.encode()] = value.encode()
        assert self.arrow_type is not None
        return pa.field(self.name, self.arrow_type, nullable=True, metadata=meta)


@dataclass(frozen=True)
class DatasetInfo:
    """One tabular object found in a file: a TTree, an RNTuple, an HDF5 dataset or group."""

    object_path: str
    kind: str
    entries: int
    columns: tuple[ColumnInfo, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    # First entry of each cluster (ROOT) or chunk (HDF5), always starting with 0.
    # Reads and endpoints are cut at these entries so no basket/chunk is decompressed twice.
    boundaries: tuple[int, ...] = (0,)

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of the readable columns, with the attributes as schema metadata."""
        fields = [c.arrow_field() for c in self.columns if c.readable]
        meta = {b"arrowroot.attributes": json.dumps(self.attributes, default=str).encode()}
        return pa.schema(fields, metadata=meta)


class Reader(ABC):
    """An open object in a file, ready to serve reads of entry ranges."""

    entries: int

    @abstractmethod
    def read(
        self,
        columns: Sequence[str],
        entry_start: int,
        entry_stop: int,
        slices: Sequence[slice] = (),
    ) -> pa.Table:
        """Read ``columns`` for entries [entry_start, entry_stop) into one Arrow table.

        ``slices`` applies to the axes after the first (HDF5 N-D datasets only). The
        result's column types equal those the source reported in ``scan``.
        """

    def close(self) -> None:
        """Release file handles."""


class Source(ABC):
    """A file format: recognises files, lists their datasets and opens them for reading."""

    format: ClassVar[str]

    @staticmethod
    @abstractmethod
    def recognises(head: bytes) -> bool:
        """Whether a file starting with ``head`` (its first 1 KiB) is in this format."""

    def claims(self, path: str) -> bool:
        """Whether a recognised file is really this format's (LH5 vs plain HDF5 share a
        signature); formats that the first bytes settle keep this default."""
        return True

    @abstractmethod
    def scan(self, path: str) -> list[DatasetInfo]:
        """List every dataset in the file with its columns, entries and boundaries."""

    @abstractmethod
    def open(self, path: str, object_path: str, kind: str) -> Reader:
        """Open one dataset for reading."""


def normalise_slices(slices: Sequence[slice], shape: Sequence[int]) -> list[slice]:
    """Resolve per-axis slices against a shape (axes after the first), numpy rules.

    Raises ValueError for more slices than axes or non-positive steps (HDF5 cannot
    read backwards).
    """
    if len(slices) > len(shape):
        raise ValueError(
            f"slices: {len(slices)} given but the column has only {len(shape)} axes after the first"
        )
    out = []
    for axis, (s, n) in enumerate(zip(slices, shape), start=1):
        if s.step is not None and s.step <= 0:
            raise ValueError(f"slices[{axis - 1}]: step must be positive (got {s.step})")
        out.append(slice(*s.indices(n)))
    for n in shape[len(slices):]:
        out.append(slice(0, n, 1))
    return out


def sliced_shape(shape: Sequence[int], slices: Sequence[slice]) -> tuple[int, ...]:
    """Shape (after the first axis) that ``slices`` leave."""
    norm = normalise_slices(slices, shape)
    return tuple(len(range(s.start, s.stop, s.step)) for s in norm)


def fixed_shape_type(value_type: pa.DataType, shape: Sequence[int]) -> pa.DataType:
    """Nested fixed_size_list type for the per-entry ``shape`` (outermost axis first)."""
    t = value_type
    for n in reversed(shape):
        t = pa.list_(t, n)
    return t


# An absolute path of two or more components ("/srv/data/run.h5", "/usr/local/lib/plugin").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.+~-]+/)+[\w.+~-]*")


def without_paths(text: str, path: str) -> str:
    """``text`` (an exception message from a file library) with no server path left in it.

    The file itself becomes its base name; any other absolute path whose top folder exists
    on this machine (HDF5's plugin folder, a library's install path) becomes ``<server path>``.
    Messages reach clients, who must not learn the server's directory layout.
    """
    base = os.path.basename(path)
    for p in sorted({path, os.path.abspath(path), os.path.realpath(path)}, key=len, reverse=True):
        text = text.replace(p, base)

    def hide(m: re.Match) -> str:
        top = m.group(0).split("/", 2)[1]
        return "<server path>" if os.path.isdir("/" + top) else m.group(0)

    return _ABSOLUTE_PATH.sub(hide, text)
