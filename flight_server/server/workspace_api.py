"""The workspace API door on the Flight port: DoPut uploads and the workspace actions
(``skim``, ``lineage``, ``delete``, ``rename``, ``workspace``).

It decodes requests and streams batches in; who owns what and everything else is the workspace
service's (``service/workspace.py``). Statuses come from the one error table: a taken name is
INVALID_ARGUMENT "already exists: …", writing outside your home PERMISSION_DENIED, over quota
UNAVAILABLE "resource exhausted: …".

An upload is kept only when the client sent the commit message after its last batch
(``arrowroot.protos.PUT_COMMIT`` as app_metadata), ended its stream normally and the call was not
cancelled: a client killed, interrupted (Ctrl-C closes its writer cleanly) or stalled past the idle
timeout, or a connection cut mid-stream, leaves no dataset and no temporary file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.service.requests import parse_command
from arrowroot.flight_server.service.service import encode_result, parse_action_body
from arrowroot.flight_server.service.workspace import ACTIONS, WorkspaceService
from arrowroot.flight_server.server.auth import caller_of, record_of
from arrowroot.flight_server.server.errors import fail
from arrowroot.flight_server.server import peers
from arrowroot.flight_server.server.transport import PutStream
from arrowroot.protos import arrowroot_pb2 as pb


def _parse_put(data: bytes) -> pb.PutRequest:
    return parse_command(data, pb.PutRequest(), '{"dataset": "home/alice/higgs", "mode": "create"}')


class WorkspaceApi:
    """DoPut and the workspace actions, over the workspace service."""

    def __init__(self, workspace: WorkspaceService):
        self.workspace = workspace

    def claims_action(self, kind: str) -> bool:
        return kind in ACTIONS

    def actions(self) -> list[tuple[str, str]]:
        return sorted(ACTIONS.items())

    def do_put(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor,
               reader: fl.MetadataRecordBatchReader, writer: fl.FlightMetadataWriter) -> None:
        record = record_of(context)
        try:
            if descriptor.descriptor_type == fl.DescriptorType.PATH:
                if len(descriptor.path) != 1:
                    raise InvalidRequest("descriptor path: one element, the dataset name, expected")
                p = descriptor.path[0]
                msg = pb.PutRequest(dataset=p.decode() if isinstance(p, bytes) else p)
            else:
                msg = _parse_put(descriptor.command)
            record.dataset = msg.dataset
            stream = PutStream(reader)
            peer = context.peer()
            result = self.workspace.put(caller_of(context, "workspace"), msg.dataset, msg.mode or "create",
                                        reader.schema, stream, msg.parent or None, dict(msg.metadata),
                                        complete=lambda: stream.complete(context),
                                        on_expired=lambda: peers.cut(peer))
            record.rows = int(result.get("written", 0))
            record.bytes = int(result.get("bytes", 0))
            writer.write(pa.py_buffer(json.dumps(result).encode()))
        except Exception as exc:
            raise fail(exc, record) from None

    def do_action(self, context: fl.ServerCallContext, kind: str, body: bytes) -> Iterator[fl.Result]:
        record = record_of(context)
        record.detail = f"action={kind}"
        try:
            args = parse_action_body(kind, body)
            if isinstance(args.get("dataset"), str):
                record.dataset = args["dataset"]
            result: Any = self.workspace.action(caller_of(context, "workspace"), kind, args)
        except Exception as exc:
            raise fail(exc, record) from None
        yield fl.Result(encode_result(result))


__all__ = ["WorkspaceApi"]
