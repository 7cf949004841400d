"""Flight's session and cancel actions as the Flight SQL door answers them.

Sessions: the server keeps no per-connection state, so the session options are the one catalog
and schema there are (``catalog=memory``, ``schema=main``: what ADBC's ``adbc_current_catalog`` /
``adbc_current_db_schema`` read). Setting them to those values is accepted; any other value or
option is answered per option (INVALID_VALUE / INVALID_NAME) as the specification says.
CloseSession always closes (there is nothing to close).

Cancel: ``CancelFlightInfo`` (and Flight SQL's older ``CancelQuery``) name a FlightInfo; the
tickets of its endpoints say which queries to stop.
"""

from __future__ import annotations

import pyarrow.flight as fl
from google.protobuf.message import DecodeError

from arrowroot.protos import flight_sql as fsql

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.server.sql_metadata import CATALOG_NAME, DATASET_SCHEMA

__all__ = ["SESSION_ACTIONS", "CANCEL_ACTIONS", "get_session_options", "set_session_options", "close_session",
           "cancel_tickets", "cancel_result"]

SESSION_ACTIONS = {
    "GetSessionOptions": "Flight: the session's options (catalog, schema) as GetSessionOptionsResult.",
    "SetSessionOptions": "Flight: set session options; only the one catalog (memory) and schema (main) exist.",
    "CloseSession": "Flight: end the session (the server keeps no session state).",
}
CANCEL_ACTIONS = {
    "CancelFlightInfo": "Flight: stop the queries of a Flight SQL FlightInfo (body: CancelFlightInfoRequest).",
    "CancelQuery": "Flight SQL (deprecated form of CancelFlightInfo; body: Any<ActionCancelQueryRequest>).",
}
OPTIONS = {"catalog": CATALOG_NAME, "schema": DATASET_SCHEMA}

_M = fsql.FLIGHT_MESSAGES


def _parse(name: str, body: bytes):  # noqa: ANN202 - a protobuf message
    msg = _M[name]()
    try:
        msg.ParseFromString(body)
    except (DecodeError, RuntimeError) as exc:
        raise InvalidRequest(f"{name}: not a valid message ({exc})") from None
    return msg


def get_session_options(body: bytes) -> bytes:
    _parse("GetSessionOptionsRequest", body)
    result = _M["GetSessionOptionsResult"]()
    for key, value in OPTIONS.items():
        result.session_options[key].string_value = value
    return result.SerializeToString()


def set_session_options(body: bytes) -> bytes:
    request = _parse("SetSessionOptionsRequest", body)
    result = _M["SetSessionOptionsResult"]()
    errors = _M["SetSessionOptionsResult"].ErrorValue
    for key, value in request.session_options.items():
        if key not in OPTIONS:
            result.errors[key].value = errors.Value("INVALID_NAME")
        elif value.WhichOneof("option_value") != "string_value" or value.string_value != OPTIONS[key]:
            result.errors[key].value = errors.Value("INVALID_VALUE")
    return result.SerializeToString()


def close_session(body: bytes) -> bytes:
    _parse("CloseSessionRequest", body)
    result = _M["CloseSessionResult"]()
    result.status = _M["CloseSessionResult"].Status.Value("CLOSED")
    return result.SerializeToString()


def cancel_tickets(kind: str, body: bytes) -> list[bytes]:
    """The endpoint tickets of the FlightInfo a cancel action names."""
    if kind == "CancelQuery":
        msg = fsql.unpack(body)
        if msg is None or fsql.message_name(msg) != "ActionCancelQueryRequest":
            raise InvalidRequest("CancelQuery: the body must be Any<ActionCancelQueryRequest>")
        info_bytes = msg.info
    else:
        info_bytes = _parse("CancelFlightInfoRequest", body).info.SerializeToString()
    try:
        info = fl.FlightInfo.deserialize(info_bytes)
    except Exception:  # noqa: BLE001 - pyarrow raises its own error types for bad bytes
        raise InvalidRequest(f"{kind}: the request does not carry a FlightInfo") from None
    return [ep.ticket.ticket for ep in info.endpoints]


def cancel_result(kind: str, cancelled: bool) -> bytes:
    """CancelFlightInfoResult (or ActionCancelQueryResult) for whether the tickets were ours to stop."""
    if kind == "CancelQuery":
        result = fsql.ActionCancelQueryResult()
        result.result = (fsql.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED if cancelled
                         else fsql.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE)
        return fsql.pack(result)
    status = fsql.FLIGHT_ENUMS["CancelStatus"]
    result = _M["CancelFlightInfoResult"]()
    result.status = int(status.CANCEL_STATUS_CANCELLED if cancelled else status.CANCEL_STATUS_NOT_CANCELLABLE)
    return result.SerializeToString()
