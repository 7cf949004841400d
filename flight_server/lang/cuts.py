"""Server-side cuts: a small, safe expression language evaluated per record batch.

A client sends a cut such as ``nMuon >= 2 and MET_pt > 40 and abs(Jet_eta[0]) < 2.4``;
the server turns it into a :class:`Cut` once (:func:`parse`, which checks it against the
dataset's Arrow schema) and then calls :meth:`Cut.mask` on every record batch, sending only
the entries whose mask is True.  Nothing in here ever calls ``eval``/``exec``/``compile``:
the text is parsed with ``ast.parse(..., mode="eval")`` and the tree is walked with an
explicit whitelist of node types, each of which is compiled into a vectorised numpy /
pyarrow.compute closure.  The module is pure (stdlib, numpy, pyarrow only).

Grammar
-------
The syntax is the one of pandas ``DataFrame.query`` / numexpr / uproot cuts (Python
expression syntax, restricted):

* **Literals**: integers, floats (``40``, ``2.4``, ``1e-3``), strings (``'mu'`` or ``"mu"``,
  no prefixes, not triple-quoted), booleans ``True``/``False``/``true``/``false``.
* **Columns**: bare identifiers (``MET_pt``) or, for names that are not identifiers (or are
  keywords / ``true`` / ``false``), backquotes: ```Jet.pt[3]```, ```fType[20]```.
* **Arithmetic**: ``+ - * / ** %`` and unary ``-``/``+``.  Integer columns of every width are
  computed as int64 (uint64 values above 2**63-1 make that batch's column float64), floats as
  float64 (float32 is widened, as C++ does when mixing with double literals); ``/`` and ``**``
  always give float64; bools count as 0/1; int64 overflow wraps around as in numpy.
  Division by zero gives inf/NaN (integer ``x % 0`` gives 0); nothing raises.
* **Comparisons**: ``== != < <= > >=``, chained (``0 < x < 5`` means ``0 < x and x < 5``).
  Strings support ``==``/``!=`` and ``in`` only.
* **Logic**: ``and or not`` and the equivalent ``& | ~`` (only on booleans; note that ``&``
  binds tighter than comparisons, so write ``(x > 1) & (y < 2)``).
* **Membership**: ``x in [1, 2, 3]``, ``name not in ['a', 'b']`` with a literal list or tuple.
* **Functions** (element-wise): ``abs sqrt log log10 exp sin cos tan arcsin arccos arctan``
  (one argument), ``arctan2(y, x) minimum(a, b) maximum(a, b)``, ``where(cond, a, b)``,
  ``isnan(x)``.
* **Jagged (list) columns** -- list<numeric>, large_list<numeric>, fixed_size_list<numeric>:

  - element-wise arithmetic, comparisons and functions between a list and a scalar, between
    two lists of the same jagged structure (``Muon_pt * 2 > Muon_eta``), and between a list and
    a flat per-entry column, which is broadcast to every element (``Jet_pt > 0.5 * MET_pt``);
  - indexing with an integer literal: ``Jet_eta[0]``, ``Jet_eta[-1]``;
  - masking with a boolean list of the same structure: ``Jet_pt[abs(Jet_eta) < 2.4]``;
  - per-entry reductions: ``len(x)`` (number of elements), ``count(x)`` (number of non-null
    elements; for a boolean list such as ``count(Jet_pt > 30)``, the number of true elements),
    ``sum min max mean`` (numeric; booleans count as 0/1), ``any all`` (booleans, e.g.
    ``any(Muon_pt > 20)``).  ``sum`` of an empty list is 0; ``min``/``max``/``mean`` of an
    empty list are null.

  The whole cut must be one boolean per entry: ``Muon_pt > 20`` alone is rejected with a
  hint to use ``any(...)``/``all(...)``/``count(...)``.

Nulls and too-short lists
-------------------------
An index past the end of an entry's list (``Jet_eta[2]`` on an entry with two jets, or
``Jet_eta[-3]``) gives **null**, as does a null column value, a null list entry and the
``min``/``max``/``mean`` of an empty list.  Nulls propagate through arithmetic and functions;
a comparison with null is null; ``and``/``or``/``not`` follow SQL's three-valued (Kleene)
logic (``null and False`` is False, ``null or True`` is True, ``not null`` is null);
``any``/``all`` are Kleene too, and ``count``/``sum``/``min``/``max``/``mean`` skip null
elements.  At the end **null counts as False: an entry whose cut is null never passes** -- so
both ``Jet_eta[2] > 1`` and ``not (Jet_eta[2] > 1)`` reject an entry with fewer than 3 jets.
NaN is not null: comparisons with NaN are False and ``not`` of that is True.

Limits
------
Texts longer than 10,000 characters, bracket or operator nesting deeper than 64 levels,
string literals longer than 1000 characters, list literals with more than 10,000 items and
numbers outside int64 / finite float64 are rejected.  Every problem -- syntax, a
non-whitelisted construct (attribute access, dunder names, lambdas, comprehensions, keyword
arguments, ``*args``, f-strings, ``:=``, dict/set literals, slices, ...), an unknown column
(with the closest names suggested) or function (with the allowed ones listed), a type error
detectable from the schema -- raises :class:`ExprError` with the position (character offset
into the text) and the offending snippet.  :meth:`Cut.mask` raises only :class:`ExprError`.
"""

from __future__ import annotations

import ast
import re
import difflib
import keyword
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.lang.limits import parse_expression

__all__ = ["ExprError", "Cut", "parse", "FUNCTIONS", "MAX_TEXT_LENGTH", "MAX_DEPTH"]

MAX_TEXT_LENGTH = 10_000
MAX_DEPTH = 64
MAX_CHAIN = 200  # operators in one flat chain (a + b + ...): the compiler recurses per operator
MAX_STRING_LENGTH = 1000
MAX_LIST_ITEMS = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SNIPPET_MAX = 80


class ExprError(InvalidRequest):
    """A cut expression that is malformed, unsafe, ill-typed, or failed on a batch.

    ``position`` is the character offset into the text the user wrote (None when the error
    is not about one place), ``snippet`` the offending part of the text.
    """

    def __init__(self, message: str, position: int | None = None, snippet: str = "") -> None:
        self.message = message
        self.position = position
        self.snippet = snippet
        full = message
        if position is not None:
            full += f" (at position {position}" + (f": {snippet!r})" if snippet else ")")
        super().__init__(full)


# ----------------------------------------------------------------------------- static types


