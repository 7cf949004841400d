"""The datasets door: plain Flight over the catalog — ListFlights, GetFlightInfo, GetSchema,
DoGet and the catalog actions (health, rescan, files, stats, nodes, node.register).

GetFlightInfo plans a read once into signed tasks, one per endpoint; DoGet verifies a ticket and
streams its task through the one read path (``service/reads.py``) with the IPC compression the
request asked for — no planning, no catalog query. A data node (``node.py``) serves its DoGets
with this same door.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow.flight as fl

from arrowroot.flight_server.service.requests import decode_command, decode_path
from arrowroot.flight_server.service.service import ACTIONS, Service, encode_result, parse_action_body
from arrowroot.flight_server.server import peers
from arrowroot.flight_server.server.auth import caller_of, record_of
from arrowroot.flight_server.server.transport import guarded, ipc_options, mapped

class DatasetsDoor:
    """Datasets over plain Flight: ListFlights, GetFlightInfo, GetSchema, DoGet, catalog actions."""

    def __init__(self, service: Service):
        self.service = service
        self.ipc = ipc_options(service.ctx.settings.compression)

    def _spec(self, descriptor: fl.FlightDescriptor) -> Any:
        if descriptor.descriptor_type == fl.DescriptorType.PATH:
            return decode_path(descriptor.path)
        return decode_command(descriptor.command)

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        record = record_of(context)
        found = guarded(context, lambda: self.service.search(caller_of(context), criteria))
        record.detail = f"datasets={len(found)}"
        for rec in found:
            nbytes = sum(c.uncompressed_bytes or 0 for c in rec.columns if c.readable)
            yield fl.FlightInfo(self.service.schema(rec), fl.FlightDescriptor.for_path(rec.name), [], rec.entries,
                                nbytes)

    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        record = record_of(context)

        def run() -> fl.FlightInfo:
            spec = self._spec(descriptor)
            record.dataset = spec.dataset
            if spec.follow:  # one endpoint on this server: the follow stream (service/follow.py)
                plan, ticket = self.service.follows.plan(caller_of(context), spec, descriptor.command)
                record.dataset, record.detail = plan.dataset.name, "follow"
                notes = {**plan.notes, "follow": True}
                return fl.FlightInfo(plan.schema, descriptor, [fl.FlightEndpoint(ticket, [])], -1, -1,
                                     app_metadata=json.dumps(notes).encode())
            plan = self.service.plan(caller_of(context), spec)
            record.dataset = plan.dataset.name
            endpoints = [fl.FlightEndpoint(e.ticket, e.locations) for e in self.service.endpoints(plan)]
            record.rows = plan.total_records
            record.detail = f"endpoints={len(endpoints)}"
            meta = json.dumps(plan.notes).encode() if plan.notes else b""
            return fl.FlightInfo(plan.schema, descriptor, endpoints, plan.total_records, plan.total_bytes,
                                 app_metadata=meta)

        return guarded(context, run)

    def get_schema(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.SchemaResult:
        def run() -> fl.SchemaResult:
            plan = self.service.plan(caller_of(context), self._spec(descriptor))
            record_of(context).dataset = plan.dataset.name
            return fl.SchemaResult(plan.schema)

        return guarded(context, run)

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        record = record_of(context)
        if self.service.follows.claims(ticket.ticket):
            return self._follow(context, ticket.ticket)
        read = guarded(context, lambda: self.service.open(caller_of(context), ticket.ticket))
        record.dataset = read.task.dataset
        record.request_id = read.task.request_id or record.request_id
        record.detail = f"entries={read.task.entry_start}:{read.task.entry_stop}"
        peer = context.peer()  # an idle stream's connection is cut: that frees the gRPC thread blocked on it
        batches = self.service.stream(read, record, context.is_cancelled, lambda: peers.cut(peer))
        return fl.GeneratorStream(read.schema, mapped(batches, record, context),
                                  options=self.ipc[read.task.compression])

    def _follow(self, context: fl.ServerCallContext, ticket: bytes) -> fl.FlightDataStream:
        """A follow stream: batches and heartbeats (or endpoints), each with its resume token."""
        record = record_of(context)
        caller = caller_of(context)
        read = guarded(context, lambda: self.service.follows.open_ticket(caller, ticket))
        record.dataset, record.detail = read.spec.dataset, "follow"
        record.request_id = read.request_id or record.request_id
        messages = self.service.follows.run(caller, read, record, context.is_cancelled)
        items = ((m.batch, m.metadata()) for m in messages)
        return fl.GeneratorStream(read.schema, mapped(items, record, context),
                                  options=self.ipc[read.spec.compression])

    def actions(self) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items())

    def do_action(self, context: fl.ServerCallContext, kind: str, body: bytes) -> Iterator[fl.Result]:
        record = record_of(context)
        record.detail = f"action={kind[:40]}"
        result = guarded(context, lambda: self.service.action(caller_of(context), kind,
                                                              parse_action_body(kind, body), body))
        yield fl.Result(encode_result(result))



__all__ = ["DatasetsDoor"]
