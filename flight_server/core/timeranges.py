"""Reading by time: requested times → entry ranges over a channel's files, and the time column.

Pure arithmetic on the ``timeseries`` records the index recorded (``sources/timeseries.py``):
the planner turns a time range into per-file entry ranges and gaps with it, the executor
computes the ``time`` column with it. Nothing here opens a file or the catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.segments import union

# A sample i of a channel stands at t0 + i / rate. A read of [start, stop) returns the
# samples whose time t satisfies start <= t < stop, so a range that starts or stops
# mid-sample rounds inwards at the start and outwards at the stop, and consecutive
# ranges never share or lose a sample. Times are seconds in the channel's scale; ISO-8601
# strings are UTC and converted (leap seconds included for GPS channels).

GPS_EPOCH_UNIX = 315_964_800          # 1980-01-06T00:00:00Z as UNIX seconds
# UTC instants (UNIX seconds) from which GPS - UTC grew by one second (IERS Bulletin C).
LEAP_SECONDS_UNIX = (
    362793600, 394329600, 425865600, 489024000, 567993600, 631152000, 662688000, 709948800,
    741484800, 773020800, 820454400, 867715200, 915148800, 1136073600, 1230768000, 1341100800,
    1435708800, 1483228800,
)
_EPS = 1e-6                            # of a sample: float noise, not a sample boundary


def utc_to_gps(unix: float) -> float:
    """UNIX seconds (UTC) → GPS seconds."""
    return unix - GPS_EPOCH_UNIX + sum(1 for t in LEAP_SECONDS_UNIX if unix >= t)


def gps_to_utc(gps: float) -> float:
    """GPS seconds → UNIX seconds (UTC)."""
    unix = gps + GPS_EPOCH_UNIX
    leaps = sum(1 for t in LEAP_SECONDS_UNIX if unix - 18 >= t)  # first guess, then settle
    for _ in range(2):
        leaps = sum(1 for t in LEAP_SECONDS_UNIX if unix - leaps >= t)
    return unix - leaps


def parse_iso(text: str) -> float:
    """An ISO-8601 date-time (UTC unless it says otherwise) → UNIX seconds; ValueError if not one."""
    if not isinstance(text, str) or not 4 <= len(text) <= 64:
        raise InvalidRequest(f"not an ISO-8601 time: {text!r}")
    value = text.strip()
    frac = ""
    # fromisoformat keeps microseconds: carry the nanosecond digits by hand
    head, dot, rest = value.partition(".")
    if dot:
        n = len(rest) - len(rest.lstrip("0123456789"))
        if not 1 <= n <= 9:
            raise InvalidRequest(f"not an ISO-8601 time: {text!r} (at most 9 digits of seconds' fraction)")
        frac, value = rest[:n], head + rest[n:]
    try:
        when = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"not an ISO-8601 time: {text!r} (e.g. 2015-09-14T09:50:45.4Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = float(int(when.timestamp()))
    return seconds + (float("0." + frac) if frac else 0.0)


def to_scale(value: float | str | None, scale: str) -> float | None:
    """A requested time → seconds in ``scale``: numbers are taken as given, strings as ISO UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        unix = parse_iso(value)
        return utc_to_gps(unix) if scale == "gps" else unix
    x = float(value)
    if not math.isfinite(x):
        raise InvalidRequest(f"time must be finite, got {value!r}")
    return x


@dataclass(frozen=True)
class Piece:
    """Entries [start, stop) of member ``member``; their first sample stands at ``t0``."""

    member: int
    start: int
    stop: int
    t0: float
    t0_ns: int


@dataclass(frozen=True)
class Gap:
    """Time not covered by any member: [start, stop) seconds, ``samples`` grid points in it."""

    start: float
    stop: float
    samples: int
    t0_ns: int = 0              # time of the first grid point in the gap (integer ns) ...
    between: bool = False
    first: float = 0.0          # ... and in seconds       # data on both sides (else before the first or after the last sample)

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "samples": self.samples, "between": self.between}


@dataclass(frozen=True)
class TimePlan:
    """What a time read returns, in time order: pieces of members and the gaps between them."""

    parts: tuple[Piece | Gap, ...]
    rate: float
    scale: str
    channel: str

    @property
    def gaps(self) -> list[Gap]:
        return [p for p in self.parts if isinstance(p, Gap)]

    @property
    def rows(self) -> int:
        return sum(p.stop - p.start for p in self.parts if isinstance(p, Piece))

    def rows_with_fill(self) -> int:
        return self.rows + sum(g.samples for g in self.gaps)