@dataclass(frozen=True)
class _T:
    kind: str  # "scalar" (a literal), "flat" (one value per entry), "list" (jagged)
    dtype: str  # "bool", "int", "float", "str"

    @property
    def numeric(self) -> bool:
        return self.dtype in ("bool", "int", "float")

    def describe(self) -> str:
        noun = {"bool": "boolean", "int": "integer", "float": "float", "str": "string"}[self.dtype]
        art = "an" if noun[0] in "aeiou" else "a"
        return {"scalar": f"{art} {noun} literal", "flat": f"{art} {noun} column",
                "list": f"a list of {noun}s"}[self.kind]


def _dtype_of(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if pa.types.is_dictionary(t) and _dtype_of(t.value_type) == "str":
        return "str"
    return None


def _static_type(t: pa.DataType) -> _T | None:
    """The expression type of an Arrow column type, or None if cuts cannot use it."""
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = _dtype_of(t.value_type)
        if inner is None or inner == "str":
            return None
        return _T("list", inner)
    d = _dtype_of(t)
    return None if d is None else _T("flat", d)


# ----------------------------------------------------------------------------- runtime values


class _Flat:
    """One value per entry: numpy values (or an Arrow large_string array) + validity."""

    __slots__ = ("values", "valid")

    def __init__(self, values: Any, valid: np.ndarray | None) -> None:
        self.values = values
        self.valid = valid


class _Jag:
    """A jagged array: offsets (n+1, int64, starting at 0), flat element values + validity."""

    __slots__ = ("offsets", "values", "valid", "entry_valid", "_parents")

    def __init__(self, offsets: np.ndarray, values: np.ndarray, valid: np.ndarray | None,
                 entry_valid: np.ndarray | None, parents: np.ndarray | None = None) -> None:
        self.offsets = offsets
        self.values = values
        self.valid = valid
        self.entry_valid = entry_valid
        self._parents = parents

    def parents(self) -> np.ndarray:
        if self._parents is None:
            n = len(self.offsets) - 1
            self._parents = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.offsets))
        return self._parents


def _and_valid(*vs: np.ndarray | None) -> np.ndarray | None:
    out = None
    for v in vs:
        if v is None:
            continue
        out = v if out is None else (out & v)
    return out


def _numpy_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric/bool Arrow array -> (numpy values in the working dtype, validity or None)."""
    valid = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        arr = arr.fill_null(False if pa.types.is_boolean(arr.type) else 0)
    vals = arr.to_numpy(zero_copy_only=False)
    t = arr.type
    if pa.types.is_floating(t):
        vals = vals.astype(np.float64, copy=False)
    elif pa.types.is_integer(t):
        if t == pa.uint64() and len(vals) and vals.max() > _INT64_MAX:
            vals = vals.astype(np.float64)  # beyond int64: approximate rather than wrap around
        else:
            vals = vals.astype(np.int64, copy=False)
    return vals, valid


def _load(arr: pa.Array) -> _Flat | _Jag:
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        start, stop = int(offsets[0]), int(offsets[-1])
        child = arr.values.slice(start, stop - start)
        offsets = offsets - start
    elif pa.types.is_fixed_size_list(t):
        size = t.list_size
        child = arr.values.slice(arr.offset * size, len(arr) * size)
        offsets = np.arange(len(arr) + 1, dtype=np.int64) * size
    else:
        if _dtype_of(t) == "str":
            return _Flat(arr.cast(pa.large_string()), None)
        return _Flat(*_numpy_values(arr))
    values, valid = _numpy_values(child)
    entry_valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    return _Jag(offsets, values, valid, entry_valid)


def _align(args: list[Any]) -> tuple[Any, list[Any], list[np.ndarray | None]]:
    """Bring scalars, flat and jagged operands to one shape (flat ones broadcast into lists)."""
    jag = None
    for a in args:
        if isinstance(a, _Jag):
            if jag is None:
                jag = a
            elif a.offsets is not jag.offsets and not np.array_equal(a.offsets, jag.offsets):
                raise ExprError(
                    "element-wise operation on list columns with different numbers of elements "
                    "per entry (different jagged structure), e.g. Jet_pt with Muon_pt; "
                    "reduce one of them first (sum(...), max(...), x[0])")
    raws: list[Any] = []
    valids: list[np.ndarray | None] = []
    if jag is not None:
        for a in args:
            if isinstance(a, _Jag):
                raws.append(a.values)
                valids.append(a.valid)
            elif isinstance(a, _Flat):
                p = jag.parents()
                raws.append(a.values[p])
                valids.append(None if a.valid is None else a.valid[p])
            else:
                raws.append(a)
                valids.append(None)
        ev = _and_valid(*[a.entry_valid for a in args if isinstance(a, _Jag)])
        return ("jag", jag.offsets, ev, jag._parents), raws, valids
    if any(isinstance(a, _Flat) for a in args):
        for a in args:
            if isinstance(a, _Flat):
                raws.append(a.values)
                valids.append(a.valid)
            else:
                raws.append(a)
                valids.append(None)
        return ("flat",), raws, valids
    return None, list(args), [None] * len(args)


def _wrap(shape: Any, values: Any, valid: np.ndarray | None) -> Any:
    if shape is None:
        return values.item() if isinstance(values, (np.generic, np.ndarray)) else values
    if shape[0] == "flat":
        return _Flat(values, valid)
    return _Jag(shape[1], values, valid, shape[2], shape[3])


def _num(x: Any) -> Any:
    """Booleans take part in arithmetic as int64 0/1."""
    if isinstance(x, np.ndarray):
        return x.astype(np.int64) if x.dtype == np.bool_ else x
    if isinstance(x, bool):
        return int(x)
    return x


def _apply(func: Callable[..., Any], args: list[Any], floats: bool = False) -> Any:
    """Element-wise numeric function with null propagation."""
    shape, raws, valids = _align(args)
    raws = [_num(r) for r in raws]
    if floats:
        raws = [r.astype(np.float64, copy=False) if isinstance(r, np.ndarray) else float(r) for r in raws]
    try:
        out = func(*raws)
    except OverflowError:  # uint64 with a negative Python int: compute in float64
        out = func(*[r.astype(np.float64) if isinstance(r, np.ndarray) else float(r) for r in raws])
    return _wrap(shape, out, _and_valid(*valids))


def _kleene(op: str, a: Any, b: Any) -> Any:
    shape, (x, y), (vx, vy) = _align([a, b])
    if shape is None:
        return (bool(x) and bool(y)) if op == "and" else (bool(x) or bool(y))
    if op == "and":
        val = np.logical_and(x, y)
    else:
        val = np.logical_or(x, y)
    if vx is None and vy is None:
        valid = None
    else:
        tx = np.True_ if vx is None else vx
        ty = np.True_ if vy is None else vy
        dx = x if op == "or" else np.logical_not(x)  # the value that decides the result alone
        dy = y if op == "or" else np.logical_not(y)
        valid = (tx & ty) | (tx & dx) | (ty & dy)
        valid = np.broadcast_to(valid, np.shape(val)).copy()
    return _wrap(shape, np.asarray(val), valid)


def _not(a: Any) -> Any:
    if isinstance(a, _Flat):
        return _Flat(np.logical_not(a.values), a.valid)
    if isinstance(a, _Jag):
        return _Jag(a.offsets, np.logical_not(a.values), a.valid, a.entry_valid, a._parents)
    return not a


def _bool_flat(res: pa.Array) -> _Flat:
    if isinstance(res, pa.ChunkedArray):
        res = res.combine_chunks()
    valid = res.is_valid().to_numpy(zero_copy_only=False) if res.null_count else None
    return _Flat(res.fill_null(False).to_numpy(zero_copy_only=False), valid)


# ---- reductions over the elements of each entry -------------------------------------------


def _segsum_int(w: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-entry sums of integers (or counts of booleans) via one cumulative sum.

    Booleans are summed in int32 when that cannot overflow: numpy's bool->int64 cumsum is
    ~7x slower than bool->int32 (measured).  Integer sums wrap around like int64 arithmetic."""
    dtype = np.int32 if w.dtype == np.bool_ and len(w) < 2**31 - 1 else np.int64
    cs = np.empty(len(w) + 1, dtype=dtype)
    cs[0] = 0
    np.cumsum(w, dtype=dtype, out=cs[1:])
    return (cs[offsets[1:]] - cs[offsets[:-1]]).astype(np.int64, copy=False)


