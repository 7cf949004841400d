"""Could any entry of a zone pass this cut? Interval reasoning over zone maps (``core/zones.py``).

A cut (``cuts.py``) is evaluated here not on values but on what a zone's statistics allow: each
numeric sub-expression becomes an interval of the values it can take (plus whether NaN or null
is possible), each condition the set of truth values it can take among True, False and null
(three-valued, as the cut is). A zone is skipped only when True is impossible. Every rule
over-approximates — when in doubt the answer is "may pass" — so skipping never changes a result:

* comparisons of intervals; NaN makes ``== < <= > >=`` possibly False and ``!=`` possibly True;
* ``and``/``or``/``not`` (and ``& | ~``) combine the possible truth values (Kleene);
* ``+ - *`` by interval arithmetic — integers exactly, falling back to "anything" where int64 could
  wrap around; floats by corners, which is sound because IEEE rounding is monotonic; ``/`` when the
  divisor cannot be 0; ``abs``, ``minimum``, ``maximum``, unary minus; ``x in [..]``;
* jagged columns: their elements' interval and list lengths: ``any``/``all``/``count``/``len``/
  ``min``/``max`` per entry, ``x[i]`` (null when a list may be too short), masks ``x[m]``;
* anything else (``sqrt``, ``%``, ``**``, ``where``, ``sum``, strings, a column without a zone map)
  may be anything.

Integer columns are computed by the cut in int64 and compared exactly; int/float comparisons go
through float64 — bounds are converted the same way (monotonic), so both agree.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from arrowroot.flight_server.core.zones import Zone
from arrowroot.flight_server.lang.cuts import _prescan, parse
from arrowroot.flight_server.lang.limits import parse_expression

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INF = math.inf
ANY = frozenset({True, False, None})


@dataclass(frozen=True)
class Num:
    """The values a numeric expression may take over a zone's entries."""

    lo: float | int          # bounds of the non-null, non-NaN values; lo > hi: there are none
    hi: float | int
    nan: bool = False
    null: bool = False
    kind: str = "float"      # "int": int64 arithmetic, exact bounds; "float": float64; "any": bounds only

    @property
    def empty(self) -> bool:
        return self.lo > self.hi


@dataclass(frozen=True)
class Lst:
    """A jagged (list) expression: what its elements may be, and its lengths."""

    elem: Any                # Num, or a frozenset of truth values (lists of booleans)
    len_lo: int
    len_hi: float
    null: bool               # null lists possible


TOP = object()              # may be anything (strings, unsupported functions)


def _unknown(kind: str = "any", null: bool = True) -> Num:
    return Num(-INF, INF, True, null, kind)


def _as_float(n: Num) -> Num:
    if n.kind != "int":
        return n
    lo = float(n.lo) if n.lo > -INF else -INF
    hi = float(n.hi) if n.hi < INF else INF
    return Num(lo, hi, n.nan, n.null, "float")


def _bools_to_num(b: frozenset) -> Num:
    vals = [int(v) for v in b if v is not None]
    return Num(min(vals) if vals else 1, max(vals) if vals else 0, False, None in b, "int")


def _num(x: Any) -> Any:
    """Booleans take part in arithmetic as 0/1."""
    if isinstance(x, frozenset):
        return _bools_to_num(x)
    if isinstance(x, Lst) and isinstance(x.elem, frozenset):
        return Lst(_bools_to_num(x.elem), x.len_lo, x.len_hi, x.null)
    return x


# ---------------------------------------------------------------- truth values


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _not(a: bool | None) -> bool | None:
    return None if a is None else not a


def _truth(x: Any) -> Any:
    if isinstance(x, frozenset):
        return x
    if isinstance(x, Num):  # a boolean column given as numbers (0/1)
        out = set()
        if not x.empty:
            if x.hi >= 1:
                out.add(True)
            if x.lo <= 0:
                out.add(False)
        if x.null:
            out.add(None)
        return frozenset(out)
    if isinstance(x, Lst):
        return Lst(_truth(x.elem), x.len_lo, x.len_hi, x.null)
    return ANY


