"""Request bytes ⇄ protobuf ⇄ ReadSpec (tickets: ``tickets.py``).

A command descriptor carries a ``ReadRequest``, either as binary protobuf or as its
canonical protobuf-JSON form (``{"dataset": ..., "entryStart": "100"}``; the proto field
names such as ``entry_start`` are accepted too). Both go through protobuf's own parser,
then one validation path.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from arrowroot.flight_server.core.errors import InvalidRequest, quote
from arrowroot.flight_server.core.request import COMPRESSIONS, MODES, ORIENTATIONS, ReadSpec
from arrowroot.flight_server.core.timeranges import parse_iso
from arrowroot.protos import arrowroot_pb2 as pb

MAX_COMMAND_BYTES = 1 << 20
MAX_BATCH_ROWS = 1 << 24
M = TypeVar("M", bound=Message)


def parse_command(data: bytes, msg: M, example: str) -> M:
    """Fill ``msg`` from a command's bytes: binary protobuf, or its canonical protobuf-JSON form
    (protobuf's own parser for both, one bound on size). ``example`` shows a valid JSON command."""
    name = msg.DESCRIPTOR.name
    if len(data) > MAX_COMMAND_BYTES:
        raise InvalidRequest(f"command: {len(data)} bytes is over the {MAX_COMMAND_BYTES}-byte limit")
    if data.lstrip()[:1] == b"{":
        try:
            json_format.Parse(data.decode("utf-8"), msg)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"command: not a valid JSON {name}: {exc}") from None
    else:
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise InvalidRequest(f"command: neither a binary nor a JSON {name} ({exc}); send e.g. {example}") from None
    return msg


def _parse_request(data: bytes) -> pb.ReadRequest:
    return parse_command(data, pb.ReadRequest(), '{"dataset": "file.root:tree", "columns": ["x"]}')


def spec_from_message(msg: pb.ReadRequest) -> ReadSpec:
    """Validate a ReadRequest message; InvalidRequest names the offending field."""
    if not msg.dataset:
        raise InvalidRequest("dataset: required (e.g. 'cms/HZZ.root:events')")
    for c in msg.columns:
        if not c:
            raise InvalidRequest("columns: empty column name")
    slices = slices_from_message(msg.slices)
    batch_rows = msg.batch_rows if msg.HasField("batch_rows") else None
    if batch_rows is not None and not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise InvalidRequest(f"batch_rows: must be between 1 and {MAX_BATCH_ROWS} (got {batch_rows})")
    time_start = _time_bound(msg, "time_start")
    time_stop = _time_bound(msg, "time_stop")
    if (time_start is not None or time_stop is not None or msg.with_time or msg.fill_gaps or msg.dq) and (
            msg.HasField("entry_start") or msg.HasField("entry_stop")):
        raise InvalidRequest("time_start/time_stop: a read is by entries or by time, not both")
    if msg.resume and not msg.follow:
        raise InvalidRequest("resume: a resume token continues a follow; set follow too")
    compression = msg.compression.strip().lower()
    if compression not in COMPRESSIONS:
        raise InvalidRequest(f"compression: {quote(msg.compression)} is not one of 'none', 'lz4', 'zstd' "
                             "(or empty for the server's default)")
    mode = msg.mode.strip().lower()
    if mode and mode not in MODES:
        raise InvalidRequest(f"mode: {quote(msg.mode)} is not 'any' or 'only' (how a hit cut selects the hits of "
                             "an event)")
    orientation = msg.orientation.strip().lower()
    if orientation and orientation not in ORIENTATIONS:
        raise InvalidRequest(f"orientation: {quote(msg.orientation)} is not 'evt' (a row per event) or 'hit' "
                             "(a row per hit)")
    return ReadSpec(
        hit_where=msg.hit_where, mode=mode, orientation="" if orientation == "evt" else orientation,
        time_start=time_start, time_stop=time_stop, with_time=msg.with_time, fill_gaps=msg.fill_gaps, dq=msg.dq,
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
        compression=compression,
        follow=msg.follow,
        resume=msg.resume,
    )


def _time_bound(msg: pb.ReadRequest, name: str) -> float | str | None:
    """A time bound given as seconds or as an ISO-8601 string (not both); checked here, converted
    to the channel's scale by the planner."""
    iso = getattr(msg, name + "_iso")
    if msg.HasField(name):
        if iso:
            raise InvalidRequest(f"{name}: give seconds or {name}_iso, not both")
        value = getattr(msg, name)
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRequest(f"{name}: must be a finite number of seconds")
        return value
    if iso:
        try:
            parse_iso(iso)
        except ValueError as exc:
            raise InvalidRequest(f"{name}_iso: {exc}") from None
        return iso
    return None


def decode_command(data: bytes) -> ReadSpec:
    return spec_from_message(_parse_request(data))


def decode_path(path: list[bytes | str]) -> ReadSpec:
    if len(path) != 1:
        raise InvalidRequest(f"descriptor path: one element, the dataset name, expected (got {len(path)})")
    name = path[0].decode("utf-8") if isinstance(path[0], bytes) else path[0]
    if not name:
        raise InvalidRequest("descriptor path: empty dataset name")
    return ReadSpec(dataset=name)


def slices_from_message(items) -> tuple[slice, ...]:
    """AxisSlice messages → slices; InvalidRequest for a non-positive step."""
    out = []
    for i, s in enumerate(items):
        step = s.step if s.HasField("step") else None
        if step is not None and step <= 0:
            raise InvalidRequest(f"slices[{i}].step: must be positive (got {step})")
        out.append(slice(s.start if s.HasField("start") else None, s.stop if s.HasField("stop") else None, step))
    return tuple(out)


def slices_to_message(slices, repeated) -> None:
    """Append ``slices`` to a repeated AxisSlice field."""
    for s in slices:
        a = repeated.add()
        if s.start is not None:
            a.start = s.start
        if s.stop is not None:
            a.stop = s.stop
        if s.step is not None:
            a.step = s.step
