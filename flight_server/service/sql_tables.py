"""The caller's view of the server as SQL tables: what the SQL engine reads, for any door.

Datasets the caller may see are tables (``TableProvider`` of ``sql/engine.py``); their batches come
from :meth:`Service.run` — the one read path, with its checks, stream slots and counters — and
``arrowroot.files|datasets|columns|provenance`` describe the visible datasets only. Hidden
datasets exist nowhere.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator

import pyarrow as pa

from arrowroot.catalog.models import DatasetRecord
from arrowroot.flight_server.core.errors import NotFound
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.execute.executor import StreamStats
from arrowroot.flight_server.plan.planner import dataset_schema
from arrowroot.flight_server.plan.zones import summary as zone_summary
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.service.workspace import WorkspaceService

__all__ = ["ServerTableProvider"]


class ServerTableProvider:
    """The caller's view of the server as SQL tables (``sql.TableProvider``).

    Built once per call: the visible datasets are resolved then, and scans read for that caller.
    """

    def __init__(self, service: Service, workspace: WorkspaceService, caller: Caller,
                 scan_log: deque | None = None,
                 on_scan: Callable[[str, StreamStats], None] | None = None) -> None:
        self.service = service
        self.workspace = workspace
        self.caller = caller
        self.on_scan = on_scan
        self.visible: dict[str, DatasetRecord] = {d.name: d for d in service.visible(caller)}
        self.scan_log = scan_log
        self._schemas: dict[str, pa.Schema] = {}

    def dataset_names(self) -> list[str]:
        return list(self.visible)

    def _record(self, name: str) -> DatasetRecord:
        rec = self.visible.get(name)
        if rec is None:
            raise NotFound(f"no dataset named {name!r}")
        return rec

    def dataset_schema(self, name: str) -> pa.Schema:
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._schemas[name] = dataset_schema(self._record(name))
        return schema

    def scan(self, name: str, columns: list[str], allow_missing: bool = False, where: str = "") -> pa.RecordBatchReader:
        """Stream ``columns`` of every entry (passing ``where``, a cut implied by the query's WHERE:
        zone maps skip, the executor filters): the planner's tasks in order, one chunk read ahead."""
        self._record(name)
        plan = self.service.plan(self.caller, ReadSpec(dataset=name, columns=tuple(columns),
                                                       allow_missing=allow_missing, where=where))
        if self.scan_log is not None:
            self.scan_log.append((name, tuple(plan.columns)))
        service = self.service

        def batches() -> Iterator[pa.RecordBatch]:
            stats = StreamStats()
            try:
                for batch in service.run(plan):
                    stats.rows += batch.num_rows
                    stats.bytes += batch.nbytes
                    yield batch
            finally:
                if self.on_scan is not None:
                    self.on_scan(name, stats)

        return pa.RecordBatchReader.from_batches(plan.schema, batches())

    def summary(self, name: str, columns: list[str]) -> dict | None:
        """Exact whole-dataset count/min/max from zone maps (None: scan instead)."""
        rec = self._record(name)
        stats = zone_summary(rec, columns)
        return None if stats is None else {"rows": rec.entries, "columns": stats}

    def catalog_tables(self) -> dict[str, pa.Table]:
        """``arrowroot.files|datasets|columns``, restricted to the visible datasets."""
        recs = list(self.visible.values())
        catalog = self.service.ctx.catalog
        assert catalog is not None
        all_visible = len(recs) == len(catalog.datasets())
        used = {p.path for d in recs for p in d.parts}
        files = [f for f in catalog.files().values() if all_visible or f.path in used]
        file_ids = {p.path: p.file_id for d in recs for p in d.parts}
        files_t = pa.table(
            {
                "file_id": pa.array([f.file_id for f in files], pa.int64()),
                "path": pa.array([f.path for f in files], pa.utf8()),
                "format": pa.array([f.format for f in files], pa.utf8()),
                "size": pa.array([f.size for f in files], pa.int64()),
                "mtime": pa.array([f.mtime for f in files], pa.float64()),
                "status": pa.array([f.status for f in files], pa.utf8()),
                "error": pa.array([f.error for f in files], pa.utf8()),
            }
        )
        datasets_t = pa.table(
            {
                "dataset_id": pa.array([d.dataset_id for d in recs], pa.int64()),
                "name": pa.array([d.name for d in recs], pa.utf8()),
                "kind": pa.array([d.kind for d in recs], pa.utf8()),
                "format": pa.array([d.format for d in recs], pa.utf8()),
                "entries": pa.array([d.entries for d in recs], pa.int64()),
                "n_files": pa.array([len(d.parts) for d in recs], pa.int32()),
                "n_columns": pa.array([sum(c.readable for c in d.columns) for d in recs], pa.int32()),
                "first_file_id": pa.array([file_ids.get(d.parts[0].path) if d.parts else None for d in recs],
                                          pa.int64()),
                "attributes": pa.array([json.dumps(d.attributes, default=str) for d in recs], pa.utf8()),
                "origin": pa.array([d.origin for d in recs], pa.utf8()),
            }
        )
        rows: dict[str, list] = {k: [] for k in ("dataset_id", "dataset", "position", "name", "arrow_type",
                                                  "source_type", "shape", "compressed_bytes",
                                                  "uncompressed_bytes", "readable", "reason")}
        for d in recs:
            for i, c in enumerate(d.columns):
                for key, value in (("dataset_id", d.dataset_id), ("dataset", d.name), ("position", i),
                                   ("name", c.name), ("arrow_type", c.arrow_type),
                                   ("source_type", c.source_type), ("shape", list(c.shape)),
                                   ("compressed_bytes", c.compressed_bytes),
                                   ("uncompressed_bytes", c.uncompressed_bytes), ("readable", c.readable),
                                   ("reason", c.reason or None)):
                    rows[key].append(value)
        types = {"dataset_id": pa.int64(), "dataset": pa.utf8(), "position": pa.int32(), "name": pa.utf8(),
                 "arrow_type": pa.utf8(), "source_type": pa.utf8(), "shape": pa.list_(pa.int64()),
                 "compressed_bytes": pa.int64(), "uncompressed_bytes": pa.int64(), "readable": pa.bool_(),
                 "reason": pa.utf8()}
        columns_t = pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})
        return {"files": files_t, "datasets": datasets_t, "columns": columns_t,
                "provenance": self.workspace.provenance_table(set(self.visible))}
