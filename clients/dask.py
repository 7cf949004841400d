"""Dask collections over arrowroot: one partition per Flight endpoint.

    >>> from arrowroot.clients.dask import read_dask, read_dask_awkward
    >>> df = read_dask("grpc://coordinator:8815", "hep/events.root:events", ["MET_pt", "nMuon"])
    >>> df.MET_pt.mean().compute()
    >>> events = read_dask_awkward("grpc://coordinator:8815", "hep/events.root:events")
    >>> dak.num(events.Muon_pt[events.Muon_pt > 20], axis=1).compute()   # reads Muon_pt only

The FlightInfo is asked for once, when the collection is built: it gives the schema
(``meta``) and the endpoints' entry ranges (partitions and, without a cut, divisions).
Each partition then asks the server for its own entry range with the columns the graph
actually uses (Dask's and dask-awkward's column projection, as ``uproot.dask`` does), so
a task never holds a ticket planned for other columns, or one that expired while the
graph waited, and reads from the data node its endpoint names. Workers keep one
``Client`` per location and settings.

Needs the optional extra: ``pip install arrowroot[dask]``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.protos import arrowroot_pb2 as pb

from .client import Client

ENTRY_COLUMN = "entry"

_clients: dict[tuple, Client] = {}
_clients_lock = threading.Lock()


def _client(location: str, client_kwargs: dict[str, Any]) -> Client:
    """This process's Client for (location, settings): workers reuse their connections."""
    key = (location, tuple(sorted(client_kwargs.items())))
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = Client(location, **client_kwargs)
        return c


def endpoint_range(endpoint: fl.FlightEndpoint) -> tuple[int, int]:
    """The global entry range an endpoint streams, read from its ticket (an arrowroot
    ``Task``: its parts' entry offsets and local ranges; the signature is not checked here)."""
    t = pb.Task()
    try:
        t.ParseFromString(endpoint.ticket.ticket)
    except Exception:
        t.Clear()
    if not t.parts:
        raise ValueError("an endpoint without an entry range: is this an arrowroot server?")
    first, last = t.parts[0], t.parts[-1]
    return first.entry_offset + first.start, last.entry_offset + last.stop


@dataclass(frozen=True)
class _Read:
    """What every partition shares: where to ask, and the request minus columns and range."""

    location: str
    dataset: str
    schema: pa.Schema
    where: str | None = None
    slices: tuple = ()
    with_entry_numbers: bool = False
    allow_missing: bool = False
    batch_rows: int | None = None
    client_kwargs: dict = field(default_factory=dict)

    def table(self, entries: tuple[int, int], columns: Sequence[str]) -> pa.Table:
        """Rows [a, b) (global entry numbers) of ``columns`` (output names)."""
        wanted = [c for c in columns if not (self.with_entry_numbers and c == ENTRY_COLUMN)]
        source = [f.name for f in self.schema if not (self.with_entry_numbers and f.name == ENTRY_COLUMN)]
        ask = wanted or source[:1]  # a column-less projection (len) still needs the row count
        # A global range lies inside one part, so no files/channels selection is needed:
        # the same rows come back whatever the original selection was.
        kwargs: dict[str, Any] = {"with_entry_numbers": self.with_entry_numbers and ENTRY_COLUMN in columns,
                                  "allow_missing": self.allow_missing}
        if self.where:
            kwargs["where"] = self.where
        if self.slices:
            kwargs["slices"] = list(self.slices)
        if self.batch_rows:
            kwargs["batch_rows"] = self.batch_rows
        t = _client(self.location, self.client_kwargs).read(self.dataset, ask, entries, **kwargs)
        return t.select([c for c in columns if c in t.column_names])


def _plan(location: str, dataset: str, columns: Sequence[str] | str | None, entries: tuple | None,
          where: str | None, files: str | None, channels: Sequence[str | int] | None,
          slices: Sequence | None, with_entry_numbers: bool, allow_missing: bool, batch_rows: int | None,
          client_kwargs: dict[str, Any] | None) -> tuple[_Read, list[tuple[int, int]]]:
    client_kwargs = dict(client_kwargs or {})
    c = _client(location, client_kwargs)
    info = c.flight_info(dataset, columns, entries, where=where, files=files, channels=channels,
                         slices=slices, with_entry_numbers=with_entry_numbers, allow_missing=allow_missing,
                         batch_rows=batch_rows)
    ranges = [endpoint_range(ep) for ep in info.endpoints]
    read = _Read(location, dataset, info.schema, where, tuple(tuple((s.start, s.stop, s.step)) if isinstance(s, slice)
                                                              else tuple(s) for s in slices or ()),
                 with_entry_numbers, allow_missing, batch_rows, client_kwargs)
    return read, ranges


# ------------------------------------------------------------------ dask.dataframe


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def _to_pandas(table: pa.Table) -> Any:
    """pandas with nested columns (jagged ROOT branches, N-D HDF5) as ``pd.ArrowDtype``:
    as NumPy objects, Dask would take them for strings and convert them."""
    import pandas as pd

    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if _nested(t) else None)


class _FrameReader:
    """One partition of a dask DataFrame; ``columns=`` lets Dask project."""

    def __init__(self, read: _Read, indexed: bool):
        self.read = read
        self.indexed = indexed  # without a cut the index is the global entry number

    def __call__(self, entries: tuple[int, int], columns: Sequence[str] | None = None) -> Any:
        import pandas as pd

        cols = list(self.read.schema.names) if columns is None else list(columns)
        df = _to_pandas(self.read.table(entries, cols))
        if self.indexed:
            df.index = pd.RangeIndex(entries[0], entries[0] + len(df))
        return df if len(df.columns) == len(cols) else df[[c for c in cols if c in df.columns]]


