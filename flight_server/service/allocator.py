"""Give freed memory back to the operating system.

The chunks a stream reads are mostly numpy arrays (uproot, h5py) allocated with glibc's malloc,
in the arena of the thread that read them; the copies handed to slow clients are Arrow's. Freed,
both stayed with the process: after 32 stalled streams closed, it kept 1.6 GB (5× its size at
start) although nothing referenced them. ``malloc_trim(0)`` returns the free pages of every glibc
arena; Arrow's pool releases its unused memory likewise (``give_back``, called by the stream
slots' reaper after streams end or let go of their chunks, at most once a second). Arrow's default
pool on Linux, mimalloc, still kept about twice the starting size after that; jemalloc, whose
dirty pages decay within a second, came back to within 5%: a server process uses jemalloc unless
``ARROW_DEFAULT_MEMORY_POOL`` says otherwise (:func:`use_returning_pool`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import pyarrow as pa

log = logging.getLogger("arrowroot")

__all__ = ["give_back", "use_returning_pool"]


def _malloc_trim() -> object | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def give_back() -> None:
    """Return free heap pages to the OS (glibc) and Arrow's pool's unused memory."""
    if _TRIM is not None:
        _TRIM(0)
    try:
        pa.default_memory_pool().release_unused()
    except (AttributeError, pa.ArrowNotImplementedError):  # older pyarrow
        pass


def use_returning_pool() -> str:
    """Make Arrow's default pool jemalloc (when this pyarrow has it and the operator did not choose
    with ``ARROW_DEFAULT_MEMORY_POOL``); returns the pool's name."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except (AttributeError, NotImplementedError, pa.ArrowNotImplementedError):
            pass
    return pa.default_memory_pool().backend_name
