"""Arrow layouts as every client reads them: 32-bit list offsets, plain strings.

awkward (and so uproot) hands out ``large_list``/``large_string`` with 64-bit offsets;
many Arrow clients (older JavaScript, some JDBC bridges) only read the 32-bit forms, and
batches are capped at a few MiB, so 32-bit offsets always suffice.

The rewrite must respect how Arrow represents slices, at every nesting level:

* an array's own ``offset`` (a sliced array still holds its parent's buffers);
* list offsets that do not start at 0 (a list's first value may sit anywhere in its child);
* null list or struct slots, whose hidden contents still occupy the child (so
  ``flatten()``, which skips them, cannot be used to find the child's range);
* fixed-size lists, whose child range is ``offset * size`` to ``(offset + length) * size``.

Only offsets are rewritten; values buffers are reused as they are (zero copy). String
values that are not valid UTF-8 get U+FFFD for the bad bytes (``valid_utf8``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _mask(array: pa.Array) -> pa.Array | None:
    return array.is_null() if array.null_count else None


def buffer_view(array: pa.Array, index: int, dtype: pa.DataType, extra: int = 0) -> pa.Array:
    """Buffer ``index`` of ``array`` as a plain array, with the array's own offset applied
    (the ``offsets``/``type_codes`` properties do not apply it everywhere)."""
    buf = array.buffers()[index]
    if buf is None or len(array) == 0:
        return pa.array([], dtype)
    return pa.Array.from_buffers(dtype, len(array) + extra, [None, buf], offset=array.offset)


def to_wire(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The same values with 32-bit offsets and no 64-bit string/binary types, any nesting."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    t = array.type
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        offsets = buffer_view(array, 1, pa.int64() if pa.types.is_large_list(t) else pa.int32(), 1)
        # positions in array.values; never empty (a length-0 array may lack the buffer)
        start = offsets[0].as_py() if len(offsets) else 0
        stop = offsets[-1].as_py() if len(offsets) else 0
        if not len(offsets):
            offsets = pa.array([0], pa.int32())
        child = to_wire(array.values.slice(start, stop - start))
        # a fresh offsets array starting at 0 (from_arrays refuses offset views with a mask)
        offsets = pa.array((offsets.to_numpy() - start).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, child, mask=_mask(array))
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        child = to_wire(array.values.slice(array.offset * size, len(array) * size))
        return pa.FixedSizeListArray.from_arrays(child, size, mask=_mask(array))
    if pa.types.is_struct(t):
        if t.num_fields == 0:
            return array
        # StructArray.field(i) already applies the struct's own offset and length.
        fields = [to_wire(array.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(fields, fields=list(_wire_fields(t, fields)), mask=_mask(array))
    if pa.types.is_union(t):
        children = [to_wire(array.field(i)) for i in range(t.num_fields)]
        names = [t.field(i).name for i in range(t.num_fields)]
        codes = list(t.type_codes)
        # fresh copies starting at 0: the union builders do not take offset views
        types = pa.array(buffer_view(array, 1, pa.int8()).to_numpy())
        if t.mode == "dense":
            offsets = pa.array(buffer_view(array, 2, pa.int32()).to_numpy())
            return pa.UnionArray.from_dense(types, offsets, children, names, codes)
        return pa.UnionArray.from_sparse(types, children, names, codes)
    if pa.types.is_large_string(t) or pa.types.is_string(t):
        return valid_utf8(array.cast(pa.string()))
    if pa.types.is_large_binary(t):
        return array.cast(pa.binary())
    return array


def _wire_fields(t: pa.StructType, arrays: list[pa.Array]):
    for i, arr in enumerate(arrays):
        f = t.field(i)
        yield pa.field(f.name, arr.type, nullable=True, metadata=f.metadata)


def valid_utf8(array: pa.Array) -> pa.Array:
    """A string array that is valid UTF-8: bytes that are not (ROOT ``char*`` branches
    can hold anything) are replaced by U+FFFD, as ``bytes.decode(errors="replace")``.

    Arrow requires UTF-8 in string arrays; clients fail on the whole batch otherwise.
    """
    try:
        array.validate(full=True)
        return array
    except pa.ArrowInvalid:
        raw = array.cast(pa.binary()).to_pylist()
        return pa.array([None if b is None else b.decode("utf-8", errors="replace") for b in raw], pa.string())


def wire_type(t: pa.DataType) -> pa.DataType:
    """The type ``to_wire`` gives for arrays of type ``t`` (for schemas known before reading)."""
    return to_wire(pa.array([], t)).type
