"""The door conformance suite: one matrix of requests through every door, the same rows and the
same statuses everywhere.

Doors: the coordinator's DoGet (pyarrow.flight, redeeming each endpoint's ticket on the
coordinator), a data node (a real ``arrowroot node`` process given the same key, redeeming the same
tickets), the Python client (which follows endpoint locations), the HTTP API (``/api/data``, Arrow
IPC) and, where the request can be said in SQL, Flight SQL. Requests: columns, entry ranges, cuts,
N-D slices, time ranges with filled gaps, IPC compression, unknown names, bad cuts, expired tickets.
Rows are also checked against the files' own libraries (uproot, h5py), so agreeing on a wrong
answer fails too.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import h5py
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.clients import errors as C
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.web import WebServer

from tests.conftest import start_server
from tests.test_nodes import Proc
from tests.test_timeseries_scan import GPS, write_gwosc

EV = "hep/events.root:events"
IMG = "lab/scan.h5:entry/data/image"
RATE, DUR = 1024, 4


@dataclasses.dataclass
class Doors:
    coordinator: object
    location: str
    node: Proc
    web: WebServer
    root: Path
    strain: str


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    root = write_sample_files(tmp_path_factory.mktemp("doors"))
    (root / "H1").mkdir()
    for t0 in (GPS, GPS + DUR, GPS + 3 * DUR):          # a gap of one file between the 2nd and 3rd
        write_gwosc(root / "H1" / f"H-H1_GWOSC_4KHZ_R1-{t0}-{DUR}.hdf5", t0, DUR, RATE)
    key = tmp_path_factory.mktemp("key") / "key"
    key.write_text("the conformance suite's shared secret\n")
    server = start_server(root, ticket_key_file=key)
    location = f"grpc://127.0.0.1:{server.server.port}"
    node = Proc(["node", str(root), "--port", "0", "--key-file", str(key)], root.parent / "node.log")
    web = WebServer(server.server.service, 0, flight_port=server.server.port).start()
    with Client(location) as c:
        strain = next(n for n in c.datasets()["name"].to_pylist() if n.startswith("H1/") and n.endswith("Strain"))
    yield Doors(server, location, node, web, root, strain)
    web.stop()
    node.stop()
    server.stop()


# ---------------------------------------------------------------- the matrix

def matrix(strain: str) -> dict[str, dict]:
    return {
        "columns": {"dataset": EV, "columns": ["nMuon", "Muon_pt"]},
        "entry range": {"dataset": EV, "columns": ["nMuon", "Muon_eta"], "entry_start": 100, "entry_stop": 2100},
        "cut": {"dataset": EV, "columns": ["nMuon", "Muon_pt"], "where": "nMuon >= 2"},
        "cut and range": {"dataset": EV, "columns": ["Muon_pt"], "where": "any(Muon_pt > 30)",
                          "entry_start": 500, "entry_stop": 4500},
        "slices": {"dataset": IMG, "entry_start": 10, "entry_stop": 14,
                   "slices": [{"start": 0, "stop": 4}, {"step": 8}]},
        "time range, gaps filled": {"dataset": strain, "time_start": GPS + 6, "time_stop": GPS + 14,
                                    "fill_gaps": True, "with_time": True},
        "compression": {"dataset": EV, "columns": ["nMuon", "MET_pt"], "compression": "zstd"},
    }


ERRORS = {  # request → (status, client exception, message fragment)
    "unknown dataset": ({"dataset": "hep/nope.root:events"}, "NOT_FOUND", C.NotFound, "no dataset named"),
    "unknown column": ({"dataset": EV, "columns": ["Muon_ptt"]}, "NOT_FOUND", C.NotFound, "Muon_pt"),
    "bad cut": ({"dataset": EV, "columns": ["nMuon"], "where": "nMuon = 2"}, "INVALID_ARGUMENT", C.InvalidRequest,
                "use '=='"),
}


def http_params(req: dict) -> dict:
    out = {}
    for k, v in req.items():
        if k == "dataset":
            continue
        if k == "columns":
            out[k] = ",".join(v)
        elif k == "slices":
            out[k] = ",".join(f"{s.get('start', '')}:{s.get('stop', '')}" + (f":{s['step']}" if "step" in s else "")
                              for s in v)
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif k == "compression":
            continue  # an HTTP body is compressed by HTTP, not by IPC
        else:
            out[k] = v
    return out


def via_coordinator(d: Doors, req: dict) -> pa.Table:
    c = fl.connect(d.location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
    parts = [c.do_get(ep.ticket).read_all() for ep in info.endpoints]
    return pa.concat_tables(parts) if parts else info.schema.empty_table()


def via_node(d: Doors, req: dict) -> pa.Table:
    c = fl.connect(d.location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
    n = fl.connect(d.node.location)
    parts = [n.do_get(ep.ticket).read_all() for ep in info.endpoints]
    return pa.concat_tables(parts) if parts else info.schema.empty_table()


def via_client(d: Doors, req: dict) -> pa.Table:
    args = {k: v for k, v in req.items() if k not in ("dataset", "columns", "slices", "time_start", "time_stop")}
    if "time_start" in req:
        args["time"] = (req["time_start"], req["time_stop"])
    if "slices" in req:
        args["slices"] = [slice(s.get("start"), s.get("stop"), s.get("step")) for s in req["slices"]]
    with Client(d.location) as c:
        return c.read(req["dataset"], req.get("columns"), **args)


def via_http(d: Doors, req: dict) -> pa.Table:
    r = httpx.get(d.web.url + "api/data/" + req["dataset"], params={**http_params(req), "format": "arrow"}, timeout=60)
    if r.status_code != 200:
        raise HttpFailure(r.status_code, r.json())
    return pa.ipc.open_stream(r.content).read_all()


class HttpFailure(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(body.get("message"))
        self.status, self.body = status, body


FLIGHT_DOORS = {"coordinator": via_coordinator, "node": via_node, "client": via_client}


def same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.names == b.schema.names
    for name in a.schema.names:
        assert a[name].type == b[name].type, name
    assert a.to_pylist() == b.to_pylist()


@pytest.mark.parametrize("case", list(matrix("S")))
def test_same_rows_on_every_door(doors, case):
    req = matrix(doors.strain)[case]
    reference = via_coordinator(doors, req)
    assert reference.num_rows > 0
    for name, door in {**FLIGHT_DOORS, "http": via_http}.items():
        got = door(doors, req)
        try:
            same(reference, got)
        except AssertionError as exc:
            raise AssertionError(f"{case}: the {name} door differs: {exc}") from None
    check_against_the_files(doors, case, req, reference)


def check_against_the_files(d: Doors, case: str, req: dict, t: pa.Table) -> None:
    """The reference rows are the files' own values (uproot, h5py)."""
    if req["dataset"] == EV:
        tree = uproot.open(d.root / "hep" / "events.root")["events"]
        a, b = req.get("entry_start", 0), req.get("entry_stop", tree.num_entries)
        arrays = tree.arrays(["nMuon", "Muon_pt", "Muon_eta", "MET_pt"], entry_start=a, entry_stop=b, library="ak")
        import awkward as ak
        mask = np.ones(len(arrays), bool)
        if req.get("where") == "nMuon >= 2":
            mask = ak.to_numpy(arrays["nMuon"] >= 2)
        elif req.get("where") == "any(Muon_pt > 30)":
            mask = ak.to_numpy(ak.any(arrays["Muon_pt"] > 30, axis=1))
        for col in req["columns"]:
            assert t[col].to_pylist() == ak.to_list(arrays[col][mask]), (case, col)
    elif req["dataset"] == IMG:
        with h5py.File(d.root / "lab" / "scan.h5") as f:
            want = f["entry/data/image"][10:14, 0:4, ::8]
        got = np.array(t["image"].to_pylist())
        np.testing.assert_array_equal(got, want)
    else:  # the strain, GPS+6..GPS+14: 2 s of the 2nd file, the 4 s gap as nulls, 2 s of the 3rd file
        values = t["Strain"].to_numpy(zero_copy_only=False)
        assert t.num_rows == 8 * RATE and t["Strain"].null_count == 4 * RATE
        with h5py.File(d.root / "H1" / f"H-H1_GWOSC_4KHZ_R1-{GPS + DUR}-{DUR}.hdf5") as f:
            np.testing.assert_array_equal(values[:2 * RATE], f["strain/Strain"][2 * RATE:])
        with h5py.File(d.root / "H1" / f"H-H1_GWOSC_4KHZ_R1-{GPS + 3 * DUR}-{DUR}.hdf5") as f:
            np.testing.assert_array_equal(values[6 * RATE:], f["strain/Strain"][:2 * RATE])


