"""File keys: fields parsed from file names, typed, and a small safe filter language over them.

A key template such as ``{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5`` is
matched against a file's name (or, when the template contains ``/``, the end of its path
relative to the served directory). Each ``{field}`` matches one or more characters other
than ``/``.

Key types (a type declared in arrowroot.toml wins; otherwise inferred from the values of
every file the template matched, so a field has one type per dataset):

* ``int``       every value is digits (``0042`` → 42), or every value is one letter that
                is the field name's initial followed by digits (``r004`` for ``{run}`` → 4,
                ``p03`` for ``{period}`` → 3, ``c12`` for ``{cycle}``); ``l200`` for
                ``{exp}`` stays a string. A declared ``int`` drops any letter prefix.
* ``timestamp`` every value is ``YYYYMMDDTHHMMSSZ`` (LEGEND cycle keys) or ISO 8601
                ``YYYY-MM-DDTHH:MM:SS[Z]``; stored as ``timestamp[s, tz=UTC]``.
* ``float``     every value parses as a decimal number.
* ``str``       anything else.

Filters (``ReadRequest.files``, the ``files`` action's ``where``) are Python-syntax boolean
expressions over the key fields and ``path``: ``run >= 10 and run <= 20 and type == 'cal'``,
``period in ['p03', 'p04']``, ``timestamp >= '2023-03-11'``. Literals are coerced to the
key's type with the same rules (``run == 'r004'`` works, so does ``timestamp < '20230312T000000Z'``).
Grammar: comparisons (chained too), ``in``/``not in`` literal lists, ``and or not`` (and
``& | ~``), parentheses, number/string/bool literals. The text is parsed with
``ast.parse`` and walked with a whitelist; nothing is ever evaluated as Python. A key
missing for a file is null, and null never passes.

Why not the cut language (``cuts.py``)? Cuts work on columns of numbers per entry (jagged
too); file keys need timestamps, ordered string comparisons
(``period >= 'p03'``) and literal coercion by key type. The key table is tiny (one row per
file), so this module favours those semantics over vectorised speed; the evaluation still
runs in ``pyarrow.compute``.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.lang.limits import parse_expression

KEY_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "timestamp": pa.timestamp("s", tz="UTC"),
}
MAX_FILTER_LENGTH = 10_000
MAX_LIST_ITEMS = 10_000

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DIGITS = re.compile(r"^[+-]?\d+$")
_PREFIXED = re.compile(r"^([A-Za-z])(\d+)$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TS_FORMATS = ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
               "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


class FilterError(InvalidRequest):
    """A file-key filter that is malformed, not allowed, or names an unknown key."""


class Template:
    """A file-key template; ``match`` returns the raw field strings of a path or None."""

    def __init__(self, text: str):
        self.text = text
        self.fields: list[str] = _FIELD.findall(text)
        if len(set(self.fields)) != len(self.fields):
            raise InvalidRequest(f"key template {text!r} repeats a field")
        pattern, last = [], 0
        for m in _FIELD.finditer(text):
            pattern.append(re.escape(text[last:m.start()]))
            pattern.append(f"(?P<{m.group(1)}>[^/]+?)")
            last = m.end()
        pattern.append(re.escape(text[last:]))
        body = "".join(pattern)
        self._regex = re.compile(("(?:^|.*/)" if "/" in text else "^") + body + "$")
        self._on_path = "/" in text

    def match(self, rel_path: str) -> dict[str, str] | None:
        target = rel_path if self._on_path else rel_path.rsplit("/", 1)[-1]
        m = self._regex.match(target)
        return m.groupdict() if m else None


def parse_timestamp(text: str) -> dt.datetime | None:
    for fmt in _TS_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def infer_type(field: str, values: Iterable[str]) -> str:
    """The key type of one field from all its raw values (rules in the module docstring)."""
    values = [v for v in values if v is not None]
    if not values:
        return "str"
    if all(_DIGITS.match(v) for v in values):
        return "int"
    initial = field[:1].lower()
    if all((m := _PREFIXED.match(v)) and m.group(1).lower() == initial for v in values):
        return "int"
    if all(not _DIGITS.match(v) and parse_timestamp(v) is not None for v in values):
        return "timestamp"
    if all(_FLOAT.match(v) for v in values):
        return "float"
    return "str"


def convert(raw: str, key_type: str) -> Any:
    """A raw field string as a JSON-able value of ``key_type`` (None when it does not fit)."""
    if key_type == "int":
        m = re.match(r"^[A-Za-z_]*([+-]?\d+)$", raw)
        return int(m.group(1)) if m else None
    if key_type == "float":
        try:
            return float(raw)
        except ValueError:
            return None
    if key_type == "timestamp":
        ts = parse_timestamp(raw)
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None
    return raw


def key_table(rows: Sequence[dict[str, Any]], types: dict[str, str], paths: Sequence[str]) -> pa.Table:
    """One row per file: ``path`` and every key field as its typed Arrow column."""
    cols: dict[str, pa.Array] = {"path": pa.array(list(paths), pa.string())}
    for name, key_type in types.items():
        if name == "path":
            continue
        values = [r.get(name) for r in rows]
        if key_type == "timestamp":
            values = [parse_timestamp(v) if isinstance(v, str) else None for v in values]
        cols[name] = pa.array(values, KEY_TYPES[key_type], from_pandas=False) if values else \
            pa.array([], KEY_TYPES[key_type])
    return pa.table(cols)


def types_of(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Key types from already-typed JSON values (files without a declared template)."""
    out: dict[str, str] = {}
    for r in rows:
        for k, v in r.items():
            t = "int" if isinstance(v, int) and not isinstance(v, bool) else "float" if isinstance(v, float) else "str"
            if out.get(k, t) != t:
                t = "str"
            out[k] = t
    return out


