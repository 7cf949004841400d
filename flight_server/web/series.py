"""A series drawn against its time (or its entry number): every sample of the range is read
once, on the server, and folded into min/max per pixel, so an hour at 16 kHz (59 M samples)
arrives as a few thousand numbers that still show every spike. Gaps between files stay empty
pixels; data-quality flags come along as segments for a band under the plot.

Reading a whole file of a channel also keeps its min/max per block of 256 samples (a "trend", as
LIGO keeps second- and minute-trends): later views coarser than 16 blocks a pixel are folded from
those, on a grid snapped to the blocks, without reading the samples again (bounded, keyed by the
file's identity, so a changed file is read anew)."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
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
DEFAULT_SAMPLES = 1 << 27     # a view with no range given shows at most this many (2.3 h at 16 kHz)
MAX_SAMPLES = 1 << 31         # samples one view reads at most (streamed and folded: time, not memory)
BLOCK = 256                   # samples per trend block
TREND_MIN_BLOCKS = 16         # blocks per pixel before a view is folded from trends
TREND_BYTES = 64 << 20        # trends kept (16 bytes a block: 64 MiB ≈ 1 G samples)


class Trends:
    """Min/max per BLOCK samples of whole files' columns, least recently used dropped first."""

    def __init__(self, limit: int = TREND_BYTES):
        self.limit = limit
        self.items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        with self.lock:
            got = self.items.get(key)
            if got is not None:
                self.items.move_to_end(key)
            return got

    def put(self, key: tuple, lo: np.ndarray, hi: np.ndarray) -> None:
        size = lo.nbytes + hi.nbytes
        if size > self.limit:
            return
        with self.lock:
            old = self.items.pop(key, None)
            if old is not None:
                self.bytes -= old[0].nbytes + old[1].nbytes
            self.items[key] = (lo, hi)
            self.bytes += size
            while self.bytes > self.limit:
                _, (a, b) = self.items.popitem(last=False)
                self.bytes -= a.nbytes + b.nbytes


TRENDS = Trends()


def _trend_key(part: Any, column: str) -> tuple:
    return (part.path, part.size, part.mtime, part.object_path, column)


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
    UTC seconds or ISO-8601, or ``time_last`` seconds; default: all of it up to DEFAULT_SAMPLES), or
    over an entry range for datasets without a time axis. ``pixels``: the plot's width (≤ 4000)."""
    pixels = min(max(integer(q, "pixels") or DEFAULT_PIXELS, 10), MAX_PIXELS)
    series = time_series_of(rec)
    sel = selection(rec.name, q, series)
    req: dict[str, Any] = {"dataset": rec.name, "columns": [column]}
    if series is not None:
        for key in ("time_start", "time_stop", "time_start_iso", "time_stop_iso", "files", "channels", "dq"):
            if key in sel:
                req[key] = sel[key]
        given = any(k.startswith(("time_start", "time_stop")) for k in req)
        if not any(k.startswith("time_start") for k in req):
            req["time_start"] = float(series["t0"])
        if not any(k.startswith("time_stop") for k in req):
            req["time_stop"] = float(series["t_end"])
            if not given:   # a long channel opens on its first stretch, not on all of it
                req["time_stop"] = min(req["time_stop"], req["time_start"] + DEFAULT_SAMPLES / float(series["rate"]))
    else:
        for key in ("entry_start", "entry_stop", "files", "channels", "allow_missing"):
            if key in sel:
                req[key] = sel[key]
        given = "entry_start" in req or "entry_stop" in req
        if not given and rec.entries > DEFAULT_SAMPLES:
            req["entry_stop"] = DEFAULT_SAMPLES
    plan = data.plan(service, caller, data.spec(req))
    if plan.total_records > MAX_SAMPLES:
        raise InvalidRequest(f"series: {plan.total_records} samples in the range, over the {MAX_SAMPLES} a plot "
                             "reads; narrow the time or entry range")
    if series is not None:
        info = json.loads((plan.schema.metadata or {}).get(b"arrowroot.timeseries", b"{}"))
        start, stop, rate = float(info["start"]), float(info["stop"]), float(series["rate"])
    else:
        start, stop, rate = float(plan.entry_start), float(plan.entry_stop), 1.0
    span = max(stop - start, 1.0 / rate)
    samples = max(0, plan.total_records)
    out: dict[str, Any] = {"view": "series", "column": column, "axis": "time" if series else "entry",
                           "rate": rate, "samples": samples, "gaps": plan.notes.get("gaps", []),
                           "first_stretch": not given and (stop < float(series["t_end"]) if series is not None
                                                           else stop < rec.entries)}
    folded = None
    if series is not None and not req.get("dq") and samples >= pixels * BLOCK * TREND_MIN_BLOCKS:
        folded = _from_trends(plan, column, rate, start, stop, pixels)
    if folded is not None:
        origin, width, lo, hi, counts = folded
        out["trend"] = {"block": BLOCK}
    else:
        origin, width = start, span / pixels
        lo, hi, counts, xs, ys = _read(service, caller, rec, plan, column, series is not None, rate, start, width,
                                       pixels, raw=samples <= 2 * pixels)
        if samples <= 2 * pixels:
            out.update(origin=start, span=span, pixels=pixels, mode="samples", per_pixel=1,
                       x=_list(np.concatenate(xs)) if xs else [], y=_list(np.concatenate(ys)) if ys else [])
    if "mode" not in out:
        empty = counts == 0
        lo[empty] = np.nan
        hi[empty] = np.nan
        out.update(origin=origin, span=width * len(lo), pixels=len(lo), mode="minmax",
                   x=_list(np.arange(len(lo)) * width), min=_list(lo), max=_list(hi),
                   per_pixel=int(math.ceil(int(counts.sum()) / max(1, int((~empty).sum())))))
    start = out["origin"]
    if series is not None:
        scale = series.get("scale", "gps")
        out.update(scale=scale, channel=series.get("channel"), unit=series.get("unit") or "",
                   coverage=[series.get("t0"), series.get("t_end")])
        out["utc_origin"] = gps_to_utc(start) if scale == "gps" else start
        stop = start + out["span"]
        out["gps_epoch_unix"] = GPS_EPOCH_UNIX
        out["dq"] = _dq(rec, series, start, stop)
        if req.get("dq"):
            out["dq_kept"] = info.get("dq_segments", [])
    return out


