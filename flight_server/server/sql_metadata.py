"""Flight SQL metadata commands: catalogs, schemas, tables, table types, keys and XDBC type info.

Each answer has exactly the schema ``FlightSql.proto`` gives (names, types, nullability: ADBC
and JDBC check them). The names: one catalog (DuckDB's ``memory``), the schema ``main`` holding
every dataset the caller may see (table type ``TABLE``) and the schema ``arrowroot`` holding the
catalog tables (``SYSTEM TABLE``) — every table a query can name, and no other. Datasets have no
keys, so the key commands answer empty tables.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message

from arrowroot.protos import flight_sql as fsql

from arrowroot.flight_server.sql.engine import CATALOG_SCHEMA, CATALOG_TABLES, TableProvider
from arrowroot.flight_server.server.sql_info import SQL_INFO_SCHEMA

__all__ = ["CATALOG_NAME", "DATASET_SCHEMA", "TABLE_TYPES", "CATALOGS_SCHEMA", "DB_SCHEMAS_SCHEMA", "TABLES_SCHEMA",
           "TABLES_SCHEMA_WITH_SCHEMA", "TABLE_TYPES_SCHEMA", "PRIMARY_KEYS_SCHEMA", "KEYS_SCHEMA",
           "XDBC_TYPE_INFO_SCHEMA", "like_to_regex", "metadata_schema", "metadata_table", "xdbc_type_info"]

CATALOG_NAME = "memory"          # DuckDB's name for a query's in-memory database
DATASET_SCHEMA = "main"
TABLE_TYPE_DATASET = "TABLE"
TABLE_TYPE_CATALOG = "SYSTEM TABLE"
TABLE_TYPES = (TABLE_TYPE_CATALOG, TABLE_TYPE_DATASET)

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_name", pa.utf8()),
        pa.field("key_sequence", pa.int32(), nullable=False),
    ]
)
#: CommandGetExportedKeys, CommandGetImportedKeys and CommandGetCrossReference share it
KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)
XDBC_TYPE_INFO_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.utf8()),
        pa.field("literal_suffix", pa.utf8()),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.utf8()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)

_FIXED_SCHEMAS = {
    "CommandGetSqlInfo": SQL_INFO_SCHEMA,  # answered by sql_info.py
    "CommandGetCatalogs": CATALOGS_SCHEMA,
    "CommandGetDbSchemas": DB_SCHEMAS_SCHEMA,
    "CommandGetTableTypes": TABLE_TYPES_SCHEMA,
    "CommandGetPrimaryKeys": PRIMARY_KEYS_SCHEMA,
    "CommandGetExportedKeys": KEYS_SCHEMA,
    "CommandGetImportedKeys": KEYS_SCHEMA,
    "CommandGetCrossReference": KEYS_SCHEMA,
    "CommandGetXdbcTypeInfo": XDBC_TYPE_INFO_SCHEMA,
}


def like_to_regex(pattern: str | None) -> re.Pattern[str] | None:
    """A Flight SQL filter pattern (SQL LIKE: ``%`` any run, ``_`` one character) as a regex."""
    if pattern is None:
        return None
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(rx: re.Pattern[str] | None, text: str) -> bool:
    return rx is None or rx.fullmatch(text) is not None


def _optional(msg: Message, name: str) -> str | None:
    return getattr(msg, name) if msg.HasField(name) else None


def metadata_schema(msg: Message) -> pa.Schema | None:
    """The result schema of a metadata command (None: not a metadata command we answer here)."""
    name = fsql.message_name(msg)
    if name == "CommandGetTables":
        return TABLES_SCHEMA_WITH_SCHEMA if msg.include_schema else TABLES_SCHEMA
    return _FIXED_SCHEMAS.get(name)


def metadata_table(msg: Message, provider: TableProvider | None) -> pa.Table | None:
    """The answer to a metadata command (``provider``: the caller's tables, for GetTables)."""
    name = fsql.message_name(msg)
    if name == "CommandGetCatalogs":
        return pa.Table.from_pylist([{"catalog_name": CATALOG_NAME}], schema=CATALOGS_SCHEMA)
    if name == "CommandGetTableTypes":
        return pa.Table.from_pylist([{"table_type": t} for t in TABLE_TYPES], schema=TABLE_TYPES_SCHEMA)
    if name == "CommandGetDbSchemas":
        if _optional(msg, "catalog") not in (None, CATALOG_NAME):
            return DB_SCHEMAS_SCHEMA.empty_table()
        rx = like_to_regex(_optional(msg, "db_schema_filter_pattern"))
        rows = [{"catalog_name": CATALOG_NAME, "db_schema_name": s}
                for s in sorted((CATALOG_SCHEMA, DATASET_SCHEMA)) if _matches(rx, s)]
        return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)
    if name == "CommandGetTables":
        assert provider is not None
        return _tables(msg, provider)
    if name == "CommandGetXdbcTypeInfo":
        return xdbc_type_info(_optional(msg, "data_type"))
    if name in ("CommandGetPrimaryKeys", "CommandGetExportedKeys", "CommandGetImportedKeys",
                "CommandGetCrossReference"):
        return _FIXED_SCHEMAS[name].empty_table()  # datasets have no keys
    return None


