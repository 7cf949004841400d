"""What a client asks for, once decoded and validated: a plain frozen value (no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadSpec:
    """A validated ReadRequest (see protos/arrowroot.proto for each field's meaning)."""

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
