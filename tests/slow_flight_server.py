"""A plain Flight server for the location tests, run as its own process.

Every ticket ``b"N"`` is answered with the integers 0..N-1 in batches of 100 rows,
one batch every ``--pause`` seconds, so a test can kill the process mid-stream.
It prints its port, then serves until killed.
"""

from __future__ import annotations

import argparse
import sys
import time

import pyarrow as pa
import pyarrow.flight as fl

SCHEMA = pa.schema([("x", pa.int64())])


class SlowServer(fl.FlightServerBase):
    def __init__(self, pause: float):
        super().__init__("grpc://127.0.0.1:0")
        self.pause = pause

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        n = int(ticket.ticket.decode())

        def batches():
            for start in range(0, n, 100):
                if start:
                    time.sleep(self.pause)
                yield pa.record_batch([pa.array(range(start, min(n, start + 100)), pa.int64())], schema=SCHEMA)

        return fl.GeneratorStream(SCHEMA, batches())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pause", type=float, default=0.0)
    server = SlowServer(ap.parse_args().pause)
    print(server.port, flush=True)
    sys.stdout.close()
    server.serve()