def _tables(msg: Message, provider: TableProvider) -> pa.Table:
    schema = TABLES_SCHEMA_WITH_SCHEMA if msg.include_schema else TABLES_SCHEMA
    if _optional(msg, "catalog") not in (None, CATALOG_NAME):
        return schema.empty_table()
    schema_rx = like_to_regex(_optional(msg, "db_schema_filter_pattern"))
    table_rx = like_to_regex(_optional(msg, "table_name_filter_pattern"))
    types = set(msg.table_types) or None
    candidates: list[tuple[str, str, str, Any]] = []
    if _matches(schema_rx, CATALOG_SCHEMA) and (types is None or TABLE_TYPE_CATALOG in types):
        catalog = provider.catalog_tables() if msg.include_schema else {}
        for t in CATALOG_TABLES:
            candidates.append((CATALOG_SCHEMA, t, TABLE_TYPE_CATALOG, lambda t=t: catalog[t].schema))
    if _matches(schema_rx, DATASET_SCHEMA) and (types is None or TABLE_TYPE_DATASET in types):
        for n in provider.dataset_names():
            candidates.append((DATASET_SCHEMA, n, TABLE_TYPE_DATASET, lambda n=n: provider.dataset_schema(n)))
    rows = []
    for db_schema, table, ttype, get_schema in sorted(candidates, key=lambda c: (c[0], c[1])):
        if not _matches(table_rx, table):
            continue
        row = {"catalog_name": CATALOG_NAME, "db_schema_name": db_schema, "table_name": table, "table_type": ttype}
        if msg.include_schema:
            row["table_schema"] = get_schema().serialize().to_pybytes()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


# ----------------------------------------------------------------------------- XDBC type info

_X = fsql.XdbcDataType
_SUB = fsql.XdbcDatetimeSubcode
#: DuckDB logical type → (XDBC data type, column size, sql data type, datetime subcode, radix,
#: unsigned, literal prefix/suffix, create params, min/max scale, case sensitive)
_XDBC: dict[str, dict[str, Any]] = {
    "BOOLEAN": {"data_type": _X.XDBC_BIT, "column_size": 1},
    "TINYINT": {"data_type": _X.XDBC_TINYINT, "column_size": 3, "num_prec_radix": 10, "unsigned_attribute": False},
    "SMALLINT": {"data_type": _X.XDBC_SMALLINT, "column_size": 5, "num_prec_radix": 10, "unsigned_attribute": False},
    "INTEGER": {"data_type": _X.XDBC_INTEGER, "column_size": 10, "num_prec_radix": 10, "unsigned_attribute": False},
    "BIGINT": {"data_type": _X.XDBC_BIGINT, "column_size": 19, "num_prec_radix": 10, "unsigned_attribute": False},
    "UTINYINT": {"data_type": _X.XDBC_TINYINT, "column_size": 3, "num_prec_radix": 10, "unsigned_attribute": True},
    "USMALLINT": {"data_type": _X.XDBC_SMALLINT, "column_size": 5, "num_prec_radix": 10, "unsigned_attribute": True},
    "UINTEGER": {"data_type": _X.XDBC_INTEGER, "column_size": 10, "num_prec_radix": 10, "unsigned_attribute": True},
    "UBIGINT": {"data_type": _X.XDBC_BIGINT, "column_size": 20, "num_prec_radix": 10, "unsigned_attribute": True},
    "HUGEINT": {"data_type": _X.XDBC_NUMERIC, "column_size": 39, "num_prec_radix": 10, "unsigned_attribute": False},
    "FLOAT": {"data_type": _X.XDBC_REAL, "column_size": 24, "num_prec_radix": 2, "unsigned_attribute": False},
    "DOUBLE": {"data_type": _X.XDBC_DOUBLE, "column_size": 53, "num_prec_radix": 2, "unsigned_attribute": False},
    "DECIMAL": {"data_type": _X.XDBC_DECIMAL, "column_size": 38, "num_prec_radix": 10, "unsigned_attribute": False,
                "create_params": ["precision", "scale"], "minimum_scale": 0, "maximum_scale": 38,
                "fixed_prec_scale": True},
    "VARCHAR": {"data_type": _X.XDBC_VARCHAR, "literal_prefix": "'", "literal_suffix": "'", "case_sensitive": True,
                "searchable": fsql.Searchable.SEARCHABLE_FULL},
    "BLOB": {"data_type": _X.XDBC_VARBINARY, "literal_prefix": "'", "literal_suffix": "'::BLOB"},
    "DATE": {"data_type": _X.XDBC_DATE, "column_size": 10, "literal_prefix": "DATE '", "literal_suffix": "'",
             "sql_data_type": _X.XDBC_DATETIME, "datetime_subcode": _SUB.XDBC_SUBCODE_DATE},
    "TIME": {"data_type": _X.XDBC_TIME, "column_size": 15, "literal_prefix": "TIME '", "literal_suffix": "'",
             "sql_data_type": _X.XDBC_DATETIME, "datetime_subcode": _SUB.XDBC_SUBCODE_TIME},
    "TIME WITH TIME ZONE": {"data_type": _X.XDBC_TIME, "column_size": 21, "literal_prefix": "TIMETZ '",
                            "literal_suffix": "'", "sql_data_type": _X.XDBC_DATETIME,
                            "datetime_subcode": _SUB.XDBC_SUBCODE_TIME_WITH_TIMEZONE},
    "TIMESTAMP": {"data_type": _X.XDBC_TIMESTAMP, "column_size": 26, "literal_prefix": "TIMESTAMP '",
                  "literal_suffix": "'", "sql_data_type": _X.XDBC_DATETIME,
                  "datetime_subcode": _SUB.XDBC_SUBCODE_TIMESTAMP},
    "TIMESTAMP WITH TIME ZONE": {"data_type": _X.XDBC_TIMESTAMP, "column_size": 32, "literal_prefix": "TIMESTAMPTZ '",
                                 "literal_suffix": "'", "sql_data_type": _X.XDBC_DATETIME,
                                 "datetime_subcode": _SUB.XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE},
    "INTERVAL": {"data_type": _X.XDBC_INTERVAL, "literal_prefix": "INTERVAL '", "literal_suffix": "'",
                 "datetime_subcode": _SUB.XDBC_SUBCODE_INTERVAL_DAY_TO_SECOND},
    # nested types (jagged branches, fixed-size arrays, records) have no XDBC code of their own
    "LIST": {"data_type": _X.XDBC_UNKNOWN_TYPE, "searchable": fsql.Searchable.SEARCHABLE_NONE},
    "ARRAY": {"data_type": _X.XDBC_UNKNOWN_TYPE, "searchable": fsql.Searchable.SEARCHABLE_NONE},
    "STRUCT": {"data_type": _X.XDBC_UNKNOWN_TYPE, "searchable": fsql.Searchable.SEARCHABLE_NONE},
    "MAP": {"data_type": _X.XDBC_UNKNOWN_TYPE, "searchable": fsql.Searchable.SEARCHABLE_NONE},
}
_TYPE_INFO: pa.Table | None = None