def read_dask(
    location: str,
    dataset: str,
    columns: Sequence[str] | str | None = None,
    entries: tuple[int | None, int | None] | None = None,
    *,
    where: str | None = None,
    files: str | None = None,
    channels: Sequence[str | int] | None = None,
    slices: Sequence | None = None,
    with_entry_numbers: bool = False,
    allow_missing: bool = False,
    batch_rows: int | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> Any:
    """A ``dask.dataframe.DataFrame`` of a dataset, one partition per endpoint.

    Without ``where`` the index is the global entry number and the divisions are the
    endpoints' entry ranges, so ``.loc[a:b]`` touches only the partitions it needs.
    Nested columns (jagged branches, N-D arrays) come as ``pd.ArrowDtype``.
    ``client_kwargs`` (credentials, TLS) go to each worker's ``Client``.
    """
    import dask.dataframe as dd
    import pandas as pd

    read, ranges = _plan(location, dataset, columns, entries, where, files, channels, slices,
                         with_entry_numbers, allow_missing, batch_rows, client_kwargs)
    indexed = not where
    meta = _to_pandas(read.schema.empty_table())
    if indexed:
        meta.index = pd.RangeIndex(0, 0)
    if not ranges:
        return dd.from_pandas(meta, npartitions=1)
    divisions = tuple([a for a, _ in ranges] + [ranges[-1][1] - 1]) if indexed else None
    return dd.from_map(_FrameReader(read, indexed), ranges, meta=meta, divisions=divisions,
                       label="arrowroot-read", enforce_metadata=False)


# ------------------------------------------------------------------ dask-awkward


def _form_schema(schema: pa.Schema, nullable: bool) -> pa.Schema:
    """The schema partitions are cast to, so every partition has the form of ``meta``:
    non-nullable (plain awkward types) unless missing columns may bring nulls."""
    def tight(f: pa.Field) -> pa.Field:
        t = f.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            item = tight(t.value_field)
            t = (pa.list_(item) if pa.types.is_list(t) else pa.large_list(item) if pa.types.is_large_list(t)
                 else pa.list_(item, t.list_size))
        return pa.field(f.name, t, nullable=nullable, metadata=f.metadata)

    return pa.schema([tight(f) for f in schema], metadata=schema.metadata)


class _AwkwardReader:
    """One partition of a dask-awkward Array, with column projection: dask-awkward traces
    the graph on a typetracer and calls ``project_columns`` with the fields it touched."""

    def __init__(self, read: _Read, columns: tuple[str, ...] | None = None):
        self.read = read
        self.columns = tuple(read.schema.names) if columns is None else columns
        self.use_optimization = True
        self.behavior = None
        self.attrs = None

    @property
    def form(self) -> Any:
        import awkward as ak

        schema = _form_schema(self.read.schema, self.read.allow_missing)
        return ak.from_arrow(schema.empty_table(), highlevel=False).form

    def project_columns(self, columns: frozenset[str]) -> "_AwkwardReader":
        wanted = tuple(c for c in self.read.schema.names if c in {x.split(".")[0] for x in columns})
        return _AwkwardReader(self.read, wanted)

    def __call__(self, entries: tuple[int, int]) -> Any:
        import awkward as ak

        table = self.read.table(entries, self.columns)
        schema = _form_schema(pa.schema([self.read.schema.field(c) for c in table.column_names]),
                              self.read.allow_missing)
        return ak.from_arrow(table.cast(schema))


def _awkward_reader_class() -> type:
    """``_AwkwardReader`` with dask-awkward's column-projection mixin, made on first use
    (dask-awkward is optional); workers find it by name through ``__getattr__``."""
    global _ProjectingReader
    if _ProjectingReader is None:
        from dask_awkward.lib.io.columnar import ColumnProjectionMixin

        _ProjectingReader = type("ArrowrootAwkwardReader", (ColumnProjectionMixin, _AwkwardReader),
                                 {"__module__": __name__, "__doc__": _AwkwardReader.__doc__})
    return _ProjectingReader


_ProjectingReader: type | None = None


def __getattr__(name: str) -> Any:
    if name == "ArrowrootAwkwardReader":
        return _awkward_reader_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_dask_awkward(
    location: str,
    dataset: str,
    columns: Sequence[str] | str | None = None,
    entries: tuple[int | None, int | None] | None = None,
    *,
    where: str | None = None,
    files: str | None = None,
    channels: Sequence[str | int] | None = None,
    slices: Sequence | None = None,
    with_entry_numbers: bool = False,
    allow_missing: bool = False,
    batch_rows: int | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> Any:
    """A ``dask_awkward.Array`` of records (one field per column), one partition per
    endpoint. Only the fields the computation uses are read (column projection)."""
    import dask_awkward as dak

    read, ranges = _plan(location, dataset, columns, entries, where, files, channels, slices,
                         with_entry_numbers, allow_missing, batch_rows, client_kwargs)
    if not ranges:
        raise ValueError(f"{dataset}: the selection has no entries; nothing to partition")
    reader = _awkward_reader_class()(read)
    divisions = None
    if not where:  # row positions: every endpoint's rows are known without a cut
        sizes = [b - a for a, b in ranges]
        divisions = tuple([0] + [sum(sizes[:i + 1]) for i in range(len(sizes))])
    return dak.from_map(reader, ranges, label="arrowroot-read", divisions=divisions)


__all__ = ["read_dask", "read_dask_awkward", "endpoint_range"]
