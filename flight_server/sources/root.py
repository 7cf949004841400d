"""ROOT files through uproot: TTrees (also inside TDirectories) and RNTuples.

Column names are branch names as uproot shows them (``Muon_pt``, ``trks.dir.x``); when
two leaf branches of one tree share a name (split objects often repeat ``fUniqueID``),
both are named by their full path inside the tree (``Evt/AAObject/TObject/fUniqueID``).
Leaf branches are the columns a read returns by default: a split object's parts are read
as separate columns, which uproot interprets far more often than the object as a whole.
A parent branch (``event/fEvtHdr``) is a column too, named by its full path: the record
uproot builds from its sub-branches. It is served when named, never by "all columns" or a
glob, so nothing is served twice by default (field metadata ``arrowroot.parent``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence

import awkward as ak
import numpy as np
import pyarrow as pa
import uproot
from uproot.interpretation.numerical import AsDouble32, AsFloat16
from uproot.interpretation.objects import AsStridedObjects, CannotBeAwkward

from arrowroot.flight_server.core import readpool
from arrowroot.flight_server.core.shapes import META_PARENT

from .base import ColumnInfo, ColumnUnreadable, DatasetInfo, Reader, Source, SourceError, Units
from .root_hist import HISTOGRAM_KINDS, HistogramReader, histogram_kind, scan_histogram
from .root_keys import get_object
from .root_objects import clean_objects
from .wire import to_wire
from arrowroot.flight_server.core.errors import InvalidRequest

# Branches are read in parallel: uproot's decompression releases the GIL. Small reads go first
# (core/readpool.py), so a tiny read does not wait behind every large one.
_POOL = readpool.shared("root-read")


def _ak_to_arrow(array: ak.Array) -> pa.Array:
    layout = ak.to_layout(array)
    # Fast path for the commonest branches: flat numbers are a zero-copy numpy view.
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return pa.array(np.asarray(layout.data))
    out = ak.to_arrow(array, extensionarray=False)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    return to_wire(clean_objects(out))


def _read_branch(branch, start: int, stop: int) -> ak.Array:
    """``branch.array`` over [start, stop), around an uproot bug.

    uproot's strided-object reader (TRef, TVector3, ... as whole branches) fails with
    ``KeyError: <basket number>`` when ``stop`` is exactly where one of the branch's
    baskets starts; reading one entry more and dropping it gives the same data.
    """
    if start >= stop:
        # an empty read comes back in uproot's raw per-basket form (``@`` fields,
        # ``fP/fX`` names); the first entry, sliced away, has the real type
        if branch.num_entries:
            return branch.array(entry_start=0, entry_stop=1, library="ak")[:0]
        return branch.array(entry_start=start, entry_stop=stop, library="ak")
    if (isinstance(branch.interpretation, AsStridedObjects) and stop < branch.num_entries
            and stop in set(int(x) for x in branch.entry_offsets[1:-1])):
        return branch.array(entry_start=start, entry_stop=stop + 1, library="ak")[: stop - start]
    return branch.array(entry_start=start, entry_stop=stop, library="ak")


def _read_field(field, entries: int, start: int, stop: int) -> ak.Array:
    """One RNTuple field (top-level or a sub-field) over [start, stop)."""
    if start >= stop and entries:
        return field.array(entry_start=0, entry_stop=1)[:0]
    return field.array(entry_start=start, entry_stop=stop)


def _same_values(a: pa.Array, b: pa.Array) -> bool:
    """Equal arrays, NaN equal to NaN (Array.equals counts NaN as different)."""
    if a.equals(b):
        return True
    return a.type == b.type and _same_py(a.to_pylist(), b.to_pylist())


def _same_py(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (x != x and y != y)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same_py(u, v) for u, v in zip(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_py(x[k], y[k]) for k in x)
    return x == y


def _scrub(message: str, path: str) -> str:
    """uproot quotes the file's absolute path; clients see the file name only."""
    return message.replace(path, os.path.basename(path)) if path else message


