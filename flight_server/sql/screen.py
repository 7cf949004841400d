"""Screening a query before anything runs: one SELECT, only the tables and functions allowed.

DuckDB's own parser does the work (``extract_statements`` and the parse tree of
``json_serialize_sql``, both parse-only: nothing is bound, folded or executed here, so this runs
in the server process). What passes names the datasets it reads, whether it reads the catalog
schema, and its parameter count; ``dataset('name', allow_missing => true)`` calls are rewritten to
table names of their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from arrowroot.flight_server.core.errors import InvalidRequest, NotFound, PermissionDenied
from arrowroot.flight_server.sql.pushdown import aggregate_items, pushed_filter
from arrowroot.flight_server.sql.sandbox_worker import quote_ident, walk

__all__ = ["Screened", "screen", "quote_ident", "dataset_of", "CATALOG_SCHEMA", "CATALOG_TABLES",
           "ALLOWED_TABLE_FUNCTIONS", "DENIED_FUNCTIONS", "DATASET_FUNCTION", "ALLOW_MISSING_PREFIX"]

CATALOG_SCHEMA = "arrowroot"
CATALOG_TABLES = ("files", "datasets", "columns", "provenance")

#: Table functions a query may call. Everything else (read_csv, read_parquet, glob, query,
#: query_table, sniff_csv, duckdb_*, pragma_*, json_execute_serialized_sql, ...) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

#: ``FROM dataset('name', allow_missing => true)``: a dataset read with the request's
#: ``allow_missing`` (columns some files lack come as nulls). The call is replaced by a table
#: name of its own before DuckDB plans the query; dataset names are relative paths, so the
#: prefix (a leading '/') never names a real dataset.
DATASET_FUNCTION = "dataset"
ALLOW_MISSING_PREFIX = "/allow_missing/"

#: Scalar functions that read or change server state (settings, profiling, logs, dynamic SQL).
DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "enable_profiling",
        "enable_profile",
        "disable_profiling",
        "disable_profile",
        "write_log",
        "json_execute_serialized_sql",
        "json_deserialize_sql",
        "json_serialize_plan",
        "duckdb_logs_parsed",
        "duckdb_profiling_settings",
        "query",
        "query_table",
    }
)

#: The refusal of anything but a query, the same on every path that runs SQL (statements,
#: prepared statements, updates): a read-only SQL surface over the served datasets.
ONLY_SELECT = "only SELECT queries are allowed (read-only SQL; upload tables with ingest); got {}"


@dataclass(frozen=True)
class Screened:
    """A query that passed: its text (``dataset(...)`` calls rewritten), the datasets it reads
    (table key → lower-case name), whether it reads ``arrowroot.*``, its parameter count, and
    what its one dataset's scan may skip (``pushdown.py``)."""

    query: str
    datasets: dict[str, str]
    uses_catalog: bool
    n_params: int
    pushdown: tuple[str, str] | None = None      # (dataset, cut) for its scan
    aggregates: tuple[str, list] | None = None   # answerable from zone statistics


_PARSER: duckdb.DuckDBPyConnection | None = None
_PARSER_LOCK = threading.Lock()
_LOCAL = threading.local()


def _parser() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on one parse-only database (``connect`` costs ~15 ms; a cursor less)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        global _PARSER
        with _PARSER_LOCK:
            if _PARSER is None:
                _PARSER = duckdb.connect(":memory:", config={"enable_external_access": False,
                                                             "autoload_known_extensions": False,
                                                             "autoinstall_known_extensions": False,
                                                             "python_enable_replacements": False})
            con = _LOCAL.con = _PARSER.cursor()
    return con


def first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


def screen(query: object, dataset_names: list[str], max_query_bytes: int,
           schema_of: Callable[[str], pa.Schema] | None = None) -> Screened:
    """Check a query without running it; raise InvalidRequest, PermissionDenied or NotFound.
    ``schema_of`` (a dataset's schema) lets a single-dataset query push its filter to the scan."""
    if not isinstance(query, str):
        raise InvalidRequest("query must be a string")
    size = len(query.encode("utf-8", "surrogatepass"))
    if size > max_query_bytes:
        raise InvalidRequest(f"query is {size} bytes; the limit is {max_query_bytes}")
    query = query.strip().rstrip(";").strip()
    if not query:
        raise InvalidRequest("empty query")
    con = _parser()
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InvalidRequest(f"SQL syntax error: {first_line(exc)}") from None
    if len(statements) != 1:
        raise PermissionDenied(f"exactly one statement per query, got {len(statements)}")
    stmt = statements[0]
    if stmt.type != duckdb.StatementType.SELECT:
        raise PermissionDenied(ONLY_SELECT.format(stmt.type.name))
    names = stmt.named_parameters
    if any(not n.isdigit() for n in names):
        raise InvalidRequest("only positional parameters (? or $1) are supported")
    n_params = max((int(n) for n in names), default=0)
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    except duckdb.Error as exc:
        raise InvalidRequest(f"SQL error: {first_line(exc)}") from None
    if tree.get("error"):
        raise InvalidRequest(f"SQL error: {tree.get('error_message')}")
    return _check_tree(query, tree, n_params, dataset_names, schema_of)


