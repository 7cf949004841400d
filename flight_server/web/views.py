"""Which views a dataset gets, chosen by what it is, and the two ways each is served: JSON for
the page's interactive plots (``/api/view/NAME?view=...``) and a PNG (``/plot/VIEW/NAME``) for
pages without JavaScript. Both come from the same numbers (``hists``, ``series``, ``planes``,
``columns``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.errors import status_of
from arrowroot.flight_server.web import columns, data, hists, planes, plots, series
from arrowroot.flight_server.web.door import Door
from arrowroot.flight_server.web.middleware import record_of
from arrowroot.flight_server.web.present import quote, shape_of
from arrowroot.flight_server.web.query import SELECTION_KEYS, flag

VIEWS = ("histogram", "series", "plane", "column", "scatter")
#: the old picture names (``/plot/hist``, ``/plot/image``, ``/plot/line``) still answer
ALIASES = {"hist": "column", "image": "plane", "line": "series"}
#: the page parameter that picks each view's column (kept from the first web view)
PAGE_KEYS = {"column": "hist", "plane": "image", "series": "line"}


def compute(door: Door, caller: Caller, rec: Any, view: str, q: Any) -> dict[str, Any]:
    """The numbers of one view of ``rec`` (the JSON the page draws)."""
    view = ALIASES.get(view, view)
    service = door.service
    cap = door.options.plot_entries
    if view == "histogram":
        if not hists.is_histogram(rec):
            raise InvalidRequest(f"view: {rec.name!r} is a {rec.kind}, not a ROOT histogram")
        return hists.histogram_view(service, caller, rec, q)
    if view == "scatter":
        return columns.scatter_view(service, caller, rec, q.get("x") or "", q.get("y") or "", q, cap)
    column = q.get("column") or ""
    if column not in data.schema_of(rec).names:
        raise InvalidRequest(f"column: {column[:60]!r} is not a column of {rec.name!r}")
    if view == "series":
        return series.series_view(service, caller, rec, column, q)
    if view == "plane":
        return planes.plane_view(service, caller, rec, column, q)
    if view == "column":
        return columns.histogram_view(service, caller, rec, column, q, cap)
    raise InvalidRequest(f"view: {view[:20]!r} is not one of {', '.join(VIEWS)}")


def picture(v: dict[str, Any], log: bool) -> bytes:
    kind = v["view"]
    if kind == "histogram":
        return plots.histogram_png(v, log)
    if kind == "series":
        return plots.series_png(v)
    if kind == "plane":
        return plots.plane_png(v, log)
    if kind == "column":
        return plots.column_png(v, log)
    return plots.scatter_png(v, log)


class Views:
    """``/api/view/NAME`` (JSON) and ``/plot/VIEW/NAME`` (PNG)."""

    def __init__(self, door: Door):
        self.door = door

    def json(self, request: Request) -> Response:
        caller = self.door.caller(request)
        q = request.query_params
        rec = data.dataset(self.door.service, caller, request.path_params["name"])
        return JSONResponse(compute(self.door, caller, rec, q.get("view") or "", q),
                            headers={"cache-control": "private, max-age=60"})

    def png(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        name = request.path_params["name"]
        q = request.query_params
        try:
            caller = self.door.caller(request)
            rec = data.dataset(self.door.service, caller, name)
            png = picture(compute(self.door, caller, rec, kind, q), flag(q, "log"))
            return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=60"})
        except Exception as exc:
            record = record_of(request)
            record.status = status_of(exc).grpc
            f = data.failure(f"plot {name}", exc, record.request_id)
            return Response(plots.message_png(f.message), status_code=f.status, media_type="image/png")


# ---------------------------------------------------------------- what the page offers


def _numeric_scalar(f: pa.Field) -> bool:
    return columns.is_numeric(f.type) and not shape_of(f) and not columns.is_jagged(f.type)


def choices(door: Door, rec: Any, schema: pa.Schema, q: Any) -> list[dict[str, Any]]:
    """The views of this dataset, most natural first, each with the parameters it is drawn with:
    ``{"view", "title", "params", "json", "png", "options"}``."""
    name = quote(rec.name)
    keep = {k: v for k, v in q.items() if k in SELECTION_KEYS and v.strip() and k != "columns"}
    out: list[dict[str, Any]] = []

    def add(view: str, title: str, params: dict[str, str], options: dict[str, Any] | None = None) -> None:
        params = {k: v for k, v in params.items() if v not in (None, "")}
        query = urllib.parse.urlencode({**params})
        out.append({"view": view, "title": title, "params": params, "options": options or {},
                    "json": f"/api/view/{name}?" + urllib.parse.urlencode({"view": view, **params}),
                    "png": f"/plot/{view}/{name}?" + query})

    log = "1" if flag(q, "log") else ""
    if hists.is_histogram(rec):
        dims = hists.KINDS[rec.kind]
        params = {"log": log}
        if dims == 3:
            params.update(axis=q.get("axis") or "z", index=q.get("index") or "")
        add("histogram", {1: "Histogram", 2: "Colour map", 3: "Slices"}[dims], params,
            {"dims": dims, "bins": {a: rec.attributes.get(f"{a}_bins") for a in "xyz"[:dims]}})
        return out
    ts = series.time_series_of(rec)
    scalars = [f.name for f in schema if _numeric_scalar(f)]
    if ts is not None and scalars:
        col = q.get("line") if q.get("line") in scalars else scalars[0]
        add("series", "Time series", {"column": col, **{k: v for k, v in keep.items()
                                                        if k.startswith("time_") or k in ("files", "channels", "dq")}},
            {"columns": scalars, "series": ts})
    images = [f.name for f in schema if columns.is_numeric(f.type) and len(shape_of(f)) >= 1]
    if images:
        col = q.get("image") if q.get("image") in images else images[0]
        f = schema.field(col)
        shape = (rec.entries, *shape_of(f))
        plane = q.get("plane") or planes.PlaneCut.default(shape)
        add("plane", "Planes", {"column": col, "plane": plane, "log": log},
            {"columns": images, "shape": list(shape), "names": planes.axis_names(rec, col, len(shape))})
    hist_cols = [f.name for f in schema if columns.is_numeric(f.type) and not shape_of(f)]
    hist_cols.sort(key=lambda c: not pa.types.is_floating(columns.leaf_type(schema.field(c).type)))  # measurements first
    if hist_cols and ts is None:
        col = q.get("hist") if q.get("hist") in hist_cols else hist_cols[0]
        jagged = columns.is_jagged(schema.field(col).type)
        add("column", "Histogram of a column", {"column": col, "bins": q.get("bins") or "", "lo": q.get("lo") or "",
                                                "hi": q.get("hi") or "", "per": q.get("per") if jagged else "",
                                                "log": log, **keep},
            {"columns": hist_cols, "jagged": [c for c in hist_cols if columns.is_jagged(schema.field(c).type)]})
        pairable = [c for c in hist_cols if not pa.types.is_fixed_size_list(schema.field(c).type)]
        if len(pairable) >= 2:
            x = q.get("x") if q.get("x") in pairable else pairable[0]
            y = q.get("y") if q.get("y") in pairable else pairable[1]
            add("scatter", "Two columns", {"x": x, "y": y, "log": log, **keep}, {"columns": pairable})
    lines = [c for c in scalars if rec.format in ("hdf5", "lh5")]
    if ts is None and lines:
        lines.sort(key=lambda c: not pa.types.is_floating(schema.field(c).type))  # measurements first
        col = q.get("line") if q.get("line") in lines else lines[0]
        add("series", "Against entry number", {"column": col, **{k: v for k, v in keep.items()
                                                                 if k in ("entry_start", "entry_stop", "files")}},
            {"columns": lines})
    return out