def _combine(op: Callable, a: Any, b: Any) -> Any:
    """Element-wise on truth sets, lists included (flat operands broadcast into lists)."""
    a, b = _truth(a), _truth(b)
    if isinstance(a, Lst) or isinstance(b, Lst):
        la = a if isinstance(a, Lst) else None
        lb = b if isinstance(b, Lst) else None
        ea = a.elem if la else a
        eb = b.elem if lb else b
        return Lst(_combine(op, ea, eb), max(x.len_lo for x in (la, lb) if x),
                   min(x.len_hi for x in (la, lb) if x), any(x.null for x in (la, lb) if x))
    if not isinstance(a, frozenset) or not isinstance(b, frozenset):
        return ANY
    return frozenset(op(x, y) for x in a for y in b)


# ---------------------------------------------------------------- numbers


def _widen(n: Num) -> Num:
    """Bounds that hold whether the values are compared as integers or as float64."""
    if n.empty:
        return n
    lo = min(n.lo, float(n.lo)) if math.isfinite(n.lo) else n.lo
    hi = max(n.hi, float(n.hi)) if math.isfinite(n.hi) else n.hi
    return Num(lo, hi, n.nan, n.null, n.kind)


def _compare(sym: str, a: Num, b: Num) -> frozenset:
    if "any" in (a.kind, b.kind):
        a, b = _widen(a), _widen(b)
    elif "float" in (a.kind, b.kind):
        a, b = _as_float(a), _as_float(b)
    out: set = set()
    if a.null or b.null:
        out.add(None)
    if a.nan or b.nan:
        out.add(sym == "!=")
    if not a.empty and not b.empty:
        overlap = a.lo <= b.hi and b.lo <= a.hi
        single = a.lo == a.hi == b.lo == b.hi
        t, f = {
            "<": (a.lo < b.hi, a.hi >= b.lo),
            "<=": (a.lo <= b.hi, a.hi > b.lo),
            ">": (a.hi > b.lo, a.lo <= b.hi),
            ">=": (a.hi >= b.lo, a.lo < b.hi),
            "==": (overlap, not single),
            "!=": (not single, overlap),
        }[sym]
        if t:
            out.add(True)
        if f:
            out.add(False)
    return frozenset(out)


def _int_bounds(n: Num) -> tuple[int | float, int | float]:
    lo = math.ceil(n.lo) if n.lo > -INF else -INF
    hi = math.floor(n.hi) if n.hi < INF else INF
    return lo, hi


def _arith(sym: str, a: Num, b: Num) -> Num:
    null = a.null or b.null
    if sym in ("**", "%") or "any" in (a.kind, b.kind):
        return _unknown("float" if sym == "**" or "float" in (a.kind, b.kind) else "any", null)
    if a.empty or b.empty:  # no value on one side: every result is null or NaN
        kind = "float" if sym == "/" or "float" in (a.kind, b.kind) else "int"
        return Num(INF, -INF, a.nan or b.nan, null, kind)
    if sym != "/" and a.kind == b.kind == "int":
        (l1, h1), (l2, h2) = _int_bounds(a), _int_bounds(b)
        if INF in (h1, h2) or -INF in (l1, l2):
            return _unknown("int", null)
        corners = {"+": (l1 + l2, h1 + h2), "-": (l1 - h2, h1 - l2)}.get(sym)
        if corners is None:  # "*"
            products = [l1 * l2, l1 * h2, h1 * l2, h1 * h2]
            corners = (min(products), max(products))
        lo, hi = corners
        if lo < INT64_MIN or hi > INT64_MAX:
            return Num(INT64_MIN, INT64_MAX, False, null, "int")   # int64 may wrap around
        return Num(lo, hi, False, null, "int")
    a, b = _as_float(a), _as_float(b)
    if a.nan or b.nan or not all(math.isfinite(v) for v in (a.lo, a.hi, b.lo, b.hi)):
        return _unknown("float", null)
    try:
        if sym == "+":
            lo, hi = a.lo + b.lo, a.hi + b.hi
        elif sym == "-":
            lo, hi = a.lo - b.hi, a.hi - b.lo
        elif sym == "*":
            products = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
            lo, hi = min(products), max(products)
        else:  # "/"
            if b.lo <= 0 <= b.hi:
                return _unknown("float", null)
            quotients = [a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi]
            lo, hi = min(quotients), max(quotients)
    except (OverflowError, ZeroDivisionError):
        return _unknown("float", null)
    return Num(lo, hi, False, null, "float")


