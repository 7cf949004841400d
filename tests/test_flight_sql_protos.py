"""The Flight SQL messages: match the specification, stay fresh, and live in a private pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

from arrowroot.protos import flight_sql as fs

PROTOS = Path(fs.__file__).resolve().parent

# Copied by hand from format/FlightSql.proto in apache/arrow (main, with CommandStatementIngest
# and DoPutPreparedStatementResult): message -> field -> (number, type, label). "optional"
# means proto3 explicit presence; "repeated" a repeated field; "" a plain singular field.
SPEC: dict[str, dict[str, tuple[int, str, str]]] = {
    "CommandGetSqlInfo": {"info": (1, "uint32", "repeated")},
    "CommandGetXdbcTypeInfo": {"data_type": (1, "int32", "optional")},
    "CommandGetCatalogs": {},
    "CommandGetDbSchemas": {
        "catalog": (1, "string", "optional"),
        "db_schema_filter_pattern": (2, "string", "optional"),
    },
    "CommandGetTables": {
        "catalog": (1, "string", "optional"),
        "db_schema_filter_pattern": (2, "string", "optional"),
        "table_name_filter_pattern": (3, "string", "optional"),
        "table_types": (4, "string", "repeated"),
        "include_schema": (5, "bool", ""),
    },
    "CommandGetTableTypes": {},
    "CommandGetPrimaryKeys": {
        "catalog": (1, "string", "optional"),
        "db_schema": (2, "string", "optional"),
        "table": (3, "string", ""),
    },
    "CommandGetExportedKeys": {
        "catalog": (1, "string", "optional"),
        "db_schema": (2, "string", "optional"),
        "table": (3, "string", ""),
    },
    "CommandGetImportedKeys": {
        "catalog": (1, "string", "optional"),
        "db_schema": (2, "string", "optional"),
        "table": (3, "string", ""),
    },
    "CommandGetCrossReference": {
        "pk_catalog": (1, "string", "optional"),
        "pk_db_schema": (2, "string", "optional"),
        "pk_table": (3, "string", ""),
        "fk_catalog": (4, "string", "optional"),
        "fk_db_schema": (5, "string", "optional"),
        "fk_table": (6, "string", ""),
    },
    "ActionCreatePreparedStatementRequest": {
        "query": (1, "string", ""),
        "transaction_id": (2, "bytes", "optional"),
    },
    "SubstraitPlan": {"plan": (1, "bytes", ""), "version": (2, "string", "")},
    "ActionCreatePreparedSubstraitPlanRequest": {
        "plan": (1, "message", ""),
        "transaction_id": (2, "bytes", "optional"),
    },
    "ActionCreatePreparedStatementResult": {
        "prepared_statement_handle": (1, "bytes", ""),
        "dataset_schema": (2, "bytes", ""),
        "parameter_schema": (3, "bytes", ""),
    },
    "ActionClosePreparedStatementRequest": {"prepared_statement_handle": (1, "bytes", "")},
    "ActionBeginTransactionRequest": {},
    "ActionBeginSavepointRequest": {"transaction_id": (1, "bytes", ""), "name": (2, "string", "")},
    "ActionBeginTransactionResult": {"transaction_id": (1, "bytes", "")},
    "ActionBeginSavepointResult": {"savepoint_id": (1, "bytes", "")},
    "ActionEndTransactionRequest": {"transaction_id": (1, "bytes", ""), "action": (2, "enum", "")},
    "ActionEndSavepointRequest": {"savepoint_id": (1, "bytes", ""), "action": (2, "enum", "")},
    "CommandStatementQuery": {"query": (1, "string", ""), "transaction_id": (2, "bytes", "optional")},
    "CommandStatementSubstraitPlan": {
        "plan": (1, "message", ""),
        "transaction_id": (2, "bytes", "optional"),
    },
    "TicketStatementQuery": {"statement_handle": (1, "bytes", "")},
    "CommandPreparedStatementQuery": {"prepared_statement_handle": (1, "bytes", "")},
    "CommandStatementUpdate": {"query": (1, "string", ""), "transaction_id": (2, "bytes", "optional")},
    "CommandPreparedStatementUpdate": {"prepared_statement_handle": (1, "bytes", "")},
    "CommandStatementIngest": {
        "table_definition_options": (1, "message", ""),
        "table": (2, "string", ""),
        "schema": (3, "string", "optional"),
        "catalog": (4, "string", "optional"),
        "temporary": (5, "bool", ""),
        "transaction_id": (6, "bytes", "optional"),
        "options": (1000, "message", "repeated"),  # map<string, string>
    },
    "DoPutUpdateResult": {"record_count": (1, "int64", "")},
    "DoPutPreparedStatementResult": {"prepared_statement_handle": (1, "bytes", "optional")},
    "ActionCancelQueryRequest": {"info": (1, "bytes", "")},
    "ActionCancelQueryResult": {"result": (1, "enum", "")},
}

SPEC_SQL_INFO = {
    "FLIGHT_SQL_SERVER_NAME": 0,
    "FLIGHT_SQL_SERVER_VERSION": 1,
    "FLIGHT_SQL_SERVER_ARROW_VERSION": 2,
    "FLIGHT_SQL_SERVER_READ_ONLY": 3,
    "FLIGHT_SQL_SERVER_SQL": 4,
    "FLIGHT_SQL_SERVER_SUBSTRAIT": 5,
    "FLIGHT_SQL_SERVER_TRANSACTION": 8,
    "FLIGHT_SQL_SERVER_CANCEL": 9,
    "FLIGHT_SQL_SERVER_BULK_INGESTION": 10,
    "FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED": 11,
    "FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT": 100,
    "FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT": 101,
    "SQL_DDL_CATALOG": 500,
    "SQL_DDL_SCHEMA": 501,
    "SQL_DDL_TABLE": 502,
    "SQL_IDENTIFIER_CASE": 503,
    "SQL_IDENTIFIER_QUOTE_CHAR": 504,
    "SQL_QUOTED_IDENTIFIER_CASE": 505,
    "SQL_ALL_TABLES_ARE_SELECTABLE": 506,
    "SQL_NULL_ORDERING": 507,
    "SQL_KEYWORDS": 508,
    "SQL_NUMERIC_FUNCTIONS": 509,
    "SQL_STRING_FUNCTIONS": 510,
    "SQL_SYSTEM_FUNCTIONS": 511,
    "SQL_DATETIME_FUNCTIONS": 512,
    "SQL_SEARCH_STRING_ESCAPE": 513,
    "SQL_EXTRA_NAME_CHARACTERS": 514,
    "SQL_SUPPORTS_COLUMN_ALIASING": 515,
    "SQL_NULL_PLUS_NULL_IS_NULL": 516,
    "SQL_SCHEMA_TERM": 529,
    "SQL_PROCEDURE_TERM": 530,
    "SQL_CATALOG_TERM": 531,
    "SQL_CATALOG_AT_START": 532,
    "SQL_MAX_STATEMENT_LENGTH": 557,
    "SQL_TRANSACTIONS_SUPPORTED": 563,
    "SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED": 576,
}

_TYPE_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_MESSAGE: "message",
    FieldDescriptor.TYPE_ENUM: "enum",
}


def _label(field: FieldDescriptor) -> str:
    if field.is_repeated:
        return "repeated"
    if field.containing_oneof is not None and field.containing_oneof.name.startswith("_"):
        return "optional"  # proto3 `optional` is a synthetic oneof named "_<field>"
    return ""


@pytest.mark.parametrize("name", sorted(SPEC))
def test_message_matches_spec(name: str) -> None:
    desc = fs.MESSAGES[name].DESCRIPTOR
    assert desc.full_name == f"arrow.flight.protocol.sql.{name}"
    got = {f.name: (f.number, _TYPE_NAMES[f.type], _label(f)) for f in desc.fields}
    assert got == SPEC[name]


def test_every_message_is_in_the_spec_table() -> None:
    assert set(fs.MESSAGES) == set(SPEC)


def test_sql_info_numbers_match_spec() -> None:
    for name, number in SPEC_SQL_INFO.items():
        assert fs.SqlInfo[name] == number, name
    # and nothing we added is outside the ranges the spec reserves for its own keys
    assert all(0 <= v < 10_000 for v in fs.SqlInfo)


def test_nested_enums_match_spec() -> None:
    ingest = fs.CommandStatementIngest.DESCRIPTOR.nested_types_by_name["TableDefinitionOptions"]
    exists = {v.name: v.number for v in ingest.enum_types_by_name["TableExistsOption"].values}
    assert exists == {
        "TABLE_EXISTS_OPTION_UNSPECIFIED": 0,
        "TABLE_EXISTS_OPTION_FAIL": 1,
        "TABLE_EXISTS_OPTION_APPEND": 2,
        "TABLE_EXISTS_OPTION_REPLACE": 3,
    }
    assert fs.SqlSupportedCaseSensitivity.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE == 1
    assert fs.SqlNullOrdering.SQL_NULLS_SORTED_AT_END == 3


def test_binpb_is_fresh(tmp_path: Path) -> None:
    """The committed descriptor set must be what flight_sql.proto and flight.proto compile to."""
    pytest.importorskip("grpc_tools")
    out = tmp_path / "fresh.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            str(PROTOS / "flight_sql.proto"),
            str(PROTOS / "flight.proto"),
        ],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    committed = descriptor_pb2.FileDescriptorSet.FromString((PROTOS / "flight_sql.binpb").read_bytes())
    assert fresh == committed, "protos/flight_sql.binpb is stale: recompile it (see flight_sql.proto)"


def test_not_in_default_pool() -> None:
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("arrow.flight.protocol.sql.CommandStatementQuery")
    assert fs.POOL is not descriptor_pool.Default()


@pytest.mark.parametrize(
    "msg",
    [
        fs.CommandStatementQuery(query='SELECT avg(MET_pt) FROM "cms/run.root:Events"'),
        fs.CommandStatementQuery(query="SELECT 1", transaction_id=b""),
        fs.TicketStatementQuery(statement_handle=b"\x00\x01handle"),
        fs.ActionCreatePreparedStatementRequest(query="SELECT ?"),
        fs.ActionCreatePreparedStatementResult(
            prepared_statement_handle=b"h", dataset_schema=b"s", parameter_schema=b"p"
        ),
        fs.ActionClosePreparedStatementRequest(prepared_statement_handle=b"h"),
        fs.CommandPreparedStatementQuery(prepared_statement_handle=b"h"),
        fs.DoPutPreparedStatementResult(prepared_statement_handle=b"h2"),
        fs.CommandGetSqlInfo(info=[0, 1, 2, 3, 504]),
        fs.CommandGetCatalogs(),
        fs.CommandGetDbSchemas(catalog="", db_schema_filter_pattern="arrow%"),
        fs.CommandGetTables(table_name_filter_pattern="cms/%", table_types=["TABLE"], include_schema=True),
        fs.CommandGetTableTypes(),
        fs.CommandStatementUpdate(query="DELETE FROM x"),
        fs.CommandStatementIngest(table="t", options={"k": "v"}),
        fs.CommandGetPrimaryKeys(table="t"),
    ],
    ids=lambda m: m.DESCRIPTOR.name,
)
def test_pack_unpack_round_trip(msg) -> None:  # noqa: ANN001
    data = fs.pack(msg)
    wrapper = any_pb2.Any.FromString(data)
    assert wrapper.type_url == "type.googleapis.com/arrow.flight.protocol.sql." + msg.DESCRIPTOR.name
    back = fs.unpack(data)
    assert type(back) is type(msg)
    assert back == msg
    # presence of proto3 `optional` fields survives the trip
    for field in msg.DESCRIPTOR.fields:
        if _label(field) == "optional":
            assert back.HasField(field.name) == msg.HasField(field.name)


def test_unpack_rejects_non_flight_sql() -> None:
    from arrowroot.protos import arrowroot_pb2

    assert fs.unpack(b"") is None  # empty Any: no type URL
    assert fs.unpack(b"\xff\xff\xff") is None
    assert fs.unpack(b'{"dataset": "cms/run.root:Events"}') is None
    assert fs.unpack(arrowroot_pb2.ReadRequest(dataset="cms/run.root:Events").SerializeToString()) is None
    other = any_pb2.Any(type_url="type.googleapis.com/arrowroot.v1.ReadRequest", value=b"")
    assert fs.unpack(other.SerializeToString()) is None


def test_unpack_errors_name_the_type() -> None:
    unknown = any_pb2.Any(type_url=fs.TYPE_URL_PREFIX + "CommandFrobnicate", value=b"")
    with pytest.raises(ValueError, match="CommandFrobnicate"):
        fs.unpack(unknown.SerializeToString())
    corrupt = any_pb2.Any(type_url=fs.type_url("CommandStatementQuery"), value=b"\x0a\x05ab")
    with pytest.raises(ValueError, match="CommandStatementQuery"):
        fs.unpack(corrupt.SerializeToString())


def test_pack_refuses_foreign_messages() -> None:
    with pytest.raises(TypeError):
        fs.pack(any_pb2.Any())


def test_supported_vs_recognised() -> None:
    assert fs.is_supported(fs.CommandStatementQuery())
    assert not fs.is_supported(fs.CommandStatementUpdate())
    assert fs.SUPPORTED <= set(fs.MESSAGES)


_CONFLICT = textwrap.dedent(
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    def register_conflict():
        # What another library's generated module does: put a DIFFERENT
        # arrow.flight.protocol.sql.CommandStatementQuery into the default pool.
        fdp = descriptor_pb2.FileDescriptorProto(
            name="other/FlightSql.proto", package="arrow.flight.protocol.sql", syntax="proto3")
        m = fdp.message_type.add(name="CommandStatementQuery")
        m.field.add(name="sql_text", number=7, type=9, label=1)
        pool = descriptor_pool.Default()
        pool.Add(fdp)
        return message_factory.GetMessageClass(
            pool.FindMessageTypeByName("arrow.flight.protocol.sql.CommandStatementQuery"))

    def use_ours():
        from arrowroot.protos import flight_sql as fs
        data = fs.pack(fs.CommandStatementQuery(query="SELECT 1"))
        assert fs.unpack(data).query == "SELECT 1"
        return fs

    if ORDER == "theirs_first":
        Theirs = register_conflict(); fs = use_ours()
    else:
        fs = use_ours(); Theirs = register_conflict()
    assert Theirs(sql_text="x").sql_text == "x"
    assert fs.CommandStatementQuery(query="y").query == "y"
    assert [f.name for f in Theirs.DESCRIPTOR.fields] == ["sql_text"]
    print("OK")
    """
)


@pytest.mark.parametrize("order", ["theirs_first", "ours_first"])
def test_conflicting_default_pool_registration(order: str) -> None:
    code = f"ORDER = {order!r}\n" + _CONFLICT
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