def _duckdb_types() -> list[str]:
    """The logical types this DuckDB has (its own type catalogue)."""
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        rows = con.execute("SELECT DISTINCT logical_type FROM duckdb_types() WHERE database_name = 'system'").fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows)


def xdbc_type_info(data_type: int | None = None) -> pa.Table:
    """One row per DuckDB type a query can return that JDBC/ODBC can name, ordered by data_type
    then type_name; ``data_type`` keeps only that XDBC type."""
    global _TYPE_INFO
    if _TYPE_INFO is None:
        rows = []
        for name in _duckdb_types():
            info = _XDBC.get(name)
            if info is None:
                continue
            rows.append({
                "type_name": name,
                "data_type": int(info["data_type"]),
                "column_size": info.get("column_size"),
                "literal_prefix": info.get("literal_prefix"),
                "literal_suffix": info.get("literal_suffix"),
                "create_params": info.get("create_params"),
                "nullable": int(fsql.Nullable.NULLABILITY_NULLABLE),
                "case_sensitive": info.get("case_sensitive", False),
                "searchable": int(info.get("searchable", fsql.Searchable.SEARCHABLE_BASIC)),
                "unsigned_attribute": info.get("unsigned_attribute"),
                "fixed_prec_scale": info.get("fixed_prec_scale", False),
                "auto_increment": False if "num_prec_radix" in info else None,
                "local_type_name": name,
                "minimum_scale": info.get("minimum_scale"),
                "maximum_scale": info.get("maximum_scale"),
                "sql_data_type": int(info.get("sql_data_type", info["data_type"])),
                "datetime_subcode": (int(info["datetime_subcode"]) if "datetime_subcode" in info else None),
                "num_prec_radix": info.get("num_prec_radix"),
                "interval_precision": None,
            })
        rows.sort(key=lambda r: (r["data_type"], r["type_name"]))
        _TYPE_INFO = pa.Table.from_pylist(rows, schema=XDBC_TYPE_INFO_SCHEMA)
    table = _TYPE_INFO
    if data_type is not None:
        table = table.filter(pc.equal(table["data_type"], data_type))
    return table
