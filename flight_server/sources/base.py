"""The one small interface every file format implements.

A source knows how to list the tabular objects in a file (``scan``) and how to read a
column subset over an entry range of one of them (``open(...).read``). Sources know
nothing of Flight, protobuf or the catalog: they take paths and return Arrow, so each
format can be tested on its own and the server can wire them however it likes.

Errors raised here:

    SourceError (RuntimeError)      the file cannot be read (truncated, corrupt, vanished)
    └── ColumnUnreadable            one column cannot be interpreted; others still can

Both come from the project's one error tree (``core/errors.py``).
"""

from __future__ import annotations

import bisect
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from arrowroot.flight_server.core.errors import ColumnUnreadable, SourceError
from arrowroot.flight_server.core.shapes import (META_SHAPE, META_SOURCE_TYPE, fixed_shape_type,
                                                 normalise_slices, sliced_shape)

__all__ = ["META_SHAPE", "META_SOURCE_TYPE", "ColumnInfo", "ColumnUnreadable", "DatasetInfo", "Reader", "Source",
           "SourceError", "Units", "fixed_shape_type", "normalise_slices", "sliced_shape"]


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


@dataclass(frozen=True)
class Units:
    """How a column is stored along its entries: the pieces one decodes at a time (a ROOT
    cluster, a block of whole HDF5 chunks). The column-chunk cache keys on them, so reads of any
    range, by anyone, share decoded pieces. Either explicit piece starts (``starts``, first 0) or
    a regular grid of ``step`` entries."""

    entries: int
    starts: tuple[int, ...] = ()
    step: int = 0

    def covering(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The pieces [s, e) that overlap [start, stop), in order (clipped to the entries)."""
        start, stop = max(0, start), min(stop, self.entries)
        if stop <= start:
            return []
        if self.step > 0:
            first = start // self.step * self.step
            return [(s, min(s + self.step, self.entries)) for s in range(first, stop, self.step)]
        edges = list(self.starts) + [self.entries]
        i = max(0, bisect.bisect_right(edges, start) - 1)
        out = []
        while i < len(edges) - 1 and edges[i] < stop:
            if edges[i + 1] > edges[i]:
                out.append((edges[i], edges[i + 1]))
            i += 1
        return out


class Reader(ABC):
    """An open object in a file, ready to serve reads of entry ranges."""

    entries: int

    def units(self, column: str) -> Units | None:
        """How ``column`` is stored (None: no natural pieces; the cache keys exact ranges)."""
        return None

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
    #: capabilities the planner asks for instead of testing format names
    supports_slices: ClassVar[bool] = False   # per-axis slices of N-D columns (hyperslabs)

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