def _neg(a: Num) -> Num:
    if a.kind == "int" and a.lo <= INT64_MIN:
        return _unknown("int", a.null)
    if a.kind == "any":
        return _unknown("any", a.null)
    return Num(-a.hi, -a.lo, a.nan, a.null, a.kind)


def _abs(a: Num) -> Num:
    if a.kind == "any" or (a.kind == "int" and a.lo <= INT64_MIN):
        return _unknown(a.kind, a.null)
    if a.empty:
        return a
    if a.lo >= 0:
        return a
    if a.hi <= 0:
        return Num(-a.hi, -a.lo, a.nan, a.null, a.kind)
    return Num(0, max(-a.lo, a.hi), a.nan, a.null, a.kind)


def _extreme(name: str, a: Num, b: Num) -> Num:
    if "any" in (a.kind, b.kind):
        return _unknown("any", a.null or b.null)
    if a.kind != b.kind:
        a, b = _as_float(a), _as_float(b)
    pick = min if name == "minimum" else max
    if a.empty or b.empty:
        return Num(INF, -INF, a.nan or b.nan, a.null or b.null, a.kind)
    return Num(pick(a.lo, b.lo), pick(a.hi, b.hi), a.nan or b.nan, a.null or b.null, a.kind)


def _lift(fn: Callable, *args: Any) -> Any:
    """Apply a Num (or truth-set) function element-wise through lists (flat operands broadcast)."""
    lists = [x for x in args if isinstance(x, Lst)]
    if not lists:
        return fn(*args)
    elems = [x.elem if isinstance(x, Lst) else x for x in args]
    return Lst(fn(*elems), max(x.len_lo for x in lists), min(x.len_hi for x in lists), any(x.null for x in lists))


# ---------------------------------------------------------------- the compiler


Env = Mapping[str, Zone]
Fn = Callable[[Env], Any]


