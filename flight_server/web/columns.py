"""Tables and trees column by column, with the page's cut: a histogram that respects integers
(one bin per value when there are few), jagged columns per element with the number of values
and entries shown, and two columns against each other (points, or a 2-D density when many)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.present import units
from arrowroot.flight_server.web.query import integer, number, selection

DEFAULT_BINS = 50
MAX_BINS = 500
MAX_POINTS = 5000         # a scatter of more points becomes a 2-D density
DENSITY_BINS = 80


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def leaf_type(t: pa.DataType) -> pa.DataType:
    while _is_list(t):
        t = t.value_type
    return t


def is_numeric(t: pa.DataType) -> bool:
    t = leaf_type(t)
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def is_jagged(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """All numbers of a (possibly jagged or N-D) numeric column, flattened, NaN dropped."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while _is_list(arr.type):
        arr = pc.list_flatten(arr)
    if not is_numeric(arr.type):
        raise InvalidRequest(f"plot: the column holds {arr.type}, not numbers")
    values = arr.drop_null().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values[np.isfinite(values)]


def _read(door_service: Service, caller: Caller, rec: Any, columns: list[str], q: Any,
          cap: int) -> tuple[Iterator[pa.RecordBatch], dict[str, Any]]:
    """The page's selection (cut, range, files) of ``columns``, at most ``cap`` entries."""
    schema = data.schema_of(rec)
    for c in columns:
        if c not in schema.names:
            raise InvalidRequest(f"column: {c[:60]!r} is not a column of {rec.name!r}")
    req = selection(rec.name, q, rec.attributes.get("timeseries") if isinstance(rec.attributes.get("timeseries"),
                                                                                 dict) else None)
    req["columns"] = columns
    req.pop("with_time", None)
    req.pop("fill_gaps", None)
    p = data.plan(door_service, caller, data.spec(req))
    capped = p.entries > cap
    head = p.head(cap) if capped else p
    if head is not None:
        p = head
    else:  # time selections and levels: the same entries by range
        req["entry_start"], req["entry_stop"] = p.entry_start, p.entry_start + cap
        for k in [k for k in req if k.startswith(("time_start", "time_stop"))]:
            req.pop(k)
        p = data.plan(door_service, caller, data.spec(req))
    info = {"entry_start": p.entry_start, "entry_stop": p.entry_stop, "capped": capped, "cap": cap,
            "where": req.get("where", "")}
    return data.read_batches(door_service, p, caller), info


def histogram_view(service: Service, caller: Caller, rec: Any, column: str, q: Any, cap: int) -> dict[str, Any]:
    """Counts over bin edges. Integers: one bin per value up to ``bins`` values, else integer-wide
    bins; ``per=count``: the number of elements per entry of a jagged column."""
    f = data.schema_of(rec).field(column) if column in data.schema_of(rec).names else None
    if f is None:
        raise InvalidRequest(f"column: {column[:60]!r} is not a column of {rec.name!r}")
    if not is_numeric(f.type):
        raise InvalidRequest(f"plot: column {column!r} holds {f.type}, not numbers")
    per_count = (q.get("per") or "") == "count"
    if per_count and not is_jagged(f.type):
        raise InvalidRequest(f"per=count: column {column!r} is not jagged")
    bins = min(max(integer(q, "bins") or DEFAULT_BINS, 1), MAX_BINS)
    batches, info = _read(service, caller, rec, [column], q, cap)
    chunks, entries = [], 0
    for b in batches:
        col = b.column(column)
        entries += len(col)
        chunks.append(pc.list_value_length(col).fill_null(0).to_numpy().astype(np.float64) if per_count
                      else numeric_values(col))
    values = np.concatenate(chunks) if chunks else np.empty(0)
    whole = per_count or pa.types.is_integer(leaf_type(f.type)) or pa.types.is_boolean(leaf_type(f.type))
    lo, hi = number(q, "lo"), number(q, "hi")
    if len(values):
        lo = float(values.min()) if lo is None else lo
        hi = float(values.max()) if hi is None else hi
    else:
        lo, hi = (0.0, 1.0) if lo is None or hi is None else (lo, hi)
    if hi < lo:
        raise InvalidRequest("hi: must be at least lo")
    if whole:
        lo, hi = math.floor(lo), math.ceil(hi)
        width = max(1, math.ceil((hi - lo + 1) / bins))
        n = math.ceil((hi - lo + 1) / width)
        edges = np.linspace(lo - 0.5, lo - 0.5 + width * n, n + 1)
    else:
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    below = int((values < edges[0]).sum())
    above = int((values > edges[-1]).sum())
    return {"view": "column", "column": column, "per": "count" if per_count else "value",
            "unit": "" if per_count else units(rec, f), "integer": bool(whole), "jagged": is_jagged(f.type),
            "edges": edges.tolist(), "counts": counts.astype(np.int64).tolist(), "values": int(len(values)),
            "entries": entries, "underflow": below, "overflow": above, **info}


def _pair(x: pa.Array, y: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Two columns as matching numbers: jagged × jagged element-wise (same lengths), jagged ×
    scalar with the scalar repeated per element, scalar × scalar."""
    if is_jagged(x.type) and is_jagged(y.type):
        if not pc.all(pc.equal(pc.list_value_length(x).fill_null(0), pc.list_value_length(y).fill_null(0))).as_py():
            raise InvalidRequest("scatter: the two jagged columns have different lengths in some entries")
        xs, ys = pc.list_flatten(x), pc.list_flatten(y)
    elif is_jagged(x.type):
        xs, ys = pc.list_flatten(x), y.take(pc.list_parent_indices(x))
    elif is_jagged(y.type):
        xs, ys = x.take(pc.list_parent_indices(y)), pc.list_flatten(y)
    else:
        xs, ys = x, y
    xa = xs.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
    ya = ys.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def scatter_view(service: Service, caller: Caller, rec: Any, x: str, y: str, q: Any, cap: int) -> dict[str, Any]:
    """Points (up to 5000), else a DENSITY_BINS² grid of counts."""
    schema = data.schema_of(rec)
    for c in (x, y):
        if c not in schema.names:
            raise InvalidRequest(f"column: {c[:60]!r} is not a column of {rec.name!r}")
        if not is_numeric(schema.field(c).type) or pa.types.is_fixed_size_list(schema.field(c).type):
            raise InvalidRequest(f"scatter: column {c!r} holds {schema.field(c).type}, not one number "
                                 "(or a jagged list of numbers) per entry")
    batches, info = _read(service, caller, rec, list(dict.fromkeys([x, y])), q, cap)
    xs, ys, entries = [], [], 0
    for b in batches:
        a, c = _pair(b.column(x), b.column(y))
        xs.append(a)
        ys.append(c)
        entries += b.num_rows
    xv = np.concatenate(xs) if xs else np.empty(0)
    yv = np.concatenate(ys) if ys else np.empty(0)
    out: dict[str, Any] = {"view": "scatter", "x": x, "y": y, "x_unit": units(rec, schema.field(x)),
                           "y_unit": units(rec, schema.field(y)), "points": int(len(xv)), "entries": entries, **info}
    if len(xv) <= MAX_POINTS:
        out["mode"] = "points"
        out["xs"], out["ys"] = xv.tolist(), yv.tolist()
        return out
    counts, xe, ye = np.histogram2d(xv, yv, bins=DENSITY_BINS)
    out["mode"] = "density"
    out["x_edges"], out["y_edges"] = xe.tolist(), ye.tolist()
    out["counts"] = counts.T.astype(np.int64).tolist()   # rows = y bins, bottom to top
    return out
