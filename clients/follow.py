"""Following a dataset as it grows: ``Client.follow(...)`` returns a :class:`Follower`.

A follow stream (README "Live data") is one DoGet on the coordinator that never ends: record
batches with their resume token in app_metadata, heartbeats (empty batches) while idle, and — on a
coordinator with data nodes — *endpoints*: tickets of new parts to fetch from the nodes they name.
The Follower turns that into an iterator of record batches in order and keeps the position
(``resume_token``) of the last row it handed out, so a follower that stops, crashes or loses the
server continues with no gap and no duplicate: ``Client.follow(..., resume=token)`` — or on its own,
for up to ``reconnect`` seconds, when the server goes away.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from .errors import Unavailable, translate


class Follower:
    """Iterator of the record batches of a followed dataset (see the module docstring).

    ``resume_token`` is the position after the last batch yielded; ``schema`` the stream's schema;
    ``heartbeats`` counts the idle heartbeats seen. Close it (or leave a ``with`` block) to stop."""

    def __init__(self, client: Any, request: Callable[[str | None], fl.FlightDescriptor], resume: str | None,
                 reconnect: float, yield_heartbeats: bool):
        self._client = client
        self._request = request
        self.resume_token: str | None = resume
        self.reconnect = reconnect
        self.yield_heartbeats = yield_heartbeats
        self.heartbeats = 0
        self.schema: pa.Schema | None = None
        self._reader: Any = None
        self._closed = False
        self._it = self._batches()

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> pa.RecordBatch:
        return next(self._it)

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop following (cancels the stream)."""
        self._closed = True
        reader = self._reader
        if reader is not None:
            try:
                reader.cancel()
            except Exception:
                pass
        self._it.close()

    def _open(self) -> Any:
        c = self._client
        with translate():
            info = c.flight.get_flight_info(self._request(self.resume_token), options=c._options())
            self.schema = info.schema
            reader = c.flight.do_get(info.endpoints[0].ticket, options=c._options())
        self._reader = reader
        return reader

    def _batches(self) -> Iterator[pa.RecordBatch]:
        deadline = None
        while not self._closed:
            try:
                reader = self._open()
                deadline = None
                yield from self._read(reader)
                return  # the server ended the stream (it does not, unless stopped)
            except Unavailable:
                if self._closed or self.reconnect <= 0:
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.reconnect
                if now >= deadline:
                    raise
                time.sleep(min(0.5, deadline - now))

    def _read(self, reader: Any) -> Iterator[pa.RecordBatch]:
        while True:
            with translate():
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return
            meta = json.loads(chunk.app_metadata.to_pybytes()) if chunk.app_metadata is not None else {}
            endpoint = meta.get("endpoint")
            if endpoint is not None:
                yield from self._fetch(endpoint)
                self.resume_token = meta.get("resume", self.resume_token)
                continue
            batch = chunk.data
            if "heartbeat" in meta:
                self.heartbeats += 1
                self.resume_token = meta.get("resume", self.resume_token)
                if self.yield_heartbeats and batch is not None:
                    yield batch
                continue
            self.resume_token = meta.get("resume", self.resume_token)
            if batch is not None and batch.num_rows:
                yield batch

    def _fetch(self, endpoint: dict) -> Iterator[pa.RecordBatch]:
        """A new part handed out as an endpoint: fetched from the data node it names."""
        ticket = base64.b64decode(endpoint["ticket"])
        ep = fl.FlightEndpoint(ticket, [str(u) for u in endpoint.get("locations") or []])
        before = endpoint.get("resume", self.resume_token)
        skip, rows = int(endpoint.get("skip") or 0), 0
        for batch in self._client.endpoint_batches(ep):
            if skip:
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            if not batch.num_rows:
                continue
            rows += batch.num_rows
            self.resume_token = f"{before}~{rows}"
            yield batch


__all__ = ["Follower"]