class _Compiler:
    def __init__(self, schema: pa.Schema, backquoted: dict[str, str]):
        self.schema = schema
        self.backquoted = backquoted

    def compile(self, node: ast.AST) -> Fn:
        handler = getattr(self, "c_" + type(node).__name__, None)
        if handler is None:
            return lambda env: TOP
        return handler(node)

    def c_Constant(self, node: ast.Constant) -> Fn:
        v = node.value
        if isinstance(v, bool):
            value: Any = frozenset({v})
        elif isinstance(v, int):
            value = Num(v, v, False, False, "int")
        elif isinstance(v, float):
            value = Num(v, v, False, False, "float")
        else:
            value = TOP
        return lambda env: value

    def c_Name(self, node: ast.Name) -> Fn:
        ident = node.id
        if ident in self.backquoted:
            name = self.backquoted[ident]
        elif ident in ("true", "false"):
            value = frozenset({ident == "true"})
            return lambda env: value
        else:
            name = ident
        try:
            t = self.schema.field(name).type
        except KeyError:
            return lambda env: TOP
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        inner = t.value_type if is_list else t
        if pa.types.is_boolean(inner):
            kind = "bool"
        elif pa.types.is_uint64(inner):
            kind = "uint64"   # int64 or float64 per batch (values past 2**63-1): bounds only
        elif pa.types.is_integer(inner):
            kind = "int"
        elif pa.types.is_floating(inner):
            kind = "float"
        else:
            return lambda env: TOP
        fixed = t.list_size if pa.types.is_fixed_size_list(t) else None

        def leaf(env: Env) -> Any:
            z = env.get(name)
            if z is None:
                elem = ANY if kind == "bool" else _unknown("any")
                return Lst(elem, 0, INF, True) if is_list else elem
            if z.min is None:
                value = Num(INF, -INF, z.nans > 0, False, {"float": "float", "uint64": "any"}.get(kind, "int"))
            else:
                k = "float" if kind == "float" else ("int" if kind in ("int", "bool") else "any")
                value = Num(z.min, z.max, z.nans > 0, False, k)
            if is_list:
                value = Num(value.lo, value.hi, value.nan, z.value_nulls > 0, value.kind)
                if kind == "bool":
                    value = _truth(value)
                lo = fixed if fixed is not None else (z.min_len if z.min_len is not None else 0)
                hi = fixed if fixed is not None else (z.max_len if z.max_len is not None else 0)
                return Lst(value, lo, hi, z.nulls > 0)
            value = Num(value.lo, value.hi, value.nan, z.nulls > 0, value.kind)
            return _truth(value) if kind == "bool" else value

        return leaf

    def c_UnaryOp(self, node: ast.UnaryOp) -> Fn:
        f = self.compile(node.operand)
        if isinstance(node.op, (ast.Not, ast.Invert)):
            def neg_truth(env: Env) -> Any:
                x = _truth(f(env))
                if isinstance(x, Lst):
                    return Lst(frozenset(_not(v) for v in x.elem) if isinstance(x.elem, frozenset) else ANY,
                               x.len_lo, x.len_hi, x.null)
                return frozenset(_not(v) for v in x) if isinstance(x, frozenset) else ANY
            return neg_truth
        if isinstance(node.op, ast.UAdd):
            return lambda env: _num(f(env))
        return lambda env: self._numeric(_neg, f(env))

    @staticmethod
    def _numeric(fn: Callable, *args: Any) -> Any:
        args = tuple(_num(a) for a in args)
        for a in args:
            if a is TOP or (isinstance(a, Lst) and not isinstance(a.elem, Num)):
                return TOP
        return _lift(fn, *args)

    def c_BinOp(self, node: ast.BinOp) -> Fn:
        lf, rf = self.compile(node.left), self.compile(node.right)
        if isinstance(node.op, ast.BitAnd):
            return lambda env: _combine(_and, lf(env), rf(env))
        if isinstance(node.op, ast.BitOr):
            return lambda env: _combine(_or, lf(env), rf(env))
        sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**"}.get(type(node.op))
        if sym is None:
            return lambda env: TOP
        return lambda env: self._numeric(lambda a, b: _arith(sym, a, b), lf(env), rf(env))

    def c_BoolOp(self, node: ast.BoolOp) -> Fn:
        fns = [self.compile(v) for v in node.values]
        op = _and if isinstance(node.op, ast.And) else _or

        def fold(env: Env) -> Any:
            acc = fns[0](env)
            for f in fns[1:]:
                acc = _combine(op, acc, f(env))
            return acc

        return fold

    def c_Compare(self, node: ast.Compare) -> Fn:
        left = self.compile(node.left)
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            return self._membership(left, node.comparators[0], isinstance(node.ops[0], ast.NotIn))
        syms = [{ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                 ast.GtE: ">="}.get(type(op)) for op in node.ops]
        fns = [left] + [self.compile(c) for c in node.comparators]

        def compare(env: Env) -> Any:
            values = [f(env) for f in fns]
            acc: Any = None
            for sym, a, b in zip(syms, values, values[1:]):
                one = self._cmp(sym, a, b)
                acc = one if acc is None else _combine(_and, acc, one)
            return acc

        return compare

    def _cmp(self, sym: str | None, a: Any, b: Any) -> Any:
        a, b = _num(a), _num(b)
        shape_list = isinstance(a, Lst) or isinstance(b, Lst)
        if sym is None or a is TOP or b is TOP or any(isinstance(x, Lst) and not isinstance(x.elem, Num)
                                                      for x in (a, b)):
            return self._top_like(a, b) if shape_list else ANY
        return _lift(lambda x, y: _compare(sym, x, y), a, b)

    @staticmethod
    def _top_like(*args: Any) -> Any:
        lists = [x for x in args if isinstance(x, Lst)]
        return Lst(ANY, max(x.len_lo for x in lists), min(x.len_hi for x in lists), True)

    def _membership(self, left: Fn, comp: ast.AST, negate: bool) -> Fn:
        values: list[float | int] = []
        for e in getattr(comp, "elts", []):
            v = e.value if isinstance(e, ast.Constant) else None
            if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub) and isinstance(e.operand, ast.Constant):
                v = -e.operand.value if isinstance(e.operand.value, (int, float)) else None
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, (int, float)):
                return lambda env: ANY   # strings: no zone maps
            values.append(v)

        def member(x: Num) -> frozenset:
            out: set = {False, True} if x.kind == "any" else {False}
            if not x.empty and any(x.lo <= v <= x.hi or x.lo <= float(v) <= x.hi for v in values):
                out.add(True)
            if x.null:
                out.add(None)
            if negate:
                out = {_not(v) for v in out}
            return frozenset(out)

        def fn(env: Env) -> Any:
            x = _num(left(env))
            if x is TOP or (isinstance(x, Lst) and not isinstance(x.elem, Num)):
                return self._top_like(x) if isinstance(x, Lst) else ANY
            return _lift(member, x)

        return fn

    def c_Call(self, node: ast.Call) -> Fn:
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        args = [self.compile(a) for a in node.args]
        if name in ("any", "all", "count", "len", "min", "max", "sum", "mean"):
            return lambda env: self._reduce(name, args[0](env))
        if name == "abs":
            return lambda env: self._numeric(_abs, args[0](env))
        if name in ("minimum", "maximum"):
            return lambda env: self._numeric(lambda a, b: _extreme(name, a, b), args[0](env), args[1](env))
        if name == "isnan":
            def isnan(x: Num) -> frozenset:
                out = set()
                if x.nan:
                    out.add(True)
                if not x.empty or x.kind == "any":
                    out.add(False)
                if x.null:
                    out.add(None)
                return frozenset(out)
            return lambda env: self._numeric(isnan, args[0](env))
        return lambda env: TOP

    @staticmethod
    def _reduce(name: str, x: Any) -> Any:
        if not isinstance(x, Lst):
            return TOP
        null = x.null
        if name == "len":
            return Num(x.len_lo, x.len_hi, False, null, "int")
        if name in ("any", "all"):
            e = x.elem if isinstance(x.elem, frozenset) else ANY
            out: set = set()
            if name == "any":
                if True in e:
                    out.add(True)
                if False in e or x.len_lo == 0:
                    out.add(False)
            else:
                if True in e or x.len_lo == 0:
                    out.add(True)
                if False in e:
                    out.add(False)
            if None in e or null:
                out.add(None)
            return frozenset(out)
        if name == "count":
            e = x.elem
            most = x.len_hi if not (isinstance(e, frozenset) and True not in e) else 0
            return Num(0, most, False, null, "int")
        if name in ("min", "max"):
            e = _num(x.elem) if isinstance(x.elem, frozenset) else x.elem
            if not isinstance(e, Num) or e.kind == "any":
                return _unknown("any", True)
            return Num(e.lo, e.hi, e.nan, null or e.null or x.len_lo == 0, e.kind)
        return _unknown("any", True)   # sum, mean

    def c_Subscript(self, node: ast.Subscript) -> Fn:
        base = self.compile(node.value)
        sl = node.slice
        idx = None
        if isinstance(sl, ast.Constant) and type(sl.value) is int:
            idx = sl.value
        elif (isinstance(sl, ast.UnaryOp) and isinstance(sl.op, ast.USub) and isinstance(sl.operand, ast.Constant)
              and type(sl.operand.value) is int):
            idx = -sl.operand.value
        if idx is not None:
            def index(env: Env) -> Any:
                x = base(env)
                if not isinstance(x, Lst):
                    return TOP
                long_enough = x.len_lo > idx if idx >= 0 else x.len_lo >= -idx
                reachable = x.len_hi > idx if idx >= 0 else x.len_hi >= -idx
                e = x.elem
                if not reachable:   # past the end of every list: null throughout
                    return frozenset({None}) if isinstance(e, frozenset) else Num(INF, -INF, False, True, "int")
                if isinstance(e, frozenset):
                    return e | ({None} if not long_enough or x.null else set())
                if not isinstance(e, Num):
                    return TOP
                return Num(e.lo, e.hi, e.nan, e.null or x.null or not long_enough, e.kind)
            return index
        mask = self.compile(sl)

        def select(env: Env) -> Any:
            x, m = base(env), mask(env)
            if not isinstance(x, Lst):
                return TOP
            return Lst(x.elem, 0, x.len_hi, x.null or (m.null if isinstance(m, Lst) else True))

        return select


class ZoneCut:
    """A cut compiled for zone maps: ``may_pass(zones)`` with each cut column's Zone (a column
    left out may be anything)."""

    def __init__(self, text: str, schema: pa.Schema):
        cut = parse(text, schema)        # validates; the same text the executor runs
        self.columns = cut.columns
        src = _prescan(text)
        tree = parse_expression(src.parsed[src.lead:])
        self._fn = _Compiler(schema, dict(src.backquoted)).compile(tree.body)

    def may_pass(self, zones: Env) -> bool:
        try:
            result = self._fn(zones)
        except Exception:  # never wrong: when the reasoning fails, read the zone
            return True
        return not isinstance(result, frozenset) or True in result


__all__ = ["ZoneCut", "Num", "Lst", "ANY"]
