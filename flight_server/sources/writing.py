"""Is a file still being written? Format-level answers from its first bytes, without a library.

The live indexer (``index/watch.py``) asks before it scans a file that just changed, so a file
half-written by another process is never served as complete:

* **HDF5** with a version 2 or 3 superblock (``libver="latest"``, every SWMR file) keeps *file
  consistency flags*: bit 0 "open for writing", bit 2 "open for SWMR writing". A file open for
  SWMR writing is ``LIVE``: HDF5's SWMR protocol promises readers a consistent file at every
  moment, so it is indexed at each flush (its entry count grows). A file open for plain writing
  is ``WRITING``. Older superblocks (h5py's default) carry no flags: ``UNKNOWN`` (the indexer
  then waits for the size and mtime to settle; HDF5's file lock refuses a reader meanwhile).
* **ROOT** files record ``fEND``, the end of the last record, in their header. ROOT rewrites
  the header when it closes the file (and at every ``AutoSave``/``SaveSelf``), uproot after every
  write; appended baskets not yet in the header make the file longer than ``fEND``. Equal:
  ``CONSISTENT`` (closed, or as of the last AutoSave); longer: ``WRITING``.

Stdlib only: a read of the first 64 bytes (and 64 at each HDF5 user-block offset tried).
"""

from __future__ import annotations

import os
import struct

CONSISTENT = "consistent"   # the format says the file is whole (closed, or saved as is)
LIVE = "live"               # written in a mode that keeps it readable at every moment (HDF5 SWMR)
WRITING = "writing"         # a writer has it open and its header does not describe it yet
UNKNOWN = "unknown"         # the format keeps no such record: wait for size and mtime to settle

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
_FLAG_WRITE, _FLAG_SWMR = 0x01, 0x04


def state(path: str, size: int | None = None) -> str:
    """What the file's own header says about its writer (see the module docstring)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if size is None:
                size = os.fstat(fh.fileno()).st_size
            if head[:4] == b"root":
                return _root(head, size)
            for offset in _HDF5_OFFSETS:
                if offset:
                    if offset + 12 > size:
                        break
                    fh.seek(offset)
                    block = fh.read(16)
                else:
                    block = head[:16]
                if block[:8] == HDF5_SIGNATURE:
                    return _hdf5(block)
    except OSError:
        return UNKNOWN
    return UNKNOWN


def _root(head: bytes, size: int) -> str:
    if len(head) < 20:
        return WRITING  # not even the header yet
    (version,) = struct.unpack(">i", head[4:8])
    if version >= 1000000:  # large file: 64-bit fEND
        (end,) = struct.unpack(">q", head[12:20])
    else:
        (end,) = struct.unpack(">i", head[12:16])
    return CONSISTENT if end == size else WRITING


def _hdf5(block: bytes) -> str:
    if len(block) < 12:
        return WRITING
    version = block[8]
    if version < 2:
        return UNKNOWN
    flags = block[11]
    if flags & _FLAG_SWMR:
        return LIVE
    if flags & _FLAG_WRITE:
        return WRITING
    return CONSISTENT


__all__ = ["state", "CONSISTENT", "LIVE", "WRITING", "UNKNOWN"]
