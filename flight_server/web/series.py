"""A series drawn against its time (or its entry number): every sample of the range is read
once, on the server, and folded into min/max per pixel, so an hour at 16 kHz (57.6 M samples)
arrives as a few thousand numbers that still show every spike. Gaps between files stay empty
pixels; data-quality flags come along as segments for a band under the plot."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.timeranges import GPS_EPOCH_UNIX, gps_to_utc
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.query import integer, selection

DEFAULT_PIXELS = 1000
MAX_PIXELS = 4000
MAX_DQ_FLAGS = 8


def time_series_of(rec: Any) -> dict | None:
    """The dataset's time-series record when it can be read by time (LH5 waveform tables cannot)."""
    series = rec.attributes.get("timeseries")
    if isinstance(series, dict) and "rate" in series and "t0" in series and series.get("layout") != "waveforms":
        return series
    return None


def _fold(lo: np.ndarray, hi: np.ndarray, counts: np.ndarray, values: np.ndarray, first: float, rate: float,
          origin: float, width: float) -> None:
    """Fold samples (sample j at time first + j/rate) into the per-pixel min, max and count."""
    n = len(values)
    if not n:
        return
    pixels = len(lo)
    t_last = first + (n - 1) / rate
    b0 = max(0, int(math.floor((first - origin) / width)))
    b1 = min(pixels - 1, int(math.floor((t_last - origin) / width)))
    if b1 < b0:
        return
    edges = origin + np.arange(b0, b1 + 2) * width               # pixel b spans [edges[b-b0], edges[b-b0+1])
    cuts = np.ceil((edges - first) * rate - 1e-6).astype(np.int64)
    cuts = np.clip(cuts, 0, n)
    starts, stops = cuts[:-1], cuts[1:]
    keep = stops > starts
    if not keep.any():
        return
    segs = starts[keep]
    v = values.astype(np.float64, copy=False)
    mins = np.fmin.reduceat(v, segs)
    maxs = np.fmax.reduceat(v, segs)
    # reduceat's last segment runs to the end of v: trim it to its own stop
    last_stop = stops[keep][-1]
    if last_stop < n:
        mins[-1] = np.nanmin(v[segs[-1]:last_stop]) if last_stop > segs[-1] else mins[-1]
        maxs[-1] = np.nanmax(v[segs[-1]:last_stop]) if last_stop > segs[-1] else maxs[-1]
    idx = np.arange(b0, b1 + 1)[keep]
    lo[idx] = np.fmin(lo[idx], mins)
    hi[idx] = np.fmax(hi[idx], maxs)
    counts[idx] += (stops - starts)[keep]


def _numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise InvalidRequest(f"series: the column holds {t}, not numbers")
    if column.null_count:
        column = column.cast(pa.float64()).fill_null(float("nan"))
    return column.to_numpy(zero_copy_only=False)


def series_view(service: Service, caller: Caller, rec: Any, column: str, q: Any) -> dict[str, Any]:
    """Min/max per pixel of ``column`` over a time range (``time_start``/``time_stop`` as GPS or
    UTC seconds or ISO-8601, or ``time_last`` seconds; default: all of it), or over an entry range
    for datasets without a time axis. ``pixels``: the plot's width (≤ 4000)."""
    pixels = min(max(integer(q, "pixels") or DEFAULT_PIXELS, 10), MAX_PIXELS)
    series = time_series_of(rec)
    sel = selection(rec.name, q, series)
    req: dict[str, Any] = {"dataset": rec.name, "columns": [column]}
    if series is not None:
        for key in ("time_start", "time_stop", "time_start_iso", "time_stop_iso", "files", "channels", "dq"):
            if key in sel:
                req[key] = sel[key]
        if not any(k.startswith("time_start") for k in req):
            req["time_start"] = float(series["t0"])
        if not any(k.startswith("time_stop") for k in req):
            req["time_stop"] = float(series["t_end"])
    else:
        for key in ("entry_start", "entry_stop", "files", "channels", "allow_missing"):
            if key in sel:
                req[key] = sel[key]
    plan = data.plan(service, caller, data.spec(req))
    if series is not None:
        info = json.loads((plan.schema.metadata or {}).get(b"arrowroot.timeseries", b"{}"))
        start, stop, rate = float(info["start"]), float(info["stop"]), float(series["rate"])
    else:
        start, stop, rate = float(plan.entry_start), float(plan.entry_stop), 1.0
    span = max(stop - start, 1.0 / rate)
    samples = max(0, plan.total_records)
    raw = samples <= 2 * pixels
    lo = np.full(pixels, np.nan)
    hi = np.full(pixels, np.nan)
    counts = np.zeros(pixels, dtype=np.int64)
    width = span / pixels
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    tasks = iter(plan.tasks)
    task = None
    offset = remaining = 0
    for batch in data.read_batches(service, plan, caller):
        values = _numbers(batch.column(column))
        done = 0
        while done < len(values):
            if remaining == 0:
                task = next(tasks)
                part = task.parts[0]
                offset, remaining = 0, part.stop - part.start
            part = task.parts[0]
            take = min(remaining, len(values) - done)
            chunk = values[done:done + take]
            if series is not None:
                first = part.time0 + (part.start + offset) / rate
            else:
                first = float(part.global_start + offset)
            if raw:
                xs.append(first + np.arange(take) / rate - start)
                ys.append(chunk.astype(np.float64))
            else:
                _fold(lo, hi, counts, chunk, first, rate, start, width)
            done += take
            offset += take
            remaining -= take
    out: dict[str, Any] = {"view": "series", "column": column, "axis": "time" if series else "entry",
                           "origin": start, "span": span, "rate": rate, "samples": samples, "pixels": pixels,
                           "gaps": plan.notes.get("gaps", [])}
    if raw:
        out["mode"] = "samples"
        out["x"] = _list(np.concatenate(xs)) if xs else []
        out["y"] = _list(np.concatenate(ys)) if ys else []
        out["per_pixel"] = 1
    else:
        out["mode"] = "minmax"
        empty = counts == 0
        lo[empty] = np.nan
        hi[empty] = np.nan
        out["x"] = _list(np.arange(pixels) * width)
        out["min"], out["max"] = _list(lo), _list(hi)
        out["per_pixel"] = int(math.ceil(samples / max(1, int((~empty).sum()))))
    if series is not None:
        scale = series.get("scale", "gps")
        out.update(scale=scale, channel=series.get("channel"), unit=series.get("unit") or "",
                   coverage=[series.get("t0"), series.get("t_end")])
        out["utc_origin"] = gps_to_utc(start) if scale == "gps" else start
        out["gps_epoch_unix"] = GPS_EPOCH_UNIX
        out["dq"] = _dq(rec, series, start, stop)
        if req.get("dq"):
            out["dq_kept"] = info.get("dq_segments", [])
    return out


def _dq(rec: Any, series: dict, start: float, stop: float) -> dict[str, list[list[float]]]:
    """The data-quality flags' segments inside [start, stop) (GWOSC DQmask), at most 8 flags."""
    flags = rec.attributes.get("arrowroot.timeseries_dq") or series.get("dq") or {}
    flags = flags.get("flags") if isinstance(flags, dict) else None
    out: dict[str, list[list[float]]] = {}
    for name, segs in list((flags or {}).items())[:MAX_DQ_FLAGS]:
        kept = [[max(a, start), min(b, stop)] for a, b in segs if b > start and a < stop]
        out[str(name)] = kept
    return out


def _list(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.astype(np.float64).tolist()]
