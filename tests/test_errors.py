"""Every error reaches the client with the right status and a message that names the cause,
and the server keeps serving afterwards."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients import Client, InvalidRequest, NotFound, ServerError

DS = "hep/events.root:events"


def cmd(obj) -> fl.FlightDescriptor:
    return fl.FlightDescriptor.for_command(json.dumps(obj) if not isinstance(obj, bytes) else obj)


def still_serves(server) -> None:
    info = server.flight().get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"], "entry_stop": 3}))
    assert server.flight().do_get(info.endpoints[0].ticket).read_all().num_rows == 3


@pytest.mark.parametrize("request_obj,needle", [
    ({"dataset": "hep/event.root:events"}, "closest: 'hep/events.root:events'"),
    ({"dataset": DS, "columns": ["nMuons"]}, "closest: 'nMuon'"),
    ({"dataset": DS, "columns": ["Electron_*"]}, "Electron_*"),
])
def test_not_found(sample_server, request_obj, needle):
    with pytest.raises(pa.ArrowKeyError) as err:
        sample_server.flight().get_flight_info(cmd(request_obj))
    assert needle in str(err.value)
    assert "Traceback" not in str(err.value)
    still_serves(sample_server)


@pytest.mark.parametrize("payload,needle", [
    (b'{"dataset": "' + DS.encode() + b'", "entry_start": "x"}', "JSON ReadRequest"),
    (b'{"datasett": "x"}', "JSON ReadRequest"),
    (b"\xff\xff\xff", "neither a binary nor a JSON ReadRequest"),
    (json.dumps({"columns": ["x"]}).encode(), "dataset: required"),
    (json.dumps({"dataset": DS, "entry_start": 10, "entry_stop": 5}).encode(), "entry_stop (5) is before entry_start"),
    (json.dumps({"dataset": DS, "batch_rows": 0}).encode(), "batch_rows"),
    (json.dumps({"dataset": DS, "slices": [{"start": 0}]}).encode(), "slices: apply to HDF5"),
    (json.dumps({"dataset": "lab/scan.h5:entry/data/image", "slices": [{"step": -1}]}).encode(), "step: must be positive"),
    (json.dumps({"dataset": "lab/scan.h5:entry/data/image", "slices": [{}, {}, {}]}).encode(), "axes after the first"),
    (json.dumps({"dataset": "lab/scan.h5:detector", "slices": [{}]}).encode(), "no axes after the first"),
    (b"{" * 2_000_000, "limit"),
])
def test_invalid_argument(sample_server, payload, needle):
    with pytest.raises(pa.ArrowInvalid) as err:
        sample_server.flight().get_flight_info(cmd(payload))
    assert needle in str(err.value)
    assert "Traceback" not in str(err.value)
    still_serves(sample_server)


def test_bad_path_descriptor(sample_server):
    with pytest.raises(pa.ArrowInvalid, match="one element"):
        sample_server.flight().get_flight_info(fl.FlightDescriptor.for_path("a", "b"))


@pytest.mark.parametrize("ticket,needle", [
    (b"garbage\xff", "ticket"),
    (b"", "ticket"),
])
def test_bad_tickets(sample_server, ticket, needle):
    with pytest.raises(pa.ArrowInvalid, match=needle):
        sample_server.flight().do_get(fl.Ticket(ticket)).read_all()
    still_serves(sample_server)


def test_tampered_ticket_refused(sample_server):
    from arrowroot.protos import arrowroot_pb2 as pb

    info = sample_server.flight().get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"], "entry_stop": 10}))
    msg = pb.Task.FromString(info.endpoints[0].ticket.ticket)
    msg.parts[0].stop = 20_000  # ask for more than granted
    with pytest.raises(pa.ArrowInvalid, match="signature|unsigned"):
        sample_server.flight().do_get(fl.Ticket(msg.SerializeToString())).read_all()


def test_criteria_errors(sample_server):
    with pytest.raises(pa.ArrowInvalid, match="criteria: not JSON"):
        list(sample_server.flight().list_flights(b"{nope"))
    with pytest.raises(pa.ArrowInvalid, match="unknown keys"):
        list(sample_server.flight().list_flights(b'{"colour": "red"}'))


def test_unknown_action(sample_server):
    # UNIMPLEMENTED, as Flight SQL clients (ADBC's Go driver) expect for actions a server does not serve
    with pytest.raises(pa.ArrowNotImplementedError,
                       match="no action 'explode' on this server; served: .*files, health, .*rescan.*stats"):
        list(sample_server.flight().do_action(fl.Action("explode", b"")))


def test_internal_error_hides_traceback(sample_server, monkeypatch, caplog):
    def boom(*a, **k):
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(sample_server.server.service, "plan", boom)
    with caplog.at_level(logging.ERROR, logger="arrowroot.errors"):
        with pytest.raises(fl.FlightInternalError) as err:
            sample_server.flight().get_flight_info(cmd({"dataset": DS}))
    text = str(err.value)
    assert "internal error (request " in text and "secret" not in text and "Traceback" not in text
    rid = text.split("(request ")[1].split(")")[0]
    assert any(rid in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    still_serves(sample_server)


def test_client_error_types(sample_server):
    with Client(sample_server.location) as c:
        with pytest.raises(NotFound, match="closest"):
            c.read("hep/events.root:event")
        with pytest.raises(KeyError):
            c.schema(DS, ["nope"])
        with pytest.raises(InvalidRequest, match="entry_stop"):
            c.read(DS, entries=(10, 5))
        with pytest.raises(ValueError):
            c.read(DS, batch_rows=-1)
        assert not issubclass(ServerError, KeyError)
