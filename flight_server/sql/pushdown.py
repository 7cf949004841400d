"""What a SQL query lets the scan skip: WHERE filters pushed into the read as a cut, and
whole-dataset ``count``/``min``/``max`` answered from zone maps.

Both read DuckDB's own parse tree (``json_serialize_sql``), never the text.

**Filters.** For a query over exactly one dataset (``FROM "ds"`` — no join, no subquery in FROM),
each top-level ``AND`` term of the WHERE clause of the form ``column <op> constant``,
``column BETWEEN a AND b`` or ``column IN (constants)`` on a numeric column becomes a term of a cut
(``lang/cuts.py``) that the scan's read plan uses to skip zones and the executor to drop rows. DuckDB
still applies the whole WHERE, so a pushed term only has to be implied by it, never equal to it.
Where SQL and the cut language differ, the term is adjusted or not pushed: DuckDB orders NaN above
every number (``x > 1`` holds for NaN), so ``>``/``>=`` on a float column become ``(x > 1 or
isnan(x))``; float32 columns take only literals a float32 holds exactly; integer columns compared
with non-integer literals only below 2**53 (where int64 → float64 is exact); uint64 columns and
non-finite literals are left alone.

**Aggregates.** ``SELECT count(*), count(x), min(x), max(x) ... FROM "ds"`` (any mix, no WHERE,
GROUP BY, HAVING, DISTINCT, QUALIFY or modifiers) is answered from the dataset's zone maps when the
provider finds them exact; otherwise the query runs as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

_OPS = {"COMPARE_EQUAL": "==", "COMPARE_NOTEQUAL": "!=", "COMPARE_LESSTHAN": "<", "COMPARE_GREATERTHAN": ">",
        "COMPARE_LESSTHANOREQUALTO": "<=", "COMPARE_GREATERTHANOREQUALTO": ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_EXACT_FLOAT = 2**53


def _select(tree: dict) -> dict | None:
    statements = tree.get("statements") or []
    if len(statements) != 1:
        return None
    node = statements[0].get("node") or {}
    if node.get("type") != "SELECT_NODE" or (node.get("cte_map") or {}).get("map"):
        return None
    return node


def dataset_of(node: dict, by_lower: dict[str, str]) -> str | None:
    """The dataset a single-table SELECT reads (None for joins, subqueries, CTEs, catalog tables)."""
    table = node.get("from_table") or {}
    if table.get("type") != "BASE_TABLE" or table.get("catalog_name") or table.get("schema_name") not in ("", "main"):
        return None
    return by_lower.get((table.get("table_name") or "").lower())


def _column(expr: dict, schema: pa.Schema) -> str | None:
    if expr.get("class") != "COLUMN_REF":
        return None
    names = expr.get("column_names") or []
    if len(names) != 1:
        return None
    name = names[0]
    if name in schema.names:
        return name
    matches = [n for n in schema.names if n.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _constant(expr: dict) -> int | float | None:
    if expr.get("class") != "CONSTANT":
        return None
    literal = expr.get("literal") or {}
    if literal.get("kind") not in ("INTEGER", "BIGINT", "HUGEINT", "NUMERIC", "DECIMAL", "DOUBLE", "FLOAT"):
        return None
    text = str(literal.get("text", ""))
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return None
    return value


def _quote(name: str) -> str:
    if name.isidentifier() and name.isascii() and name not in ("true", "false", "and", "or", "not", "in"):
        return name
    return "`" + name + "`" if "`" not in name else ""


def _literal_ok(t: pa.DataType, value: int | float) -> bool:
    """Whether comparing this column with this literal means the same in DuckDB and in a cut."""
    if pa.types.is_integer(t):
        return not pa.types.is_uint64(t) and (isinstance(value, int) or abs(value) < _EXACT_FLOAT)
    if pa.types.is_float32(t):
        return float(np.float32(value)) == value
    return pa.types.is_floating(t) and (isinstance(value, float) or abs(value) < _EXACT_FLOAT)


def _term(col: str, t: pa.DataType, op: str, value: int | float) -> str | None:
    if not _literal_ok(t, value):
        return None
    name = _quote(col)
    if not name:
        return None
    text = f"{name} {op} {value!r}"
    if pa.types.is_floating(t) and op in (">", ">="):
        text = f"({text} or isnan({name}))"   # DuckDB: NaN is greater than every number
    return text


def _terms(expr: dict, schema: pa.Schema) -> list[str]:
    kind, cls = expr.get("type"), expr.get("class")
    if cls == "CONJUNCTION" and kind == "CONJUNCTION_AND":
        return [t for child in expr.get("children") or [] for t in _terms(child, schema)]
    if cls == "COMPARISON" and kind in _OPS:
        op = _OPS[kind]
        left, right = expr.get("left") or {}, expr.get("right") or {}
        col, value = _column(left, schema), _constant(right)
        if col is None:
            col, value, op = _column(right, schema), _constant(left), _FLIP[op]
        if col is None or value is None:
            return []
        term = _term(col, schema.field(col).type, op, value)
        return [term] if term else []
    if cls == "BETWEEN":
        col = _column(expr.get("input") or {}, schema)
        lo, hi = _constant(expr.get("lower") or {}), _constant(expr.get("upper") or {})
        if col is None or lo is None or hi is None:
            return []
        terms = [_term(col, schema.field(col).type, ">=", lo), _term(col, schema.field(col).type, "<=", hi)]
        return [t for t in terms if t]
    if cls == "OPERATOR" and kind == "COMPARE_IN":
        children = expr.get("children") or []
        col = _column(children[0], schema) if children else None
        values = [_constant(c) for c in children[1:]]
        if col is None or not values or any(v is None for v in values) or len(values) > 1000:
            return []
        t = schema.field(col).type
        if not all(_literal_ok(t, v) for v in values) or not _quote(col):
            return []
        return [f"{_quote(col)} in [{', '.join(repr(v) for v in values)}]"]
    return []


def pushed_filter(tree: dict, by_lower: dict[str, str], schema_of: Callable[[str], pa.Schema]) -> tuple[str, str] | None:
    """(dataset, cut text) for the WHERE terms of a single-dataset SELECT the scan can apply."""
    node = _select(tree)
    if node is None or not node.get("where_clause"):
        return None
    name = dataset_of(node, by_lower)
    if name is None:
        return None
    schema = schema_of(name)
    numeric = pa.schema([f for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)])
    terms = list(dict.fromkeys(_terms(node["where_clause"], numeric)))
    return (name, " and ".join(terms)) if terms else None


def aggregate_items(tree: dict, by_lower: dict[str, str]) -> tuple[str, list[tuple[str, str | None]]] | None:
    """(dataset, [(function, column)]) when the query is only count(*)/count/min/max over a whole dataset."""
    node = _select(tree)
    if node is None or dataset_of(node, by_lower) is None:
        return None
    if (node.get("where_clause") or node.get("group_expressions") or node.get("group_sets") or node.get("having")
            or node.get("qualify") or node.get("sample") or node.get("modifiers")
            or node.get("aggregate_handling") != "STANDARD_HANDLING"):
        return None
    if (node.get("from_table") or {}).get("sample"):
        return None
    items: list[tuple[str, str | None]] = []
    for expr in node.get("select_list") or []:
        if expr.get("class") != "FUNCTION" or expr.get("distinct") or expr.get("filter") or expr.get("schema"):
            return None
        if (expr.get("order_bys") or {}).get("orders") or expr.get("export_state"):
            return None
        fn = (expr.get("function_name") or "").lower()
        args = expr.get("arguments") or []
        if fn == "count_star" and not args:
            items.append(("count_star", None))
            continue
        if fn not in ("count", "min", "max") or len(args) != 1:
            return None
        arg = args[0].get("expression") if isinstance(args[0], dict) and "expression" in args[0] else args[0]
        names = (arg or {}).get("column_names") or []
        if (arg or {}).get("class") != "COLUMN_REF" or len(names) != 1:
            return None
        items.append((fn, names[0]))
    return (dataset_of(node, by_lower), items) if items else None


def answer(items: list[tuple[str, str | None]], rows: int, stats: dict[str, dict], schema: pa.Schema,
           result: pa.Schema) -> pa.Table | None:
    """The one-row result of an aggregate query from zone statistics (``result``: the schema DuckDB
    bound the query to); None when a column is not covered."""
    values: list[Any] = []
    for fn, col in items:
        if fn == "count_star":
            values.append(rows)
            continue
        name = col if col in stats else next((n for n in stats if n.lower() == str(col).lower()), None)
        if name is None:
            return None
        s = stats[name]
        if fn == "count":
            values.append(s["count"])
            continue
        v = s[fn]
        t = schema.field(name).type
        if v is not None:
            v = bool(v) if pa.types.is_boolean(t) else int(v) if pa.types.is_integer(t) else float(v)
        values.append(v)
    if len(values) != len(result):
        return None
    try:
        return pa.table([pa.array([v], f.type) for v, f in zip(values, result)], schema=result)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
