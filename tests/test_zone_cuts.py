"""Zone-map reasoning is never wrong: random cuts (hypothesis) over sorted, partly sorted and random
data with nulls, NaN, infinities, empty and null lists, int64 and uint64 extremes. Wherever the
cut itself (``Cut.mask``, what the executor runs) passes an entry, ``ZoneCut.may_pass`` must say
the entry's zone may pass — with the mask taken over the whole table (one batch spanning zones, as
a read chunk does) and over each zone alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from arrowroot.flight_server.core.zones import Zone, merge, zone_of
from arrowroot.flight_server.lang.cuts import ExprError, parse
from arrowroot.flight_server.lang.zones import ZoneCut

N = 240


def _table(order: str, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    i = rng.integers(-50, 50, N)
    if order == "sorted":
        i = np.sort(i)
    elif order == "partly":
        i = np.sort(i)
        swap = rng.integers(0, N, (N // 10, 2))
        i[swap[:, 0]], i[swap[:, 1]] = i[swap[:, 1]], i[swap[:, 0]]
    f = rng.normal(0, 10, N)
    f[rng.random(N) < 0.05] = np.nan
    f[rng.random(N) < 0.02] = np.inf
    f[rng.random(N) < 0.02] = -np.inf
    if order == "sorted":
        f = np.sort(f)
    f_valid = rng.random(N) > 0.05
    big = np.array([0, 1, 2**53 + 1, 2**63 - 1, 2**63 + 5, 2**64 - 1], dtype=np.uint64)
    u = big[rng.integers(0, len(big), N)] if order != "sorted" else np.sort(big[rng.integers(0, len(big), N)])
    b = rng.random(N) < 0.5
    lengths = rng.integers(0, 4, N)
    flat = rng.normal(20, 15, lengths.sum()).astype(np.float32)
    flat[rng.random(len(flat)) < 0.03] = np.nan
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    elem_valid = rng.random(len(flat)) > 0.05
    jagged = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, mask=~elem_valid),
                                      mask=pa.array(rng.random(N) < 0.05))
    kflat = rng.integers(-(2**62), 2**62, lengths.sum())
    kflat[::7] = 2**63 - 1
    k = pa.ListArray.from_arrays(pa.array(offsets), pa.array(kflat))
    g = pa.FixedSizeListArray.from_arrays(pa.array(rng.integers(-3, 3, N * 2).astype(np.int16)), 2)
    return pa.table({"i": pa.array(i.astype(np.int32)), "f": pa.array(f, mask=~f_valid), "u": pa.array(u),
                     "b": pa.array(b, mask=pa.array(rng.random(N) < 0.05).to_numpy(zero_copy_only=False)),
                     "j": jagged, "k": k, "g": g, "s": pa.array([str(x % 3) for x in range(N)])})


# ---------------------------------------------------------------- random cuts

literal = st.one_of(st.integers(-60, 60).map(str), st.sampled_from(["0.5", "-2.25", "1e3", "9007199254740993",
                                                                     "9223372036854775807", "0", "True"]))
flat_num = st.deferred(lambda: st.one_of(
    st.sampled_from(["i", "f", "u", "len(j)", "count(j > 10)", "min(j)", "max(k)", "j[0]", "k[-1]", "sum(j)",
                     "g[1]", "mean(j)"]),
    literal,
    st.tuples(flat_num, st.sampled_from(["+", "-", "*", "/", "%"]), flat_num).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    flat_num.map(lambda x: f"abs({x})"),
    flat_num.map(lambda x: f"-{x}"),
    st.tuples(flat_num, flat_num).map(lambda t: f"minimum({t[0]}, {t[1]})"),
    st.tuples(flat_num, flat_num).map(lambda t: f"maximum({t[0]}, {t[1]})"),
))
list_num = st.one_of(st.sampled_from(["j", "k", "g"]),
                     st.tuples(st.sampled_from(["j", "k"]), st.sampled_from(["*", "+", "-"]), flat_num)
                     .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
                     st.sampled_from(["j[j > 5]", "abs(j)", "k[k < 0]"]))
cmp = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
flat_bool = st.deferred(lambda: st.one_of(
    st.tuples(flat_num, cmp, flat_num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
    st.tuples(flat_num, cmp, flat_num, cmp, flat_num).map(lambda t: " ".join(t)),
    st.tuples(st.sampled_from(["any", "all"]), list_num, cmp, flat_num).map(lambda t: f"{t[0]}({t[1]} {t[2]} {t[3]})"),
    st.tuples(flat_num, st.lists(st.integers(-5, 5), min_size=1, max_size=4), st.booleans())
    .map(lambda t: f"{t[0]} {'not in' if t[2] else 'in'} {t[1]}"),
    st.sampled_from(["b", "isnan(f)", "s == '1'", "true", "any(isnan(j))"]),
    flat_bool.map(lambda x: f"not ({x})"),
    st.tuples(flat_bool, st.sampled_from([" and ", " or ", " & ", " | "]), flat_bool)
    .map(lambda t: f"({t[0]}){t[1]}({t[2]})"),
))


def _zones(table: pa.Table, edges: list[int]) -> list[dict[str, Zone]]:
    out = []
    for a, b in zip(edges, edges[1:]):
        piece = table.slice(a, b - a)
        out.append({c: zone_of(piece.column(c), a, b) for c in table.column_names if c != "s"})
    return out


TABLES = {(order, seed): _table(order, seed) for order in ("sorted", "partly", "random") for seed in (1, 2)}


@pytest.mark.slow   # 600 examples; test_zone_maps.py has the quick random cuts
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=flat_bool, key=st.sampled_from(sorted(TABLES)), cuts=st.lists(st.integers(1, N - 1), max_size=12))
def test_zone_reasoning_never_skips_a_passing_entry(text: str, key, cuts: list[int]) -> None:
    table = TABLES[key]
    try:
        cut = parse(text, table.schema)
    except ExprError:
        assume(False)
    zc = ZoneCut(text, table.schema)
    edges = sorted({0, N, *cuts})
    whole = np.asarray(cut.mask(table).to_numpy(zero_copy_only=False))
    for (a, b), zones in zip(zip(edges, edges[1:]), _zones(table, edges)):
        alone = np.asarray(cut.mask(table.slice(a, b - a)).to_numpy(zero_copy_only=False))
        if whole[a:b].any() or alone.any():
            assert zc.may_pass(zones), (text, key, a, b)


def test_sorted_data_is_skipped_where_the_cut_cannot_pass() -> None:
    table = TABLES[("sorted", 1)]
    edges = list(range(0, N + 1, 24))
    zones = _zones(table, edges)
    zc = ZoneCut("i > 40", table.schema)
    skipped = [not zc.may_pass(z) for z in zones]
    assert skipped[0] and not skipped[-1] and sum(skipped) >= 7
    assert all(zc.may_pass(z) for z in zones if z["i"].max > 40)
    # a column without a zone map may be anything; so may strings
    assert ZoneCut("i > 40 or s == 'x'", table.schema).may_pass(zones[0]) is True
    assert ZoneCut("i > 40", table.schema).may_pass({}) is True


@pytest.mark.parametrize("text,skips", [
    ("any(j > 1000)", True),                # no element that large
    ("all(j > 1000)", False),               # empty lists make all() true
    ("len(j) > 3", True),                   # lists hold at most 3 elements
    ("count(j > -1000) >= 4", True),
    ("j[3] > 0", True),                     # index past every list's end: null
    ("not (j[3] > 0)", True),               # null either way
    ("isnan(i)", True),
    ("u > 9223372036854775807", False),     # uint64 past int64: compared as float64
    ("abs(i) > 50", True),
    ("i * 1000000000000 > 0", False),
    ("(i * 4611686018427387904) > 0", False),   # int64 wraps around: anything
    ("b & (i > 100)", True),
    ("f != f", False),                      # NaN
    ("f > 1e308", False),                   # +inf is in the data
])
def test_rules_on_known_data(text: str, skips: bool) -> None:
    table = TABLES[("random", 1)]
    zone = _zones(table, [0, N])[0]
    assert ZoneCut(text, table.schema).may_pass(zone) is (not skips)
    if skips:
        assert not parse(text, table.schema).mask(table).to_numpy(zero_copy_only=False).any()


def test_zone_statistics() -> None:
    col = pa.array([3, None, -2, 2**63 - 1], pa.int64())
    z = zone_of(col, 0, 4)
    assert (z.min, z.nulls, z.exact) == (-2.0, 1, False) and z.max >= 2**63 - 1
    f = zone_of(pa.array([float("nan"), 1.5, None, -float("inf")]), 10, 14)
    assert (f.min, f.max, f.nans, f.nulls, f.rows) == (-float("inf"), 1.5, 1, 1, 4)
    lists = zone_of(pa.array([[1.0, None], [], None, [float("nan"), 7.0]]), 0, 4)
    assert (lists.min, lists.max, lists.nulls, lists.value_nulls, lists.nans, lists.min_len, lists.max_len) == \
        (1.0, 7.0, 1, 1, 1, 0, 2)
    m = merge([zone_of(pa.array([1, 2]), 0, 2), zone_of(pa.array([None, None], pa.int64()), 2, 4)])
    assert (m.start, m.stop, m.min, m.max, m.nulls) == (0, 4, 1.0, 2.0, 2)
