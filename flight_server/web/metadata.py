"""A dataset's metadata as tables a reader can scan: attributes (nested values as nested
tables), schema drift over a folder's files, columns some files lack, and a workspace dataset's
provenance as a chain of links to its ancestors by their current names."""

from __future__ import annotations

import json
import time
from typing import Any

#: attributes shown elsewhere on the page (as their own tables), or bookkeeping
OWN_TABLES = ("schema_drift", "arrowroot.missing", "timeseries_parts", "arrowroot.timeseries_parts",
              "arrowroot.timeseries_dq", "arrowroot.fingerprint")
MAX_ITEMS = 50          # list items or dict keys shown per value
MAX_TEXT = 300


def cell(value: Any, depth: int = 0) -> dict[str, Any]:
    """A value as a renderable cell: ``{"text"}``, ``{"rows": [[k, cell], ...]}`` for mappings, or
    ``{"items": [cell, ...]}`` for lists of mappings; long values shortened with the rest counted."""
    if isinstance(value, dict) and depth < 3:
        items = list(value.items())
        rows = [[str(k), cell(v, depth + 1)] for k, v in items[:MAX_ITEMS]]
        return {"rows": rows, "more": max(0, len(items) - MAX_ITEMS)}
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
        text = ", ".join("null" if v is None else str(v) for v in value[:MAX_ITEMS])
        more = len(value) - MAX_ITEMS
        return {"text": text + (f", … ({more} more)" if more > 0 else "")}
    if isinstance(value, list) and depth < 3:
        return {"items": [cell(v, depth + 1) for v in value[:MAX_ITEMS]], "more": max(0, len(value) - MAX_ITEMS)}
    if isinstance(value, float):
        return {"text": f"{value:.10g}"}
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return {"text": text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"}


def attributes(attrs: dict[str, Any]) -> list[list[Any]]:
    """[[key, cell], ...] of the attributes that have no table of their own."""
    return [[k, cell(v)] for k, v in attrs.items() if k not in OWN_TABLES]


def drift(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Schema drift over a folder's or declared dataset's files: one row per column changed."""
    d = attrs.get("schema_drift")
    if not isinstance(d, dict):
        return []
    rows: list[dict[str, Any]] = []
    for column, info in (d.get("missing") or {}).items():
        info = info if isinstance(info, dict) else {}
        rows.append({"column": column, "change": "missing", "count": info.get("count"),
                     "detail": info.get("examples") or []})
    for column, info in (d.get("widened") or {}).items():
        info = info if isinstance(info, dict) else {}
        sources = info.get("from") or {}
        rows.append({"column": column, "change": f"widened to {info.get('type', '?')}", "count": len(sources),
                     "detail": [f"{t} in {where}" for t, where in sources.items()]})
    for column, info in (d.get("unreadable") or {}).items():
        rows.append({"column": column, "change": "unreadable", "count": None,
                     "detail": [str(info)[:MAX_TEXT]]})
    for key, info in d.items():   # any other kind of drift the indexer records
        if key not in ("missing", "widened", "unreadable"):
            rows.append({"column": "", "change": key, "count": None, "detail": [json.dumps(info, default=str)[:MAX_TEXT]]})
    return rows


def missing(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Columns some files lack (read as nulls with allow_missing): the column and those files."""
    m = attrs.get("arrowroot.missing")
    if not isinstance(m, dict):
        return []
    return [{"column": c, "files": list(files)[:MAX_ITEMS], "count": len(files)} for c, files in m.items()]


def chain(lineage: list[dict[str, Any]], visible: set[str]) -> list[dict[str, Any]]:
    """The lineage from the source to this dataset (top to bottom), each step with a link when the
    caller may open it, and what made it (kind, cut, columns, owner, time)."""
    steps = []
    for item in reversed(lineage):
        name = item.get("name", "")
        facts = [(k, item[k]) for k in ("kind", "format", "cut", "columns", "entries", "owner", "created_at",
                                        "parent_version", "version", "arrowroot_version")
                 if item.get(k) not in (None, "", [], {})]
        facts = [(k, _when(v) if k == "created_at" else v) for k, v in facts]
        if isinstance(item.get("metadata"), dict) and item["metadata"]:
            facts.append(("metadata", ", ".join(f"{k}={v}" for k, v in item["metadata"].items())))
        steps.append({"name": name, "link": name in visible, "facts": facts})
    return steps


def _when(value: Any) -> Any:
    """UNIX seconds as a UTC date and time."""
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    return value