def _check_tree(query: str, tree: dict, n_params: int, dataset_names: list[str],
                schema_of: Callable[[str], pa.Schema] | None) -> Screened:
    encoded = query.encode("utf-8")
    by_lower: dict[str, str] = {}
    for name in dataset_names:
        by_lower.setdefault(name.lower(), name)
    ctes: set[str] = set()
    for node in walk(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(item["key"].lower() for item in cte_map.get("map", []))
    datasets: dict[str, str] = {}
    uses_catalog = False
    edits: list[tuple[dict, str]] = []  # dataset(...) calls → the table name they stand for
    for node in walk(tree):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            loc = node.get("query_location")
            if isinstance(loc, int) and 0 <= loc < len(encoded) and encoded[loc : loc + 1] == b"'":
                raise PermissionDenied(f"reading files is not allowed: FROM '{node.get('table_name')}'")
            catalog = (node.get("catalog_name") or "").lower()
            schema = (node.get("schema_name") or "").lower()
            table = node.get("table_name") or ""
            if schema == CATALOG_SCHEMA and catalog in ("", "memory") and table.lower() in CATALOG_TABLES:
                uses_catalog = True
            elif catalog in ("", "memory") and schema in ("", "main") and table.lower() in by_lower:
                datasets[by_lower[table.lower()]] = table.lower()
            elif not catalog and not schema and table.lower() in ctes:
                pass
            else:
                shown = ".".join(p for p in (catalog, schema, table) if p)
                raise NotFound(
                    f"no such table: {shown!r}; tables are dataset names in double quotes "
                    f'(e.g. "file.root:tree") and {CATALOG_SCHEMA}.{{{",".join(CATALOG_TABLES)}}}'
                )
        elif kind == "TABLE_FUNCTION" and _function_name(node) == DATASET_FUNCTION:
            name, allow_missing = _dataset_call(node, by_lower)
            key = ALLOW_MISSING_PREFIX + name if allow_missing else name
            datasets[key] = key.lower()
            edits.append((node, quote_ident(key)))
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            fname = (fn.get("function_name") or "").lower()
            if fname not in ALLOWED_TABLE_FUNCTIONS or fn.get("schema") or fn.get("catalog"):
                raise PermissionDenied(
                    f"table function {fname}() is not allowed; allowed: " + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
                )
        elif node.get("class") == "FUNCTION":
            fname = (node.get("function_name") or "").lower()
            if fname in DENIED_FUNCTIONS or fname.startswith(("read_", "pragma_", "duckdb_")):
                raise PermissionDenied(f"function {fname}() is not allowed")
    pushdown = aggregates = None
    if edits:
        query = _replace_spans(encoded, edits)
    elif len(datasets) == 1 and not uses_catalog and schema_of is not None:  # what the scan may skip
        pushdown = pushed_filter(tree, by_lower, schema_of)
        aggregates = aggregate_items(tree, by_lower)
    return Screened(query, datasets, uses_catalog, n_params, pushdown, aggregates)


def _function_name(node: dict) -> str:
    return ((node.get("function") or {}).get("function_name") or "").lower()


def _dataset_call(node: dict, by_lower: dict[str, str]) -> tuple[str, bool]:
    """``dataset('name', allow_missing => true)``: the dataset it names and the flag."""
    fn = node.get("function") or {}
    if fn.get("schema") or fn.get("catalog"):
        raise PermissionDenied(f"table function {fn.get('schema')}.{DATASET_FUNCTION}() is not allowed")
    if not isinstance(node.get("query_location_length"), int):
        raise InvalidRequest(f"{DATASET_FUNCTION}(): this DuckDB does not report query spans; name the table instead")
    usage = f"use {DATASET_FUNCTION}('file.h5:object', allow_missing => true)"
    args = fn.get("arguments")
    if args is None:  # older serialisations: children, named ones carried as aliases
        args = [{"name": c.get("alias") or "", "expression": c} for c in fn.get("children", [])]
    name, allow_missing = None, False
    for arg in args:
        expr = arg.get("expression") or {}
        literal = expr.get("literal") if expr.get("class") == "CONSTANT" else None
        if not isinstance(literal, dict):
            raise InvalidRequest(f"{DATASET_FUNCTION}(): arguments must be constants; {usage}")
        key = (arg.get("name") or "").lower()
        if not key and name is None and literal.get("kind") in ("STRING", "VARCHAR"):
            name = literal.get("text")
        elif key == "allow_missing" and literal.get("kind") == "BOOLEAN":
            allow_missing = str(literal.get("text")).lower() == "true"
        else:
            raise InvalidRequest(f"{DATASET_FUNCTION}(): unexpected argument {key or literal.get('text')!r}; {usage}")
    if not name:
        raise InvalidRequest(f"{DATASET_FUNCTION}(): the dataset name is missing; {usage}")
    canonical = by_lower.get(name.lower())
    if canonical is None:
        raise InvalidRequest(f"{DATASET_FUNCTION}(): no dataset named {name!r}")
    return canonical, allow_missing


def _replace_spans(encoded: bytes, edits: list[tuple[dict, str]]) -> str:
    """The query with each node's span (byte offsets DuckDB reports) replaced by ``text``."""
    out = encoded
    for node, text in sorted(edits, key=lambda e: e[0]["query_location"], reverse=True):
        a = node["query_location"]
        b = a + node["query_location_length"]
        # an alias after the call stays in place: the span covers the call only
        out = out[:a] + text.encode("utf-8") + out[b:]
    return out.decode("utf-8")


def dataset_of(key: str) -> tuple[str, bool]:
    """A table key → (dataset name, allow_missing)."""
    if key.startswith(ALLOW_MISSING_PREFIX):
        return key[len(ALLOW_MISSING_PREFIX):], True
    return key, False