def _read(service: Service, caller: Caller, rec: Any, plan: Any, column: str, timed: bool, rate: float,
          origin: float, width: float, pixels: int, raw: bool) -> tuple:
    """Read every sample of the plan once: fold into pixels (or keep them all when few); a task
    that covers a whole file also leaves that file's trend behind."""
    lo = np.full(pixels, np.nan)
    hi = np.full(pixels, np.nan)
    counts = np.zeros(pixels, dtype=np.int64)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    sizes = {(p.path, p.object_path): p.entries for p in rec.parts}
    acc: dict[tuple, list] = {}          # file → [block min, block max, samples seen]
    tasks = iter(plan.tasks)
    task = part = trend = None
    offset = remaining = 0
    for batch in data.read_batches(service, plan, caller):
        values = _numbers(batch.column(column))
        done = 0
        while done < len(values):
            if remaining == 0:
                task = next(tasks)
                part = task.parts[0]
                offset, remaining = 0, part.stop - part.start
                entries = sizes.get((part.path, part.object_path))
                trend = None
                if timed and entries:
                    trend = acc.setdefault(_trend_key(part, column), [np.full(math.ceil(entries / BLOCK), np.nan),
                                                                      np.full(math.ceil(entries / BLOCK), np.nan),
                                                                      0, entries])
            assert part is not None
            take = min(remaining, len(values) - done)
            chunk = values[done:done + take]
            first = part.time0 + (part.start + offset) / rate if timed else float(part.global_start + offset)
            if raw:
                xs.append(first + np.arange(take) / rate - origin)
                ys.append(chunk.astype(np.float64))
            else:
                _fold(lo, hi, counts, chunk, first, rate, origin, width)
            if trend is not None:
                _fold(trend[0], trend[1], np.zeros(len(trend[0]), dtype=np.int64), chunk,
                      float(part.start + offset), 1.0, 0.0, float(BLOCK))
                trend[2] += take
            done += take
            offset += take
            remaining -= take
    for key, (blo, bhi, seen, entries) in acc.items():
        if seen == entries:                  # the whole file went by: keep its trend
            TRENDS.put(key, blo, bhi)
    return lo, hi, counts, xs, ys


def _from_trends(plan: Any, column: str, rate: float, start: float, stop: float, pixels: int) -> tuple | None:
    """Fold the plan's files' trends into pixels on a grid of whole blocks (origin snapped down to
    a block of the first file, pixel width a multiple of the block); None when a file has no
    trend yet or the files' blocks do not line up on one grid."""
    parts = [t.parts[0] for t in plan.tasks]
    trends = [TRENDS.get(_trend_key(p, column)) for p in parts]
    if not parts or any(t is None for t in trends):
        return None
    block = BLOCK / rate
    t0 = parts[0].time0
    origin = t0 + math.floor((start - t0) / block + 1e-9) * block
    width = max(TREND_MIN_BLOCKS, round((stop - start) / pixels / block)) * block
    n = max(1, math.ceil((stop - origin) / width - 1e-9))
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    counts = np.zeros(n, dtype=np.int64)
    per_pixel = int(round(width / block))
    for part, trend in zip(parts, trends):
        assert trend is not None
        shift = (part.time0 - origin) / block
        if abs(shift - round(shift)) > 1e-6:
            return None                       # this file's blocks fall between the grid's
        j0, j1 = part.start // BLOCK, math.ceil(part.stop / BLOCK)
        index = (round(shift) + np.arange(j0, j1)) // per_pixel
        keep = (index >= 0) & (index < n)
        np.fmin.at(lo, index[keep], trend[0][j0:j1][keep])
        np.fmax.at(hi, index[keep], trend[1][j0:j1][keep])
        sizes = np.minimum(np.arange(j0, j1) * BLOCK + BLOCK, part.stop) - np.maximum(np.arange(j0, j1) * BLOCK,
                                                                                      part.start)
        np.add.at(counts, index[keep], sizes[keep])
    return origin, width, lo, hi, counts


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
