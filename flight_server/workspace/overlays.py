"""What an overlay (derived columns, a skim) records about its base, and the schema rules.

An overlay file holds only its own columns and the base's entry numbers; its Parquet metadata
records the base's files (``store.Workspace.overlay_meta``) so it can be read without the catalog.
The base is versioned by its files' identities: a base that moved on is noticed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arrowroot.catalog.models import ColumnRecord, DatasetRecord

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.sources.base import META_SOURCE_TYPE
from arrowroot.flight_server.sources.parquet import wire_type
from arrowroot.flight_server.workspace.upload import ENTRY


@dataclass(frozen=True)
class Base:
    """The dataset whose files hold an overlay's parent columns (never itself an overlay)."""

    rec: DatasetRecord
    version: str


def version_of(rec: DatasetRecord) -> str:
    """Digest of a dataset's file identities: changes whenever any of its files does."""
    h = hashlib.sha256()  # not the name: a renamed parent is the same data
    for p in rec.parts:
        h.update(json.dumps([p.path, p.object_path, p.size, p.mtime, p.entries, p.channel]).encode())
    for p in sorted(rec.links, key=lambda p: (p.row, p.tier or "", p.path, p.object_path)):  # levels' other tiers
        h.update(json.dumps([p.tier, p.row, p.path, p.object_path, p.size, p.mtime, p.entries, p.channel]).encode())
    return h.hexdigest()[:20]


def check_same_schema(old: pa.Schema, new: pa.Schema) -> None:
    """Appends must send the stored columns with the same types: ValueError names the column."""
    old_names = [n for n in old.names]
    for f in new:
        if f.name not in old_names:
            raise InvalidRequest(f"schema: column {f.name!r} is not in the dataset (it has {', '.join(old_names[:20])})")
        want = old.field(f.name).type
        if not wire_type(f.type).equals(wire_type(want)):
            raise InvalidRequest(f"schema: column {f.name!r} is {f.type} here but {want} in the dataset")
    missing = [n for n in old_names if n not in new.names]
    if missing:
        raise InvalidRequest(f"schema: column {missing[0]!r} is missing from the appended batches")
    if new.names != old_names:
        raise InvalidRequest(f"schema: columns must come in the dataset's order ({', '.join(old_names[:20])})")


def level_paths(level: dict[str, Any], src: Path, here: Path) -> dict[str, Any]:
    """A level's table paths (relative to ``src``) made relative to the overlay's folder ``here``."""
    out = dict(level)
    out["parts"] = {k: [{**t, "path": os.path.relpath(os.path.normpath(os.path.join(src, t["path"])), here)}
                        for t in tiers] for k, tiers in level["parts"].items()}
    return out


def overlay_schema(schema: pa.Schema, base: DatasetRecord) -> pa.Schema:
    """Derived columns: ``entry`` must be an integer column (stored as int64, first)."""
    if ENTRY not in schema.names:
        raise InvalidRequest(f"columns: derived columns need an {ENTRY!r} column with the parent's entry numbers "
                         "(read the parent with with_entry_numbers)")
    t = schema.field(ENTRY).type
    if not pa.types.is_integer(t):
        raise InvalidRequest(f"columns: {ENTRY!r} must be an integer column (got {t})")
    rest = [f for f in schema if f.name != ENTRY]
    return pa.schema([pa.field(ENTRY, pa.int64(), nullable=False)] + rest, metadata=schema.metadata)


def overlay_columns(info: Any, base: DatasetRecord, own: list[str]) -> tuple[list[ColumnRecord], pa.Schema]:
    """Catalog columns and schema of an overlay: the base's columns, then ``entry`` and its own."""
    base_schema = pa.ipc.read_schema(pa.py_buffer(base.schema))
    # Base columns keep the base's byte counts: reading a skim decompresses the base clusters
    # holding its entries, so planning by these bytes sizes endpoints by the work they cost.
    cols: list[ColumnRecord] = []
    fields: list[pa.Field] = []
    for c in base.columns:
        if not c.readable or c.name not in base_schema.names:
            cols.append(c)
            continue
        cols.append(replace(c, compressed_bytes=None))
        fields.append(base_schema.field(c.name))
    own_info = {c.name: c for c in info.columns}
    for name in [ENTRY] + list(own):
        c = own_info[name]
        src = "entry number in the parent" if name == ENTRY else c.source_type
        cols.append(ColumnRecord(name, str(c.arrow_type), src, (), c.compressed_bytes, c.uncompressed_bytes, True, ""))
        fields.append(pa.field(name, c.arrow_type, nullable=name != ENTRY, metadata={META_SOURCE_TYPE: src.encode()}))
    return cols, pa.schema(fields)


def overlay_boundaries(path: Path, base: DatasetRecord, own: list[int]) -> list[int]:
    """Overlay entries where a base cluster starts: endpoints and reads are cut there, so
    each base cluster is decompressed by one read only (a row group of the overlay's own,
    cheap columns may be read twice instead)."""
    starts = np.asarray([p.entry_offset + b for p in base.parts for b in p.boundaries], dtype=np.int64)
    entries = pq.read_table(str(path), columns=[ENTRY]).column(ENTRY).to_numpy()  # 8 bytes a row
    cuts = np.unique(np.searchsorted(entries, starts))
    return [0] + [int(c) for c in cuts if 0 < c < len(entries)]
