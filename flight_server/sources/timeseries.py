"""Time-series conventions recognised at index time.

Users of gravitational-wave, seismic and detector data ask for *time* ("H1 strain from GPS
1126259446 to 1126259478"), not entry numbers. When a dataset follows one of the
conventions below, the scan records what a time read needs under one key of the
dataset's attributes, ``attributes["timeseries"]``::

    {"convention": "gwpy", "channel": "H1:LDAS-STRAIN", "scale": "gps",
     "t0": 968654552.0, "t0_ns": 968654552000000000, "rate": 16384.0, "dt": 6.103515625e-05,
     "count": 16384, "t_end": 968654553.0, "unit": "strain", "dtype": "float64"}

``t0`` is the time of entry 0 and ``t_end = t0 + count / rate`` the end of the last
sample, in seconds of the time ``scale``: ``"gps"`` (seconds since 1980-01-06 UTC, no
leap seconds) or ``"utc"`` (UNIX seconds). ``t0_ns`` keeps t0 as integer nanoseconds
(exact for ASDF, whose start times are integers).

Conventions (first match wins, a site's own mappings first):

=============  ==========================================  ==================================
convention     attributes on the dataset                    channel / scale
=============  ==========================================  ==================================
site mapping   as declared in ``arrowroot.toml``            as declared
gwpy           ``x0``, ``dx`` (``xunit`` s), ``unit``       ``channel`` or ``name``; gps
gwdama         ``t0``, ``sample_rate``, ``unit``            ``channel`` or the dataset path; gps
gwosc          ``Xstart``, ``Xspacing`` (``Npoints``)       ``<meta/Detector>:<name>``; gps
asdf           ``starttime`` (int ns), ``sampling_rate``    ``NET.STA.LOC.CHA`` from the name; utc
               under ``/Waveforms/NET.STA/``
=============  ==========================================  ==================================

GWOSC's ``quality/simple/DQmask`` (1 Hz) also records its bits by name
(``"flags": {"DATA": 0, "CBC_CAT1": 1, ...}`` from ``DQShortnames``) and descriptions.
LH5 tables with waveform columns (``t0``, ``dt``, ``values``) record each waveform's
sampling (``dt``, units, samples) and, when the table has a ``timestamp`` column, the
first and last event time (``layout: "waveforms"``: one waveform per entry, not a
continuous series).

A site adds its own convention with a declarative mapping in ``arrowroot.toml``::

    [timeseries.mysite]
    t0 = "start"          # attribute holding the time of entry 0 (required)
    rate = "fs"           # attribute holding samples per second ... or dt = "spacing"
    unit = "units"        # attribute holding the sample unit (optional)
    channel = "name"      # attribute holding the channel name (optional; default the path)
    scale = "utc"         # "gps" (default) or "utc"
    t0_unit = "s"         # "s" (default), "ms", "us" or "ns"
    match = "raw/*"       # only datasets whose path matches this glob (optional)
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import h5py
import numpy as np

from arrowroot.flight_server.core.segments import mask_segments
from arrowroot.flight_server.core.errors import InvalidRequest

KEY = "timeseries"
SCALES = ("gps", "utc")
_PER_S = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}   # units per second
_SITE_KEYS = {"t0", "rate", "dt", "unit", "channel", "scale", "t0_unit", "match"}


@dataclass(frozen=True)
class Site:
    """A site's declared convention: which attributes hold t0, rate (or dt), unit, channel."""

    name: str
    t0: str
    rate: str | None = None
    dt: str | None = None
    unit: str | None = None
    channel: str | None = None
    scale: str = "gps"
    t0_unit: str = "s"
    match: str | None = None


_local = threading.local()     # the site mappings of the indexing run on this thread


def parse_sites(table: Mapping[str, Any]) -> tuple[Site, ...]:
    """The ``[timeseries.NAME]`` tables of arrowroot.toml; ValueError names the faulty entry."""
    sites = []
    for name, entry in table.items():
        where = f"[timeseries.{name}]"
        if not isinstance(entry, Mapping):
            raise InvalidRequest(f"{where} must be a table of attribute names")
        unknown = set(entry) - _SITE_KEYS
        if unknown:
            raise InvalidRequest(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_SITE_KEYS)})")
        for key, value in entry.items():
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"{where}: {key} must be a non-empty string")
        if "t0" not in entry:
            raise InvalidRequest(f"{where}: t0 (the attribute holding the start time) is required")
        if ("rate" in entry) == ("dt" in entry):
            raise InvalidRequest(f"{where}: give exactly one of rate (samples/s) or dt (seconds per sample)")
        if entry.get("scale", "gps") not in SCALES:
            raise InvalidRequest(f"{where}: scale must be one of {SCALES}")
        if entry.get("t0_unit", "s") not in _PER_S:
            raise InvalidRequest(f"{where}: t0_unit must be one of {sorted(_PER_S)}")
        sites.append(Site(name=str(name), **dict(entry)))
    return tuple(sites)


