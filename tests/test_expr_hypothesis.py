"""Property test: random cuts from the grammar over random flat and jagged data, compared with
a reference evaluator written independently here.

The strategies build every expression twice at once: as text for expr.parse, and as a plain
Python function of one entry (a dict of Python scalars / lists, None for null) that follows
the documented semantics -- Kleene logic, null propagation, too-short index -> null, nulls
skipped by count/sum/min/max/mean, null never passes.  Nothing from lang/cuts.py is reused.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowroot.flight_server.lang.cuts import parse

pytestmark = pytest.mark.slow

Ref = Callable[[dict], Any]
NAN = float("nan")

# ----------------------------------------------------------------------------- data

# values exactly representable in float32, so the float32 column holds what Python sees
F32 = st.sampled_from([-4.0, -2.5, -1.0, -0.25, 0.0, 0.5, 1.0, 1.75, 3.0, 8.0, 20.0])
FLOATS = st.one_of(F32, st.just(NAN), st.just(100.5))
INTS = st.integers(-5, 5)
STRS = st.sampled_from(["a", "b", "c"])


def maybe(s: st.SearchStrategy, p_null: float = 0.15) -> st.SearchStrategy:
    return st.one_of(s, st.none()) if p_null else s


@st.composite
def datasets(draw) -> list[dict]:
    n = draw(st.integers(0, 12))
    len1 = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    len2 = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    rows = []
    for i in range(n):
        x_null = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        rows.append({
            "a": draw(maybe(INTS)),
            "b": draw(maybe(FLOATS)),
            "f": draw(maybe(st.booleans())),
            "s": draw(maybe(STRS)),
            # x and y share a jagged structure; x has null entries and null elements
            "x": None if x_null else draw(st.lists(maybe(F32, 0.1), min_size=len1[i], max_size=len1[i])),
            "y": draw(st.lists(st.integers(-3, 6), min_size=len1[i], max_size=len1[i])),
            "z": draw(st.lists(st.floats(-10, 10, width=64), min_size=len2[i], max_size=len2[i])),
            "_len1": len1[i],
        })
    return rows


def to_batch(rows: list[dict]) -> pa.RecordBatch:
    n = len(rows)
    len1 = [r["_len1"] for r in rows]
    offsets = pa.array(np.concatenate([[0], np.cumsum(len1, dtype=np.int64)]).astype(np.int32))
    x_vals = [v for r in rows for v in (r["x"] if r["x"] is not None else [0.0] * r["_len1"])]
    x = pa.ListArray.from_arrays(offsets, pa.array(x_vals, pa.float32()),
                                 mask=pa.array([r["x"] is None for r in rows], pa.bool_()))
    y = pa.ListArray.from_arrays(offsets, pa.array([v for r in rows for v in r["y"]], pa.int32()))
    return pa.record_batch({
        "a": pa.array([r["a"] for r in rows], pa.int64()),
        "b": pa.array([r["b"] for r in rows], pa.float64()),
        "f": pa.array([r["f"] for r in rows], pa.bool_()),
        "s": pa.array([r["s"] for r in rows], pa.string()),
        "x": x,
        "y": y,
        "z": pa.array([r["z"] for r in rows], pa.large_list(pa.float64())),
    }) if n else pa.record_batch({
        "a": pa.array([], pa.int64()), "b": pa.array([], pa.float64()), "f": pa.array([], pa.bool_()),
        "s": pa.array([], pa.string()), "x": pa.array([], pa.list_(pa.float32())),
        "y": pa.array([], pa.list_(pa.int32())), "z": pa.array([], pa.large_list(pa.float64())),
    })


# ----------------------------------------------------------------------------- reference semantics


def r_div(p: Any, q: Any) -> float:
    p, q = float(p), float(q)
    if q == 0:
        if p == 0 or math.isnan(p):
            return NAN
        return math.copysign(math.inf, p) * math.copysign(1.0, q)
    return p / q


def r_mod(p: Any, q: int) -> Any:
    if isinstance(p, float):
        if math.isnan(p) or math.isinf(p):
            return NAN
        return p % q
    return int(p) % q


def r_sqrt(v: Any) -> float:
    v = float(v)
    return NAN if math.isnan(v) or v < 0 else math.sqrt(v)


def r_minmax(fn: Callable) -> Callable:
    def f(p: Any, q: Any) -> Any:
        if (isinstance(p, float) and math.isnan(p)) or (isinstance(q, float) and math.isnan(q)):
            return NAN
        return fn(p, q)
    return f


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda p, q: p + q,
    "-": lambda p, q: p - q,
    "*": lambda p, q: p * q,
    "/": r_div,
    "minimum": r_minmax(min),
    "maximum": r_minmax(max),
}
CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda p, q: p == q, "!=": lambda p, q: p != q, "<": lambda p, q: p < q,
    "<=": lambda p, q: p <= q, ">": lambda p, q: p > q, ">=": lambda p, q: p >= q,
}


def k_and(p: Any, q: Any) -> Any:
    if p is False or q is False:
        return False
    if p is None or q is None:
        return None
    return True


def k_or(p: Any, q: Any) -> Any:
    if p is True or q is True:
        return True
    if p is None or q is None:
        return None
    return False


def k_not(p: Any) -> Any:
    return None if p is None else not p


def strict(op: Callable) -> Callable:
    """Null in, null out."""
    def f(*args: Any) -> Any:
        return None if any(a is None for a in args) else op(*args)
    return f


def elementwise(op: Callable, *args: tuple[Ref, bool]) -> Ref:
    """Apply op per element; args are (fn, is_list); flat values broadcast to every element."""
    def f(row: dict) -> Any:
        vals = [(fn(row), is_list) for fn, is_list in args]
        lists = [v for v, is_list in vals if is_list]
        if any(v is None for v in lists):
            return None
        n = len(lists[0])
        cols = [v if is_list else [v] * n for v, is_list in vals]
        return [op(*items) for items in zip(*cols)]
    return f


def reduction(name: str, fn: Ref) -> Ref:
    def f(row: dict) -> Any:
        xs = fn(row)
        if xs is None:
            return None
        if name == "len":
            return len(xs)
        if name == "any":
            return True if any(v is True for v in xs) else (None if None in xs else False)
        if name == "all":
            return False if any(v is False for v in xs) else (None if None in xs else True)
        vals = [v for v in xs if v is not None]
        if name == "count":
            return sum(1 for v in vals if v is True) if vals and isinstance(vals[0], bool) else len(vals)
        vals = [int(v) if isinstance(v, bool) else v for v in vals]
        if name == "sum":
            return sum(vals)
        if not vals:
            return None
        if name == "mean":
            return sum(vals) / len(vals)
        if any(isinstance(v, float) and math.isnan(v) for v in vals):
            return NAN
        return min(vals) if name == "min" else max(vals)
    return f


def index(fn: Ref, k: int) -> Ref:
    def f(row: dict) -> Any:
        xs = fn(row)
        if xs is None or not -len(xs) <= k < len(xs):
            return None
        return xs[k]
    return f


def masked(fn: Ref, mfn: Ref) -> Ref:
    def f(row: dict) -> Any:
        xs, ms = fn(row), mfn(row)
        if xs is None or ms is None:
            return None
        return [v for v, m in zip(xs, ms) if m is True]
    return f


def where(c: Any, p: Any, q: Any) -> Any:
    if c is None:
        return None
    return p if c else q


# ----------------------------------------------------------------------------- expressions
# Each strategy yields (text, reference function).  Lists are "x-like" (x and y share one jagged
# structure) or "z-like" (z's own structure); they only meet lists of their own kind.

LEAF_NUM = st.sampled_from([
    ("a", lambda r: r["a"]), ("b", lambda r: r["b"]),
    ("3", lambda r: 3), ("0", lambda r: 0), ("(-2)", lambda r: -2), ("1.5", lambda r: 1.5),
    ("0.25", lambda r: 0.25), ("1e1", lambda r: 10.0),
])


@functools.lru_cache(maxsize=None)
def num(depth: int) -> st.SearchStrategy:
    if depth <= 0:
        return LEAF_NUM
    return st.one_of(
        LEAF_NUM,
        st.builds(binop, st.sampled_from(["+", "-", "*", "/"]), st.deferred(lambda: num(depth - 1)),
                  st.deferred(lambda: num(depth - 1))),
        st.builds(lambda e, q: (f"({e[0]} % {q})",
                                lambda r, f=e[1], q=q: None if f(r) is None else r_mod(f(r), q)),
                  st.deferred(lambda: num(depth - 1)), st.sampled_from([2, 3, -3])),
        st.builds(lambda e: (f"(-{e[0]})", lambda r, f=e[1]: strict(lambda v: -v)(f(r))),
                  st.deferred(lambda: num(depth - 1))),
        st.builds(lambda e: (f"({e[0]} ** 2)", lambda r, f=e[1]: strict(lambda v: float(v) ** 2)(f(r))),
                  st.deferred(lambda: num(0))),
        st.builds(lambda e: (f"abs({e[0]})", lambda r, f=e[1]: strict(abs)(f(r))), st.deferred(lambda: num(depth - 1))),
        st.builds(lambda e: (f"sqrt({e[0]})", lambda r, f=e[1]: strict(r_sqrt)(f(r))), st.deferred(lambda: num(depth - 1))),
        st.builds(lambda name, p, q: (f"{name}({p[0]}, {q[0]})",
                                      lambda r, g=ARITH[name], f1=p[1], f2=q[1]: strict(g)(f1(r), f2(r))),
                  st.sampled_from(["minimum", "maximum"]), st.deferred(lambda: num(depth - 1)),
                  st.deferred(lambda: num(depth - 1))),
        st.builds(lambda c, p, q: (f"where({c[0]}, {p[0]}, {q[0]})",
                                   lambda r, fc=c[1], f1=p[1], f2=q[1]: where(fc(r), f1(r), f2(r))),
                  st.deferred(lambda: boolean(depth - 1)), st.deferred(lambda: num(depth - 1)),
                  st.deferred(lambda: num(depth - 1))),
        st.builds(lambda name, L: (f"{name}({L[0]})", reduction(name, L[1])),
                  st.sampled_from(["len", "count", "sum", "min", "max", "mean"]),
                  st.deferred(lambda: anylist(depth - 1))),
        st.builds(lambda name, M: (f"{name}({M[0]})", reduction(name, M[1])),
                  st.sampled_from(["count", "sum"]), st.deferred(lambda: boollist(depth - 1, "x"))),
        st.builds(lambda L, k: (f"{L[0]}[{k}]", index(L[1], k)), st.deferred(lambda: anylist(depth - 1)),
                  st.integers(-3, 3)),
    )


def binop(op: str, p: tuple, q: tuple) -> tuple:
    return f"({p[0]} {op} {q[0]})", lambda r, g=ARITH[op], f1=p[1], f2=q[1]: strict(g)(f1(r), f2(r))


@functools.lru_cache(maxsize=None)
def boolean(depth: int) -> st.SearchStrategy:
    leaves = st.sampled_from([
        ("f", lambda r: r["f"]), ("True", lambda r: True), ("false", lambda r: False),
        ("(s == 'a')", lambda r: strict(lambda v: v == "a")(r["s"])),
        ("(s != 'b')", lambda r: strict(lambda v: v != "b")(r["s"])),
        ("(s in ['a', 'c'])", lambda r: strict(lambda v: v in ("a", "c"))(r["s"])),
        ("(s not in ['a'])", lambda r: strict(lambda v: v != "a")(r["s"])),
        ("('b' == s)", lambda r: strict(lambda v: v == "b")(r["s"])),
    ])
    cmp = st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                      lambda r, g=CMP[op], f1=p[1], f2=q[1]: strict(g)(f1(r), f2(r))),
                    st.sampled_from(list(CMP)), num(depth), num(depth))
    if depth <= 0:
        return st.one_of(leaves, cmp)
    sub = st.deferred(lambda: boolean(depth - 1))
    return st.one_of(
        leaves, cmp,
        st.builds(lambda o1, o2, p, q, m: (f"({p[0]} {o1} {m[0]} {o2} {q[0]})",
                                           lambda r, g1=CMP[o1], g2=CMP[o2], f1=p[1], fm=m[1], f2=q[1]:
                                           k_and(strict(g1)(f1(r), fm(r)), strict(g2)(fm(r), f2(r)))),
                  st.sampled_from(["<", "<=", "=="]), st.sampled_from(["<", "<=", "!="]),
                  num(depth - 1), num(depth - 1), num(depth - 1)),
        st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                    lambda r, g=(k_and if op in ("and", "&") else k_or), f1=p[1], f2=q[1]:
                                    g(f1(r), f2(r))),
                  st.sampled_from(["and", "or", "&", "|"]), sub, sub),
        st.builds(lambda op, p: (f"({op} {p[0]})" if op == "not" else f"(~{p[0]})",
                                 lambda r, f=p[1]: k_not(f(r))), st.sampled_from(["not", "~"]), sub),
        st.builds(lambda p, items, neg: (f"({p[0]} {'not in' if neg else 'in'} [{', '.join(map(str, items))}])",
                                         lambda r, f=p[1]: strict(lambda v: (v in items) != neg)(f(r))),
                  num(depth - 1), st.lists(st.sampled_from([0, 1, 3, -2, 1.5]), max_size=3), st.booleans()),
        st.builds(lambda p: (f"isnan({p[0]})", lambda r, f=p[1]: strict(
            lambda v: isinstance(v, float) and math.isnan(v))(f(r))), num(depth - 1)),
        st.builds(lambda name, M: (f"{name}({M[0]})", reduction(name, M[1])),
                  st.sampled_from(["any", "all"]), st.deferred(lambda: boollist(depth - 1, "x"))),
        st.builds(lambda name, M: (f"{name}({M[0]})", reduction(name, M[1])),
                  st.sampled_from(["any", "all"]), st.deferred(lambda: boollist(depth - 1, "z"))),
    )


@functools.lru_cache(maxsize=None)
def numlist(depth: int, kind: str) -> st.SearchStrategy:
    if kind == "x":
        leaves = st.sampled_from([("x", lambda r: r["x"]), ("y", lambda r: r["y"])])
    else:
        leaves = st.just(("z", lambda r: r["z"]))
    if depth <= 0:
        return leaves
    sub = st.deferred(lambda: numlist(depth - 1, kind))
    return st.one_of(
        leaves,
        # list op list (same structure) and list op flat / flat op list (broadcast)
        st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                    elementwise(strict(ARITH[op]), (p[1], True), (q[1], True))),
                  st.sampled_from(["+", "-", "*"]), sub, sub),
        st.builds(lambda op, p, q, flip: (f"({q[0]} {op} {p[0]})" if flip else f"({p[0]} {op} {q[0]})",
                                          elementwise(strict(ARITH[op]), *(((q[1], False), (p[1], True)) if flip
                                                                           else ((p[1], True), (q[1], False))))),
                  st.sampled_from(["+", "-", "*", "/"]),
                  sub, num(depth - 1), st.booleans()),
        st.builds(lambda p: (f"abs({p[0]})", elementwise(strict(abs), (p[1], True))), sub),
        st.builds(lambda p: (f"(-{p[0]})", elementwise(strict(lambda v: -v), (p[1], True))), sub),
        st.builds(lambda c, p, q: (f"where({c[0]}, {p[0]}, {q[0]})",
                                   elementwise(where, (c[1], True), (p[1], True), (q[1], False))),
                  st.deferred(lambda: boollist(depth - 1, kind)), sub, num(0)),
    )


@functools.lru_cache(maxsize=None)
def boollist(depth: int, kind: str) -> st.SearchStrategy:
    nl = numlist(depth, kind)
    cmp = st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                      elementwise(strict(CMP[op]), (p[1], True), (q[1], False))),
                    st.sampled_from(list(CMP)), nl, num(0))
    if depth <= 0:
        return cmp
    sub = st.deferred(lambda: boollist(depth - 1, kind))
    return st.one_of(
        cmp,
        st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                    elementwise(strict(CMP[op]), (p[1], True), (q[1], True))),
                  st.sampled_from(list(CMP)), nl, nl),
        st.builds(lambda op, p, q: (f"({p[0]} {op} {q[0]})",
                                    elementwise(k_and if op == "and" else k_or, (p[1], True), (q[1], True))),
                  st.sampled_from(["and", "or"]), sub, sub),
        # a flat boolean broadcast into the list
        st.builds(lambda p, q: (f"({p[0]} and {q[0]})", elementwise(k_and, (p[1], True), (q[1], False))),
                  sub, boolean(0)),
        st.builds(lambda p: (f"(not {p[0]})", elementwise(k_not, (p[1], True))), sub),
        st.builds(lambda p, items: (f"({p[0]} in [{', '.join(map(str, items))}])",
                                    elementwise(strict(lambda v: v in items), (p[1], True))),
                  nl, st.lists(st.sampled_from([0, 1, 3, -1.0, 0.5]), max_size=3)),
    )


@functools.lru_cache(maxsize=None)
def anylist(depth: int) -> st.SearchStrategy:
    """Any numeric list, including a masked one (its structure differs, so it is only reduced
    or indexed, never combined)."""
    return st.one_of(
        numlist(depth, "x"), numlist(depth, "z"),
        st.builds(lambda p, m: (f"{p[0]}[{m[0]}]", masked(p[1], m[1])),
                  numlist(max(depth - 1, 0), "x"), boollist(max(depth - 1, 0), "x")),
    )


# ----------------------------------------------------------------------------- the property


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(expr=boolean(3), rows=datasets())
def test_mask_matches_reference(expr: tuple[str, Ref], rows: list[dict]) -> None:
    text, ref = expr
    batch = to_batch(rows)
    cut = parse(text, batch.schema)
    got = cut.mask(batch)
    assert got.null_count == 0 and len(got) == len(rows)
    want = [ref(r) is True for r in rows]
    assert got.to_pylist() == want, (text, cut.text)
    # the normalised text means the same thing
    assert parse(cut.text, batch.schema).mask(batch).to_pylist() == want


@settings(max_examples=40, deadline=None)
@given(expr=boolean(2), rows=datasets(), data=st.data())
def test_slices_and_chunks_agree(expr: tuple[str, Ref], rows: list[dict], data: st.DataObject) -> None:
    """Evaluating a slice, or a multi-chunk table, gives the corresponding part of the mask."""
    text, _ = expr
    batch = to_batch(rows)
    cut = parse(text, batch.schema)
    whole = cut.mask(batch).to_pylist()
    cut_at = data.draw(st.integers(0, len(rows)))
    assert cut.mask(batch.slice(cut_at)).to_pylist() == whole[cut_at:]
    table = pa.Table.from_batches([batch.slice(0, cut_at), batch.slice(cut_at)])
    assert cut.mask(table).to_pylist() == whole