def _reduce(name: str, x: _Jag) -> _Flat:
    off = x.offsets
    n = len(off) - 1
    lengths = np.diff(off)
    ev = x.entry_valid
    if name == "len":
        return _Flat(lengths, ev)
    vals, valid = x.values, x.valid
    nvalid = lengths if valid is None else _segsum_int(valid, off)
    if name in ("any", "all", "count") and vals.dtype == np.bool_:
        truth = vals if valid is None else (vals & valid)
        ntrue = _segsum_int(truth, off)
        if name == "count":
            return _Flat(ntrue, ev)
        nnull = lengths - nvalid
        if name == "any":
            res = ntrue > 0
            known = res | (nnull == 0)
        else:
            nfalse = nvalid - ntrue
            res = nfalse == 0
            known = (nfalse > 0) | (nnull == 0)
        return _Flat(res, _and_valid(ev, None if valid is None else known))
    if name == "count":
        return _Flat(nvalid, ev)
    if vals.dtype == np.bool_:
        vals = vals.astype(np.int64)
    if name in ("sum", "mean"):
        filled = vals if valid is None else np.where(valid, vals, 0)
        if filled.dtype.kind == "f":
            sums = np.bincount(x.parents(), weights=filled, minlength=n)
        else:
            sums = _segsum_int(filled, off)
        if name == "sum":
            return _Flat(sums, ev)
        return _Flat(sums / np.where(nvalid == 0, 1, nvalid), _and_valid(ev, nvalid > 0))
    # min / max
    if vals.dtype.kind == "f":
        fill = np.inf if name == "min" else -np.inf
    else:
        info = np.iinfo(vals.dtype)
        fill = info.max if name == "min" else info.min
    filled = vals if valid is None else np.where(valid, vals, fill)
    out = np.full(n, fill, dtype=filled.dtype)
    nonempty = lengths > 0
    if nonempty.any():
        ufunc = np.minimum if name == "min" else np.maximum
        out[nonempty] = ufunc.reduceat(filled, off[:-1][nonempty])
    return _Flat(out, _and_valid(ev, nvalid > 0))


def _index(x: _Jag, k: int) -> _Flat:
    off = x.offsets
    lengths = np.diff(off)
    if k >= 0:
        ok = lengths > k
        pos = off[:-1] + k
    else:
        ok = lengths >= -k
        pos = off[1:] + k
    if len(x.values) == 0:
        return _Flat(np.zeros(len(lengths), dtype=x.values.dtype), ok)
    pos = np.where(ok, pos, 0)
    valid = _and_valid(ok, x.entry_valid, None if x.valid is None else x.valid[pos])
    return _Flat(x.values[pos], valid)


def _select(x: _Jag, m: _Jag) -> _Jag:
    _align([x, m])  # same structure check
    keep = m.values if m.valid is None else (m.values & m.valid)
    ck = np.empty(len(keep) + 1, dtype=np.int64)
    ck[0] = 0
    np.cumsum(keep.astype(np.int64), out=ck[1:])
    return _Jag(ck[x.offsets], x.values[keep], None if x.valid is None else x.valid[keep],
                _and_valid(x.entry_valid, m.entry_valid))


# ----------------------------------------------------------------------------- functions

_UNARY: dict[str, tuple[Callable[..., Any], bool]] = {
    # name: (numpy function, result is float)
    "abs": (np.abs, False),
    "sqrt": (np.sqrt, True),
    "log": (np.log, True),
    "log10": (np.log10, True),
    "exp": (np.exp, True),
    "sin": (np.sin, True),
    "cos": (np.cos, True),
    "tan": (np.tan, True),
    "arcsin": (np.arcsin, True),
    "arccos": (np.arccos, True),
    "arctan": (np.arctan, True),
}
_BINARY: dict[str, tuple[Callable[..., Any], bool]] = {
    "arctan2": (np.arctan2, True),
    "minimum": (np.minimum, False),
    "maximum": (np.maximum, False),
}
_REDUCTIONS = ("len", "count", "sum", "min", "max", "any", "all", "mean")
FUNCTIONS: tuple[str, ...] = tuple(sorted([*_UNARY, *_BINARY, "where", "isnan", *_REDUCTIONS]))

_CMP = {ast.Eq: ("==", np.equal), ast.NotEq: ("!=", np.not_equal), ast.Lt: ("<", np.less),
        ast.LtE: ("<=", np.less_equal), ast.Gt: (">", np.greater), ast.GtE: (">=", np.greater_equal)}
_ARITH = {ast.Add: ("+", np.add), ast.Sub: ("-", np.subtract), ast.Mult: ("*", np.multiply),
          ast.Div: ("/", np.true_divide), ast.Mod: ("%", np.mod), ast.Pow: ("**", np.power)}
