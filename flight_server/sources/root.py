"""ROOT files through uproot: TTrees (also inside TDirectories) and RNTuples.

Column names are branch names as uproot shows them (``Muon_pt``, ``trks.dir.x``); when
two leaf branches of one tree share a name (split objects often repeat ``fUniqueID``),
both are named by their full path inside the tree (``Evt/AAObject/TObject/fUniqueID``).
Only leaf branches are columns: a split object's parts are read as separate columns,
which uproot interprets far more often than the object as a whole.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import awkward as ak
import numpy as np
import pyarrow as pa
import uproot

from .base import ColumnInfo, ColumnUnreadable, DatasetInfo, Reader, Source, SourceError

# Branches are read in parallel: uproot's decompression releases the GIL.
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="root-read")


def to_wire(array: pa.Array) -> pa.Array:
    """Recast awkward's 64-bit-offset layouts to the 32-bit ones every client reads.

    Batches are capped at a few MiB, so 32-bit offsets always suffice; only the offsets
    are rewritten, the values buffers are reused as they are.
    """
    t = array.type
    if pa.types.is_large_list(t):
        child = to_wire(array.values.slice(0) if array.offset == 0 else array.flatten())
        offsets = array.offsets
        if array.offset != 0:
            offsets = pa.compute.subtract(offsets, offsets[0])
        offsets = offsets.cast(pa.int32())
        if array.null_count:
            return pa.ListArray.from_arrays(offsets, child, mask=array.is_null())
        return pa.ListArray.from_arrays(offsets, child)
    if pa.types.is_large_string(t):
        return array.cast(pa.string())
    if pa.types.is_large_binary(t):
        return array.cast(pa.binary())
    if pa.types.is_fixed_size_list(t):
        child = to_wire(array.flatten())
        return pa.FixedSizeListArray.from_arrays(child, t.list_size, mask=array.is_null() if array.null_count else None)
    if pa.types.is_struct(t):
        fields = [to_wire(array.field(i)) for i in range(t.num_fields)]
        names = [t.field(i).name for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(fields, names=names, mask=array.is_null() if array.null_count else None)
    return array


def _ak_to_arrow(array: ak.Array) -> pa.Array:
    layout = ak.to_layout(array)
    # Fast path for the commonest branches: flat numbers are a zero-copy numpy view.
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return pa.array(np.asarray(layout.data))
    out = ak.to_arrow(array, extensionarray=False)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return to_wire(out)


def _leaf_names(tree) -> dict[str, str]:
    """Column name → full branch path, for every leaf branch of a TTree."""
    paths = [k for k in tree.keys(recursive=True) if not tree[k].branches]
    short = [p.rsplit("/", 1)[-1] for p in paths]
    counts: dict[str, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    return {(s if counts[s] == 1 else p): p for s, p in zip(short, paths)}


class RootReader(Reader):
    def __init__(self, path: str, object_path: str, kind: str):
        try:
            # no array cache: memory stays bounded, and repeated reads are real reads
            self._file = uproot.open(path, array_cache=None, object_cache=100)
            self._obj = self._file[object_path]
        except Exception as exc:  # uproot raises many types for broken files
            raise SourceError(f"{path}: cannot open {object_path!r}: {exc}") from exc
        self.kind = kind
        self.entries = int(self._obj.num_entries)
        self._paths = _leaf_names(self._obj) if kind == "ttree" else None
        self._lock = threading.Lock()

    def _read_one(self, name: str, start: int, stop: int) -> pa.Array:
        try:
            if self._paths is not None:
                branch = self._obj[self._paths[name]]
                arr = branch.array(entry_start=start, entry_stop=stop, library="ak")
            else:
                arr = self._obj.arrays([name], entry_start=start, entry_stop=stop)[name]
        except KeyError:
            raise
        except Exception as exc:
            raise ColumnUnreadable(
                f"column {name!r}, entries {start}-{stop}: uproot cannot read it ({type(exc).__name__}: {exc})"
            ) from exc
        return _ak_to_arrow(arr)

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int, slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise ValueError("slices apply to HDF5 N-D datasets only; ROOT entries are sliced with entry_start/entry_stop")
        if not columns:
            raise ValueError("read needs at least one column")
        # Largest branches first: with a few threads, starting the longest decompression
        # last would leave the other threads idle at the end.
        order = sorted(columns, key=self._size, reverse=True)
        futures = {c: _POOL.submit(self._read_one, c, entry_start, entry_stop) for c in order}
        return pa.Table.from_arrays([futures[c].result() for c in columns], names=list(columns))

    def _size(self, name: str) -> int:
        try:
            if self._paths is not None:
                return int(self._obj[self._paths[name]].uncompressed_bytes)
        except Exception:
            pass
        return 0

    def close(self) -> None:
        self._file.close()


class RootSource(Source):
    format = "root"

    @staticmethod
    def recognises(head: bytes) -> bool:
        return head[:4] == b"root"

    def scan(self, path: str) -> list[DatasetInfo]:
        try:
            f = uproot.open(path)
        except Exception as exc:
            raise SourceError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from exc
        with f:
            found: list[DatasetInfo] = []
            # classnames() lists every cycle; keep the highest cycle of each name.
            best: dict[str, tuple[int, str]] = {}
            for key, cls in f.classnames(recursive=True).items():
                name, _, cycle = key.rpartition(";")
                if cls in ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple", "ROOT::Experimental::RNTuple"):
                    c = int(cycle or 0)
                    if name not in best or c > best[name][0]:
                        best[name] = (c, cls)
            for name, (_, cls) in sorted(best.items()):
                try:
                    obj = f[name]
                    if "RNTuple" in cls:
                        found.append(self._scan_rntuple(name, obj))
                    else:
                        found.append(self._scan_ttree(name, obj))
                except Exception as exc:
                    raise SourceError(f"{path}: cannot read {name!r} ({type(exc).__name__}: {exc})") from exc
            return found

    def _probe(self, read, entries: int) -> tuple[pa.DataType | None, str]:
        """Arrow type of one column and whether its first and last entries decode.

        Some branches read fine in their first basket and fail in a later one, so the
        last entry is touched too.
        """
        try:
            arrow_type = _ak_to_arrow(read(0, 0)).type
            if entries:
                read(0, 1)
                read(entries - 1, entries)
            return arrow_type, ""
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}".strip()[:500]

    def _scan_ttree(self, name: str, tree) -> DatasetInfo:
        entries = int(tree.num_entries)
        columns = []
        for col, path in _leaf_names(tree).items():
            branch = tree[path]
            interp = branch.interpretation
            if isinstance(interp, uproot.interpretation.identify.UnknownInterpretation):
                arrow_type, reason = None, f"uproot has no interpretation for {branch.typename or 'this branch'}"
            else:
                arrow_type, reason = self._probe(
                    lambda a, b, br=branch: br.array(entry_start=a, entry_stop=b, library="ak"), entries
                )
            if arrow_type is not None and pa.types.is_null(arrow_type):
                arrow_type, reason = None, "uproot reads it as an empty object type"
            columns.append(
                ColumnInfo(
                    name=col,
                    arrow_type=arrow_type,
                    source_type=branch.typename or str(interp),
                    compressed_bytes=int(branch.compressed_bytes),
                    uncompressed_bytes=int(branch.uncompressed_bytes),
                    readable=arrow_type is not None,
                    reason=reason,
                )
            )
        try:
            boundaries = tuple(int(x) for x in tree.common_entry_offsets())[:-1] or (0,)
        except Exception:
            boundaries = (0,)
        attrs = {"title": str(tree.title or ""), "class": tree.classname}
        return DatasetInfo(name, "ttree", entries, tuple(columns), attrs, boundaries)

    def _scan_rntuple(self, name: str, ntuple) -> DatasetInfo:
        entries = int(ntuple.num_entries)
        columns = []
        for col in ntuple.keys():
            arrow_type, reason = self._probe(
                lambda a, b, c=col: ntuple.arrays([c], entry_start=a, entry_stop=b)[c], entries
            )
            columns.append(ColumnInfo(name=col, arrow_type=arrow_type, source_type="RNTuple field",
                                      readable=arrow_type is not None, reason=reason))
        boundaries = tuple(int(c.num_first_entry) for c in ntuple.cluster_summaries) or (0,)
        return DatasetInfo(name, "rntuple", entries, tuple(columns), {"class": "ROOT::RNTuple"}, boundaries)

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        return RootReader(path, object_path, kind)
