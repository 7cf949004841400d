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
    __slots__ = ("dataset", "columns", "entry_start", "entry_stop", "slices", "batch_rows", "where", "with_entry_numbers", "files", "channels", "allow_missing", "time_start", "time_stop", "time_start_iso", "time_stop_iso", "with_time", "fill_gaps", "dq", "compression", "follow", "resume", "hit_where", "mode", "orientation")
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
    TIME_START_FIELD_NUMBER: _ClassVar[int]
    TIME_STOP_FIELD_NUMBER: _ClassVar[int]
    TIME_START_ISO_FIELD_NUMBER: _ClassVar[int]
    TIME_STOP_ISO_FIELD_NUMBER: _ClassVar[int]
    WITH_TIME_FIELD_NUMBER: _ClassVar[int]
    FILL_GAPS_FIELD_NUMBER: _ClassVar[int]
    DQ_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    HIT_WHERE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
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
    time_start: float
    time_stop: float
    time_start_iso: str
    time_stop_iso: str
    with_time: bool
    fill_gaps: bool
    dq: str
    compression: str
    follow: bool
    resume: str
    hit_where: str
    mode: str
    orientation: str
    def __init__(self, dataset: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., entry_start: _Optional[int] = ..., entry_stop: _Optional[int] = ..., slices: _Optional[_Iterable[_Union[AxisSlice, _Mapping]]] = ..., batch_rows: _Optional[int] = ..., where: _Optional[str] = ..., with_entry_numbers: _Optional[bool] = ..., files: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ..., allow_missing: _Optional[bool] = ..., time_start: _Optional[float] = ..., time_stop: _Optional[float] = ..., time_start_iso: _Optional[str] = ..., time_stop_iso: _Optional[str] = ..., with_time: _Optional[bool] = ..., fill_gaps: _Optional[bool] = ..., dq: _Optional[str] = ..., compression: _Optional[str] = ..., follow: _Optional[bool] = ..., resume: _Optional[str] = ..., hit_where: _Optional[str] = ..., mode: _Optional[str] = ..., orientation: _Optional[str] = ...) -> None: ...

class TierRead(_message.Message):
    __slots__ = ("tier", "path", "size", "mtime", "object_path", "entries", "channels", "absent", "absent_channels")
    TIER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_PATH_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    ABSENT_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    tier: str
    path: str
    size: int
    mtime: float
    object_path: str
    entries: _containers.RepeatedScalarFieldContainer[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    absent: _containers.RepeatedScalarFieldContainer[str]
    absent_channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[str] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., mtime: _Optional[float] = ..., object_path: _Optional[str] = ..., entries: _Optional[_Iterable[int]] = ..., channels: _Optional[_Iterable[str]] = ..., absent: _Optional[_Iterable[str]] = ..., absent_channels: _Optional[_Iterable[str]] = ...) -> None: ...

class PartRead(_message.Message):
    __slots__ = ("path", "size", "mtime", "object_path", "entry_offset", "start", "stop", "boundaries", "channel", "absent", "time0", "time0_ns", "fill", "tiers")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_PATH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_OFFSET_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    BOUNDARIES_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    TIME0_FIELD_NUMBER: _ClassVar[int]
    TIME0_NS_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    mtime: float
    object_path: str
    entry_offset: int
    start: int
    stop: int
    boundaries: _containers.RepeatedScalarFieldContainer[int]
    channel: str
    absent: _containers.RepeatedScalarFieldContainer[str]
    time0: float
    time0_ns: int
    fill: int
    tiers: _containers.RepeatedCompositeFieldContainer[TierRead]
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., mtime: _Optional[float] = ..., object_path: _Optional[str] = ..., entry_offset: _Optional[int] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ..., boundaries: _Optional[_Iterable[int]] = ..., channel: _Optional[str] = ..., absent: _Optional[_Iterable[str]] = ..., time0: _Optional[float] = ..., time0_ns: _Optional[int] = ..., fill: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[TierRead, _Mapping]]] = ...) -> None: ...

class LevelColumn(_message.Message):
    __slots__ = ("column", "tier", "source", "role")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    column: str
    tier: str
    source: str
    role: str
    def __init__(self, column: _Optional[str] = ..., tier: _Optional[str] = ..., source: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("version", "dataset", "format", "kind", "read_schema", "columns", "where", "slices", "with_entry_numbers", "channel_column", "cast", "batch_rows", "batch_bytes", "chunk_rows", "principal", "expires", "parts", "signature", "time_scale", "time_rate", "compression", "request_id", "level", "level_columns", "hit_where", "mode", "orientation", "tcm_layout", "drop_empty", "growing")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    READ_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    WITH_ENTRY_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ROWS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    TIME_RATE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LEVEL_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    HIT_WHERE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    TCM_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    DROP_EMPTY_FIELD_NUMBER: _ClassVar[int]
    GROWING_FIELD_NUMBER: _ClassVar[int]
    version: int
    dataset: str
    format: str
    kind: str
    read_schema: bytes
    columns: _containers.RepeatedScalarFieldContainer[str]
    where: str
    slices: _containers.RepeatedCompositeFieldContainer[AxisSlice]
    with_entry_numbers: bool
    channel_column: str
    cast: bool
    batch_rows: int
    batch_bytes: int
    chunk_rows: int
    principal: str
    expires: float
    parts: _containers.RepeatedCompositeFieldContainer[PartRead]
    signature: bytes
    time_scale: str
    time_rate: float
    compression: str
    request_id: str
    level: str
    level_columns: _containers.RepeatedCompositeFieldContainer[LevelColumn]
    hit_where: str
    mode: str
    orientation: str
    tcm_layout: str
    drop_empty: bool
    growing: bool
    def __init__(self, version: _Optional[int] = ..., dataset: _Optional[str] = ..., format: _Optional[str] = ..., kind: _Optional[str] = ..., read_schema: _Optional[bytes] = ..., columns: _Optional[_Iterable[str]] = ..., where: _Optional[str] = ..., slices: _Optional[_Iterable[_Union[AxisSlice, _Mapping]]] = ..., with_entry_numbers: _Optional[bool] = ..., channel_column: _Optional[str] = ..., cast: _Optional[bool] = ..., batch_rows: _Optional[int] = ..., batch_bytes: _Optional[int] = ..., chunk_rows: _Optional[int] = ..., principal: _Optional[str] = ..., expires: _Optional[float] = ..., parts: _Optional[_Iterable[_Union[PartRead, _Mapping]]] = ..., signature: _Optional[bytes] = ..., time_scale: _Optional[str] = ..., time_rate: _Optional[float] = ..., compression: _Optional[str] = ..., request_id: _Optional[str] = ..., level: _Optional[str] = ..., level_columns: _Optional[_Iterable[_Union[LevelColumn, _Mapping]]] = ..., hit_where: _Optional[str] = ..., mode: _Optional[str] = ..., orientation: _Optional[str] = ..., tcm_layout: _Optional[str] = ..., drop_empty: _Optional[bool] = ..., growing: _Optional[bool] = ...) -> None: ...

class FollowTicket(_message.Message):
    __slots__ = ("version", "request", "principal", "expires", "request_id", "signature")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    version: int
    request: bytes
    principal: str
    expires: float
    request_id: str
    signature: bytes
    def __init__(self, version: _Optional[int] = ..., request: _Optional[bytes] = ..., principal: _Optional[str] = ..., expires: _Optional[float] = ..., request_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("dataset", "mode", "parent", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    mode: str
    parent: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, dataset: _Optional[str] = ..., mode: _Optional[str] = ..., parent: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