def configure(sites: tuple[Site, ...] | Mapping[str, Any]) -> None:
    """Set the site conventions later scans on this thread use (the indexer calls this with
    arrowroot.toml's ``[timeseries.*]`` tables before each run; per thread, so servers of
    different roots in one process never mix them)."""
    _local.sites = sites if isinstance(sites, tuple) else parse_sites(sites)


def configured() -> tuple[Site, ...]:
    return getattr(_local, "sites", ())


# ---------------------------------------------------------------- helpers


def _attr(obj: h5py.HLObject, key: str) -> Any:
    """An attribute as a Python scalar or str (None when absent or not a scalar)."""
    if key not in obj.attrs:
        return None
    try:
        value = obj.attrs[key]
    except Exception:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _name(obj: h5py.HLObject) -> str:
    return obj.name.rsplit("/", 1)[-1]


def record(convention: str, channel: str, scale: str, t0: float, rate: float, count: int,
           unit: str | None, dtype: str, t0_ns: int | None = None, **extra: Any) -> dict[str, Any] | None:
    """The ``timeseries`` attribute for one channel; None when the numbers make no series."""
    if not (rate > 0 and math.isfinite(rate) and math.isfinite(t0)) or count < 0:
        return None
    out: dict[str, Any] = {
        "convention": convention, "channel": channel, "scale": scale,
        "t0": t0, "t0_ns": int(round(t0 * 1e9)) if t0_ns is None else int(t0_ns),
        "rate": rate, "dt": 1.0 / rate, "count": int(count), "t_end": t0 + count / rate,
        "unit": unit, "dtype": dtype,
    }
    if scale == "utc":
        out["t0_iso"] = datetime.fromtimestamp(out["t0_ns"] // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") \
            + f".{out['t0_ns'] % 10**9:09d}Z"
    out.update(extra)
    return out


# ---------------------------------------------------------------- conventions


def _site(ds: h5py.Dataset, site: Site) -> dict[str, Any] | None:
    if site.match and not fnmatch.fnmatchcase(ds.name.lstrip("/"), site.match):
        return None
    t0 = _number(_attr(ds, site.t0))
    step = _number(_attr(ds, site.rate or site.dt or ""))
    if t0 is None or step is None or step <= 0:
        return None
    rate = step if site.rate else 1.0 / step
    t0_ns = None
    if site.t0_unit == "ns" and isinstance(_attr(ds, site.t0), int):
        t0_ns = int(_attr(ds, site.t0))
    channel = _text(_attr(ds, site.channel)) if site.channel else None
    return record(f"site:{site.name}", channel or ds.name.lstrip("/"), site.scale, t0 / _PER_S[site.t0_unit],
                  rate, int(ds.shape[0]), _text(_attr(ds, site.unit)) if site.unit else None, str(ds.dtype),
                  t0_ns=t0_ns)


def _gwpy(ds: h5py.Dataset) -> dict[str, Any] | None:
    x0, dx = _number(_attr(ds, "x0")), _number(_attr(ds, "dx"))
    if x0 is None or dx is None or dx <= 0:
        return None
    xunit = _text(_attr(ds, "xunit")) or "s"
    xunit = {"second": "s", "seconds": "s"}.get(xunit, xunit)
    per_s = _PER_S.get(xunit)
    if per_s is None:  # a frequency series or other x axis: not a time series
        return None
    channel = _text(_attr(ds, "channel")) or _text(_attr(ds, "name")) or ds.name.lstrip("/")
    return record("gwpy", channel, "gps", x0 / per_s, per_s / dx, int(ds.shape[0]),
                  _text(_attr(ds, "unit")), str(ds.dtype))


def _gwdama(ds: h5py.Dataset) -> dict[str, Any] | None:
    t0, rate = _number(_attr(ds, "t0")), _number(_attr(ds, "sample_rate"))
    if t0 is None or rate is None:
        return None
    channel = _text(_attr(ds, "channel")) or ds.name.lstrip("/")
    return record("gwdama", channel, "gps", t0, rate, int(ds.shape[0]), _text(_attr(ds, "unit")), str(ds.dtype))


def _gwosc(ds: h5py.Dataset) -> dict[str, Any] | None:
    start, spacing = _number(_attr(ds, "Xstart")), _number(_attr(ds, "Xspacing"))
    if start is None or spacing is None or spacing <= 0:
        return None
    f = ds.file
    detector = None
    if "meta" in f and isinstance(f["meta"], h5py.Group) and "Detector" in f["meta"]:
        value = f["meta/Detector"][()]
        detector = value.decode() if isinstance(value, bytes) else str(value)
    name = _name(ds)
    extra: dict[str, Any] = {}
    npoints = _number(_attr(ds, "Npoints"))
    if npoints is not None and int(npoints) != int(ds.shape[0]):
        extra["warning"] = f"Npoints says {int(npoints)}, the dataset holds {int(ds.shape[0])}"
    parent = ds.parent
    if name.endswith("mask") and f"{name[:-4]}Shortnames" in parent:
        shortnames = [v.decode() if isinstance(v, bytes) else str(v)
                      for v in np.asarray(parent[f"{name[:-4]}Shortnames"][()]).reshape(-1)]
        extra["flags"] = {s: bit for bit, s in enumerate(shortnames)}
        if f"{name[:-4]}Descriptions" in parent:
            extra["flag_descriptions"] = [v.decode() if isinstance(v, bytes) else str(v)
                                          for v in np.asarray(parent[f"{name[:-4]}Descriptions"][()]).reshape(-1)]
    dq = _gwosc_dq(f)
    if dq is not None:
        extra["dq"] = dq
    unit = "strain" if name == "Strain" else None
    channel = f"{detector}:{name}" if detector else name
    return record("gwosc", channel, "gps", start, 1.0 / spacing, int(ds.shape[0]), unit, str(ds.dtype), **extra)


MAX_DQ_SEGMENTS = 10_000    # per flag and file; beyond that the file's DQ is not recorded


def _gwosc_dq(f: h5py.File) -> dict[str, Any] | None:
    """The file's data-quality flags as time segments ({"flags": {name: [[start, stop], ...]}}),
    from quality/simple/DQmask and DQShortnames; None when absent or unusable."""
    try:
        group = f.get("quality/simple")
        if not isinstance(group, h5py.Group) or "DQmask" not in group or "DQShortnames" not in group:
            return None
        mask = group["DQmask"]
        start, spacing = _number(_attr(mask, "Xstart")), _number(_attr(mask, "Xspacing"))
        if start is None or spacing is None or spacing <= 0 or mask.ndim != 1 or mask.dtype.kind not in "iu":
            return None
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(group["DQShortnames"][()]).reshape(-1)]
        segments = mask_segments(mask[()], start, spacing, len(names), MAX_DQ_SEGMENTS)
        return {"flags": {n: segments[i] for i, n in enumerate(names)}}
    except Exception:  # a DQ mask we cannot use never stops indexing
        return None