_OP_SYMBOL = {ast.FloorDiv: "//", ast.LShift: "<<", ast.RShift: ">>", ast.BitXor: "^",
              ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|"}

_FORBIDDEN = {
    ast.Attribute: "attribute access (x.y) is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.Starred: "starred arguments (*args) are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed; use a list: x in [1, 2]",
    ast.IfExp: "conditional expressions (a if c else b) are not allowed; use where(c, a, b)",
    ast.Slice: "slices (x[1:2]) are not allowed; index with an integer literal or a boolean list",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.List: "list literals are only allowed after 'in' / 'not in'",
    ast.Tuple: "tuples are only allowed after 'in' / 'not in'",
}


def _fmt_name(name: str) -> str:
    if (name.isidentifier() and name.isascii() and not keyword.iskeyword(name)
            and name not in ("true", "false") and "__" not in name):
        return name
    return f"`{name}`"


# ----------------------------------------------------------------------------- the front end


@dataclass
class _Source:
    """The user's text, the text given to ast.parse, and how positions map between them."""

    original: str
    parsed: str = ""
    lead: int = 0
    replacements: list[tuple[int, int, int, int]] = field(default_factory=list)
    backquoted: dict[str, str] = field(default_factory=dict)  # placeholder -> column name
    _byte_to_char: Any = None

    def to_original(self, pos: int, end: bool = False) -> int:
        """A character offset in the parsed text -> one in the original text."""
        pos += self.lead
        delta = 0
        for ns, ne, os_, oe in self.replacements:
            if pos < ns or (end and pos == ns):
                break
            if pos < ne:
                return oe if end else os_
            delta = oe - ne
        return pos + delta

    def node_span(self, node: ast.AST) -> tuple[int, int]:
        text = self.parsed[self.lead:]
        if self._byte_to_char is None:
            if text.isascii():
                self._byte_to_char = lambda b: b
            else:
                raw = text.encode("utf-8")
                self._byte_to_char = lambda b: len(raw[:b].decode("utf-8", "ignore"))
        col = getattr(node, "col_offset", None)
        if col is None:
            return 0, len(self.original)
        start = self.to_original(self._byte_to_char(col))
        end_col = getattr(node, "end_col_offset", None)
        end = self.to_original(self._byte_to_char(end_col), end=True) if end_col is not None else start + 1
        return start, max(end, start)

    def error(self, node: ast.AST | None, message: str) -> ExprError:
        if node is None:
            return ExprError(message, None, "")
        start, end = self.node_span(node)
        return ExprError(message, start, _clip(self.original[start:end]))


def _clip(s: str) -> str:
    return s if len(s) <= _SNIPPET_MAX else s[: _SNIPPET_MAX - 3] + "..."


def _prescan(text: str) -> _Source:
    """Check size, strings and nesting, and swap backquoted names for placeholders -- all
    before ast.parse, which can itself blow up on pathological input."""
    if not isinstance(text, str):
        raise ExprError(f"a cut must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ExprError(f"expression is {len(text)} characters long; the limit is {MAX_TEXT_LENGTH}",
                        MAX_TEXT_LENGTH, _clip(text[MAX_TEXT_LENGTH - 20: MAX_TEXT_LENGTH + 20]))
    src = _Source(text)
    prefix = "_bq"
    while prefix in text:
        prefix += "q"
    out: list[str] = []
    newpos = 0
    depth = 0
    i, n = 0, len(text)
    names: dict[str, str] = {}
    while i < n:
        c = text[i]
        if c in "'\"":
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                s = i - 1
                while s > 0 and (text[s - 1].isalnum() or text[s - 1] == "_"):
                    s -= 1
                raise ExprError("string prefixes (f'..', b'..', r'..', u'..') are not allowed; "
                                "f-strings in particular", s, _clip(text[s: i + 1]))
            if text.startswith(c * 3, i):
                raise ExprError("triple-quoted strings are not allowed", i, text[i: i + 3])
            j = i + 1
            while j < n and text[j] != c:
                if text[j] in "\r\n":
                    raise ExprError("unterminated string literal", i, _clip(text[i:j]))
                j += 2 if text[j] == "\\" and j + 1 < n and text[j + 1] not in "\r\n" else 1
            if j >= n:
                raise ExprError("unterminated string literal", i, _clip(text[i:]))
            if j - i - 1 > MAX_STRING_LENGTH:
                raise ExprError(f"string literal longer than {MAX_STRING_LENGTH} characters", i,
                                _clip(text[i: j + 1]))
            out.append(text[i: j + 1])
            newpos += j + 1 - i
            i = j + 1
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise ExprError("unterminated backquoted column name", i, _clip(text[i:]))
            name = text[i + 1: j]
            if not name:
                raise ExprError("empty backquoted column name", i, "``")
            if "\n" in name or "\r" in name:
                raise ExprError("line break inside a backquoted column name", i, _clip(text[i: j + 1]))
            ph = names.get(name)
            if ph is None:
                ph = names[name] = f"{prefix}{len(names)}"
                src.backquoted[ph] = name
            src.replacements.append((newpos, newpos + len(ph), i, j + 1))
            out.append(ph)
            newpos += len(ph)
            i = j + 1
            continue
        if c in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ExprError(f"brackets nested deeper than {MAX_DEPTH} levels", i, _clip(text[i: i + 20]))
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c in "-+~":
            # long runs of unary operators (- - - - x) nest just like brackets
            run, k = 1, i - 1
            while k >= 0 and text[k] in "-+~ ":
                run += text[k] != " "
                k -= 1
            if run > MAX_DEPTH:
                raise ExprError(f"more than {MAX_DEPTH} unary operators in a row", k + 1,
                                _clip(text[k + 1: i + 1]))
        elif c in "\r\n\t\f\v":
            c = " "
        elif c == "\\":
            raise ExprError("backslashes are only allowed inside string literals", i, c)
        elif c == "\x00":
            raise ExprError("NUL character in expression", i, "\\x00")
        out.append(c)
        newpos += 1
        i += 1
    parsed = "".join(out)
    src.lead = len(parsed) - len(parsed.lstrip(" "))
    src.parsed = parsed
    return src


_PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Mod: 2, ast.FloorDiv: 2,
               ast.BitAnd: 3, ast.BitOr: 4}


def _chained(node: ast.AST, child: ast.AST) -> bool:
    """``child`` continues ``node``'s flat chain (``a + b + c`` parses as ``(a + b) + c``)."""
    return (isinstance(node, ast.BinOp) and isinstance(child, ast.BinOp) and child is node.left
            and _PRECEDENCE.get(type(node.op), -1) == _PRECEDENCE.get(type(child.op), -2))


