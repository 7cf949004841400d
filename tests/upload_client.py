"""An uploading client run as its own process, for tests that kill or stall it mid-upload.

    python upload_client.py LOCATION NAME KIND [--stall SECONDS] [--wait]

KIND: ``raw`` (pyarrow.flight, the writer used as a context manager, so an interrupt closes it
cleanly), ``client`` (arrowroot's Client.put from a RecordBatchReader) or ``adbc`` (Flight SQL bulk
ingest). It sends 1,000-row batches of int64 ``x`` every 0.1 s, printing ``sent N`` after each;
with ``--stall S`` it sleeps S seconds after the first batch (an upload that stalls), then goes on;
with ``--wait`` it prints ``ready`` and starts only when a line arrives on its stdin.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl

SCHEMA = pa.schema([("x", pa.int64())])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("location")
    ap.add_argument("name")
    ap.add_argument("kind", choices=["raw", "client", "adbc"])
    ap.add_argument("--stall", type=float, default=0.0)
    ap.add_argument("--wait", action="store_true")
    args = ap.parse_args()

    def batch(i: int) -> pa.RecordBatch:
        return pa.record_batch([pa.array(np.arange(i * 1000, (i + 1) * 1000, dtype=np.int64))], schema=SCHEMA)

    batch(0)  # the first pa.array imports pandas lazily (a second or more): not while a test times us
    if args.wait:
        print("ready", flush=True)
        input()

    def batches():
        for i in range(1000):
            yield batch(i)
            print(f"sent {i + 1}", flush=True)
            time.sleep(args.stall if args.stall and i == 0 else 0.1)

    if args.kind == "raw":
        c = fl.connect(args.location)
        writer, _ = c.do_put(fl.FlightDescriptor.for_command(f'{{"dataset": "{args.name}"}}'.encode()), SCHEMA)
        with writer:
            for b in batches():
                writer.write_batch(b)
    elif args.kind == "client":
        from arrowroot.clients import Client

        Client(args.location).put(args.name, pa.RecordBatchReader.from_batches(SCHEMA, batches()))
    else:
        import adbc_driver_flightsql.dbapi as flightsql

        with flightsql.connect(args.location) as conn, conn.cursor() as cur:
            cur.adbc_ingest(args.name, pa.RecordBatchReader.from_batches(SCHEMA, batches()), mode="create")


if __name__ == "__main__":
    main()