def _asdf(ds: h5py.Dataset) -> dict[str, Any] | None:
    parts = ds.name.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "Waveforms":
        return None
    start, rate = _attr(ds, "starttime"), _number(_attr(ds, "sampling_rate"))
    if not isinstance(start, int) or isinstance(start, bool) or rate is None:
        return None
    channel, _, rest = parts[2].partition("__")
    tag = rest.rsplit("__", 1)[-1] if rest.count("__") >= 2 else None
    return record("asdf", channel, "utc", start / 1e9, rate, int(ds.shape[0]), None, str(ds.dtype),
                  t0_ns=start, tag=tag)


def describe(ds: h5py.Dataset, sites: tuple[Site, ...] | None = None) -> dict[str, Any] | None:
    """The ``timeseries`` record of an HDF5 dataset, or None when it follows no known convention."""
    if ds.ndim < 1:
        return None
    try:
        for site in (configured() if sites is None else sites):
            found = _site(ds, site)
            if found:
                return found
        for convention in (_gwpy, _gwdama, _gwosc, _asdf):
            found = convention(ds)
            if found:
                return found
    except Exception:  # odd attributes never stop indexing: the dataset is just not a series
        return None
    return None


def describe_lh5_table(name: str, group: h5py.Group) -> dict[str, Any] | None:
    """The ``timeseries`` record of an LH5 table holding waveforms (``t0``, ``dt``, ``values``)."""
    try:
        tables = [("", group)] if _is_waveform_table(group) else []
        tables += [(key, group[key]) for key in group if isinstance(group[key], h5py.Group)
                   and _is_waveform_table(group[key])]
        if not tables:
            return None
        waveforms = [_waveform(key, g) for key, g in tables]
        out: dict[str, Any] = {"convention": "lh5", "layout": "waveforms",
                               "channel": name.split("/")[0], "waveforms": waveforms}
        ts = group.get("timestamp")
        if isinstance(ts, h5py.Dataset) and ts.ndim == 1 and ts.shape[0] and ts.dtype.kind in "iuf":
            out.update({"time_column": "timestamp", "scale": "utc", "count": int(ts.shape[0]),
                        "t0": float(ts[0]), "t_last": float(ts[-1]),
                        "unit": _text(_attr(ts, "units")) or "s"})
        return out
    except Exception:
        return None


def _is_waveform_table(g: h5py.Group) -> bool:
    return all(k in g for k in ("t0", "dt", "values"))


def _waveform(column: str, g: h5py.Group) -> dict[str, Any]:
    dt_ds, values = g["dt"], g["values"]
    dt = float(dt_ds[0]) if dt_ds.ndim == 1 and dt_ds.shape[0] else None
    dt_unit = _text(_attr(dt_ds, "units"))
    samples = None
    if isinstance(values, h5py.Dataset) and values.ndim == 2:
        samples = int(values.shape[1])
    elif isinstance(values, h5py.Group) and "decoded_size" in values and values["decoded_size"].ndim == 0:
        samples = int(values["decoded_size"][()])
    out = {"column": column or "values", "dt": dt, "dt_unit": dt_unit, "t0_unit": _text(_attr(g["t0"], "units")),
           "samples": samples}
    per_s = _PER_S.get(dt_unit or "")
    if dt and per_s:
        out["rate"] = per_s / dt
    return out
