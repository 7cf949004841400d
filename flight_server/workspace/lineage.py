"""Where a workspace dataset comes from: its provenance and its ancestors', nearest first.

Workspace parents are followed by id, so a renamed parent shows its current name and a deleted
one says when it was deleted.
"""

from __future__ import annotations

from typing import Any

from arrowroot.catalog.models import WorkspaceRecord
from arrowroot.catalog.store import Catalog

from arrowroot.flight_server.core.errors import NotFound
from arrowroot.flight_server.workspace.overlays import version_of


def lineage(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    """This dataset's provenance and its ancestors', nearest first."""
    out: list[dict[str, Any]] = []
    seen = set()
    e = catalog.workspace_entry(name)
    while name and name not in seen:
        seen.add(name)
        if e is None:
            try:
                rec = catalog.dataset(name)
                out.append({"name": name, "kind": "source", "format": rec.format, "entries": rec.entries,
                            "version": version_of(rec)})
            except NotFound:
                out.append({"name": name, "kind": "missing"})
            break
        out.append(provenance_dict(e))
        name, parent_id = e.parent or "", e.parent_id
        e = catalog.workspace_by_id(parent_id) if parent_id else catalog.workspace_entry(name)
        if e is not None:
            name = e.name
        elif parent_id and (gone := catalog.workspace_removed(parent_id)) is not None:
            out.append({"name": gone["name"], "kind": "deleted", "owner": gone["owner"],
                        "was": gone["kind"], "deleted_at": gone["removed_at"]})
            break
    return out


def provenance_dict(e: WorkspaceRecord) -> dict[str, Any]:
    return {"name": e.name, "id": e.id or None, "kind": e.kind, "owner": e.owner, "parent": e.parent,
            "parent_id": e.parent_id,
            "parent_version": e.parent_version, "base": e.base, "cut": e.cut, "columns": list(e.columns),
            "bytes": e.bytes, "created_at": e.created_at, "arrowroot_version": e.version,
            "metadata": e.metadata}
