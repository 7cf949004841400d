"""What uproot itself reads for a served ROOT dataset, for tests to compare against.

Written independently of the server's code: branches and fields are read with uproot's
own API, streamed-object bookkeeping is removed from the Python values by the rule the
README states, and histogram rows are laid out by ROOT's global-bin formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import uproot

HISTOGRAM_KINDS = {"th1", "th2", "th3", "tprofile", "tprofile2d", "tprofile3d"}


def lookup(f, name: str):
    """``f[name]``, also for key names that contain '/' (``chi2/NDF``)."""
    try:
        return f[name]
    except uproot.KeyInFileError:
        for _, obj in f.iteritems(recursive=False, cycle=False, filter_name=lambda n: n == name):
            return obj
        raise


def strip_bookkeeping(value: Any) -> Any:
    """The documented rule on Python values: drop ``@`` keys, nest ``a/b`` keys; text
    that is not UTF-8 (awkward gives surrogate escapes) gets U+FFFD per bad byte."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, list):
        return [strip_bookkeeping(v) for v in value]
    if isinstance(value, tuple):  # awkward's tuple records (and empty records) are Arrow structs "0", "1", ...
        return {str(i): strip_bookkeeping(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        out: dict = {}
        for k, v in value.items():
            if k.startswith("@"):
                continue
            head, sep, rest = k.partition("/")
            if sep:
                if not rest.startswith("@"):
                    out.setdefault(head, {})[rest] = v
            else:
                out[head] = v
        return {k: strip_bookkeeping(v) for k, v in out.items()}
    return value


def branch_paths(tree) -> dict[str, str]:
    """Column name → branch path, by the naming rule of the README (short unless shared)."""
    by_name: dict[str, list[str]] = {}
    for key in tree.keys(recursive=True):
        if not tree[key].branches:
            by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    out = {}
    for short, keys in by_name.items():
        if len(keys) == 1:
            out[short] = keys[0]
        else:
            out.update({k: k for k in keys})
    return out


def tree_values(tree, path: str, start: int, stop: int) -> list:
    return strip_bookkeeping(ak.to_list(tree[path].array(entry_start=start, entry_stop=stop, library="ak")))


def rntuple_values(ntuple, name: str, start: int, stop: int) -> list:
    return strip_bookkeeping(ak.to_list(ntuple[name].array(entry_start=start, entry_stop=stop)))


def histogram_rows(h) -> dict[str, np.ndarray]:
    """One row per ROOT global bin g = ix + nx2 * (iy + ny2 * iz), flow bins included."""
    axes = list(h.axes)
    sizes = [len(a.edges()) + 1 for a in axes]  # bins + under/overflow
    edges = [np.concatenate([[-np.inf], a.edges(), [np.inf]]) for a in axes]
    values = np.asarray(h.values(flow=True))
    variances = np.asarray(h.variances(flow=True))
    g = np.arange(int(np.prod(sizes)))
    idx, rest = [], g
    for size in sizes:
        idx.append(rest % size)
        rest = rest // size
    rows: dict[str, np.ndarray] = {}
    for name, ix, size, e in zip("xyz", idx, sizes, edges):
        rows[f"{name}_bin"] = ix
        rows[f"{name}_low"] = e[ix]
        rows[f"{name}_high"] = e[ix + 1]
        rows[f"{name}_flow"] = (ix == 0) | (ix == size - 1)
    rows["content"] = values[tuple(idx)]
    rows["variance"] = variances[tuple(idx)]
    if h.classname.startswith("TProfile"):
        rows["entries"] = np.asarray(h.member("fBinEntries"), dtype=np.float64)
    return rows


def same_ak(got: pa.ChunkedArray, expected: ak.Array) -> bool:
    """Served column equals uproot's array: Arrow's own cast of awkward's Arrow form to
    the served type, compared buffer-wise (fast); values with NaN fall back to Python."""
    try:
        exp = ak.to_arrow(expected, extensionarray=False)
        if isinstance(exp, pa.ChunkedArray):
            exp = exp.combine_chunks()
        if got.combine_chunks().equals(exp.cast(got.type)):
            return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        pass
    return same(got.to_pylist(), strip_bookkeeping(ak.to_list(expected)))


def same(got: list, expected: list) -> bool:
    """Equality of Python values with NaN equal to NaN (ROOT files hold NaNs)."""
    if isinstance(got, float) and isinstance(expected, float):
        return got == expected or (math.isnan(got) and math.isnan(expected))
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in got)
    return got == expected


@dataclass
class Tally:
    """Per-corpus figures of a real-file sweep."""

    trees: int = 0
    rntuples: int = 0
    histograms: int = 0
    columns: int = 0
    readable: int = 0
    uproot_readable: int = 0
    compared: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)  # uproot reads it, the server lists it unreadable
    inconsistent: list[str] = field(default_factory=list)  # uproot's values depend on the range read

    def summary(self, corpus: str) -> str:
        lines = [f"{corpus}: {self.trees} trees, {self.rntuples} RNTuples, {self.histograms} histograms served; "
                 f"columns {self.readable}/{self.columns} readable (uproot: {self.uproot_readable}); "
                 f"{self.compared} compared equal; {len(self.missed)} readable by uproot but not served; "
                 f"{len(self.inconsistent)} that uproot reads with range-dependent values"]
        reasons: dict[str, int] = {}
        for reason in self.unreadable.values():
            key = reason.split("\n")[0][:90]
            reasons[key] = reasons.get(key, 0) + 1
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {count:4d} unreadable: {reason}")
        return "\n".join(lines)


def arrow_values(column: pa.ChunkedArray) -> list:
    return column.to_pylist()
