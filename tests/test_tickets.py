"""Plan once, run anywhere: tickets are self-contained signed tasks; DoGet never plans and the
executor runs without a catalog."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.flight_server.core.task import PartRead, ReadTask
from arrowroot.flight_server.execute.executor import StreamStats, stream_task
from arrowroot.flight_server.execute.readers import ReaderCache
from arrowroot.flight_server.service.tickets import TicketSigner

DS = "hep/events.root:events"


def cmd(obj) -> fl.FlightDescriptor:
    return fl.FlightDescriptor.for_command(json.dumps(obj))


def _table(batches) -> pa.Table:
    out = [b[0] if isinstance(b, tuple) else b for b in batches]
    return pa.Table.from_batches(out)


def test_executor_runs_a_ticket_without_any_catalog(sample_server, sample_dir):
    """A process with the key and the files — no catalog, no server — runs the ticket."""
    c = sample_server.flight()
    req = {"dataset": DS, "columns": ["nMuon", "Muon_pt"], "where": "nMuon >= 2", "with_entry_numbers": True}
    info = c.get_flight_info(cmd(req))
    expected = pa.concat_tables(c.do_get(ep.ticket).read_all() for ep in info.endpoints)
    signer = TicketSigner(sample_server.server.tickets.key, 3600)  # only the key is shared
    readers = ReaderCache(sample_dir)
    got = []
    for ep in info.endpoints:
        task = signer.open(ep.ticket.ticket)
        assert isinstance(task, ReadTask) and task.where == "nMuon >= 2"
        got.append(_table(stream_task(task, readers, StreamStats())))
    readers.close()
    table = pa.concat_tables(got)
    assert table.equals(expected)
    assert table.num_rows > 0 and min(table["nMuon"].to_pylist()) >= 2


def test_a_task_built_by_hand_runs(sample_dir):
    """The task value itself is all the executor needs (here: written out, no planner)."""
    import uproot

    path = sample_dir / "hep" / "events.root"
    st = path.stat()
    with uproot.open(path) as f:
        tree = f["events"]
        want = tree["nMuon"].array(library="np", entry_start=5, entry_stop=25)
        fields = [pa.field("nMuon", pa.from_numpy_dtype(want.dtype))]
    task = ReadTask(dataset="x", format="root", kind="ttree", read_schema=pa.schema(fields), columns=("nMuon",),
                    parts=(PartRead("hep/events.root", st.st_size, st.st_mtime, "events", 0, 5, 25),),
                    batch_rows=1024, batch_bytes=1 << 20, chunk_rows=4096)
    readers = ReaderCache(sample_dir)
    table = _table(stream_task(task, readers, StreamStats()))
    readers.close()
    assert table["nMuon"].to_pylist() == want.tolist()


def test_do_get_does_not_plan(sample_server):
    c = sample_server.flight()
    info = c.get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"], "where": "nMuon > 0"}))
    before = sample_server.server.plans_made
    for ep in info.endpoints:
        c.do_get(ep.ticket).read_all()
    assert sample_server.server.plans_made == before


def test_expired_ticket_refused(serve, sample_dir, tmp_path):
    r = serve(sample_dir, catalog=tmp_path / "c.duckdb", ticket_ttl=0.5)
    c = r.flight()
    info = c.get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"]}))
    assert c.do_get(info.endpoints[0].ticket).read_all().num_rows > 0
    time.sleep(0.7)
    with pytest.raises(pa.ArrowInvalid, match="ticket: expired .* ask for a new FlightInfo"):
        c.do_get(info.endpoints[0].ticket).read_all()
    assert c.do_get(c.get_flight_info(cmd({"dataset": DS})).endpoints[0].ticket).read_all().num_rows > 0


def test_ticket_from_another_key_refused_and_shared_key_accepted(serve, sample_dir, tmp_path):
    a = serve(sample_dir, catalog=tmp_path / "a.duckdb")
    b = serve(sample_dir, catalog=tmp_path / "b.duckdb")
    ticket = a.flight().get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"]})).endpoints[0].ticket
    with pytest.raises(pa.ArrowInvalid, match="signature does not match"):
        b.flight().do_get(ticket).read_all()
    assert b.flight().list_actions()  # still serving
    key = tmp_path / "ticket.key"
    key.write_text("a shared secret of enough length\n")
    c = serve(sample_dir, catalog=tmp_path / "c.duckdb", ticket_key_file=key)
    d = serve(sample_dir, catalog=tmp_path / "d.duckdb", ticket_key_file=key)
    info = c.flight().get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"]}))
    assert d.flight().do_get(info.endpoints[0].ticket).read_all().equals(
        c.flight().do_get(info.endpoints[0].ticket).read_all())


def test_ticket_key_from_environment(monkeypatch, tmp_path):
    from arrowroot.flight_server.core.settings import load

    monkeypatch.setenv("ARROWROOT_TICKET_KEY", "x" * 20)
    a, b = load(tmp_path).ticket_key(), load(tmp_path).ticket_key()
    assert a == b and len(a) == 32
    monkeypatch.setenv("ARROWROOT_TICKET_KEY", "short")
    with pytest.raises(ValueError, match="at least 16"):
        load(tmp_path).ticket_key()


def test_ticket_paths_are_relative_and_cannot_leave_the_root(sample_server, sample_dir):
    c = sample_server.flight()
    info = c.get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"]}))
    raw = info.endpoints[0].ticket.ticket
    assert str(sample_dir).encode() not in raw
    task = sample_server.server.tickets.open(raw)
    assert task.parts[0].path == "hep/events.root"
    # a ticket signed with the right key but naming ../ is still refused by the executor's reader cache
    from dataclasses import replace

    evil = replace(task, parts=(replace(task.parts[0], path="../../etc/passwd"),))
    forged = sample_server.server.tickets.sign([evil])[0]
    with pytest.raises(pa.ArrowInvalid, match="outside the served directory"):
        c.do_get(fl.Ticket(forged)).read_all()


def test_ticket_size_is_small(sample_server):
    info = sample_server.flight().get_flight_info(cmd({"dataset": DS, "columns": ["nMuon"]}))
    assert all(len(ep.ticket.ticket) < 2048 for ep in info.endpoints)
