"""The plain-gRPC client (clients/grpc_raw/): stubs generated from Flight.proto with grpcio-tools into
the test's tmp dir, a dataset read with grpcio calls and pyarrow's IPC reader only, and the values
compared with pyarrow.flight's read of the same request."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.flight as fl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "clients" / "grpc_raw" / "flight_grpc.py"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory):
    spec = importlib.util.spec_from_file_location("flight_grpc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pb2, pb2_grpc = module.generate(tmp_path_factory.mktemp("stubs"))
    return module, pb2, pb2_grpc


def _pyarrow_read(location: str, request: dict) -> pa.Table:
    c = fl.connect(location)
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)))
    return pa.concat_tables([c.do_get(ep.ticket).read_all() for ep in info.endpoints])


@pytest.mark.parametrize("request_", [
    {"dataset": "hep/events.root:events"},
    {"dataset": "hep/events.root:events", "columns": ["nMuon", "Muon_pt"], "entry_start": 100, "entry_stop": 1900},
    {"dataset": "hep/events.root:events", "columns": ["MET_pt"], "where": "nMuon >= 2"},
    {"dataset": "lab/scan.h5:detector"},
])
def test_raw_grpc_read_equals_pyarrow_flight(raw, sample_server, request_) -> None:
    module, pb2, pb2_grpc = raw
    client = module.RawFlightClient(sample_server.location, pb2, pb2_grpc)
    try:
        info = client.flight_info(request_)
        schema = pa.ipc.read_schema(pa.py_buffer(info.schema))
        got = pa.concat_tables([client.do_get(ep).read_all() for ep in info.endpoint])
    finally:
        client.close()
    want = _pyarrow_read(sample_server.location, request_)
    assert got.schema.equals(want.schema)
    assert schema.equals(want.schema)
    assert got.num_rows == want.num_rows > 0
    assert info.total_records in (got.num_rows, -1)  # -1: a cut, the count is not known before reading
    assert got.equals(want)


def test_errors_arrive_as_grpc_statuses(raw, sample_server) -> None:
    module, pb2, pb2_grpc = raw
    client = module.RawFlightClient(sample_server.location, pb2, pb2_grpc)
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.read("hep/nothing.root:events")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no dataset" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.do_get(pb2.FlightEndpoint(ticket=pb2.Ticket(ticket=b"forged")))
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    finally:
        client.close()


def test_the_script_runs_as_a_command(sample_server, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), sample_server.location, "hep/events.root:events",
                          "-c", "nMuon", "--stubs", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "nMuon: " in out.stdout
    assert (tmp_path / "flight_pb2_grpc.py").exists()