def _check_depth(tree: ast.AST, src: _Source) -> None:
    """Iteratively bound the expression depth, so the recursive compiler cannot overflow.

    Depth is nesting, not length: a flat chain of one operator (``a + b + ... + z``) is one
    level. The compiler still recurses once per operator, so the raw tree depth has its own,
    larger bound (MAX_CHAIN)."""
    stack: list[tuple[ast.AST, int, int]] = [(tree, int(isinstance(tree, ast.expr)), 0)]
    while stack:
        node, d, raw = stack.pop()
        if isinstance(node, ast.expr):
            raw += 1
            if raw > MAX_CHAIN:
                raise src.error(node, f"expression has more than {MAX_CHAIN} operators in a chain; "
                                "split it into several cuts joined with 'and'")
        for child in ast.iter_child_nodes(node):
            cd = d if _chained(node, child) else d + (1 if isinstance(child, ast.expr) else 0)
            if cd > MAX_DEPTH:
                raise src.error(child, f"expression nested deeper than {MAX_DEPTH} levels")
            stack.append((child, cd, raw))


@dataclass
class _Node:
    t: _T
    fn: Callable[["_Ctx"], Any]
    text: str
    atomic: bool
    node: ast.AST
    culprit: ast.AST | None = None  # for logic nodes: the first list-valued operand
    literal: bool = False  # a literal number/string/bool (possibly with a folded unary minus)


