"""Zone statistics: what one column holds over one run of entries (a cluster, a chunk, a row block).

A zone map is a column's zones in entry order. Planning a cut asks, zone by zone, whether any
entry could pass (``lang/zones.py``); a zone where none can is never read. SQL answers
``count``/``min``/``max`` of a whole dataset from them when they are exact. So the numbers here
must be *bounds the data cannot escape*: min and max are taken over the non-null, non-NaN values
(for list columns: over their elements), and when an integer is not exactly a float64 the bound is
rounded outward (the next float below a minimum, above a maximum) and the zone marked inexact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Zone:
    start: int                 # local entries [start, stop) of the object in its file
    stop: int
    min: float | None          # over non-null, non-NaN values (lists: elements); None: there are none
    max: float | None
    nulls: int = 0             # null entries (lists: null lists)
    nans: int = 0              # NaN values (lists: NaN elements)
    value_nulls: int = 0       # lists: null elements
    min_len: int | None = None  # lists: shortest and longest non-null list (None: flat column)
    max_len: int | None = None
    exact: bool = True         # min/max are the values themselves, not bounds rounded outward

    @property
    def rows(self) -> int:
        return self.stop - self.start


def zoneable(t: pa.DataType) -> bool:
    """Columns zone maps are kept for: numbers and booleans, flat or in one level of lists."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _down(v: int) -> tuple[float, bool]:
    f = float(v)
    if f == v:
        return f, True
    return (f if f < v else math.nextafter(f, -math.inf)), False


def _up(v: int) -> tuple[float, bool]:
    f = float(v)
    if f == v:
        return f, True
    return (f if f > v else math.nextafter(f, math.inf)), False


def _values(arr: pa.Array) -> tuple[float | None, float | None, int, bool]:
    """min, max (non-null, non-NaN), NaN count, exact — of a flat numeric/boolean array."""
    arr = pc.drop_null(arr)
    if len(arr) == 0:
        return None, None, 0, True
    if pa.types.is_boolean(arr.type):
        values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int8)
    else:
        values = arr.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        nans = int(nan.sum())
        if nans == len(values):
            return None, None, nans, True
        finite = values[~nan] if nans else values
        return float(finite.min()), float(finite.max()), nans, True
    lo, exact_lo = _down(int(values.min()))
    hi, exact_hi = _up(int(values.max()))
    return lo, hi, 0, exact_lo and exact_hi


def zone_of(column: pa.Array | pa.ChunkedArray, start: int, stop: int) -> Zone:
    """The statistics of ``column`` (entries [start, stop) of its object)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = column.type
    nulls = column.null_count
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        valid = pc.drop_null(column)
        if pa.types.is_fixed_size_list(t):
            lens = (t.list_size, t.list_size) if len(valid) else (None, None)
        else:
            lengths = pc.list_value_length(valid)
            lens = (pc.min(lengths).as_py(), pc.max(lengths).as_py()) if len(valid) else (None, None)
        elements = valid.flatten()
        lo, hi, nans, exact = _values(elements)
        return Zone(start, stop, lo, hi, nulls, nans, elements.null_count, lens[0], lens[1], exact)
    lo, hi, nans, exact = _values(column)
    return Zone(start, stop, lo, hi, nulls, nans, 0, None, None, exact)


def merge(zones: list[Zone]) -> Zone:
    """One zone covering consecutive zones (a zone read in pieces)."""
    first = zones[0]
    mins = [z.min for z in zones if z.min is not None]
    maxs = [z.max for z in zones if z.max is not None]
    lens_lo = [z.min_len for z in zones if z.min_len is not None]
    lens_hi = [z.max_len for z in zones if z.max_len is not None]
    return Zone(first.start, zones[-1].stop, min(mins) if mins else None, max(maxs) if maxs else None,
                sum(z.nulls for z in zones), sum(z.nans for z in zones), sum(z.value_nulls for z in zones),
                min(lens_lo) if lens_lo else None, max(lens_hi) if lens_hi else None,
                all(z.exact for z in zones))