# ---------------------------------------------------------------- filters

_CMP = {ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
        ast.Gt: pc.greater, ast.GtE: pc.greater_equal}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_boolean(t):
        return "bool"
    return "str"


class _Eval:
    def __init__(self, table: pa.Table, text: str):
        self.table = table
        self.text = text

    def fail(self, node: ast.AST, why: str) -> FilterError:
        snippet = ast.get_source_segment(self.text, node) or ""
        where = f" (at position {node.col_offset}: {snippet!r})" if hasattr(node, "col_offset") else ""
        return FilterError(f"{why}{where}")

    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            if isinstance(node.value, str) and len(node.value) > 1000:
                raise self.fail(node, "string literal too long")
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if isinstance(node, ast.Name) and node.id in ("True", "False", "true", "false") \
                and node.id not in self.table.column_names:
            return node.id in ("True", "true")
        raise self.fail(node, "a number, string or boolean literal expected")

    def coerce(self, value: Any, t: pa.DataType, node: ast.AST) -> pa.Scalar:
        kind = _kind(t)
        if kind == "timestamp":
            ts = parse_timestamp(value) if isinstance(value, str) else None
            if ts is None:
                raise self.fail(node, "a timestamp key compares with a string such as '20230311T235840Z' "
                                      "or '2023-03-11T23:58:40'")
            return pa.scalar(ts, t)
        if kind in ("int", "float"):
            if isinstance(value, str):
                v = convert(value, kind)
                if v is None:
                    raise self.fail(node, f"{value!r} is not a number")
                value = v
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(node, "a number expected")
            return pa.scalar(value, pa.float64() if isinstance(value, float) else pa.int64())
        if kind == "bool":
            return pa.scalar(bool(value))
        if not isinstance(value, str):
            raise self.fail(node, "this key is a string: compare it with a quoted literal")
        return pa.scalar(value, pa.string())

    def column(self, node: ast.AST) -> pa.ChunkedArray | None:
        if isinstance(node, ast.Name) and node.id in self.table.column_names:
            return self.table.column(node.id)
        if isinstance(node, ast.Name) and node.id not in ("True", "False", "true", "false"):
            import difflib
            near = difflib.get_close_matches(node.id, self.table.column_names, n=3)
            hint = f"; closest: {', '.join(near)}" if near else f"; keys: {', '.join(self.table.column_names)}"
            raise self.fail(node, f"unknown file key {node.id!r}{hint}")
        return None

    def compare(self, op: ast.cmpop, left: ast.AST, right: ast.AST) -> pa.ChunkedArray:
        lcol, rcol = self.column(left), self.column(right)
        if isinstance(op, (ast.In, ast.NotIn)):
            if lcol is None or not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                raise self.fail(right, "'in' needs a file key on the left and a literal list on the right")
            if len(right.elts) > MAX_LIST_ITEMS:
                raise self.fail(right, f"lists are limited to {MAX_LIST_ITEMS} items")
            scalars = [self.coerce(self.literal(e), lcol.type, e) for e in right.elts]
            if pa.types.is_integer(lcol.type) and any(s.type == pa.float64() for s in scalars):
                values = pa.array([s.as_py() for s in scalars], pa.float64())
                col = lcol.cast(pa.float64())
            else:
                values = pa.array([s.as_py() for s in scalars], lcol.type)
                col = lcol
            result = pc.is_in(col, value_set=values)
            result = pc.if_else(pc.is_null(lcol), None, result)
            return pc.invert(result) if isinstance(op, ast.NotIn) else result
        fn = _CMP.get(type(op))
        if fn is None:
            raise self.fail(left, "operator not allowed (use == != < <= > >= in, not in)")
        if lcol is not None and rcol is not None:
            if _kind(lcol.type) != _kind(rcol.type) and {_kind(lcol.type), _kind(rcol.type)} != {"int", "float"}:
                raise self.fail(right, "these keys have different types")
            return fn(lcol, rcol)
        if lcol is not None:
            return fn(lcol, self.coerce(self.literal(right), lcol.type, right))
        if rcol is not None:
            return fn(self.coerce(self.literal(left), rcol.type, left), rcol)
        raise self.fail(left, "a comparison needs a file key on one side")

    def visit(self, node: ast.AST) -> pa.ChunkedArray | pa.Array:
        if isinstance(node, ast.BoolOp):
            fn = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene
            out = self.visit(node.values[0])
            for v in node.values[1:]:
                out = fn(out, self.visit(v))
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            fn = pc.and_kleene if isinstance(node.op, ast.BitAnd) else pc.or_kleene
            return fn(self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return pc.invert(self.visit(node.operand))
        if isinstance(node, ast.Compare):
            out = None
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                part = self.compare(op, left, right)
                out = part if out is None else pc.and_kleene(out, part)
                left = right
            return out
        if isinstance(node, ast.Name):
            col = self.column(node)
            if col is not None and pa.types.is_boolean(col.type):
                return col
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return pa.array([node.value] * self.table.num_rows, pa.bool_())
        raise self.fail(node, "not allowed here: a filter is comparisons of file keys joined by and/or/not")


def evaluate(text: str, table: pa.Table) -> pa.BooleanArray:
    """Which rows of a key table pass the filter ``text`` (null counts as False)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter longer than {MAX_FILTER_LENGTH} characters")
    try:
        tree = parse_expression(text.strip())
    except SyntaxError as exc:
        raise FilterError(f"syntax error: {exc.msg} (at position {(exc.offset or 1) - 1})") from None
    except (RecursionError, MemoryError, ValueError):
        raise FilterError("filter too deeply nested") from None
    try:
        result = _Eval(table, text.strip()).visit(tree.body)
    except FilterError:
        raise
    except RecursionError:
        raise FilterError("filter too deeply nested") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:
        raise FilterError(f"cannot evaluate the filter: {exc}") from None
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks()
    if not pa.types.is_boolean(result.type):
        raise FilterError("a filter must be a condition, e.g. run >= 10")
    return pc.fill_null(result, False)
