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


def to_pandas(table: pa.Table, meta: dict[str, Any]) -> Any:
    """A DataFrame indexed by time: a DatetimeIndex (UTC) for UTC channels, float GPS
    seconds otherwise."""
    df = table.to_pandas()
    if "time" in df.columns:
        df = df.set_index("time")
    return df
