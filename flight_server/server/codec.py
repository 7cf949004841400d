"""Bytes ⇄ protobuf ⇄ frozen dataclasses. The only server module that touches ``protos``.

A command descriptor carries a ``ReadRequest``, either as binary protobuf or as its
canonical protobuf-JSON form (``{"dataset": ..., "entryStart": "100"}``; the proto field
names such as ``entry_start`` are accepted too). Both go through protobuf's own parser,
then one validation path.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from arrowroot.protos import arrowroot_pb2 as pb

TICKET_VERSION = 1
MAX_COMMAND_BYTES = 1 << 20
MAX_BATCH_ROWS = 1 << 24


class InvalidRequest(ValueError):
    """A request the client can fix: the message names the field."""


@dataclass(frozen=True)
class ReadSpec:
    """A validated ReadRequest."""

    dataset: str
    columns: tuple[str, ...] = ()
    entry_start: int | None = None
    entry_stop: int | None = None
    slices: tuple[slice, ...] = ()
    batch_rows: int | None = None
    where: str = ""
    with_entry_numbers: bool = False
    files: str = ""
    channels: tuple[str, ...] = ()
    allow_missing: bool = False


@dataclass(frozen=True)
class TicketData:
    dataset_id: int
    spec: ReadSpec
    entry_start: int
    entry_stop: int
    principal: str = ""


def _parse_request(data: bytes) -> pb.ReadRequest:
    if len(data) > MAX_COMMAND_BYTES:
        raise InvalidRequest(f"command: {len(data)} bytes is over the {MAX_COMMAND_BYTES}-byte limit")
    msg = pb.ReadRequest()
    if data.lstrip()[:1] == b"{":
        try:
            json_format.Parse(data.decode("utf-8"), msg)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"command: not a valid JSON ReadRequest: {exc}") from None
    else:
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise InvalidRequest(
                f"command: neither a binary nor a JSON ReadRequest ({exc}); send e.g. "
                '{"dataset": "file.root:tree", "columns": ["x"]}'
            ) from None
    return msg


def spec_from_message(msg: pb.ReadRequest) -> ReadSpec:
    """Validate a ReadRequest message; InvalidRequest names the offending field."""
    if not msg.dataset:
        raise InvalidRequest("dataset: required (e.g. 'cms/HZZ.root:events')")
    for c in msg.columns:
        if not c:
            raise InvalidRequest("columns: empty column name")
    slices = []
    for i, s in enumerate(msg.slices):
        step = s.step if s.HasField("step") else None
        if step is not None and step <= 0:
            raise InvalidRequest(f"slices[{i}].step: must be positive (got {step})")
        slices.append(slice(s.start if s.HasField("start") else None,
                            s.stop if s.HasField("stop") else None, step))
    batch_rows = msg.batch_rows if msg.HasField("batch_rows") else None
    if batch_rows is not None and not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise InvalidRequest(f"batch_rows: must be between 1 and {MAX_BATCH_ROWS} (got {batch_rows})")
    return ReadSpec(
        dataset=msg.dataset,
        columns=tuple(msg.columns),
        entry_start=msg.entry_start if msg.HasField("entry_start") else None,
        entry_stop=msg.entry_stop if msg.HasField("entry_stop") else None,
        slices=tuple(slices),
        batch_rows=batch_rows,
        where=msg.where,
        with_entry_numbers=msg.with_entry_numbers,
        files=msg.files,
        channels=tuple(msg.channels),
        allow_missing=msg.allow_missing,
    )


def decode_command(data: bytes) -> ReadSpec:
    return spec_from_message(_parse_request(data))


def decode_path(path: list[bytes | str]) -> ReadSpec:
    if len(path) != 1:
        raise InvalidRequest(f"descriptor path: one element, the dataset name, expected (got {len(path)})")
    name = path[0].decode("utf-8") if isinstance(path[0], bytes) else path[0]
    if not name:
        raise InvalidRequest("descriptor path: empty dataset name")
    return ReadSpec(dataset=name)


def spec_to_message(spec: ReadSpec) -> pb.ReadRequest:
    msg = pb.ReadRequest(
        dataset=spec.dataset, columns=list(spec.columns), where=spec.where,
        with_entry_numbers=spec.with_entry_numbers, files=spec.files, channels=list(spec.channels),
        allow_missing=spec.allow_missing,
    )
    if spec.entry_start is not None:
        msg.entry_start = spec.entry_start
    if spec.entry_stop is not None:
        msg.entry_stop = spec.entry_stop
    if spec.batch_rows is not None:
        msg.batch_rows = spec.batch_rows
    for s in spec.slices:
        a = msg.slices.add()
        if s.start is not None:
            a.start = s.start
        if s.stop is not None:
            a.stop = s.stop
        if s.step is not None:
            a.step = s.step
    return msg


def spec_to_json(spec: ReadSpec) -> str:
    return json_format.MessageToJson(spec_to_message(spec), indent=None)


# ---------------------------------------------------------------- tickets


_SIGNATURE_TAG = bytes([(7 << 3) | 2, 32])  # Ticket.signature: field 7, length-delimited, 32 bytes
_SIGNED_TAIL = len(_SIGNATURE_TAG) + 32


def _varint_field(number: int, value: int) -> bytes:
    """One int64 protobuf field (wire type 0), as protobuf itself would encode it."""
    out = bytearray([number << 3])
    value &= (1 << 64) - 1  # negative int64 → two's complement, 10 bytes
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_tickets(dataset_id: int, spec: ReadSpec, ranges: list[tuple[int, int]], principal: str,
                   key: bytes) -> list[bytes]:
    """Signed tickets for the entry ranges of one request.

    The fields shared by all endpoints are encoded once; each ticket appends its entry
    range and then an HMAC of everything before it as the last field (protobuf reads
    fields in any order). A FlightInfo with hundreds of endpoints so costs a few
    microseconds per endpoint.
    """
    shared = pb.Ticket(version=TICKET_VERSION, dataset_id=dataset_id, request=spec_to_message(spec),
                       principal=principal).SerializeToString(deterministic=True)
    out = []
    for start, stop in ranges:
        body = shared + _varint_field(4, start) + _varint_field(5, stop)
        out.append(body + _SIGNATURE_TAG + hmac.digest(key, body, "sha256"))
    return out


def encode_ticket(t: TicketData, key: bytes) -> bytes:
    """Serialise one ticket, signed with the server's key so clients cannot alter it."""
    return encode_tickets(t.dataset_id, t.spec, [(t.entry_start, t.entry_stop)], t.principal, key)[0]


def decode_ticket(data: bytes, key: bytes) -> TicketData:
    """Check the signature over the ticket's bytes as sent, then parse them."""
    if len(data) <= _SIGNED_TAIL or data[-_SIGNED_TAIL:-32] != _SIGNATURE_TAG:
        raise InvalidRequest("ticket: malformed or unsigned; use a ticket from get_flight_info unchanged")
    if not hmac.compare_digest(data[-32:], hmac.digest(key, data[:-_SIGNED_TAIL], "sha256")):
        raise InvalidRequest("ticket: signature does not match; tickets are only valid on the server that issued them")
    msg = pb.Ticket()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise InvalidRequest("ticket: malformed; use a ticket from get_flight_info unchanged") from None
    if msg.version != TICKET_VERSION:
        raise InvalidRequest(f"ticket: version {msg.version} is not supported (this server writes {TICKET_VERSION})")
    if not 0 <= msg.entry_start <= msg.entry_stop:
        raise InvalidRequest("ticket: bad entry range")
    return TicketData(msg.dataset_id, spec_from_message(msg.request), msg.entry_start, msg.entry_stop,
                      msg.principal)
