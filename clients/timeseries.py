"""Time-series reads on the client side: the server's answer as gwpy or pandas objects.

A time read's schema carries ``arrowroot.timeseries`` metadata (JSON): the channel, its
unit, sample rate, time scale (``gps`` or ``utc``), the time of the first row (``t0``),
the requested range and the gaps (``[{"start", "stop", "samples"}]``) with whether they
were filled with nulls. These helpers turn a table plus that metadata into what GW and
seismic users work with.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

META_TIMESERIES = b"arrowroot.timeseries"


def series_meta(schema: pa.Schema) -> dict[str, Any]:
    """The ``arrowroot.timeseries`` metadata of a time read ({} when absent)."""
    raw = (schema.metadata or {}).get(META_TIMESERIES)
    return json.loads(raw) if raw else {}


def to_gwpy(table: pa.Table, column: str, meta: dict[str, Any]) -> Any:
    """One channel as a ``gwpy.timeseries.TimeSeries`` (t0, sample rate, unit, channel).

    Nulls (filled gaps) become NaN. A read with unfilled gaps is not one regular series:
    that raises ValueError naming the gaps (ask with fill_gaps=True).
    """
    try:
        from gwpy.timeseries import TimeSeries
    except ImportError:
        raise ImportError("library='gwpy' needs gwpy: pip install gwpy") from None
    inner = [g for g in meta.get("gaps", []) if g.get("between") and g.get("samples")]
    if inner and not meta.get("filled"):
        spans = ", ".join(f"[{g['start']}, {g['stop']})" for g in inner)
        raise ValueError(f"the range has gaps {spans}: read with fill_gaps=True for one TimeSeries")
    values = table.column(column).to_numpy(zero_copy_only=False)
    if values.dtype.kind in "iub" and table.column(column).null_count:
        values = table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)
    t0 = meta.get("t0")
    if meta.get("scale") == "utc" and t0 is not None:
        # gwpy counts GPS seconds: convert the UTC start (leap seconds included)
        from gwpy.time import to_gps
        from datetime import datetime, timezone
        t0 = float(to_gps(datetime.fromtimestamp(t0, timezone.utc)))
    unit = meta.get("unit") or None
    return TimeSeries(values, t0=t0 if t0 is not None else 0.0, sample_rate=meta["rate"],
                      unit=unit, name=meta.get("channel"), channel=meta.get("channel"))


# UTC instants (UNIX seconds) from which GPS - UTC grew by one second (IERS Bulletin C); the
# server keeps the same table (core/timeranges.py), the client may not import it.
GPS_EPOCH_UNIX = 315_964_800
LEAP_SECONDS_UNIX = (
    362793600, 394329600, 425865600, 489024000, 567993600, 631152000, 662688000, 709948800,
    741484800, 773020800, 820454400, 867715200, 915148800, 1136073600, 1230768000, 1341100800,
    1435708800, 1483228800,
)
TIME_INDEXES = ("gps", "utc")


def gps_to_unix_ns(gps: Any) -> Any:
    """GPS seconds (numpy float64) → UNIX nanoseconds (int64, UTC), leap seconds included."""
    import numpy as np

    gps = np.asarray(gps, dtype=np.float64)
    whole = np.floor(gps)
    unix = whole.astype(np.int64) + GPS_EPOCH_UNIX
    leaps = np.zeros(unix.shape, dtype=np.int64)
    for _ in range(3):  # settle: the leap count depends on the UTC instant itself
        leaps = np.searchsorted(np.asarray(LEAP_SECONDS_UNIX), unix - leaps, side="right").astype(np.int64)
    return (unix - leaps) * 1_000_000_000 + np.round((gps - whole) * 1e9).astype(np.int64)


def to_pandas(table: pa.Table, meta: dict[str, Any], time_index: str | None = None) -> Any:
    """A DataFrame indexed by time.

    UTC channels: a ``DatetimeIndex`` (UTC). GPS channels: ``time_index="gps"`` (the default)
    keeps GPS seconds as the index, an Arrow-backed float64 index that prints every digit
    (``968654552.250061``, as gwpy shows times, not ``9.686546e+08``); ``time_index="utc"``
    converts them to a ``DatetimeIndex`` (UTC, leap seconds applied).
    """
    import pandas as pd

    if time_index not in (None, *TIME_INDEXES):
        raise ValueError(f"time_index: one of {', '.join(TIME_INDEXES)} (got {time_index!r})")
    if "time" not in table.column_names:
        return table.to_pandas()
    time = table.column("time")
    df = table.drop_columns(["time"]).to_pandas()
    if pa.types.is_timestamp(time.type):
        index = pd.DatetimeIndex(time.to_pandas(), name="time")
    elif time_index == "utc":
        ns = gps_to_unix_ns(time.to_numpy())
        index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name="time")
    else:
        index = pd.Index(pd.array(time.to_numpy(), dtype=pd.ArrowDtype(pa.float64())), name="time")
    df.index = index
    return df
