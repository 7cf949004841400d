"""Streamed ROOT objects as plain Arrow structs: the physics fields, none of the bookkeeping.

uproot reads a branch of objects (``TLorentzVector``, ``std::vector<TVector3>``, a user
class) either member by member or, for fixed-size classes, as one "strided" numpy record.
The strided form names nested members by their path (``fP/fX``) and carries ROOT's
streamer bookkeeping along (``@instance_version``, ``@num_bytes``) and TObject's members
(``@fUniqueID``, ``@fBits``, ``@pidf``). What a column of objects looks like on the wire:

1. **Bookkeeping is dropped.** Every struct field whose name starts with ``@`` is
   removed: uproot names all streamer headers and the members of ``TObject`` (the base
   of most ROOT classes) this way, so ``fUniqueID``/``fBits`` of an object's TObject base
   never appear in an object column.
2. **Nested members keep their structure.** A field named ``a/b`` becomes field ``b`` of
   a struct field ``a`` (at any depth, in the order the members were streamed), so a
   ``TLorentzVector`` is ``struct<fP: struct<fX, fY, fZ>, fE>`` and a
   ``std::vector<TLorentzVector>`` a list of those.
3. **Class names are not in the Arrow type** (the branch's C++ type name is the column's
   ``arrowroot.source_type`` metadata).
4. **Split branches stay as they are.** A split object is already one column per member
   branch (``fTracks.fPx``); branches that ROOT wrote for TObject members
   (``fTracks.fUniqueID``) are columns like any other, because they are branches of the
   tree in their own right (``TTree::Print`` and uproot list them).

Floating-point members stored with reduced precision (``Double32_t``, ``Float16_t``,
with or without a ``[low, high, nbits]`` range) are served as uproot decodes them:
``Double32_t`` as float64 and ``Float16_t`` as float32, carrying exactly the stored
precision (the truncated mantissa or the packed integer mapped back onto the range). The
column's metadata ``arrowroot.stored_as`` says how the values were stored.
"""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from .wire import buffer_view


@lru_cache(maxsize=512)
def needs_cleaning(t: pa.DataType) -> bool:
    """Whether any struct inside ``t`` has bookkeeping (``@``) or path (``a/b``) fields."""
    if pa.types.is_struct(t):
        return any(f.name.startswith("@") or "/" in f.name or needs_cleaning(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return needs_cleaning(t.value_type)
    return False


def clean_objects(array: pa.Array) -> pa.Array:
    """Apply the rules of this module to one column (zero copy: only structs are rebuilt)."""
    if not needs_cleaning(array.type):
        return array
    t = array.type
    mask = array.is_null() if array.null_count else None
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        arrays = [array.field(i) for i in range(t.num_fields)]
        return _nest(names, arrays, mask)
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        child = clean_objects(array.values.slice(array.offset * size, len(array) * size))
        return pa.FixedSizeListArray.from_arrays(child, size, mask=mask)
    # list or large_list: keep the offset width; the child range is the offsets' span
    offsets = buffer_view(array, 1, pa.int64() if pa.types.is_large_list(t) else pa.int32(), 1)
    if not len(offsets):
        offsets = pa.array([0], offsets.type)
    start = offsets[0].as_py() if len(offsets) else 0
    stop = offsets[-1].as_py() if len(offsets) else 0
    child = clean_objects(array.values.slice(start, stop - start))
    fresh = pa.array(offsets.to_numpy() - start, offsets.type)
    cls = pa.LargeListArray if pa.types.is_large_list(t) else pa.ListArray
    return cls.from_arrays(fresh, child, mask=mask)


def _nest(names: list[str], arrays: list[pa.Array], mask: pa.Array | None) -> pa.StructArray:
    """A struct from ``name → array`` pairs: ``@`` names dropped, ``a/b`` names nested."""
    order: list[str] = []
    direct: dict[str, pa.Array] = {}
    nested: dict[str, tuple[list[str], list[pa.Array]]] = {}
    for name, arr in zip(names, arrays):
        if name.startswith("@"):
            continue
        head, sep, rest = name.partition("/")
        if sep:
            if rest.startswith("@"):
                continue
            if head not in nested:
                nested[head] = ([], [])
                if head not in direct:
                    order.append(head)
            nested[head][0].append(rest)
            nested[head][1].append(arr)
        else:
            if head not in direct and head not in nested:
                order.append(head)
            direct[head] = clean_objects(arr)
    out_names, out_arrays = [], []
    length = len(arrays[0]) if arrays else 0
    for head in order:
        if head in direct and head in nested:  # both ``a`` and ``a/b``: keep them apart
            out_names.append(head)
            out_arrays.append(direct[head])
            for rest, arr in zip(*nested[head]):
                out_names.append(f"{head}/{rest}")
                out_arrays.append(clean_objects(arr))
        elif head in direct:
            out_names.append(head)
            out_arrays.append(direct[head])
        else:
            out_names.append(head)
            out_arrays.append(_nest(*nested[head], None))
    if not out_arrays:
        return pa.StructArray.from_arrays([], fields=[], mask=mask) if length == 0 else _empty_struct(length, mask)
    return pa.StructArray.from_arrays(out_arrays, names=out_names, mask=mask)


def _empty_struct(length: int, mask: pa.Array | None) -> pa.StructArray:
    """A struct with no fields (an object whose only members were bookkeeping)."""
    validity = None
    if mask is not None:
        validity = pc.invert(mask).buffers()[1]
    return pa.Array.from_buffers(pa.struct([]), length, [validity])