_NO_AWKWARD = re.compile(r"cannot produce Awkward Arrays for interpretation (?P<interp>.+?) because\s+(?P<why>.+?)"
                         r"\s+instead, try library=", re.S)
_UPROOT_WHERE = re.compile(r"\s+in file \S.*$", re.S)   # uproot's closing "in file F / in object O" lines


def uproot_reason(exc: BaseException, path: str) -> str:
    """uproot's message in one line and in arrowroot's terms: its advice to use ``library="np"``
    does not apply (arrowroot serves Arrow, built from Awkward arrays), and the file and object are
    named by the caller already."""
    text = str(exc)
    m = _NO_AWKWARD.search(text)
    because = getattr(exc, "because", None) if isinstance(exc, CannotBeAwkward) else m and m["why"]
    if because:
        why = " ".join(str(because).split())
        what = ("pointers to other objects" if why == "arbitrary pointer" else f"class {why}" if " " not in why
                else why)
        return f"uproot has no columnar (Awkward/Arrow) form for it: {what}"
    text = " ".join(_scrub(_UPROOT_WHERE.sub("", text), path).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stored_as(branch) -> str:
    """How a reduced-precision float branch is stored (Double32_t / Float16_t), else ''."""
    interp = branch.interpretation
    if isinstance(interp, uproot.interpretation.jagged.AsJagged):
        interp = interp.content
    if isinstance(interp, (AsDouble32, AsFloat16)):
        kind = "Double32_t" if isinstance(interp, AsDouble32) else "Float16_t"
        if interp.low == interp.high == 0:
            return f"{kind}: float with a {interp.num_bits}-bit mantissa"
        return f"{kind}: {interp.num_bits}-bit integer over [{interp.low:g}, {interp.high:g}]"
    if "Double32_t" in (branch.typename or ""):
        return "Double32_t: float32"
    if "Float16_t" in (branch.typename or ""):
        return "Float16_t: float32"
    return ""


#: field metadata of a parent branch's column: named only, never part of "all columns" or a glob
PARENT_KEY = META_PARENT.decode()


def _parent_names(tree, taken: dict[str, str]) -> dict[str, str]:
    """Column name → branch path for every branch with sub-branches (a split object, or a
    part of one): named by its full path in the tree (``event/fEvtHdr``), as ROOT users do."""
    return {k: k for k in tree.keys(recursive=True) if tree[k].branches and k not in taken}


def _leaf_names(tree) -> dict[str, str]:
    """Column name → full branch path, for every leaf branch of a TTree."""
    paths = [k for k in tree.keys(recursive=True) if not tree[k].branches]
    short = [p.rsplit("/", 1)[-1] for p in paths]
    counts: dict[str, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    return {(s if counts[s] == 1 else p): p for s, p in zip(short, paths)}


def _settle_rntuple(ntuple) -> None:
    """Build uproot's lazily built RNTuple metadata now, on one thread.

    ``read`` reads columns in parallel threads, and uproot fills some of these tables
    in place after publishing them (``_column_records_dict`` is set to ``{}`` and then
    filled): a second thread can see it half built and fail with "The field_id: N is
    missing from the columns records". Touching each one first makes them complete
    before any column is read.
    """
    for name in ("field_records", "column_records", "alias_column_records", "_column_records_dict",
                 "_related_ids", "page_list_envelopes", "cluster_summaries", "page_link_list", "all_fields"):
        getattr(ntuple, name, None)


class RootReader(Reader):
    """A TTree or RNTuple open for reads; every failure names the column and the entries."""

    def __init__(self, path: str, object_path: str, kind: str, obj=None):
        """Open ``object_path`` in ``path``, or use ``obj`` already open (the scan does)."""
        self._file = None
        if obj is None:
            try:
                # no array cache: memory stays bounded, and repeated reads are real reads
                self._file = uproot.open(path, array_cache=None, object_cache=100)
                obj = get_object(self._file, object_path)
            except Exception as exc:  # uproot raises many types for broken files
                raise SourceError(f"{os.path.basename(path)}: cannot open {object_path!r}: "
                                  f"{_scrub(str(exc), path)}") from exc
        self._obj = obj
        self._path = path
        self.object_path = object_path
        self.kind = kind
        self.entries = int(self._obj.num_entries)
        self._paths = _leaf_names(self._obj) if kind == "ttree" else None
        #: parent branches (records of their sub-branches), readable by name besides their leaves
        self._parents = _parent_names(self._obj, self._paths) if kind == "ttree" else {}
        if self._paths is not None:
            self._paths.update(self._parents)
        self._nodes: dict[str, object] = {}
        self._lock = threading.Lock()
        if kind == "rntuple":
            with self._lock:
                _settle_rntuple(self._obj)
        self._units: Units | None = None

    def units(self, column: str) -> Units | None:
        """Clusters: every branch has a basket boundary there, so a cluster is whole baskets."""
        if self._units is None:
            try:
                if self._paths is not None:
                    starts = tuple(int(x) for x in self._obj.common_entry_offsets())[:-1]
                else:
                    starts = tuple(int(c.num_first_entry) for c in self._obj.cluster_summaries)
            except Exception:  # no cluster information: cache exact ranges
                return None
            self._units = Units(self.entries, starts or (0,))
        return self._units

    def column_array(self, name: str, start: int, stop: int) -> pa.Array:
        """One column over [start, stop) as wire Arrow; raises ColumnUnreadable, never
        uproot's or awkward's own exceptions (a KeyError from inside uproot is not a
        missing dataset)."""
        try:
            if self._paths is not None:
                arr = _read_branch(self._node(name), start, stop)
            else:
                arr = _read_field(self._node(name), self.entries, start, stop)
            return _ak_to_arrow(arr)
        except Exception as exc:
            what = "branch" if self._paths is not None else "field"
            detail = uproot_reason(exc, self._path)[:500]
            raise ColumnUnreadable(
                f"{what} {name!r} of {self.object_path!r}, entries {start}-{stop}: "
                + (detail if detail.startswith("uproot ") else f"uproot cannot read it ({detail})")
            ) from exc

    def _node(self, name: str):
        """The branch (or RNTuple field) of a column, its interpretation resolved once.

        uproot works out interpretations lazily from the file's streamers, and doing
        that from several reading threads at once can fail ("none of the rules
        matched"); the lock makes the first lookup of each column single-threaded.
        """
        node = self._nodes.get(name)
        if node is None:
            with self._lock:
                node = self._nodes.get(name)
                if node is None:
                    if self._paths is not None:
                        node = self._obj[self._paths[name]]
                        node.interpretation  # noqa: B018 - resolve it now, under the lock
                    else:
                        node = self._obj[name]
                    self._nodes[name] = node
        return node

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int, slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise InvalidRequest("slices apply to HDF5 N-D datasets only; ROOT entries are sliced with entry_start/entry_stop")
        if not columns:
            raise InvalidRequest("read needs at least one column")
        # Largest branches first: with a few threads, starting the longest decompression
        # last would leave the other threads idle at the end.
        sizes = {c: self._size(c) for c in columns}
        order = sorted(columns, key=sizes.__getitem__, reverse=True)
        n = max(0, entry_stop - entry_start)
        # estimated uncompressed bytes of this read (8 per entry where the branch size is unknown)
        nbytes = sum(sizes[c] * n / self.entries if sizes[c] and self.entries else 8 * n for c in columns)
        futures = {c: _POOL.submit(self.column_array, c, entry_start, entry_stop, nbytes=nbytes) for c in order}
        return pa.Table.from_arrays([futures[c].result() for c in columns], names=list(columns))

    def _size(self, name: str) -> int:
        try:
            if self._paths is not None:
                return int(self._node(name).uncompressed_bytes)
        except Exception:
            pass
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")
RNTUPLE_CLASSES = ("ROOT::RNTuple", "ROOT::Experimental::RNTuple")


def _kind(cls: str) -> str | None:
    if cls in TREE_CLASSES:
        return "ttree"
    if cls in RNTUPLE_CLASSES:
        return "rntuple"
    return histogram_kind(cls)


class RootSource(Source):
    format = "root"

    @staticmethod
    def recognises(head: bytes) -> bool:
        return head[:4] == b"root"

    def scan(self, path: str) -> list[DatasetInfo]:
        name_only = os.path.basename(path)
        try:
            f = uproot.open(path)
        except Exception as exc:
            raise SourceError(f"{name_only}: not a readable ROOT file ({type(exc).__name__}: "
                              f"{_scrub(str(exc), path)})") from exc
        with f:
            # classnames() lists every cycle; keep the highest cycle of each name.
            best: dict[str, tuple[int, str]] = {}
            for key, cls in f.classnames(recursive=True).items():
                name, _, cycle = key.rpartition(";")
                if _kind(cls) is not None:
                    c = int(cycle or 0)
                    if name not in best or c > best[name][0]:
                        best[name] = (c, cls)
            found: list[DatasetInfo] = []
            for name, (_, cls) in sorted(best.items()):
                kind = _kind(cls)
                try:
                    obj = get_object(f, name)
                    if kind in HISTOGRAM_KINDS:
                        found.append(scan_histogram(name, obj, kind))
                        continue
                    reader = RootReader(path, name, kind, obj)
                    if kind == "rntuple":
                        found.append(self._scan_rntuple(name, obj, reader))
                    else:
                        found.append(self._scan_ttree(name, obj, reader))
                except Exception as exc:
                    raise SourceError(f"{name_only}: cannot read {name!r} "
                                      f"({type(exc).__name__}: {_scrub(str(exc), path)})") from exc
            return found

    def _probe(self, reader: RootReader, name: str, boundaries: Sequence[int],
               baskets: Sequence[int] | None = None) -> tuple[pa.DataType | None, str]:
        """Arrow type of one column, and the reason it cannot be read ('' if it can).

        The same reads a client's request makes: the first entry, the last one (some
        branches fail only in a later basket), the entry before the first cluster
        boundary (reads end there; some uproot readers fail on exactly that stop), and for
        a TTree branch its first two baskets together and apart (``baskets``: the
        branch's basket start entries).
        """
        entries = reader.entries
        try:
            arrow_type = reader.column_array(name, 0, min(1, entries)).type
            checks = {(entries - 1, entries)} if entries else set()
            if len(boundaries) > 1 and boundaries[1] < entries:
                checks.add((boundaries[1] - 1, boundaries[1]))
            for a, b in sorted(checks):
                got = reader.column_array(name, a, b).type
                if got != arrow_type:
                    return None, f"uproot gives type {got} at entry {a} but {arrow_type} at entry 0"
            if baskets is not None and len(baskets) > 2:
                # the first two baskets read together must equal them read one by one:
                # requests are cut anywhere, so a decoding that depends on the range is wrong
                b1, b2 = baskets[1], baskets[2]
                whole = reader.column_array(name, 0, b2)
                parts = pa.concat_arrays([reader.column_array(name, 0, b1), reader.column_array(name, b1, b2)])
                if not _same_values(whole, parts):
                    return None, (f"uproot decodes it inconsistently: entries 0-{b2} read at once differ from "
                                  f"the same entries read as 0-{b1} and {b1}-{b2}")
        except ColumnUnreadable as exc:
            return None, uproot_reason(exc.__cause__ or exc, reader._path)[:500]
        if pa.types.is_null(arrow_type):
            return None, "uproot reads it as an empty object type"
        return arrow_type, ""

    def _scan_ttree(self, name: str, tree, reader: RootReader) -> DatasetInfo:
        entries = int(tree.num_entries)
        try:
            boundaries = tuple(int(x) for x in tree.common_entry_offsets())[:-1] or (0,)
        except Exception:
            boundaries = (0,)
        columns = []
        for col, path in reader._paths.items():
            branch = tree[path]
            if col in reader._parents:
                parent = self._scan_parent(reader, col, branch, boundaries)
                if parent is not None:
                    columns.append(parent)
                continue
            interp = branch.interpretation
            if isinstance(interp, uproot.interpretation.identify.UnknownInterpretation):
                arrow_type, reason = None, f"uproot has no interpretation for {branch.typename or 'this branch'}"
            else:
                baskets = [int(x) for x in branch.entry_offsets]
                arrow_type, reason = self._probe(reader, col, boundaries, baskets)
            stored = _stored_as(branch)
            columns.append(
                ColumnInfo(
                    name=col,
                    arrow_type=arrow_type,
                    source_type=branch.typename or str(interp),
                    compressed_bytes=int(branch.compressed_bytes),
                    uncompressed_bytes=int(branch.uncompressed_bytes),
                    readable=arrow_type is not None,
                    reason=reason,
                    metadata={"arrowroot.stored_as": stored} if stored else {},
                )
            )
        attrs = {"title": str(tree.title or ""), "class": tree.classname}
        return DatasetInfo(name, "ttree", entries, tuple(columns), attrs, boundaries)

    def _scan_parent(self, reader: RootReader, col: str, branch, boundaries: Sequence[int]) -> ColumnInfo | None:
        """A parent branch as one struct column (the record uproot builds from its
        sub-branches), when uproot reads it; else None: its leaves carry the data, each
        listed with its own reason."""
        if isinstance(branch.interpretation, uproot.interpretation.identify.UnknownInterpretation):
            return None
        arrow_type, _ = self._probe(reader, col, boundaries)
        if arrow_type is None:
            return None
        return ColumnInfo(name=col, arrow_type=arrow_type, source_type=branch.typename or "split object",
                          compressed_bytes=int(branch.compressed_bytes),
                          uncompressed_bytes=int(branch.uncompressed_bytes), readable=True, reason="",
                          metadata={PARENT_KEY: "a parent branch: its leaves are columns too"})

    def _scan_rntuple(self, name: str, ntuple, reader: RootReader) -> DatasetInfo:
        """Top-level fields are the columns (a record field is one struct column); only
        when uproot cannot read a record field whole are its sub-fields listed instead."""
        entries = int(ntuple.num_entries)
        boundaries = tuple(int(c.num_first_entry) for c in ntuple.cluster_summaries) or (0,)
        columns: list[ColumnInfo] = []

        def add(col: str) -> None:
            arrow_type, reason = self._probe(reader, col, boundaries)
            subs = ntuple[col].keys(recursive=False) if arrow_type is None else []
            columns.append(ColumnInfo(name=col, arrow_type=arrow_type, source_type=_field_type(ntuple[col]),
                                      readable=arrow_type is not None,
                                      reason=reason + ("; its sub-fields are listed as columns" if subs else "")))
            for sub in subs:
                add(f"{col}.{sub}")

        for col in ntuple.keys(recursive=False):
            add(col)
        return DatasetInfo(name, "rntuple", entries, tuple(columns), {"class": "ROOT::RNTuple"}, boundaries)

    def open(self, path: str, object_path: str, kind: str) -> Reader:
        if kind in HISTOGRAM_KINDS:
            return HistogramReader(path, object_path, kind)
        return RootReader(path, object_path, kind)


def _field_type(field) -> str:
    """The C++ type ROOT recorded for an RNTuple field (as uproot exposes it)."""
    for attr in ("typename", "type_name"):
        value = getattr(field, attr, None)
        if isinstance(value, str) and value:
            return value
    return "RNTuple field"
