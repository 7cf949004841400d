"""to_wire keeps every value of arbitrarily nested, sliced, null-holding Arrow arrays.

The arrays are built the way awkward and slicing build them: large (64-bit) lists,
structs, fixed-size lists and unions nested in each other, with null slots whose hidden
contents still occupy the child, then sliced so that offsets do not start at 0 and
children carry offsets of their own.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowroot.flight_server.sources.wire import to_wire, wire_type

LEAVES = [pa.int32(), pa.float64(), pa.large_string(), pa.bool_()]


def types(depth: int = 0):
    leaf = st.sampled_from(LEAVES)
    if depth >= 3:
        return leaf
    sub = st.deferred(lambda: types(depth + 1))
    return st.one_of(
        leaf,
        sub.map(pa.large_list),
        sub.map(pa.list_),
        st.tuples(sub, st.integers(1, 3)).map(lambda t: pa.list_(t[0], t[1])),
        st.lists(sub, min_size=0, max_size=3).map(lambda ts: pa.struct([(f"f{i}", t) for i, t in enumerate(ts)])),
    )


def values(t: pa.DataType, nullable: bool = True):
    if pa.types.is_integer(t):
        base = st.integers(-100, 100)
    elif pa.types.is_floating(t):
        base = st.floats(allow_nan=False, width=64)
    elif pa.types.is_boolean(t):
        base = st.booleans()
    elif pa.types.is_large_string(t):
        base = st.text(max_size=3)
    elif pa.types.is_fixed_size_list(t):
        base = st.lists(values(t.value_type), min_size=t.list_size, max_size=t.list_size)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        base = st.lists(values(t.value_type), max_size=4)
    else:
        base = st.fixed_dictionaries({f.name: values(f.type) for f in t})
    return st.one_of(st.none(), base) if nullable else base


@st.composite
def sliced_arrays(draw):
    t = draw(types())
    items = draw(st.lists(values(t), max_size=12))
    array = pa.array(items, t)
    # slice twice: the second slice lands on an array that already has an offset
    a = draw(st.integers(0, len(array)))
    b = draw(st.integers(a, len(array)))
    array = array.slice(a, b - a)
    c = draw(st.integers(0, len(array)))
    return array.slice(c)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sliced_arrays())
def test_to_wire_keeps_values_of_sliced_nested_arrays(array):
    out = to_wire(array)
    out.validate(full=True)
    assert out.to_pylist() == array.to_pylist()
    assert "large_" not in str(out.type)
    assert out.type == wire_type(array.type)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(sliced_arrays(), st.integers(0, 5))
def test_to_wire_inside_a_list_whose_child_is_sliced(array, start):
    """A list array built over a sliced child (what awkward gives for a cluster's slice)."""
    child = array.slice(min(start, len(array)))
    n = len(child)
    offsets = pa.array([0, n // 2, n], pa.int64())
    outer = pa.LargeListArray.from_arrays(offsets, child, mask=pa.array([False, n % 2 == 1]))
    for part in (outer, outer.slice(1)):
        out = to_wire(part)
        out.validate(full=True)
        assert out.to_pylist() == part.to_pylist()


def test_null_list_slot_with_hidden_values_after_a_slice():
    """The shape behind "Length spanned by list offsets (3) larger than values array":
    a null slot that still spans values; flatten() skips them, offsets do not."""
    a = pa.LargeListArray.from_arrays(pa.array([0, 3, 4, 6], pa.int64()), pa.array([1, 2, 3, 4, 5, 6]),
                                      mask=pa.array([False, True, False]))
    assert to_wire(a.slice(1)).to_pylist() == [None, [5, 6]]
    nested = pa.LargeListArray.from_arrays(pa.array([0, 1, 3], pa.int64()), a)
    assert to_wire(nested.slice(1)).to_pylist() == [[None, [5, 6]]]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_unions_sliced(mode):
    lists = pa.array([[1], [2, 3], [4]], pa.large_list(pa.int64()))
    strings = pa.array(["a", "bb", "c"], pa.large_string())
    if mode == "dense":
        u = pa.UnionArray.from_dense(pa.array([0, 1, 0, 1], pa.int8()), pa.array([0, 0, 1, 1], pa.int32()),
                                     [lists, strings])
    else:
        u = pa.UnionArray.from_sparse(pa.array([0, 1, 0], pa.int8()), [lists, strings])
    for part in (u, u.slice(1), u.slice(2, 1)):
        out = to_wire(part)
        out.validate(full=True)
        assert out.to_pylist() == part.to_pylist() and "large_" not in str(out.type)


def test_strings_that_are_not_utf8_are_repaired():
    raw = pa.array([b"ok", b"\xe6:", None], pa.large_binary())
    bad = pa.Array.from_buffers(pa.large_string(), 3, raw.buffers())
    assert to_wire(bad).to_pylist() == ["ok", "\ufffd:", None]
