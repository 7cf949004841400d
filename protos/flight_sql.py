"""Flight SQL protobuf messages, built from flight_sql.binpb in a private descriptor pool.

Why a private pool: a generated ``*_pb2`` module registers ``arrow.flight.protocol.sql.*`` in
protobuf's process-wide default pool, and so do other libraries (flightsql-dbapi, ...). Two
registrations of the same name with different contents make the second import fail. Loading
the compiled FileDescriptorSet into our own ``DescriptorPool`` sidesteps that entirely, and
the wire format (which is all that matters to clients) is unchanged.

Every message of flight_sql.proto is a module attribute (``flight_sql.CommandStatementQuery``)
and every top-level enum is an ``enum.IntEnum`` (``flight_sql.SqlInfo.FLIGHT_SQL_SERVER_NAME``).
Commands travel as a serialised ``google.protobuf.Any``; use :func:`pack` / :func:`unpack`.
"""

from __future__ import annotations

import enum
from importlib import resources
from typing import Any as _TypingAny

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message, message_factory
from google.protobuf.message import DecodeError

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = f"type.googleapis.com/{PACKAGE}."

#: Commands and action bodies the server serves. The rest of the registry is only recognised, so
#: the server can answer UNIMPLEMENTED with the command's name instead of "not a Flight SQL command".
SUPPORTED = frozenset(
    {
        "CommandStatementQuery",
        "TicketStatementQuery",
        "CommandPreparedStatementQuery",
        "ActionCreatePreparedStatementRequest",
        "ActionCreatePreparedStatementResult",
        "ActionClosePreparedStatementRequest",
        "DoPutPreparedStatementResult",
        "CommandGetSqlInfo",
        "CommandGetCatalogs",
        "CommandGetDbSchemas",
        "CommandGetTables",
        "CommandGetTableTypes",
        "CommandGetXdbcTypeInfo",
        "CommandGetPrimaryKeys",
        "CommandGetExportedKeys",
        "CommandGetImportedKeys",
        "CommandGetCrossReference",
        "CommandStatementIngest",
        "DoPutUpdateResult",
        "ActionCancelQueryRequest",
        "ActionCancelQueryResult",
    }
)


def _load_pool() -> tuple[descriptor_pool.DescriptorPool, descriptor_pb2.FileDescriptorSet]:
    data = resources.files(__package__ or "arrowroot.protos").joinpath("flight_sql.binpb").read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()  # deliberately NOT descriptor_pool.Default()
    for file_proto in fds.file:
        pool.Add(file_proto)
    return pool, fds


POOL, FILE_DESCRIPTOR_SET = _load_pool()
_FILE = POOL.FindFileByName("flight_sql.proto")

#: Message classes by short name ("CommandGetTables" -> class).
MESSAGES: dict[str, type[message.Message]] = {
    name: message_factory.GetMessageClass(desc) for name, desc in _FILE.message_types_by_name.items()
}
#: Top-level enums by name, as IntEnums carrying the spec's numbers.
ENUMS: dict[str, type[enum.IntEnum]] = {
    name: enum.IntEnum(name, {v.name: v.number for v in desc.values})
    for name, desc in _FILE.enum_types_by_name.items()
}

globals().update(MESSAGES)
globals().update(ENUMS)

#: Flight's own messages (flight.proto, package arrow.flight.protocol): among them the bodies and
#: results of CancelFlightInfo and the session-option actions, sent without an Any wrapper.
_ACTIONS_FILE = POOL.FindFileByName("flight.proto")
FLIGHT_MESSAGES: dict[str, type[message.Message]] = {
    name: message_factory.GetMessageClass(desc) for name, desc in _ACTIONS_FILE.message_types_by_name.items()
}
FLIGHT_ENUMS: dict[str, type[enum.IntEnum]] = {
    name: enum.IntEnum(name, {v.name: v.number for v in desc.values})
    for name, desc in _ACTIONS_FILE.enum_types_by_name.items()
}


def type_url(msg_or_name: message.Message | str) -> str:
    """The Any type URL a Flight SQL client uses for this message (or short name)."""
    name = msg_or_name if isinstance(msg_or_name, str) else msg_or_name.DESCRIPTOR.name
    return TYPE_URL_PREFIX + name


def pack(msg: message.Message) -> bytes:
    """Serialise ``msg`` wrapped in ``google.protobuf.Any``, as Flight SQL puts it on the wire."""
    full_name = msg.DESCRIPTOR.full_name
    if not full_name.startswith(PACKAGE + "."):
        raise TypeError(f"not a Flight SQL message: {full_name}")
    return any_pb2.Any(type_url=type_url(msg), value=msg.SerializeToString()).SerializeToString()


def unpack(data: bytes) -> message.Message | None:
    """Decode a Flight SQL command, or return None if ``data`` is not one (e.g. a native ReadRequest).

    Raises ValueError (naming the type) when the Any claims a Flight SQL type we do not know or
    its payload does not parse: the client clearly meant Flight SQL, so it deserves an error.
    """
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, TypeError):
        return None
    if not wrapper.type_url.startswith(TYPE_URL_PREFIX):
        return None
    name = wrapper.type_url[len(TYPE_URL_PREFIX) :]
    cls = MESSAGES.get(name)
    if cls is None:
        raise ValueError(f"unknown Flight SQL message type {PACKAGE}.{name}")
    msg = cls()
    try:
        msg.ParseFromString(wrapper.value)
    except (DecodeError, RuntimeError) as exc:
        raise ValueError(f"malformed Flight SQL {name}: {exc}") from exc
    return msg


def message_name(msg: message.Message) -> str:
    """Short name of a Flight SQL message ("CommandGetTables"), for dispatch and error messages."""
    return msg.DESCRIPTOR.name


def is_supported(msg: message.Message) -> bool:
    """Whether the server serves this command (False = recognised but UNIMPLEMENTED)."""
    return msg.DESCRIPTOR.name in SUPPORTED


def __getattr__(name: str) -> _TypingAny:  # pragma: no cover - only for clearer errors
    raise AttributeError(f"module {__name__!r} has no Flight SQL message or enum {name!r}")