def test_compressed_stream_is_compressed_on_every_flight_door(doors):
    """The node honours the request's IPC compression exactly as the coordinator does: the bytes
    on the wire (a raw gRPC DoGet, nothing decoded) shrink by the same amount on both."""
    c = fl.connect(doors.location)
    sizes = {}
    for codec in ("zstd", "none"):
        req = dict(matrix(doors.strain)["compression"], compression=codec)
        info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
        for where in (doors.location, doors.node.location):
            sizes[codec, where] = sum(_wire_size(where, ep.ticket) for ep in info.endpoints)
    for where in (doors.location, doors.node.location):
        assert sizes["zstd", where] < 0.8 * sizes["none", where], sizes
    assert sizes["zstd", doors.location] == pytest.approx(sizes["zstd", doors.node.location], rel=0.02)


def _wire_size(location: str, ticket: fl.Ticket) -> int:
    """Bytes of the IPC bodies a DoGet sends, measured with a raw gRPC call (no decoding)."""
    import grpc

    target = location.removeprefix("grpc://")
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_stream("/arrow.flight.protocol.FlightService/DoGet",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
        body = bytes([0x0a]) + _varint(len(ticket.ticket)) + ticket.ticket
        return sum(len(m) for m in call(body, timeout=60))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("case", list(ERRORS))
def test_same_status_on_every_door(doors, case):
    req, status, client_error, fragment = ERRORS[case]
    # Flight (GetFlightInfo on the coordinator; a node plans nothing, so the error comes before a ticket)
    with pytest.raises(pa.ArrowException) as raw:
        via_coordinator(doors, req)
    assert status.replace("_", " ").lower() in str(raw.value).lower() or \
        {"NOT_FOUND": pa.ArrowKeyError, "INVALID_ARGUMENT": pa.ArrowInvalid}[status] is type(raw.value)
    with pytest.raises(client_error, match=fragment):
        via_client(doors, req)
    with pytest.raises(HttpFailure) as http:
        via_http(doors, req)
    assert http.value.status == {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400}[status]
    assert fragment in http.value.body["message"]


def test_expired_ticket_refused_by_coordinator_and_node(doors):
    server = doors.coordinator.server
    c = fl.connect(doors.location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(matrix(doors.strain)["columns"])))
    task = server.tickets.open(info.endpoints[0].ticket.ticket)
    stale = server.tickets.sign([dataclasses.replace(task, expires=time.time() - 5)])[0]
    for location in (doors.location, doors.node.location):
        with pytest.raises(pa.ArrowInvalid, match="expired"):
            fl.connect(location).do_get(fl.Ticket(stale)).read_all()
    with Client(doors.location) as client, pytest.raises(C.InvalidRequest, match="expired"):
        list(client.endpoint_batches(fl.FlightEndpoint(stale, [])))


