"""The one error table, round trip: every error type raised behind every door arrives as the
table's status and as the Python client's exception type, with the server's message (as
pyarrow's own Flight tests check each server error against the client's error type).

Errors are injected at the service layer of a real server on loopback (the one place every door
goes through); the doors, pyarrow's gRPC, the HTTP stack and the client are the real ones.
"""

from __future__ import annotations

import logging

import httpx
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients import errors as C
from arrowroot.flight_server.core import errors as E
from arrowroot.flight_server.service.errors import TABLE, status_of
from arrowroot.flight_server.web import WebServer

from tests.conftest import start_server

DS = "hep/events.root:events"

#: the client's exception for each row (and for anything that is not ours)
CLIENT = {
    "NotFound": C.NotFound, "AlreadyExists": C.AlreadyExists, "InvalidRequest": C.InvalidRequest,
    "Unauthenticated": C.Unauthenticated, "PermissionDenied": C.PermissionDenied,
    "ResourceExhausted": C.ResourceExhausted, "FileChanged": C.Unavailable, "Unavailable": C.Unavailable,
    "Cancelled": C.Cancelled, "TimedOut": C.TimedOut, "Unimplemented": C.Unimplemented,
    "SourceError": C.ServerError, "RuntimeError": C.ServerError,
}
#: the pyarrow exception a plain Flight client sees for each gRPC status
PYARROW = {
    "NOT_FOUND": pa.ArrowKeyError, "INVALID_ARGUMENT": pa.ArrowInvalid, "UNIMPLEMENTED": pa.ArrowNotImplementedError,
    "UNAUTHENTICATED": fl.FlightUnauthenticatedError, "PERMISSION_DENIED": fl.FlightUnauthorizedError,
    "UNAVAILABLE": fl.FlightUnavailableError, "CANCELLED": fl.FlightCancelledError,
    "DEADLINE_EXCEEDED": fl.FlightTimedOutError, "INTERNAL": fl.FlightInternalError,
}


def make(kind: type[BaseException]) -> BaseException:
    if kind is E.FileChanged:
        return E.FileChanged("hep/events.root", "the file was modified")
    return kind(f"injected {kind.__name__} for the round trip")


ERRORS = [row.error for row in TABLE] + [RuntimeError]


@pytest.fixture(scope="module")
def running(sample_dir):
    server = start_server(sample_dir)
    web = WebServer(server.server.service, 0, flight_port=server.server.port).start()
    yield server, web
    web.stop()
    server.stop()


def expected_message(exc: BaseException) -> str:
    row = status_of(exc)
    if row.grpc == "INTERNAL" and not row.prefix:
        return "internal error (request "
    return row.prefix + str(exc)


def inject(monkeypatch, obj, name, exc):
    def boom(*args, **kwargs):
        raise exc
    monkeypatch.setattr(obj, name, boom)


@pytest.mark.parametrize("kind", ERRORS, ids=lambda k: k.__name__)
def test_flight_datasets_door(running, monkeypatch, kind, caplog):
    server, _ = running
    exc = make(kind)
    inject(monkeypatch, server.server.service, "plan", exc)
    flight = server.flight()
    row = status_of(exc)
    with pytest.raises(PYARROW[row.grpc]) as raw:
        flight.get_flight_info(fl.FlightDescriptor.for_path(DS))
    assert expected_message(exc) in str(raw.value)
    with caplog.at_level(logging.INFO, logger="arrowroot.access"), server.client() as c:
        with pytest.raises(CLIENT[kind.__name__]) as got:
            c.read(DS, ["nMuon"])
    assert str(got.value).startswith(expected_message(exc))
    assert "Traceback" not in str(got.value) and "/work/" not in str(got.value)
    lines = [r.getMessage() for r in caplog.records if r.name == "arrowroot.access" and "GetFlightInfo" in r.getMessage()]
    assert lines and f" {row.grpc} " in lines[-1], lines  # one access-log line, failed call included


@pytest.mark.parametrize("kind", ERRORS, ids=lambda k: k.__name__)
def test_flight_sql_door(running, monkeypatch, kind):
    server, _ = running
    exc = make(kind)
    inject(monkeypatch, server.server.service, "visible", exc)
    with server.client() as c, pytest.raises(CLIENT[kind.__name__]) as got:
        c.sql(f'SELECT count(*) FROM "{DS}"')
    assert str(got.value).startswith(expected_message(exc))


@pytest.mark.parametrize("kind", ERRORS, ids=lambda k: k.__name__)
def test_workspace_door(running, monkeypatch, kind):
    server, _ = running
    exc = make(kind)
    inject(monkeypatch, server.server.workspace, "put", exc)
    with server.client() as c, pytest.raises(CLIENT[kind.__name__]) as got:
        c.put("home/local/round_trip", pa.table({"x": [1, 2, 3]}))
    assert str(got.value).startswith(expected_message(exc))


@pytest.mark.parametrize("kind", ERRORS, ids=lambda k: k.__name__)
def test_do_get_mid_read(running, monkeypatch, kind):
    """The read path itself (a DoGet, as on a data node): the same statuses after the ticket."""
    server, _ = running
    exc = make(kind)
    with server.client() as c:
        info = c.flight_info(DS, ["nMuon"])
        inject(monkeypatch, server.server.service, "open", exc)
        with pytest.raises(CLIENT[kind.__name__]) as got:
            c.read_info(info).read_all()
    assert expected_message(exc) in str(got.value)


@pytest.mark.parametrize("kind", ERRORS, ids=lambda k: k.__name__)
def test_http_door(running, monkeypatch, kind):
    server, web = running
    exc = make(kind)
    inject(monkeypatch, server.server.service, "search", exc)
    row = status_of(exc)
    r = httpx.get(web.url + "api/datasets", params={"name": "hep/*"}, timeout=30)
    assert r.status_code == row.http
    body = r.json()
    assert body["status"] == row.http and body["error"] == row.name
    assert body["message"].startswith(expected_message(exc))


def test_the_table_is_complete():
    """Every error class of core/errors.py has a row (so no door falls back to INTERNAL for it)."""
    ours = {c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.ArrowrootError)
            and c is not E.ArrowrootError}
    covered = {c for c in ours if any(issubclass(c, row.error) for row in TABLE)}
    assert covered == ours
