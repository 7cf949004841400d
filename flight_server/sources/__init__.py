"""File formats behind one interface (see ``base.py``); the registry is imported lazily.

To add a format: write ``sources/<format>.py`` with a ``Source`` subclass and add it to
``REGISTRY``. Order matters where formats overlap: the first that recognises a file and
finds datasets in it wins (LH5 before plain HDF5).
"""

from __future__ import annotations

import importlib
from functools import cache

from .base import ColumnInfo, ColumnUnreadable, DatasetInfo, Reader, Source, SourceError

REGISTRY: dict[str, str] = {
    "root": "arrowroot.flight_server.sources.root:RootSource",
    "lh5": "arrowroot.flight_server.sources.lh5:Lh5Source",
    "hdf5": "arrowroot.flight_server.sources.hdf5:Hdf5Source",
    "parquet": "arrowroot.flight_server.sources.parquet:ParquetSource",
    # workspace derived columns and skims: opened by name, never detected (sources/overlay.py)
    "overlay": "arrowroot.flight_server.sources.overlay:OverlaySource",
}

__all__ = ["ColumnInfo", "ColumnUnreadable", "DatasetInfo", "Reader", "Source", "SourceError",
           "REGISTRY", "source_for", "detect", "supports_slices"]


@cache
def source_for(fmt: str) -> Source:
    """The Source instance for a format name; KeyError for unknown formats."""
    module, _, cls = REGISTRY[fmt].partition(":")
    return getattr(importlib.import_module(module), cls)()


def supports_slices(fmt: str) -> bool:
    """Whether the format's source reads per-axis slices of N-D columns (a declared capability).
    An unknown format or one whose library is missing answers False rather than failing."""
    try:
        return bool(source_for(fmt).supports_slices)
    except (KeyError, ImportError):
        return False


def detect(path: str) -> Source | None:
    """The source that recognises a file from its first bytes, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    for fmt in REGISTRY:
        src = source_for(fmt)
        if src.recognises(head) and src.claims(path):
            return src
    return None