class _Compiler:
    def __init__(self, schema: pa.Schema, src: _Source) -> None:
        self.schema = schema
        self.src = src
        self.columns: dict[str, _T] = {}
        counts: dict[str, int] = {}
        for f in schema:
            counts[f.name] = counts.get(f.name, 0) + 1
        self.field_counts = counts

    def err(self, node: ast.AST, message: str) -> ExprError:
        return self.src.error(node, message)

    # -- dispatch ------------------------------------------------------------------------
    def compile(self, node: ast.AST) -> _Node:
        handler = {
            ast.BoolOp: self.c_boolop, ast.BinOp: self.c_binop, ast.UnaryOp: self.c_unary,
            ast.Compare: self.c_compare, ast.Call: self.c_call, ast.Name: self.c_name,
            ast.Constant: self.c_constant, ast.Subscript: self.c_subscript, ast.Attribute: self.c_attribute,
        }.get(type(node))
        if handler is None:
            msg = _FORBIDDEN.get(type(node), f"{type(node).__name__} is not allowed in a cut")
            raise self.err(node, msg)
        return handler(node)

    # -- leaves --------------------------------------------------------------------------
    def c_constant(self, node: ast.Constant) -> _Node:
        v = node.value
        if isinstance(v, bool):
            return _Node(_T("scalar", "bool"), lambda ctx, v=v: v, repr(v), True, node, literal=True)
        if isinstance(v, int):
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise self.err(node, "integer literal out of the int64 range")
            return _Node(_T("scalar", "int"), lambda ctx, v=v: v, repr(v), True, node, literal=True)
        if isinstance(v, float):
            if not math.isfinite(v):
                raise self.err(node, "float literal out of the float64 range")
            return _Node(_T("scalar", "float"), lambda ctx, v=v: v, repr(v), True, node, literal=True)
        if isinstance(v, str):
            if len(v) > MAX_STRING_LENGTH:
                raise self.err(node, f"string literal longer than {MAX_STRING_LENGTH} characters")
            return _Node(_T("scalar", "str"), lambda ctx, v=v: v, repr(v), True, node, literal=True)
        kind = {bytes: "bytes literals", complex: "complex numbers", type(None): "None",
                type(Ellipsis): "..."}.get(type(v), type(v).__name__)
        raise self.err(node, f"{kind} not allowed in a cut")

    def c_attribute(self, node: ast.Attribute) -> _Node:
        """``dsp.trapEmax``: a column whose name has dots (a level's tier-qualified column) may be
        written without backquotes; any other attribute access stays forbidden."""
        parts = [node.attr]
        inner: ast.AST = node.value
        while isinstance(inner, ast.Attribute):
            parts.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id not in self.src.backquoted:
            name = ".".join([inner.id, *reversed(parts)])
            dotted = self.field_counts.get(name) or any("." in n for n in self.field_counts)
            if dotted and "__" not in name:
                return self._column(node, name, name)
        raise self.err(node, _FORBIDDEN[ast.Attribute])

    def c_name(self, node: ast.Name) -> _Node:
        ident = node.id
        if ident in self.src.backquoted:
            name = self.src.backquoted[ident]
        else:
            if ident in ("true", "false"):
                v = ident == "true"
                return _Node(_T("scalar", "bool"), lambda ctx, v=v: v, repr(v), True, node, literal=True)
            if ident.startswith("__") or ident.endswith("__"):
                raise self.err(node, "names starting or ending with '__' are not allowed "
                               "(use backquotes for such a column name)")
            name = ident
        return self._column(node, name, ident)

    def _column(self, node: ast.AST, name: str, ident: str) -> _Node:
        count = self.field_counts.get(name, 0)
        if count == 0:
            if ident == name and name in FUNCTIONS:
                raise self.err(node, f"{name} is a function; call it as {name}(...)")
            close = difflib.get_close_matches(name, list(self.field_counts), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise self.err(node, f"unknown column {name!r}{hint}")
        if count > 1:
            raise self.err(node, f"column name {name!r} is ambiguous: the schema has it {count} times")
        ftype = self.schema.field(name).type
        t = _static_type(ftype)
        if t is None:
            raise self.err(node, f"column {name!r} has type {ftype}, which cuts cannot use "
                           "(numbers, booleans, strings and one-level lists of numbers only)")
        self.columns[name] = t
        return _Node(t, lambda ctx, name=name: ctx.column(name), _fmt_name(name), True, node)

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _wrapped(n: _Node) -> str:
        return n.text if n.atomic else f"({n.text})"

    def _need_numeric(self, n: _Node, what: str) -> None:
        if not n.t.numeric:
            raise self.err(n.node, f"{what} needs numbers, but {n.text} is {n.t.describe()}")

    def _need_bool(self, n: _Node, what: str) -> None:
        if n.t.dtype != "bool":
            raise self.err(n.node, f"{what} needs booleans, but {n.text} is {n.t.describe()}")

    @staticmethod
    def _kind(*ns: _Node) -> str:
        kinds = {n.t.kind for n in ns}
        return "list" if "list" in kinds else "flat" if "flat" in kinds else "scalar"

    # -- operators -----------------------------------------------------------------------
    def c_unary(self, node: ast.UnaryOp) -> _Node:
        op = type(node.op)
        operand = self.compile(node.operand)
        if op in (ast.USub, ast.UAdd):
            self._need_numeric(operand, f"unary {'-' if op is ast.USub else '+'}")
            dtype = "int" if operand.t.dtype == "bool" else operand.t.dtype
            if operand.literal:  # fold -2 into a literal
                v = operand.fn(None)
                v = int(v) if isinstance(v, bool) else v
                v = -v if op is ast.USub else v
                if isinstance(v, int) and not _INT64_MIN <= v <= _INT64_MAX:
                    raise self.err(node, "integer literal out of the int64 range")
                return _Node(_T("scalar", dtype), lambda ctx, v=v: v, repr(v), True, node, literal=True)
            if op is ast.UAdd:
                f = operand.fn
                return _Node(_T(operand.t.kind, dtype), lambda ctx: _apply(np.positive, [f(ctx)]),
                             operand.text, operand.atomic, node)
            f = operand.fn
            return _Node(_T(operand.t.kind, dtype), lambda ctx: _apply(np.negative, [f(ctx)]),
                         f"-{self._wrapped(operand)}", False, node)
        if op is ast.Not or op is ast.Invert:
            sym = "not" if op is ast.Not else "~"
            if operand.t.dtype != "bool":
                raise self.err(node, f"'{sym}' needs a boolean, but {operand.text} is "
                               f"{operand.t.describe()} ('~' is logical not, not bitwise)")
            f = operand.fn
            return _Node(operand.t, lambda ctx: _not(f(ctx)), f"not {self._wrapped(operand)}", False,
                         node, operand.culprit or operand.node)
        raise self.err(node, f"unary operator {type(node.op).__name__} is not allowed")

    def c_binop(self, node: ast.BinOp) -> _Node:
        op = type(node.op)
        if op in (ast.BitAnd, ast.BitOr):
            return self._logic("and" if op is ast.BitAnd else "or", [node.left, node.right], node,
                               "&" if op is ast.BitAnd else "|")
        if op not in _ARITH:
            raise self.err(node, f"operator {_OP_SYMBOL.get(op, op.__name__)} is not supported; "
                           "allowed: + - * / ** % and comparisons")
        sym, func = _ARITH[op]
        left, right = self.compile(node.left), self.compile(node.right)
        for side in (left, right):
            if not side.t.numeric:
                raise self.err(side.node, f"arithmetic '{sym}' needs numbers, but {side.text} is "
                               f"{side.t.describe()}")
        floats = op in (ast.Div, ast.Pow)
        dtype = "float" if floats or "float" in (left.t.dtype, right.t.dtype) else "int"
        lf, rf = left.fn, right.fn
        fn = lambda ctx: _apply(func, [lf(ctx), rf(ctx)], floats)  # noqa: E731
        ltext = self._wrapped(left)
        if op is ast.Pow and ltext.startswith("-"):
            ltext = f"({ltext})"
        return _Node(_T(self._kind(left, right), dtype), fn, f"{ltext} {sym} {self._wrapped(right)}",
                     False, node)

    def c_boolop(self, node: ast.BoolOp) -> _Node:
        return self._logic("and" if isinstance(node.op, ast.And) else "or", node.values, node,
                           "and" if isinstance(node.op, ast.And) else "or")

    def _logic(self, op: str, operands: list[ast.AST], node: ast.AST, sym: str) -> _Node:
        parts = [self.compile(v) for v in operands]
        for p in parts:
            if p.t.dtype != "bool":
                hint = ""
                if sym in ("&", "|"):
                    hint = (f"; '{sym}' binds tighter than comparisons, so write "
                            f"(a > 1) {sym} (b < 2)")
                raise self.err(p.node, f"'{sym}' needs booleans, but {p.text} is "
                               f"{p.t.describe()}{hint}")
        fns = [p.fn for p in parts]

        def fn(ctx: _Ctx) -> Any:
            acc = fns[0](ctx)
            for f in fns[1:]:
                acc = _kleene(op, acc, f(ctx))
            return acc

        culprit = next((p.culprit or p.node for p in parts if p.t.kind == "list"), None)
        text = f" {op} ".join(self._wrapped(p) for p in parts)
        return _Node(_T(self._kind(*parts), "bool"), fn, text, False, node, culprit)

    def c_compare(self, node: ast.Compare) -> _Node:
        left = self.compile(node.left)
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if len(node.ops) > 1:
                raise self.err(node, "'in' cannot be chained with other comparisons; use and")
            return self._membership(left, node.comparators[0], isinstance(node.ops[0], ast.NotIn), node)
        pieces: list[_Node] = []
        texts = [self._wrapped(left)]
        for op, comp in zip(node.ops, node.comparators):
            opt = type(op)
            if opt in (ast.Is, ast.IsNot):
                raise self.err(node, "'is' / 'is not' are not allowed; use == / !=")
            sym, func = _CMP[opt]
            right = self.compile(comp)
            pieces.append(self._compare(left, right, sym, func, node))
            texts.append(f"{sym} {self._wrapped(right)}")
            left = right
        if len(pieces) == 1:
            p = pieces[0]
            return _Node(p.t, p.fn, " ".join(texts), False, node)
        fns = [p.fn for p in pieces]

        def fn(ctx: _Ctx) -> Any:
            acc = fns[0](ctx)
            for f in fns[1:]:
                acc = _kleene("and", acc, f(ctx))
            return acc

        return _Node(_T(self._kind(*pieces), "bool"), fn, " ".join(texts), False, node)

    def _compare(self, left: _Node, right: _Node, sym: str, func: Callable[..., Any],
                 node: ast.AST) -> _Node:
        kind = self._kind(left, right)
        lf, rf = left.fn, right.fn
        if left.t.dtype == "str" or right.t.dtype == "str":
            other = right if left.t.dtype == "str" else left
            if other.t.dtype != "str":
                raise self.err(node, f"cannot compare {left.text} ({left.t.describe()}) with "
                               f"{right.text} ({right.t.describe()})")
            if sym not in ("==", "!="):
                raise self.err(node, f"strings support only == != and in, not {sym}")
            pfunc = pc.equal if sym == "==" else pc.not_equal

            def sfn(ctx: _Ctx) -> Any:
                a, b = lf(ctx), rf(ctx)
                if isinstance(a, str) and isinstance(b, str):
                    return (a == b) if sym == "==" else (a != b)
                a = a.values if isinstance(a, _Flat) else a
                b = b.values if isinstance(b, _Flat) else b
                return _bool_flat(pfunc(a, b))

            return _Node(_T(kind, "bool"), sfn, "", False, node)
        return _Node(_T(kind, "bool"), lambda ctx: _apply(func, [lf(ctx), rf(ctx)]), "", False, node)

    def _membership(self, left: _Node, comp: ast.AST, negate: bool, node: ast.AST) -> _Node:
        if not isinstance(comp, (ast.List, ast.Tuple)):
            raise self.err(comp, "'in' needs a literal list, e.g. x in [1, 2, 3]")
        if len(comp.elts) > MAX_LIST_ITEMS:
            raise self.err(comp, f"list literal with more than {MAX_LIST_ITEMS} items")
        items = [self.compile(e) for e in comp.elts]
        for it in items:
            if not it.literal:
                raise self.err(it.node, "the list after 'in' may contain only literals")
            if (it.t.dtype == "str") != (left.t.dtype == "str"):
                raise self.err(it.node, f"cannot test whether {left.text} ({left.t.describe()}) "
                               f"is in a list holding {it.text} ({it.t.describe()})")
        values = [it.fn(None) for it in items]
        lf = left.fn
        text = (f"{self._wrapped(left)} {'not in' if negate else 'in'} "
                f"[{', '.join(it.text for it in items)}]")
        if left.t.dtype == "str":
            vset = pa.array(values, pa.large_string())

            def fn(ctx: _Ctx) -> Any:
                a = lf(ctx)
                if isinstance(a, str):
                    return (a in values) != negate
                arr = a.values
                res = _bool_flat(pc.is_in(arr, value_set=vset))
                res.valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
                if negate:
                    res.values = ~res.values
                return res
        else:
            if not left.t.numeric:
                raise self.err(left.node, "'in' needs a number or a string on the left")
            anyfloat = any(isinstance(v, float) for v in values)
            arr = np.array(values, dtype=np.float64 if anyfloat else np.int64)

            def fn(ctx: _Ctx) -> Any:
                a = lf(ctx)

                def isin(x: Any) -> Any:
                    return np.isin(x, arr, invert=negate)
                return _apply(isin, [a])
        return _Node(_T(left.t.kind, "bool"), fn, text, False, node)

    # -- calls and subscripts --------------------------------------------------------------
    def c_call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.err(node.func, "attribute access (x.y) is not allowed")
            raise self.err(node.func, "only named functions can be called: " + ", ".join(FUNCTIONS))
        name = node.func.id
        if name.startswith("__") or name.endswith("__"):
            raise self.err(node.func, "names starting or ending with '__' are not allowed")
        if name in self.src.backquoted or name not in FUNCTIONS:
            shown = self.src.backquoted.get(name, name)
            close = difflib.get_close_matches(shown, FUNCTIONS, n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise self.err(node.func, f"unknown function {shown!r}{hint}; allowed functions: "
                           + ", ".join(FUNCTIONS))
        if node.keywords:
            kw = node.keywords[0]
            raise self.err(kw, "keyword arguments are not allowed" if kw.arg else
                           "**kwargs are not allowed")
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.err(a, "starred arguments (*args) are not allowed")
        nargs = len(node.args)
        want = 1 if name in _UNARY or name in _REDUCTIONS or name == "isnan" else 2 if name in _BINARY else 3
        if nargs != want:
            hint = ""
            if name in ("min", "max") and nargs == 2:
                hint = f"; {name}(list) reduces a list per entry, use {name}imum(a, b) for two values"
            raise self.err(node, f"{name}() takes {want} argument{'s' if want > 1 else ''}, "
                           f"got {nargs}{hint}")
        args = [self.compile(a) for a in node.args]
        text = f"{name}({', '.join(a.text for a in args)})"
        fns = [a.fn for a in args]
        if name in _REDUCTIONS:
            x = args[0]
            if x.t.kind != "list":
                raise self.err(node, f"{name}() reduces a list (jagged) column per entry, but "
                               f"{x.text} is {x.t.describe()}")
            if name in ("any", "all") and x.t.dtype != "bool":
                raise self.err(node, f"{name}() needs a boolean list, e.g. {name}({x.text} > 20)")
            dtype = {"len": "int", "count": "int", "any": "bool", "all": "bool", "mean": "float",
                     "sum": "int" if x.t.dtype == "bool" else x.t.dtype}.get(name, x.t.dtype)
            if name in ("min", "max") and dtype == "bool":
                dtype = "int"
            f0 = fns[0]
            return _Node(_T("flat", dtype), lambda ctx: _reduce(name, f0(ctx)), text, True, node)
        for a in args[1:] if name == "where" else args:
            self._need_numeric(a, f"{name}()")
        if name in _UNARY or name in _BINARY:
            func, floats = _UNARY.get(name) or _BINARY[name]
            dtype = "float" if floats or any(a.t.dtype == "float" for a in args) else "int"
            return _Node(_T(self._kind(*args), dtype),
                         lambda ctx: _apply(func, [f(ctx) for f in fns], floats), text, True, node)
        if name == "isnan":
            return _Node(_T(args[0].t.kind, "bool"), lambda ctx: _apply(_isnan, [fns[0](ctx)]),
                         text, True, node)
        # where(cond, a, b)
        self._need_bool(args[0], "where()'s condition")
        dtype = "float" if any(a.t.dtype == "float" for a in args[1:]) else (
            "bool" if all(a.t.dtype == "bool" for a in args[1:]) else "int")
        return _Node(_T(self._kind(*args), dtype), lambda ctx: _where([f(ctx) for f in fns]), text,
                     True, node)

    def c_subscript(self, node: ast.Subscript) -> _Node:
        sl = node.slice
        if isinstance(sl, (ast.Slice, ast.Tuple)):
            raise self.err(sl, _FORBIDDEN[ast.Slice] if isinstance(sl, ast.Slice) else
                           "multi-dimensional indexing is not allowed")
        base = self.compile(node.value)
        if base.t.kind != "list":
            raise self.err(node, f"indexing needs a list (jagged) column, but {base.text} is "
                           f"{base.t.describe()}")
        idx: int | None = None
        if isinstance(sl, ast.Constant) and type(sl.value) is int:
            idx = sl.value
        elif (isinstance(sl, ast.UnaryOp) and isinstance(sl.op, ast.USub)
              and isinstance(sl.operand, ast.Constant) and type(sl.operand.value) is int):
            idx = -sl.operand.value
        bf = base.fn
        if idx is not None:
            if abs(idx) > 2**31:
                raise self.err(sl, "index out of range")
            return _Node(_T("flat", base.t.dtype), lambda ctx: _index(bf(ctx), idx),
                         f"{self._wrapped(base)}[{idx}]", True, node)
        m = self.compile(sl)
        if m.t.kind != "list" or m.t.dtype != "bool":
            raise self.err(sl, "an index must be an integer literal (x[0], x[-1]) or a boolean list "
                           f"of the same structure (x[x > 30]); {m.text} is {m.t.describe()}")
        mf = m.fn
        return _Node(_T("list", base.t.dtype), lambda ctx: _select(bf(ctx), mf(ctx)),
                     f"{self._wrapped(base)}[{m.text}]", True, node)


def _isnan(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=np.bool_)
    return isinstance(x, float) and math.isnan(x)


def _where(args: list[Any]) -> Any:
    shape, (c, a, b), (vc, va, vb) = _align(args)
    if not (np.asarray(a).dtype == np.bool_ and np.asarray(b).dtype == np.bool_):
        a, b = _num(a), _num(b)  # mixing booleans with numbers: booleans become 0/1
    out = np.where(c, a, b)
    valid = None
    if vc is not None or va is not None or vb is not None:
        ta = np.True_ if va is None else va
        tb = np.True_ if vb is None else vb
        valid = np.where(c, ta, tb)
        if vc is not None:
            valid = valid & vc
        valid = np.broadcast_to(valid, np.shape(out)).copy()
    if shape is None:
        return out.item()
    return _wrap(shape, out, valid)


# ----------------------------------------------------------------------------- evaluation


class _Ctx:
    """Per-batch state: the batch and the columns converted so far."""

    def __init__(self, batch: pa.RecordBatch | pa.Table, types: dict[str, _T]) -> None:
        self.batch = batch
        self.types = types
        self.cache: dict[str, Any] = {}

    def column(self, name: str) -> Any:
        got = self.cache.get(name)
        if got is not None:
            return got
        try:
            idx = self.batch.schema.get_field_index(name)
        except Exception:  # noqa: BLE001
            idx = -1
        if idx < 0:
            raise ExprError(f"the batch has no (unique) column {name!r}")
        arr = self.batch.column(idx)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
            if len(arr) != self.batch.num_rows:  # an empty ChunkedArray with zero chunks
                arr = pa.array([], type=arr.type)
        t = _static_type(arr.type)
        want = self.types[name]
        if t is None or t.kind != want.kind or (t.dtype == "str") != (want.dtype == "str"):
            raise ExprError(f"column {name!r} has type {arr.type} in this batch, which does not "
                            f"match the schema the cut was parsed with ({want.describe()})")
        got = self.cache[name] = _load(arr)
        return got


class Cut:
    """A parsed, validated cut: :attr:`columns` it reads, normalised :attr:`text`, and
    :meth:`mask` to evaluate it on a batch."""

    def __init__(self, text: str, columns: frozenset[str], fn: Callable[[_Ctx], Any],
                 types: dict[str, _T]) -> None:
        self.text = text
        self.columns = columns
        self._fn = fn
        self._types = types

    def __repr__(self) -> str:
        return f"Cut({self.text!r})"

    def mask(self, batch: pa.RecordBatch | pa.Table) -> pa.BooleanArray:
        """Evaluate per entry; True = the entry passes.  The result has no nulls (null = False)."""
        if not isinstance(batch, (pa.RecordBatch, pa.Table)):
            raise ExprError(f"mask() needs a pyarrow RecordBatch or Table, not {type(batch).__name__}")
        try:
            n = batch.num_rows
            with np.errstate(all="ignore"):
                v = self._fn(_Ctx(batch, self._types))
                if isinstance(v, _Flat):
                    out = np.asarray(v.values, dtype=np.bool_)
                    if v.valid is not None:
                        out = out & v.valid
                elif isinstance(v, (bool, np.bool_)):
                    out = np.full(n, bool(v))
                else:  # pragma: no cover - excluded by the static checks
                    raise ExprError("the cut did not evaluate to one boolean per entry")
            if len(out) != n:  # pragma: no cover
                raise ExprError("internal error: mask length differs from the batch length")
            return pa.array(out, type=pa.bool_())
        except ExprError:
            raise
        except Exception as e:  # noqa: BLE001 - the contract: nothing but ExprError escapes
            raise ExprError(f"evaluating the cut {self.text!r} failed: {type(e).__name__}: {e}") from e


_HINTS = (
    (re.compile(r"&&"), "use 'and' (or '&' between parenthesised comparisons), not '&&'"),
    (re.compile(r"\|\|"), "use 'or' (or '|' between parenthesised comparisons), not '||'"),
    (re.compile(r"=>|=<"), "write '>=' and '<='"),
    (re.compile(r"(?<![=!<>])=(?!=)"), "use '==' to compare; '=' is not an operator here"),
    (re.compile(r"!(?!=)"), "use 'not' (or '~'), not '!'"),
)


def _syntax_hint(text: str) -> str:
    """The fix for the mistakes people bring from C, ROOT's TTree::Draw or SQL."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", text)  # ignore quoted strings
    for rx, fix in _HINTS:
        if rx.search(bare):
            return f"; {fix}"
    return ""


def parse(text: str, schema: pa.Schema) -> Cut:
    """Parse and validate a cut against the columns and Arrow types of ``schema``."""
    src = _prescan(text)
    body = src.parsed[src.lead:]
    if not body.strip():
        raise ExprError("empty cut expression", 0, "")
    try:
        tree = parse_expression(body)
    except SyntaxError as e:
        off = (e.offset or 1) - 1
        if e.lineno and e.lineno > 1:
            off = len(body)
        pos = src.to_original(min(max(off, 0), len(body)))
        msg = e.msg or "invalid syntax"
        hint = _syntax_hint(text)
        raise ExprError(f"syntax error: {msg}{hint}", pos, _clip(text[pos: pos + 20])) from None
    except (RecursionError, MemoryError):
        raise ExprError(f"expression too deeply nested (limit {MAX_DEPTH} levels)", 0,
                        _clip(text[:20])) from None
    except (ValueError, OverflowError) as e:
        raise ExprError(f"cannot parse the expression: {e}", 0, _clip(text[:20])) from None
    if not isinstance(schema, pa.Schema):
        raise ExprError(f"parse() needs a pyarrow Schema, not {type(schema).__name__}")
    _check_depth(tree.body, src)
    comp = _Compiler(schema, src)
    try:
        root = comp.compile(tree.body)
    except ExprError:
        raise
    except (RecursionError, MemoryError):
        raise ExprError("expression too complex") from None
    except Exception as e:  # noqa: BLE001 - e.g. folding a literal went wrong
        raise ExprError(f"cannot compile the expression: {type(e).__name__}: {e}") from e
    if root.t.kind == "list":
        culprit = root.culprit or root.node
        start, end = src.node_span(culprit)
        snippet = text[start:end]
        raise ExprError(f"{snippet} gives a list of values per entry, but a cut needs one boolean "
                        f"per entry; reduce it, e.g. any({snippet}), all({snippet}) or "
                        f"count({snippet}) >= 2", start, _clip(snippet))
    if root.t.dtype != "bool":
        start, end = src.node_span(root.node)
        raise ExprError(f"a cut must be a boolean condition, but {root.text} is "
                        f"{root.t.describe()}; compare it, e.g. {root.text} != 0",
                        start, _clip(text[start:end]))
    return Cut(root.text, frozenset(comp.columns), root.fn, dict(comp.columns))
