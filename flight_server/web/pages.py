"""The HTML pages: ``/`` (the folder tree and the search box) and ``/datasets/NAME`` (what the
dataset is, its metadata as tables, a preview under a form with every read option, downloads,
its views, and code that reads the same selection)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response

from arrowroot.flight_server.export.formats import FORMATS
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.web import data, metadata, series, views
from arrowroot.flight_server.web.api import series_of
from arrowroot.flight_server.web.door import Door
from arrowroot.flight_server.web.present import describe, quote, short, tree
from arrowroot.flight_server.web.query import SELECTION_KEYS, criteria, integer, selection
from arrowroot.flight_server.web.snippets import snippets

PREVIEW_ROWS = 20
MAX_PREVIEW_ROWS = 500
OPEN_TREE_UP_TO = 60         # datasets; larger trees open two levels deep
MAX_RESULTS = 500            # ranked search results listed
HISTOGRAM_KINDS = {"th1", "th2", "th3", "tprofile", "tprofile2d", "tprofile3d"}


class Pages:
    def __init__(self, door: Door):
        self.door = door

    def index(self, request: Request, caller: Caller) -> Response:
        door = self.door
        q = request.query_params
        visible = data.all_visible(door.service, caller)
        error = None
        text = (q.get("q") or "").strip()
        try:
            crit = criteria(q)
            found = data.find(door.service, caller, text, crit) if text else \
                data.datasets(door.service, caller, crit) if crit else visible
        except Exception as exc:
            f = data.failure("search", exc)
            error, crit, found = f.message, {}, []
        searching = bool(crit) or bool(text)
        ctx = {"root": tree(found), "found": len(found), "total": len(visible), "q": q, "searching": searching,
               "open_all": searching or len(found) <= OPEN_TREE_UP_TO, "error": error,
               "formats": sorted({d.format for d in visible}), "kinds": sorted({d.kind for d in visible}),
               "ranked": found[:MAX_RESULTS] if text else None}
        return door.render(request, caller, "index.html", ctx, 400 if error else 200)

    def dataset(self, request: Request, caller: Caller) -> Response:
        door = self.door
        name = request.path_params["name"]
        q = request.query_params
        rec = data.dataset(door.service, caller, name)
        info = describe(rec)
        schema = data.schema_of(rec)
        ts = series.time_series_of(rec)
        ctx: dict[str, Any] = {"rec": rec, "info": info, "q": q, "formats": list(FORMATS), "series": ts,
                               "is_histogram": rec.kind in HISTOGRAM_KINDS,
                               "multi": len(info["parts"]) > 1, "sliceable": any(c["shape"] for c in info["schema"]),
                               "channels": sorted({p["channel"] for p in info["parts"] if p["channel"] is not None})}
        status = 200
        try:
            sel = selection(name, q, ts)
            ctx["preview"] = self.preview(caller, sel, q, schema)
        except Exception as exc:
            f = data.failure(f"preview {name}", exc)
            ctx["preview_error"], status = f.message, f.status
            sel = {"dataset": name}
        ctx["sel"] = sel
        query = [(k, v) for k, v in q.multi_items() if k in SELECTION_KEYS and v.strip()]
        ctx["query"] = urllib.parse.urlencode(query)
        ctx["downloads"] = [(f, f"/api/data/{quote(name)}?" + urllib.parse.urlencode(query + [("format", f)]))
                            for f in FORMATS]
        ctx["download_hidden"] = query
        ctx["snippets"] = snippets(door, request, sel, caller.user)
        ctx["views"] = views.choices(door, rec, schema, q)
        ctx["plot_cap"] = door.options.plot_entries
        lineage = data.lineage(door.service, caller, name)
        attrs = dict(rec.attributes)
        if len(lineage) > 1 and "parent" in attrs:  # the record keeps the name the parent had when made
            attrs["parent"] = lineage[1].get("name", attrs["parent"])
        ctx["attributes"] = metadata.attributes(attrs)
        ctx["drift"] = metadata.drift(rec.attributes)
        ctx["missing"] = metadata.missing(rec.attributes)
        visible = {d.name for d in data.all_visible(door.service, caller)} if lineage else set()
        ctx["lineage"] = metadata.chain(lineage, visible)
        return door.render(request, caller, "dataset.html", ctx, status)

    def preview(self, caller: Caller, sel: dict, q: Any, schema: pa.Schema) -> dict[str, Any]:
        service = self.door.service
        rows = min(max(integer(q, "rows") or PREVIEW_ROWS, 1), MAX_PREVIEW_ROWS)
        req = dict(sel)
        by_time = any(k.startswith(("time_start", "time_stop")) for k in req)
        numbered = "entry" not in schema.names and not req.get("fill_gaps")
        if numbered:
            req["with_entry_numbers"] = True
        plan = data.plan(service, caller, data.spec(req))
        if not by_time:  # no cut: read just the rows shown (planned once: the head of the plan)
            plan = plan.head(rows) or plan
        got: list[pa.RecordBatch] = []
        n = 0
        t0 = time.perf_counter()
        batches = data.read_batches(service, plan, caller)
        try:
            for b in batches:
                got.append(b.slice(0, rows - n))
                n += min(b.num_rows, rows - n)
                if n >= rows:
                    break
        finally:
            batches.close()
        table = pa.Table.from_batches(got, schema=plan.schema) if got else plan.schema.empty_table()
        return {"columns": table.column_names, "rows": [[short(v) for v in r.values()] for r in table.to_pylist()],
                "count": table.num_rows, "scanned": plan.entries, "secs": time.perf_counter() - t0,
                "range": (plan.entry_start, plan.entry_stop), "cut": bool(req.get("where")), "limit": rows,
                "by_time": by_time, "gaps": plan.notes.get("gaps", [])}


__all__ = ["Pages", "series_of"]
