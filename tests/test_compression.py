"""Per-request IPC body compression (ReadRequest.compression): same data, fewer bytes on the wire.

The bytes are counted by a plain TCP relay between the client and a real server, so a server that
ignored the field (or compressed every stream) fails the byte comparisons, not just the equality.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients import Client
from arrowroot.clients.errors import InvalidRequest
from arrowroot.flight_server.core.task import PartRead, ReadTask
from arrowroot.flight_server.service.tickets import TicketSigner

from conftest import start_server

DS = "counts.h5:adc"
N = 400_000


class Relay:
    """A TCP relay to ``target`` that counts the bytes sent from the server to the client."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.downstream = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [conn, upstream]
            threading.Thread(target=self._pump, args=(conn, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self.lock:
                        self.downstream += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def measure(self, fn) -> tuple[object, int]:
        with self.lock:
            before = self.downstream
        out = fn()
        with self.lock:
            return out, self.downstream - before

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compress")
    rng = np.random.default_rng(7)
    with h5py.File(root / "counts.h5", "w") as f:
        f.create_dataset("adc", data=rng.poisson(3.0, N).astype(np.int64), chunks=(50_000,))  # 3.2 MB, compressible
    return root


@pytest.fixture(scope="module")
def relayed(data_dir: Path) -> Iterator[tuple[str, Relay, np.ndarray, bytes]]:
    """(relay location, relay, the dataset's values, the server's ticket key)."""
    server = start_server(data_dir)
    relay = Relay(server.server.port)
    with h5py.File(data_dir / "counts.h5") as f:
        want = f["adc"][:]
    yield f"grpc://127.0.0.1:{relay.port}", relay, want, server.server.tickets.key
    relay.close()
    server.stop()


def test_compressed_reads_return_the_same_data(relayed):
    location, _, want, _ = relayed
    with Client(location) as c:
        for codec in (None, "none", "lz4", "zstd", "ZSTD"):
            table = c.read(DS, compression=codec)
            assert table.num_rows == N and table.schema.field("adc").type == pa.int64()
            np.testing.assert_array_equal(table["adc"].to_numpy(), want)
        part = c.read(DS, entries=(1000, 1100), compression="lz4")
        np.testing.assert_array_equal(part["adc"].to_numpy(), want[1000:1100])


def test_compressed_streams_send_fewer_bytes(relayed):
    location, relay, _, _ = relayed
    wire = {}
    with Client(location) as c:
        c.read(DS, entries=(0, 10))  # connect outside the measurement
        for codec in ("none", "lz4", "zstd"):
            _, wire[codec] = relay.measure(lambda codec=codec: c.read(DS, compression=codec))
    assert wire["none"] > 8 * N * 0.95  # int64 uncompressed: at least the raw column
    assert wire["lz4"] * 2 < wire["none"], wire
    assert wire["zstd"] * 3 < wire["none"], wire


def test_client_default_and_per_call_override(relayed):
    location, relay, _, _ = relayed
    with Client(location, compression="zstd") as c:
        c.read(DS, entries=(0, 10))
        _, default = relay.measure(lambda: c.read(DS))
        _, plain = relay.measure(lambda: c.read(DS, compression="none"))
        info = c.flight_info(DS)
    assert default * 3 < plain, (default, plain)
    opened = TicketSigner(relayed[3], 3600).open(info.endpoints[0].ticket.ticket)
    assert opened.compression == "zstd"  # the client's default went into the signed task


def test_server_default_applies_unless_the_request_says_none(data_dir: Path):
    server = start_server(data_dir, compression="zstd")
    relay = Relay(server.server.port)
    try:
        with Client(f"grpc://127.0.0.1:{relay.port}") as c:
            c.read(DS, entries=(0, 10))
            _, default = relay.measure(lambda: c.read(DS))
            _, plain = relay.measure(lambda: c.read(DS, compression="none"))
        assert default * 3 < plain, (default, plain)
    finally:
        relay.close()
        server.stop()


def test_unknown_codec_is_invalid_argument_naming_the_field(relayed):
    location, _, _, _ = relayed
    with Client(location) as c:
        with pytest.raises(InvalidRequest, match="compression: 'gzip' is not one of"):
            c.read(DS, compression="gzip")
    raw = fl.connect(location)
    with pytest.raises(pa.ArrowInvalid, match="compression"):
        raw.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"dataset": DS, "compression": "brotli"})))
    raw.close()


def test_tickets_carry_the_codec():
    signer = TicketSigner(None, 3600)
    task = ReadTask(dataset="d", format="hdf5", kind="dataset", read_schema=pa.schema([("x", pa.int64())]),
                    columns=("x",), parts=(PartRead("f.h5", 1, 1.0, "/x", 0, 0, 10),), compression="lz4",
                    batch_rows=1024, batch_bytes=1 << 20, chunk_rows=4096)
    (ticket,) = signer.sign([task])
    assert signer.open(ticket).compression == "lz4"
    (plain,) = signer.sign([ReadTask(**{**task.__dict__, "compression": ""})])
    assert signer.open(plain).compression == ""