def _index(rec: dict[str, Any], t: float) -> int:
    """First sample index at or after time t (clipped to [0, count])."""
    x = (t - rec["t0"]) * rec["rate"]
    return int(min(max(math.ceil(x - _EPS), 0), rec["count"]))


def plan_time(members: list[tuple[str, dict[str, Any]]], start: float | None, stop: float | None) -> TimePlan:
    """Turn [start, stop) into entry ranges over members (one file's record each).

    Members are ordered by t0; they must share rate and scale and must not overlap
    (ValueError naming both files). Uncovered time inside [start, stop) comes back as
    gaps (also before the first and after the last member), with the number of samples
    the channel's grid would have there.
    """
    if not members:
        raise InvalidRequest("no data for this channel")
    members = sorted(members, key=lambda m: m[1]["t0"])   # stable: callers may pre-sort ties
    first = members[0][1]
    rate, scale = float(first["rate"]), first.get("scale", "gps")
    for label, rec in members[1:]:
        if abs(rec["rate"] - rate) > 1e-9 * rate:
            raise InvalidRequest(f"{label} samples at {rec['rate']} Hz, {members[0][0]} at {rate} Hz: "
                             "one channel needs one rate")
        if rec.get("scale", "gps") != scale:
            raise InvalidRequest(f"{label} is in {rec.get('scale')} time, {members[0][0]} in {scale}")
    tol = 0.5 / rate
    for (la, a), (lb, b) in zip(members, members[1:]):
        if b["t0"] < a["t_end"] - tol:
            raise InvalidRequest(f"{la} [{a['t0']}, {a['t_end']}) and {lb} [{b['t0']}, {b['t_end']}) overlap in time")
    lo = first["t0"] if start is None else start
    hi = members[-1][1]["t_end"] if stop is None else stop
    if hi < lo:
        raise InvalidRequest(f"time_stop ({hi}) is before time_start ({lo})")
    parts: list[Piece | Gap] = []
    cursor = lo             # time up to which the range is accounted for

    def gap(g0: float, g1: float, grid_t0: float, grid_t0_ns: int) -> None:
        if g1 - g0 <= tol * 1e-3:
            return
        # grid points of the neighbouring member's sampling in [g0, g1)
        i0 = math.ceil((g0 - grid_t0) * rate - _EPS)
        i1 = math.ceil((g1 - grid_t0) * rate - _EPS)
        parts.append(Gap(g0, g1, max(0, i1 - i0), grid_t0_ns + round(i0 * 1e9 / rate), False, grid_t0 + i0 / rate))

    for k, (_label, rec) in enumerate(members):
        if rec["t_end"] <= lo or rec["t0"] >= hi:
            continue
        if rec["t0"] > cursor + tol:
            gap(cursor, min(rec["t0"], hi), rec["t0"], rec["t0_ns"])
        i0, i1 = _index(rec, max(lo, cursor)), _index(rec, hi)
        if i1 > i0:
            parts.append(Piece(k, i0, i1, rec["t0"] + i0 / rate, rec["t0_ns"] + round(i0 * 1e9 / rate)))
        cursor = max(cursor, min(rec["t_end"], hi))
    if hi > cursor + tol:
        last = members[-1][1]
        gap(cursor, hi, last["t0"], last["t0_ns"])
    pieces = [i for i, p in enumerate(parts) if isinstance(p, Piece)]
    if pieces:
        parts = [replace(p, between=pieces[0] < i < pieces[-1]) if isinstance(p, Gap) else p
                 for i, p in enumerate(parts)]
    return TimePlan(tuple(parts), rate, scale, first.get("channel", ""))


def time_values(t0_ns: int, t0: float, rate: float, n: int, scale: str) -> pa.Array:
    """The ``time`` column of n samples from t0: float64 seconds (GPS) or timestamp[ns, UTC]."""
    steps = np.arange(n, dtype=np.float64) / rate
    if scale == "utc":
        ns = t0_ns + np.round(steps * 1e9).astype(np.int64)
        return pa.array(ns, type=pa.timestamp("ns", tz="UTC"))
    return pa.array(t0 + steps, type=pa.float64())


