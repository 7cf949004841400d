from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AxisSlice(_message.Message):
    __slots__ = ("start", "stop", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    step: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("dataset", "columns", "entry_start", "entry_stop", "slices", "batch_rows", "where", "with_entry_numbers", "files", "channels", "allow_missing")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_START_FIELD_NUMBER: _ClassVar[int]
    ENTRY_STOP_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    WITH_ENTRY_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    entry_start: int
    entry_stop: int
    slices: _containers.RepeatedCompositeFieldContainer[AxisSlice]
    batch_rows: int
    where: str
    with_entry_numbers: bool
    files: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    allow_missing: bool
    def __init__(self, dataset: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., entry_start: _Optional[int] = ..., entry_stop: _Optional[int] = ..., slices: _Optional[_Iterable[_Union[AxisSlice, _Mapping]]] = ..., batch_rows: _Optional[int] = ..., where: _Optional[str] = ..., with_entry_numbers: _Optional[bool] = ..., files: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class Ticket(_message.Message):
    __slots__ = ("version", "dataset_id", "request", "entry_start", "entry_stop", "principal", "signature")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ENTRY_START_FIELD_NUMBER: _ClassVar[int]
    ENTRY_STOP_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    version: int
    dataset_id: int
    request: ReadRequest
    entry_start: int
    entry_stop: int
    principal: str
    signature: bytes
    def __init__(self, version: _Optional[int] = ..., dataset_id: _Optional[int] = ..., request: _Optional[_Union[ReadRequest, _Mapping]] = ..., entry_start: _Optional[int] = ..., entry_stop: _Optional[int] = ..., principal: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...
