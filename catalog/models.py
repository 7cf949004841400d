"""Plain records the catalog hands out. Frozen: they are shared between threads and cached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FileRecord:
    file_id: int
    path: str
    format: str | None
    size: int
    mtime: float
    status: str
    error: str | None
    keys: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnRecord:
    name: str
    arrow_type: str | None
    source_type: str
    shape: tuple[int, ...] = ()
    compressed_bytes: int | None = None
    uncompressed_bytes: int | None = None
    readable: bool = True
    reason: str = ""


@dataclass(frozen=True)
class PartRecord:
    """A contiguous run of a dataset's entries stored in one object of one file."""

    file_id: int
    path: str          # relative file path
    object_path: str
    entry_offset: int  # global number of the first entry
    entries: int
    boundaries: tuple[int, ...]
    size: int = 0
    mtime: float = 0.0
    channel: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)
    tier: str | None = None   # levels' links: the tier this part belongs to (None: a row part)
    row: int = -1             # levels' links: the index of the row part it is aligned with


@dataclass(frozen=True)
class ZoneMapRecord:
    """One column's zone map in one object of one file (flight_server/core/zones.py says what the
    numbers mean); zone i covers local entries [starts[i], stops[i])."""

    column: str
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    mins: tuple[float | None, ...]
    maxs: tuple[float | None, ...]
    nulls: tuple[int, ...]
    nans: tuple[int, ...]
    value_nulls: tuple[int, ...]
    min_lens: tuple[int | None, ...]
    max_lens: tuple[int | None, ...]
    exact: tuple[bool, ...]


@dataclass(frozen=True)
class DatasetRecord:
    dataset_id: int
    name: str
    kind: str
    format: str
    entries: int
    schema: bytes       # serialised Arrow schema (the catalog itself never parses it)
    attributes: dict[str, Any]
    origin: str
    parts: tuple[PartRecord, ...]
    columns: tuple[ColumnRecord, ...]
    #: levels (datasets/levels.py): the other tiers' parts, each aligned with one row part
    links: tuple[PartRecord, ...] = ()
    #: the catalog's zone maps (catalog/zones.py), for planning cuts; None outside a catalog
    zones: Any = field(default=None, compare=False, repr=False)

    def column(self, name: str) -> ColumnRecord | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True)
class NewDataset:
    """What the indexer hands the catalog for one dataset."""

    name: str
    kind: str
    format: str
    entries: int
    schema: bytes
    attributes: dict[str, Any]
    columns: list[ColumnRecord]
    parts: list[tuple[str, str, int, list[int], str | None]]  # (file path, object path, entries, boundaries, channel)
    origin: str = "file"
    #: levels: (row part index, tier, file path, object path, entries, boundaries, channel)
    links: list[tuple[int, str, str, str, int, list[int], str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class FileUpdate:
    """Everything the indexer learnt about one file, written in one go."""

    path: str
    format: str | None
    size: int
    mtime: float
    datasets: tuple[NewDataset, ...] = ()
    error: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkspaceRecord:
    """A dataset a user wrote (upload, derived columns, skim) and where it came from."""

    name: str
    owner: str
    kind: str                  # 'upload' | 'derived' | 'skim' | 'materialized'
    path: str                  # its Parquet file, relative to the served root
    bytes: int
    parent: str | None = None
    parent_version: str | None = None   # digest of the parent's file identities when it was made
    base: str | None = None             # the dataset whose files hold the parent columns (overlays)
    cut: str | None = None
    columns: tuple[str, ...] = ()
    created_at: float = 0.0
    version: str = ""                   # arrowroot version that wrote it
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""                        # the dataset's identity: kept through renames and replaces
    parent_id: str | None = None        # the parent's id, when the parent is a workspace dataset
