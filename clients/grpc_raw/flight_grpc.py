"""Read an arrowroot dataset with plain gRPC (grpcio) and pyarrow's IPC reader — no Flight library.

The template for a client in any language that has gRPC and an Arrow IPC reader: generate stubs
from ``protos/flight.proto`` (the Flight service, shared with the Node.js client), then

1. ``GetFlightInfo`` with a command descriptor holding the read request as JSON
   (``{"dataset": ..., "columns": [...]}``: the canonical JSON of arrowroot's ReadRequest);
2. for each endpoint, ``DoGet`` its ticket at one of its locations (none, or
   ``arrow-flight-reuse-connection://?``, means the server you asked);
3. each ``FlightData`` is one Arrow IPC message: write ``0xFFFFFFFF``, the metadata length
   (int32, little-endian, padded to 8 bytes), the ``data_header`` and padding, then ``data_body``,
   and hand the bytes to any Arrow IPC stream reader.

    python clients/grpc_raw/flight_grpc.py grpc://127.0.0.1:8815 hep/events.root:events -c nMuon -c MET_pt

Stubs are generated with grpcio-tools into a directory of your choice (``--stubs DIR``, default
a temporary one); they are build products, not sources.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import json
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pyarrow as pa

import arrowroot.protos

PROTO = Path(arrowroot.protos.__file__).with_name("flight.proto")  # the one Flight.proto, shared with the Node.js client
REUSE = "arrow-flight-reuse-connection://?"
CONTINUATION = b"\xff\xff\xff\xff"
MAX_MESSAGE = 64 << 20  # one record batch may be large


def generate(out_dir: str | Path) -> tuple[ModuleType, ModuleType]:
    """Run ``grpc_tools.protoc`` on flight.proto into ``out_dir``; return (flight_pb2, flight_pb2_grpc)."""
    import grpc_tools

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/timestamp.proto
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{well_known}",
                    f"--python_out={out}", f"--grpc_python_out={out}", PROTO.name], check=True)
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("flight_pb2"), importlib.import_module("flight_pb2_grpc")
    finally:
        sys.path.remove(str(out))


def ipc_message(data: Any) -> bytes:
    """One FlightData as an encapsulated Arrow IPC message."""
    header = data.data_header
    pad = -len(header) % 8
    return CONTINUATION + struct.pack("<i", len(header) + pad) + header + b"\0" * pad + data.data_body


class _Messages(io.RawIOBase):
    """The FlightData of a DoGet as one IPC byte stream, for pyarrow's stream reader."""

    def __init__(self, stream: Iterator[Any]) -> None:
        self._stream, self._buf = stream, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = ipc_message(next(self._stream))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


class RawFlightClient:
    """GetFlightInfo and DoGet over grpcio, with the generated stubs ``pb2`` and ``pb2_grpc``."""

    def __init__(self, location: str, pb2: ModuleType, pb2_grpc: ModuleType, username: str | None = None,
                 password: str | None = None) -> None:
        self.pb2, self.pb2_grpc = pb2, pb2_grpc
        self.location = location
        self.metadata: list[tuple[str, str]] = []
        if username is not None:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.metadata = [("authorization", f"Basic {basic}")]
        self._channels: dict[str, grpc.Channel] = {}

    def _stub(self, location: str) -> Any:
        if location in ("", REUSE):
            location = self.location
        channel = self._channels.get(location)
        if channel is None:
            scheme, _, target = location.partition("://")
            options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
            if scheme == "grpc+tls":
                channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
            elif scheme in ("grpc", "grpc+tcp"):
                channel = grpc.insecure_channel(target, options)
            else:
                raise ValueError(f"location {location!r}: grpc://, grpc+tcp:// or grpc+tls:// expected")
            self._channels[location] = channel
        return self.pb2_grpc.FlightServiceStub(channel)

    def flight_info(self, request: dict) -> Any:
        """GetFlightInfo of a ReadRequest given as a dict (its canonical JSON goes in ``cmd``)."""
        descriptor = self.pb2.FlightDescriptor(type=self.pb2.FlightDescriptor.CMD, cmd=json.dumps(request).encode())
        info, call = self._stub("").GetFlightInfo.with_call(descriptor, metadata=self.metadata)
        for key, value in call.initial_metadata():  # a Basic login answers with a session token
            if key == "authorization" and value.lower().startswith("bearer "):
                self.metadata = [("authorization", value)]
        return info

    def do_get(self, endpoint: Any) -> pa.RecordBatchReader:
        """The endpoint's batches, from the first of its locations that answers."""
        locations = [loc.uri for loc in endpoint.location] or [""]
        last: grpc.RpcError | None = None
        for location in locations:
            stream = self._stub(location).DoGet(endpoint.ticket, metadata=self.metadata)
            try:
                first = next(stream)  # the schema message; errors of the call show here
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    last = exc  # try the endpoint's next location
                    continue
                raise
            except StopIteration:
                raise ValueError("DoGet answered no schema message") from None

            def messages(first: Any = first, stream: Any = stream) -> Iterator[Any]:
                yield first
                yield from stream

            return pa.ipc.open_stream(pa.PythonFile(_Messages(messages()), mode="r"))
        assert last is not None
        raise last

    def read(self, dataset: str, columns: list[str] | None = None, **request: Any) -> pa.Table:
        """Every endpoint of one read, concatenated, with the FlightInfo's schema."""
        info = self.flight_info({"dataset": dataset, **({"columns": columns} if columns else {}), **request})
        schema = pa.ipc.read_schema(pa.py_buffer(info.schema))
        tables = [self.do_get(ep).read_all() for ep in info.endpoint]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("location")
    parser.add_argument("dataset")
    parser.add_argument("-c", "--columns", action="append")
    parser.add_argument("--stubs", help="directory for the generated stubs [a temporary one]")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pb2, pb2_grpc = generate(args.stubs or tmp)
        client = RawFlightClient(args.location, pb2, pb2_grpc)
        try:
            print(client.read(args.dataset, args.columns))
        finally:
            client.close()


if __name__ == "__main__":
    main()
