"""ROOT histograms the way ``TH1::Draw()`` shows them, from their table of bins (one row per
global bin, flow bins included; README "ROOT objects and histograms"): a TH1 or TProfile as
contents with errors over the bin edges, under/overflow as numbers; a TH2 as a grid of contents;
a TH3 as one slice along a chosen axis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data

KINDS = {"th1": 1, "tprofile": 1, "th2": 2, "tprofile2d": 2, "th3": 3, "tprofile3d": 3}
AXES = "xyz"
MAX_BINS = 4_000_000  # a histogram larger than this is refused (its table is read whole)


def is_histogram(rec: Any) -> bool:
    return rec.kind in KINDS


def _bins(service: Service, caller: Caller, rec: Any) -> pa.Table:
    if rec.entries > MAX_BINS:
        raise InvalidRequest(f"{rec.name!r} has {rec.entries} bins; the web view draws up to {MAX_BINS}")
    p = data.plan(service, caller, data.spec({"dataset": rec.name}))
    batches = list(data.read_batches(service, p, caller))
    return pa.Table.from_batches(batches, schema=p.schema) if batches else p.schema.empty_table()


def _axis(rec: Any, table: pa.Table, a: str, n_axes: int) -> dict[str, Any]:
    """Edges, labels and title of one axis (the in-range bins, from its first row of each bin)."""
    attrs = rec.attributes
    nbins = int(attrs.get(f"{a}_bins") or 0)
    binno = table[f"{a}_bin"].to_numpy()
    # bin b's row is any row with that bin number: take the first (x varies fastest)
    first = np.full(nbins + 2, -1, dtype=np.int64)
    order = np.arange(len(binno))[::-1]
    first[binno[order]] = order
    inner = first[1:nbins + 1]
    low = table[f"{a}_low"].to_numpy()[inner]
    high = table[f"{a}_high"].to_numpy()[inner]
    labels = attrs.get(f"{a}_labels")
    return {"name": a, "title": str(attrs.get(f"{a}_title") or ""), "bins": nbins,
            "edges": [float(v) for v in low] + [float(high[-1])] if nbins else [],
            "labels": [str(x) for x in labels] if labels else None}


def _grid(table: pa.Table, axes: list[dict], column: str) -> np.ndarray:
    """A column of the bin table as an array indexed [x_bin, y_bin, z_bin] (flow bins included)."""
    shape = tuple(a["bins"] + 2 for a in axes)
    out = np.zeros(shape, dtype=np.float64)
    index = tuple(table[f"{a['name']}_bin"].to_numpy().astype(np.int64) for a in axes)
    out[index] = table[column].to_numpy()
    return out


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values.ravel().tolist()]


def histogram_view(service: Service, caller: Caller, rec: Any, q: Any) -> dict[str, Any]:
    """The view of one ROOT histogram. TH3: ``axis`` (x, y or z; default z) and ``index``
    (1-based in-range bin along it; default the middle) choose the slice shown."""
    dims = KINDS[rec.kind]
    table = _bins(service, caller, rec)
    axes = [_axis(rec, table, a, dims) for a in AXES[:dims]]
    content = _grid(table, axes, "content")
    error = np.sqrt(np.clip(_grid(table, axes, "variance"), 0, None))
    attrs = rec.attributes
    profile = rec.kind.startswith("tprofile")
    out: dict[str, Any] = {"view": "histogram", "dims": dims, "kind": rec.kind, "class": attrs.get("class", ""),
                           "title": str(attrs.get("title") or rec.name), "entries": attrs.get("entries"),
                           "profile": profile, "value_title": str(attrs.get("value_title") or "")}
    if dims == 1:
        out["axes"] = axes
        out["content"] = _finite(content[1:-1])
        out["error"] = _finite(error[1:-1])
        out["underflow"], out["overflow"] = float(content[0]), float(content[-1])
        out["integral"] = float(np.nansum(content[1:-1]))
        return out
    if dims == 3:
        along = (q.get("axis") or "z").strip().lower()
        if along not in AXES:
            raise InvalidRequest(f"axis: one of x, y, z (got {along[:10]!r})")
        k = AXES.index(along)
        n = axes[k]["bins"]
        index = _slice_index(q, n)
        content = np.take(content, index, axis=k)
        error = np.take(error, index, axis=k)
        shown = [a for i, a in enumerate(axes) if i != k]
        edges = axes[k]["edges"]
        out["slice"] = {"axis": along, "index": index, "bins": n, "low": edges[index - 1], "high": edges[index],
                        "title": axes[k]["title"]}
        axes = shown
    inner = content[1:-1, 1:-1]
    out["axes"] = axes
    # rows = y bins (bottom to top), columns = x bins: the picture's own order
    out["content"] = [_finite(row) for row in inner.T]
    out["error"] = [_finite(row) for row in error[1:-1, 1:-1].T]
    out["flow"] = float(np.nansum(content) - np.nansum(inner))
    out["integral"] = float(np.nansum(inner))
    return out


def _slice_index(q: Any, n: int) -> int:
    text = (q.get("index") or "").strip()
    if not text:
        return max(1, (n + 1) // 2)
    try:
        index = int(text)
    except ValueError:
        raise InvalidRequest(f"index: an integer bin number expected (got {text[:20]!r})") from None
    if not 1 <= index <= n:
        raise InvalidRequest(f"index: bin {index} is outside 1..{n}")
    return index
