"""Timing shared by the bench scripts: the best of repeated runs, after an optional warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best(fn: Callable[[], Any], repeat: int, warmup: bool = True) -> tuple[float, Any]:
    """(fastest wall time in seconds, the last result) over ``repeat`` calls of ``fn``; with
    ``warmup`` one untimed call first (page cache, reader cache, connections)."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out
