"""Per-entry shapes of N-D columns and the slices that cut them (numpy rules).

Shared by the sources (which read hyperslabs), the planner (which types the output) and the
executor (which types what it streams), so it lives in core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
from arrowroot.flight_server.core.errors import InvalidRequest

# Arrow field-metadata keys shared by all sources (documented in the README).
META_SOURCE_TYPE = b"arrowroot.source_type"
META_SHAPE = b"arrowroot.shape"
#: a column named only, never served by "all columns" or a glob (ROOT parent branches, whose leaves are columns)
META_PARENT = b"arrowroot.parent"


def normalise_slices(slices: Sequence[slice], shape: Sequence[int]) -> list[slice]:
    """Resolve per-axis slices against a shape (axes after the first), numpy rules.

    Raises ValueError for more slices than axes or non-positive steps (HDF5 cannot
    read backwards).
    """
    if len(slices) > len(shape):
        raise InvalidRequest(
            f"slices: {len(slices)} given but the column has only {len(shape)} axes after the first"
        )
    out = []
    for axis, (s, n) in enumerate(zip(slices, shape), start=1):
        if s.step is not None and s.step <= 0:
            raise InvalidRequest(f"slices[{axis - 1}]: step must be positive (got {s.step})")
        out.append(slice(*s.indices(n)))
    for n in shape[len(slices):]:
        out.append(slice(0, n, 1))
    return out


def sliced_shape(shape: Sequence[int], slices: Sequence[slice]) -> tuple[int, ...]:
    """Shape (after the first axis) that ``slices`` leave."""
    norm = normalise_slices(slices, shape)
    return tuple(len(range(s.start, s.stop, s.step)) for s in norm)


def fixed_shape_type(value_type: pa.DataType, shape: Sequence[int]) -> pa.DataType:
    """Nested fixed_size_list type for the per-entry ``shape`` (outermost axis first)."""
    t = value_type
    for n in reversed(shape):
        t = pa.list_(t, n)
    return t


def sliced_field(field: pa.Field, slices: Sequence[slice]) -> pa.Field:
    """The field a column becomes once ``slices`` cut its axes after the first.

    Raises ValueError when the column has no such axes or a slice does not fit.
    """
    if not slices:
        return field
    meta = dict(field.metadata or {})
    shape = json.loads(meta.get(META_SHAPE, b"[]"))
    if not shape:
        raise InvalidRequest(f"slices: column {field.name!r} has no axes after the first")
    new_shape = sliced_shape(shape, slices)
    if 0 in new_shape:  # Arrow has no zero-size fixed-size lists: refuse at planning, not at DoGet
        axis = new_shape.index(0) + 1
        raise InvalidRequest(f"slices: axis {axis} of column {field.name!r} would keep no elements; "
                         "a slice must select at least one")
    base = field.type
    for _ in shape:
        base = base.value_type
    meta[META_SHAPE] = json.dumps(list(new_shape)).encode()
    return pa.field(field.name, fixed_shape_type(base, new_shape), nullable=True, metadata=meta)
