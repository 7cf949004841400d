"""ROOT histograms (TH1/TH2/TH3, TProfile/2D/3D) as datasets of one row per bin.

A histogram is a small table, so it is served like any other dataset: listed by the
indexer with kind ``th1``/``th2``/``th3``/``tprofile``/``tprofile2d``/``tprofile3d``,
read in entry ranges, filtered with cuts. Its object path is the key name (``h6202``,
``dir/hpx``); several cycles of one name serve the highest, as for trees.

Rows are ROOT's global bins in ROOT's order (``TH1::GetBin``: x fastest, then y, then
z), under- and overflow bins included, so row ``i`` is global bin ``i``. Columns, per
axis ``x``/``y``/``z`` of the histogram's dimension:

    x_bin      int32    ROOT's bin number on the axis: 0 underflow, 1..n, n+1 overflow
    x_low      float64  lower bin edge (-inf for the underflow bin)
    x_high     float64  upper bin edge (+inf for the overflow bin)
    x_flow     bool     the bin is the axis's underflow or overflow bin
    x_label    string   the bin's alphanumeric label (only axes that have labels)

and for the bin itself:

    content    float64  uproot's ``values(flow=True)`` (for profiles: the mean of y)
    variance   float64  uproot's ``variances(flow=True)``: sumw2, or the content when
                        the histogram stores no sumw2 (for profiles: the squared error
                        of the mean in the profile's error mode)
    entries    float64  profiles only: ROOT's fBinEntries (sum of weights in the bin)
    effective_entries   profiles only: uproot's ``counts(flow=True)``

Attributes: ``title``, ``class``, ``name``, ``entries`` (fEntries), the sums of weights
(``sumw``, ``sumw2``, ``sumwx``, ``sumwx2``), and per axis ``x_title``, ``x_bins``,
``x_range``, ``x_variable_width`` and ``x_labels`` (when labelled).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import uproot

from .base import ColumnInfo, ColumnUnreadable, DatasetInfo, Reader, SourceError
from .root_keys import get_object
from arrowroot.flight_server.core.errors import InvalidRequest

HISTOGRAM_KINDS = frozenset({"th1", "th2", "th3", "tprofile", "tprofile2d", "tprofile3d"})
_TH = re.compile(r"^TH([123])[CSIFDLK]$")
_AXES = ("x", "y", "z")
# rows per endpoint: a TH3 of 200^3 bins is cut in a few reads, most histograms are one
_ROWS_PER_PART = 1 << 18


def histogram_kind(classname: str) -> str | None:
    """Dataset kind for a ROOT class name, or None when it is not a served histogram."""
    m = _TH.match(classname)
    if m:
        return f"th{m.group(1)}"
    return {"TProfile": "tprofile", "TProfile2D": "tprofile2d", "TProfile3D": "tprofile3d"}.get(classname)


def _labels(axis) -> list[str] | None:
    try:
        labels = axis.labels()
    except Exception:
        return None
    return [str(x) for x in labels] if labels else None


def _column_types(h, kind: str) -> list[tuple[str, pa.DataType, str]]:
    cols: list[tuple[str, pa.DataType, str]] = []
    for a, axis in zip(_AXES, h.axes):
        cols += [(f"{a}_bin", pa.int32(), f"{a} axis bin number (0 underflow, n+1 overflow)"),
                 (f"{a}_low", pa.float64(), f"{a} axis lower bin edge"),
                 (f"{a}_high", pa.float64(), f"{a} axis upper bin edge"),
                 (f"{a}_flow", pa.bool_(), f"{a} axis under/overflow bin")]
        if _labels(axis):
            cols.append((f"{a}_label", pa.string(), f"{a} axis bin label"))
    cols += [("content", pa.float64(), f"{h.classname} bin content"),
             ("variance", pa.float64(), f"{h.classname} bin variance")]
    if kind.startswith("tprofile"):
        cols += [("entries", pa.float64(), "TProfile fBinEntries"),
                 ("effective_entries", pa.float64(), "TProfile effective entries")]
    return cols


def _attributes(name: str, h) -> dict[str, Any]:
    attrs: dict[str, Any] = {"title": str(h.title or ""), "class": h.classname, "name": name.rsplit("/", 1)[-1],
                             "entries": float(h.member("fEntries"))}
    for key, member in (("sumw", "fTsumw"), ("sumw2", "fTsumw2"), ("sumwx", "fTsumwx"), ("sumwx2", "fTsumwx2")):
        if h.has_member(member):
            attrs[key] = float(h.member(member))
    for a, axis in zip(_AXES, h.axes):
        edges = axis.edges()
        attrs[f"{a}_title"] = str(axis.member("fTitle") or "")
        attrs[f"{a}_bins"] = int(len(edges) - 1)
        attrs[f"{a}_range"] = [float(edges[0]), float(edges[-1])]
        attrs[f"{a}_variable_width"] = bool(len(axis.member("fXbins")))
        labels = _labels(axis)
        if labels:
            attrs[f"{a}_labels"] = labels
    value_axis = ("fXaxis", "fYaxis", "fZaxis")[len(h.axes)] if len(h.axes) < 3 else None
    if value_axis and h.has_member(value_axis):  # TH1's y / TH2's z axis title ("Events / 0.1 GeV")
        attrs["value_title"] = str(h.member(value_axis).member("fTitle") or "")
    return attrs


def scan_histogram(name: str, h, kind: str) -> DatasetInfo:
    """The dataset record of one histogram (already read by uproot)."""
    shape = tuple(len(axis.edges(flow=True)) - 1 for axis in h.axes)
    entries = int(np.prod(shape))
    columns = tuple(ColumnInfo(name=c, arrow_type=t, source_type=src) for c, t, src in _column_types(h, kind))
    boundaries = tuple(range(0, max(entries, 1), _ROWS_PER_PART))
    return DatasetInfo(name, kind, entries, columns, _attributes(name, h), boundaries)


class HistogramReader(Reader):
    """One histogram held in memory (uproot reads it whole), served as rows of bins."""

    def __init__(self, path: str, object_path: str, kind: str):
        try:
            with uproot.open(path) as f:
                h = get_object(f, object_path)
                self._shape = tuple(len(axis.edges(flow=True)) - 1 for axis in h.axes)
                self._edges = [np.asarray(axis.edges(flow=True), dtype=np.float64) for axis in h.axes]
                self._labels = [_labels(axis) for axis in h.axes]
                # ROOT's global-bin order is x fastest: Fortran order of uproot's [x, y, z]
                self._columns: dict[str, np.ndarray] = {
                    "content": np.ravel(h.values(flow=True), order="F").astype(np.float64),
                    "variance": np.ravel(h.variances(flow=True), order="F").astype(np.float64),
                }
                if kind.startswith("tprofile"):
                    self._columns["entries"] = np.asarray(h.member("fBinEntries"), dtype=np.float64)
                    self._columns["effective_entries"] = np.ravel(h.counts(flow=True), order="F").astype(np.float64)
                self._types = {c: t for c, t, _ in _column_types(h, kind)}
        except Exception as exc:
            raise SourceError(f"{os.path.basename(path)}: cannot read histogram {object_path!r} "
                              f"({type(exc).__name__}: {str(exc).replace(path, os.path.basename(path))})") from exc
        self.object_path = object_path
        self.kind = kind
        self.entries = int(np.prod(self._shape))

    def read(self, columns: Sequence[str], entry_start: int, entry_stop: int, slices: Sequence[slice] = ()) -> pa.Table:
        if slices:
            raise InvalidRequest("slices apply to HDF5 N-D datasets only; histogram bins are sliced with entry_start/entry_stop")
        if not columns:
            raise InvalidRequest("read needs at least one column")
        start, stop = max(0, entry_start), min(self.entries, max(entry_start, entry_stop))
        rows = np.arange(start, stop)
        index = np.unravel_index(rows, self._shape, order="F") if len(rows) else [rows] * len(self._shape)
        return pa.Table.from_arrays([self._column(c, rows, index) for c in columns], names=list(columns))

    def _column(self, name: str, rows: np.ndarray, index: Sequence[np.ndarray]) -> pa.Array:
        if name in self._columns:
            return pa.array(self._columns[name][rows], pa.float64())
        axis_name, _, what = name.partition("_")
        if axis_name not in _AXES[: len(self._shape)] or name not in self._types:
            raise ColumnUnreadable(f"histogram {self.object_path!r} has no column {name!r}")
        i = _AXES.index(axis_name)
        ix = index[i]
        n = self._shape[i]
        if what == "bin":
            return pa.array(ix.astype(np.int32))
        if what == "low":
            return pa.array(self._edges[i][ix])
        if what == "high":
            return pa.array(self._edges[i][ix + 1])
        if what == "flow":
            return pa.array((ix == 0) | (ix == n - 1))
        labels = self._labels[i] or []
        return pa.array([labels[j - 1] if 0 < j <= len(labels) else None for j in ix.tolist()], pa.string())
