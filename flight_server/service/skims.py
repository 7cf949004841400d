"""The ``skim`` action: keep the entries of any dataset that pass a cut, or copy its rows.

Skims and derived data compose. The parent may be a file's dataset, an upload, a copy, derived
columns or another skim (of a skim, of derived columns, ...):

* a skim stores the passing entry numbers of the parent's *base* (the dataset whose files hold
  its columns) and, when the parent has derived columns of its own, those columns at the
  passing entries; reading it reads the base files' clusters that hold them, as any overlay;
* ``materialize`` copies the passing rows (all of them without a cut) into a plain Parquet
  dataset whose provenance names the parent: a pinned copy that outlives the parent's files.

The workspace service supplies the three things that need the rest of the service: the access-
checked parent lookup, planning a read for the caller, and running a plan's tasks (the one read path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.lang.cuts import ExprError, parse
from arrowroot.flight_server.plan.columns import dataset_schema
from arrowroot.flight_server.plan.levels import level_selection, skim_meta
from arrowroot.flight_server.workspace.store import ENTRY, OVERLAY_FORMAT, Workspace

Plan = Any  # plan/planner.Plan: its .schema is what the stream carries


def skim(ws: Workspace, owner: str, name: str, args: dict[str, Any], lookup: Callable[[str], DatasetRecord],
         plan: Callable[[ReadSpec], Plan], stream: Callable[[Plan], Iterator[pa.RecordBatch]]) -> dict[str, Any]:
    """Run the ``skim`` action's body for ``owner``; the answer: {dataset, kind, rows, parent_entries, bytes}."""
    parent_name, where = args.get("parent"), args.get("where") or ""
    if not isinstance(parent_name, str) or not parent_name:
        raise InvalidRequest("skim.parent: the dataset to skim is required")
    selection = level_selection(args)  # levels: files, channels, hit_where, hit_mode (plan/levels.py)
    materialize = args.get("materialize", False)
    if not isinstance(materialize, bool):
        raise InvalidRequest("skim.materialize: true or false")
    if not isinstance(where, str) or not (where.strip() or selection or materialize):
        raise InvalidRequest("skim.where: a cut is required, e.g. \"nMuon >= 2\" (only a materialized copy may "
                             "take every entry)")
    columns = args.get("columns") or []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidRequest("skim.columns: a list of column names")
    metadata = args.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("skim.metadata: a JSON object of strings")
    metadata = {str(k): str(v) for k, v in metadata.items()}
    mode = args.get("mode", "create")
    parent = lookup(parent_name)
    if materialize:
        entry = _copy(ws, owner, name, parent, where, columns, metadata, mode, selection, plan, stream)
    else:
        entry = _entries(ws, owner, name, parent, where, metadata, mode, selection, plan, stream)
    rows = ws.catalog.dataset(name).entries
    return {"dataset": name, "kind": entry.kind, "rows": rows, "parent_entries": parent.entries, "bytes": entry.bytes}


def _copy(ws: Workspace, owner: str, name: str, parent: DatasetRecord, where: str, columns: list[str],
          metadata: dict[str, str], mode: str, selection: dict[str, Any], plan: Callable, stream: Callable) -> Any:
    """The passing rows (and their entry numbers in the parent's files) into a Parquet dataset."""
    names = pa.ipc.read_schema(pa.py_buffer(parent.schema)).names
    has_entry = ENTRY in names   # overlays and copies carry their entry numbers as a column
    if columns and has_entry and ENTRY not in columns:
        columns = [*columns, ENTRY]
    p = plan(ReadSpec(dataset=parent.name, columns=tuple(columns), where=where, with_entry_numbers=not has_entry,
                      **selection))
    up = ws.begin(name, owner, mode, p.schema.remove_metadata(), None, metadata, kind="materialized", cut=where or None)
    try:
        ws.set_parent(up, parent)
        for batch in stream(p):
            up.write(batch)
        return up.commit({"columns": list(p.schema.names)})
    except BaseException:
        up.abort()
        raise


def _entries(ws: Workspace, owner: str, name: str, parent: DatasetRecord, where: str, metadata: dict[str, str],
             mode: str, selection: dict[str, Any], plan: Callable, stream: Callable) -> Any:
    """The passing base entry numbers, with the parent's own derived columns at them. A level's
    skim also records the level's tables and hit selection (``plan.levels.skim_meta``)."""
    schema = dataset_schema(parent)
    try:
        cut = parse(where, schema) if where.strip() else None
    except ExprError as exc:
        raise InvalidRequest(f"where: {exc}") from None
    own = ws.skim_base(parent)[1]
    if parent.format == OVERLAY_FORMAT:   # its entry column holds the base's entry numbers
        spec = ReadSpec(dataset=parent.name, columns=(ENTRY, *own), where=where, **selection)
    else:                                 # read the least: one column of the cut, and the entry numbers
        first = next((n for n in schema.names if cut is not None and n in cut.columns), schema.names[0])
        spec = ReadSpec(dataset=parent.name, columns=(first,), where=where, with_entry_numbers=True, **selection)
    p = plan(spec)
    up = ws.begin_skim(name, owner, parent, where, metadata, mode, level=skim_meta(parent, spec, p.tasks))
    try:
        for batch in stream(p):
            entries = batch.column(ENTRY).to_numpy()
            up.check_entries(entries, up.base_entries)  # type: ignore[attr-defined]
            arrays = [pa.array(entries, pa.int64())] + [batch.column(c) for c in own]
            up.write(pa.RecordBatch.from_arrays(arrays, schema=up.schema))
        return up.commit({"columns": own})
    except BaseException:
        up.abort()
        raise