SQL = {  # the matrix cases SQL can say, as SQL
    "columns": 'SELECT "nMuon", "Muon_pt" FROM "{EV}"',
    "entry range": 'SELECT "nMuon", "Muon_eta" FROM "{EV}" LIMIT 2000 OFFSET 100',
    "cut": 'SELECT "nMuon", "Muon_pt" FROM "{EV}" WHERE "nMuon" >= 2',
    "compression": 'SELECT "nMuon", "MET_pt" FROM "{EV}"',
}


@pytest.mark.parametrize("case", list(SQL))
def test_flight_sql_door_agrees(doors, case):
    reference = via_coordinator(doors, matrix(doors.strain)[case])
    with Client(doors.location) as c:
        got = c.sql(SQL[case].format(EV=EV))
    assert got.schema.names == reference.schema.names
    assert got.to_pylist() == reference.to_pylist()


def test_flight_sql_statuses(doors):
    with Client(doors.location) as c:
        with pytest.raises(C.NotFound):
            c.sql('SELECT * FROM "hep/nope.root:events"')
        with pytest.raises(C.InvalidRequest):
            c.sql(f'SELECT "nMuon" FROM "{EV}" WHERE "nMuon" = ')


def test_fill_gaps_through_a_node(doors):
    """A fill_gaps time read is served by the node: its fill parts read no file."""
    req = matrix(doors.strain)["time range, gaps filled"]
    c = fl.connect(doors.location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
    node = fl.connect(doors.node.location)
    got = pa.concat_tables([node.do_get(ep.ticket).read_all() for ep in info.endpoints])
    assert got.num_rows == 8 * RATE and got["Strain"].null_count == 4 * RATE


@pytest.fixture(scope="module")
def bounded(doors, tmp_path_factory):
    """A coordinator and a node process with the same small bounds: 4 streams, 5 s idle (long enough
    that opening the four stalled streams on a loaded machine does not already time the first out)."""
    key = tmp_path_factory.mktemp("key2") / "key"
    key.write_text("another shared secret, for the bounded pair\n")
    with h5py.File(doors.root / "huge.h5", "w") as f:  # 96 MB: more than a loopback connection buffers
        f.create_dataset("x", data=np.arange(12_000_000, dtype=np.float64))
    server = start_server(doors.root, index=False, ticket_key_file=key, max_streams=4,
                          stream_idle_timeout=5.0, catalog=doors.root / ".arrowroot" / "bounded.duckdb")
    server.server.indexer.run()
    env = {"ARROWROOT_MAX_STREAMS": "4", "ARROWROOT_STREAM_IDLE_TIMEOUT": "5"}
    node = Proc(["node", str(doors.root), "--port", "0", "--key-file", str(key)],
                doors.root.parent / "node-bounded.log", env=env)
    yield f"grpc://127.0.0.1:{server.server.port}", node
    node.stop()
    server.stop()


@pytest.mark.parametrize("where", ["coordinator", "node"])
@pytest.mark.slow
def test_stalled_streams_bounded_alike(bounded, where):
    """Stalled streams on a node meet the same cap and idle timeout as on the coordinator: the
    fifth is refused (resource exhausted), and once the stalled ones time out, reads work again.
    Their connections were cut (that frees the gRPC threads blocked writing to them): a stalled
    client sees UNAVAILABLE, never a stream that timed out while its thread still waited on it."""
    coordinator, node = bounded
    location = coordinator if where == "coordinator" else node.location
    c = fl.connect(coordinator)
    req = {"dataset": "huge.h5:x", "batch_rows": 65536}  # 96 MB: outlives gRPC's and the kernel's buffers
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
    # gRPC's flow-control windows grow with use (BDP probing) and sometimes swallowed whole 61 MiB
    # endpoints; a client that stalls does not probe: so these clients do not either
    client = fl.connect(location, generic_options=[("grpc.http2.bdp_probe", 0)])
    stalled = []
    for _ in range(4):
        r = client.do_get(info.endpoints[0].ticket)
        r.read_chunk()  # started: holds a slot; then nobody reads
        stalled.append(r)
    with pytest.raises(fl.FlightUnavailableError, match="resource exhausted"):
        client.do_get(info.endpoints[0].ticket).read_all()
    time.sleep(7)  # the idle timeout (5 s) ends the stalled streams and frees their slots
    small = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"dataset": EV, "columns": ["nMuon"]})))
    assert fl.connect(location).do_get(small.endpoints[0].ticket).read_all().num_rows > 0
    for r in stalled:  # each ended by the timeout: its connection cut
        with pytest.raises(fl.FlightUnavailableError):
            r.read_all()
