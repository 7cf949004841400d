"""CommandGetSqlInfo: what the server tells SQL clients about itself, and it must be true.

Queries are read-only (one SELECT); writes are served only as bulk ingest (``CommandStatementIngest``)
into the caller's workspace, ``home/<user>/`` — so the server is not read-only, but it has no DDL,
no DML and no transactions. Cancellation is served (CancelFlightInfo, CancelQuery). The dialect
facts are DuckDB's.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from arrowroot.protos import flight_sql as fsql

from arrowroot.flight_server import __version__

__all__ = ["SQL_INFO_SCHEMA", "sql_info_values", "sql_info_table", "MAX_STATEMENT_BYTES"]

MAX_STATEMENT_BYTES = 1_000_000  # the SQL engine's max_query_bytes

_CHILDREN = [
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.field("string_data", pa.utf8()))),
    pa.field(
        "int32_to_int32_list_map",
        pa.map_(pa.int32(), pa.list_(pa.field("$data$", pa.int32()))),
    ),
]
SQL_INFO_VALUE_TYPE = pa.dense_union(_CHILDREN, type_codes=[0, 1, 2, 3, 4, 5])
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", SQL_INFO_VALUE_TYPE, nullable=False)]
)
STRING, BOOL, BIGINT, INT32, STRINGS = 0, 1, 2, 3, 4

_KEYWORDS: list[str] | None = None


def _keywords() -> list[str]:
    global _KEYWORDS
    if _KEYWORDS is None:
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            _KEYWORDS = sorted(r[0].upper() for r in con.execute("SELECT keyword_name FROM duckdb_keywords()").fetchall())
        finally:
            con.close()
    return _KEYWORDS


def _bits(*members: int) -> int:
    return sum(1 << int(m) for m in members)


def sql_info_values(statement_timeout_s: float = 600.0) -> dict[int, tuple[int, Any]]:
    """info id → (union type code, value). ``statement_timeout_s``: prepared statements' idle expiry."""
    S = fsql.SqlInfo
    case = fsql.SqlSupportedCaseSensitivity
    grammar = fsql.SupportedSqlGrammar
    ansi = fsql.SupportedAnsi92SqlGrammarLevel
    sub = fsql.SqlSupportedSubqueries
    return {
        S.FLIGHT_SQL_SERVER_NAME: (STRING, "arrowroot"),
        S.FLIGHT_SQL_SERVER_VERSION: (STRING, __version__),
        S.FLIGHT_SQL_SERVER_ARROW_VERSION: (STRING, pa.__version__),
        # writes: bulk ingest into home/<user>/ (the workspace); queries are read-only
        S.FLIGHT_SQL_SERVER_READ_ONLY: (BOOL, False),
        S.FLIGHT_SQL_SERVER_SQL: (BOOL, True),
        S.FLIGHT_SQL_SERVER_SUBSTRAIT: (BOOL, False),
        S.FLIGHT_SQL_SERVER_TRANSACTION: (INT32, fsql.SqlSupportedTransaction.SQL_SUPPORTED_TRANSACTION_NONE),
        S.FLIGHT_SQL_SERVER_CANCEL: (BOOL, True),
        S.FLIGHT_SQL_SERVER_BULK_INGESTION: (BOOL, True),
        S.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: (BOOL, False),
        S.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: (INT32, int(statement_timeout_s * 1000)),
        S.SQL_DDL_CATALOG: (BOOL, False),
        S.SQL_DDL_SCHEMA: (BOOL, False),
        S.SQL_DDL_TABLE: (BOOL, False),
        S.SQL_IDENTIFIER_CASE: (INT32, case.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        S.SQL_IDENTIFIER_QUOTE_CHAR: (STRING, '"'),
        S.SQL_QUOTED_IDENTIFIER_CASE: (INT32, case.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        S.SQL_ALL_TABLES_ARE_SELECTABLE: (BOOL, True),
        S.SQL_NULL_ORDERING: (INT32, fsql.SqlNullOrdering.SQL_NULLS_SORTED_AT_END),
        S.SQL_KEYWORDS: (STRINGS, _keywords()),
        S.SQL_SUPPORTS_COLUMN_ALIASING: (BOOL, True),
        S.SQL_NULL_PLUS_NULL_IS_NULL: (BOOL, True),
        S.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: (BOOL, True),
        S.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: (BOOL, True),
        S.SQL_SUPPORTS_ORDER_BY_UNRELATED: (BOOL, True),
        S.SQL_SUPPORTED_GROUP_BY: (INT32, _bits(fsql.SqlSupportedGroupBy.SQL_GROUP_BY_UNRELATED,
                                                fsql.SqlSupportedGroupBy.SQL_GROUP_BY_BEYOND_SELECT)),
        S.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: (BOOL, True),
        S.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: (BOOL, False),
        S.SQL_SUPPORTED_GRAMMAR: (INT32, _bits(grammar.SQL_MINIMUM_GRAMMAR, grammar.SQL_CORE_GRAMMAR)),
        S.SQL_ANSI92_SUPPORTED_LEVEL: (INT32, _bits(ansi.ANSI92_ENTRY_SQL, ansi.ANSI92_INTERMEDIATE_SQL)),
        S.SQL_OUTER_JOINS_SUPPORT_LEVEL: (INT32, fsql.SqlOuterJoinsSupportLevel.SQL_FULL_OUTER_JOINS),
        S.SQL_SCHEMA_TERM: (STRING, "schema"),
        S.SQL_CATALOG_TERM: (STRING, "catalog"),
        S.SQL_SELECT_FOR_UPDATE_SUPPORTED: (BOOL, False),
        S.SQL_STORED_PROCEDURES_SUPPORTED: (BOOL, False),
        S.SQL_SUPPORTED_SUBQUERIES: (INT32, _bits(sub.SQL_SUBQUERIES_IN_COMPARISONS, sub.SQL_SUBQUERIES_IN_EXISTS,
                                                  sub.SQL_SUBQUERIES_IN_INS, sub.SQL_SUBQUERIES_IN_QUANTIFIEDS)),
        S.SQL_CORRELATED_SUBQUERIES_SUPPORTED: (BOOL, True),
        S.SQL_SUPPORTED_UNIONS: (INT32, _bits(fsql.SqlSupportedUnions.SQL_UNION, fsql.SqlSupportedUnions.SQL_UNION_ALL)),
        S.SQL_MAX_STATEMENT_LENGTH: (BIGINT, MAX_STATEMENT_BYTES),
        S.SQL_TRANSACTIONS_SUPPORTED: (BOOL, False),
        S.SQL_BATCH_UPDATES_SUPPORTED: (BOOL, False),
        S.SQL_SAVEPOINTS_SUPPORTED: (BOOL, False),
        S.SQL_NAMED_PARAMETERS_SUPPORTED: (BOOL, False),
    }


def sql_info_table(wanted: list[int] | None = None, statement_timeout_s: float = 600.0) -> pa.Table:
    """The GetSqlInfo result (dense union values) for ``wanted`` ids (empty = all we know)."""
    values = sql_info_values(statement_timeout_s)
    ids = [i for i in (wanted or sorted(values)) if i in values]
    children: list[list[Any]] = [[] for _ in _CHILDREN]
    type_ids, offsets = [], []
    for i in ids:
        code, value = values[i]
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(int(value) if code in (BIGINT, INT32) else value)
    arrays = [pa.array(vals, f.type) for vals, f in zip(children, _CHILDREN)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()), pa.array(offsets, pa.int32()), arrays,
        [f.name for f in _CHILDREN], [0, 1, 2, 3, 4, 5],
    )
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), union], schema=SQL_INFO_SCHEMA)
