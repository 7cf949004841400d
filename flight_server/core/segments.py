"""Time segments [start, stop) and their set operations, and the segments where each bit of a
data-quality mask is set (GWOSC's quality/simple/DQmask: one integer per second, bit i = flag
DQShortnames[i]), computed at index time. The flag *expression* language that combines them is
``lang/dq.py``."""

from __future__ import annotations

import numpy as np

from arrowroot.flight_server.core.errors import InvalidRequest

Segments = list[tuple[float, float]]


def mask_segments(values: np.ndarray, t0: float, dt: float, bits: int, limit: int = 100_000) -> dict[int, list]:
    """Segments [start, stop) where each bit of an integer mask sampled every dt is set."""
    out: dict[int, list] = {}
    v = np.asarray(values).astype(np.int64, copy=False)
    for bit in range(bits):
        on = ((v >> bit) & 1).astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on, [0]])))
        starts, stops = edges[0::2], edges[1::2]
        if len(starts) > limit:
            raise InvalidRequest(f"bit {bit}: more than {limit} segments")
        out[bit] = [[t0 + a * dt, t0 + b * dt] for a, b in zip(starts.tolist(), stops.tolist())]
    return out


def union(a: Segments, b: Segments) -> Segments:
    out: Segments = []
    for s, e in sorted(list(a) + list(b)):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def intersect(a: Segments, b: Segments) -> Segments:
    out: Segments = []
    i = j = 0
    a, b = sorted(a), sorted(b)
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def complement(a: Segments, lo: float, hi: float) -> Segments:
    out: Segments = []
    cursor = lo
    for s, e in union(a, []):
        if s > cursor:
            out.append((cursor, min(s, hi)))
        cursor = max(cursor, e)
    if cursor < hi:
        out.append((cursor, hi))
    return [(s, e) for s, e in out if s < e]


__all__ = ["Segments", "mask_segments", "union", "intersect", "complement"]
