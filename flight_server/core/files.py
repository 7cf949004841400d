"""What makes two reads of a file the same bytes: one identity type for every layer.

The catalog, tickets, skims and zone-map jobs record a file as (size, mtime) when it is indexed;
readers, the chunk cache and overlays check a fresh ``stat`` against that record before trusting
anything they read or cached. Keeping the rule in one place means the tolerance on mtime (float
seconds from the catalog against nanoseconds from ``stat``) and the cache's stricter identity
(inode and ctime too, so a file replaced by another of the same size and mtime never answers from
the old bytes) cannot drift apart.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

#: mtimes recorded as float seconds compare equal within this (float rounding of st_mtime_ns)
MTIME_TOLERANCE = 1e-6


def matches(st: os.stat_result, size: int, mtime: float) -> bool:
    """Whether a fresh ``stat`` still shows the file recorded as (size, mtime)."""
    return st.st_size == size and abs(st.st_mtime - mtime) <= MTIME_TOLERANCE


def grown(st: os.stat_result, size: int, mtime: float) -> bool:
    """Whether a fresh ``stat`` shows the file recorded as (size, mtime) at least as large and no older:
    appended to, as a live file is (a follow's ``growing`` reads)."""
    return st.st_size >= size and st.st_mtime >= mtime - MTIME_TOLERANCE


def change(path: str, size: int, mtime: float) -> tuple[os.stat_result | None, str | None]:
    """``stat`` a recorded file: (its stat, None) when unchanged, else (stat or None, "deleted"/"modified")."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, "deleted"
    return st, (None if matches(st, size, mtime) else "modified")


@dataclass(frozen=True)
class FileIdentity:
    """A file's bytes as one value: path, size, mtime, inode and ctime (the chunk cache's key)."""

    path: str
    size: int
    mtime_ns: int
    inode: int = 0
    ctime_ns: int = 0

    @classmethod
    def of(cls, path: str, size: int, mtime: float) -> "FileIdentity":
        return cls(path, int(size), int(round(mtime * 1e9)))

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result) -> "FileIdentity":
        return cls(path, int(st.st_size), int(st.st_mtime_ns), int(st.st_ino), int(st.st_ctime_ns))

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:32]