def time_type(scale: str) -> pa.DataType:
    return pa.timestamp("ns", tz="UTC") if scale == "utc" else pa.float64()


def combine(records: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The ``timeseries`` record of a multi-file dataset from its members' records (in part
    order): the channel's summary plus ``parts`` = ``[[t0, t0_ns, count, rate], ...]``, which the
    planner turns into per-file time ranges. None unless every member is a continuous series."""
    recs = [r for r in records if r is not None and "rate" in r and "t0" in r]
    if not recs or len(recs) != len(records):
        return None
    first = recs[0]
    out: dict[str, Any] = {k: first.get(k) for k in ("convention", "channel", "unit", "scale", "rate", "dt", "dtype")}
    out["t0"] = min(r["t0"] for r in recs)
    out["t0_ns"] = min(r["t0_ns"] for r in recs)
    out["t_end"] = max(r["t_end"] for r in recs)
    out["count"] = sum(int(r["count"]) for r in recs)
    out["parts"] = [[r["t0"], r["t0_ns"], int(r["count"]), r["rate"]] for r in recs]
    dqs: list[dict[str, Any]] = [r["dq"] for r in recs if isinstance(r.get("dq"), dict)
                                 and isinstance(r["dq"].get("flags"), dict)]
    if len(dqs) == len(recs):
        names = set(dqs[0]["flags"])
        if all(set(d["flags"]) == names for d in dqs):
            out["dq"] = {"flags": {n: [list(x) for x in union([tuple(s) for d in dqs for s in d["flags"][n]], [])]
                                   for n in sorted(names)}}
    channels = {r.get("channel") for r in recs}
    if len(channels) > 1:
        out["channels"] = sorted(str(c) for c in channels)[:100]
    return out


def members_of(summary: dict[str, Any], parts: list | None = None) -> list[dict[str, Any]]:
    """Per-part records back from a combined summary and its parts (what ``plan_time`` takes)."""
    out = []
    for t0, t0_ns, count, rate in (summary["parts"] if parts is None else parts):
        out.append({"t0": t0, "t0_ns": t0_ns, "count": count, "rate": rate, "t_end": t0 + count / rate,
                    "scale": summary.get("scale", "gps"), "channel": summary.get("channel")})
    return out


SERIES_CRITERIA = ("channel", "rate", "unit", "time")
MAX_PATTERN = 256


def check_criteria(query: dict[str, Any]) -> None:
    """Validate the channel-search criteria of list_flights; ValueError names the key."""
    if "channel" in query and (not isinstance(query["channel"], str) or len(query["channel"]) > MAX_PATTERN):
        raise InvalidRequest(f"criteria.channel: a channel name or shell glob of at most {MAX_PATTERN} characters")
    if "unit" in query and not isinstance(query["unit"], str):
        raise InvalidRequest("criteria.unit: a string expected")
    for key in ("rate", "time"):
        if key in query:
            value = query[key]
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidRequest(f"criteria.{key}: [low, high] expected (null for open)")
            for v in value:
                if v is None or (key == "time" and isinstance(v, str)):
                    if isinstance(v, str):
                        parse_iso(v)
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise InvalidRequest(f"criteria.{key}: bounds must be finite numbers or null")


def matches_series(series: Any, query: dict[str, Any]) -> bool:
    """Whether a dataset's ``timeseries`` record passes channel-search criteria (checked first):
    channel glob, sample-rate range [lo, hi], unit, and coverage overlapping the time range [a, b)."""
    import fnmatch

    if not isinstance(series, dict) or "rate" not in series:
        return False
    if "channel" in query:
        names = [series.get("channel") or ""] + list(series.get("channels") or [])
        if not any(fnmatch.fnmatchcase(str(n), query["channel"]) for n in names):
            return False
    if "unit" in query and (series.get("unit") or "") != query["unit"]:
        return False
    if "rate" in query:
        lo, hi = query["rate"]
        if (lo is not None and series["rate"] < lo) or (hi is not None and series["rate"] > hi):
            return False
    if "time" in query:
        scale = series.get("scale", "gps")
        a, b = (to_scale(v, scale) for v in query["time"])
        if (b is not None and series["t0"] >= b) or (a is not None and series["t_end"] <= a):
            return False
    return True
