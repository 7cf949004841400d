"""Which Arrow types an upload may carry: the ones that read back the way they went in.

Uploads are stored as Parquet and read back through the same read path as any dataset. A
dictionary column was accepted and then could not be read ("IPC stream did not have the expected
number of dictionaries"); a union or an interval column failed inside the Parquet writer as an
internal error. So the schema of an upload is checked before anything is written: dictionary
columns (at any depth) are stored as their value type — the same values, without the encoding —
and a type Parquet cannot hold is refused with the column and the reason.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from arrowroot.flight_server.core.errors import InvalidRequest

__all__ = ["storable_schema", "decoded"]


def decoded(t: pa.DataType) -> pa.DataType:
    """``t`` with every dictionary replaced by its value type (lists, structs and maps recursed)."""
    if pa.types.is_dictionary(t):
        return decoded(t.value_type)
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(decoded(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(decoded(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(decoded(t.value_type)), t.list_size)
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(decoded(t.key_type)), t.item_field.with_type(decoded(t.item_type)),
                       t.keys_sorted)
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(decoded(t.field(i).type)) for i in range(t.num_fields)])
    return t


def _parquet_refuses(field: pa.Field) -> str | None:
    """Why Parquet cannot store a column of this type (None: it can)."""
    try:
        pq.write_table(pa.schema([field]).empty_table(), pa.BufferOutputStream())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        return str(exc).splitlines()[0][:200]
    return None


def storable_schema(schema: pa.Schema) -> pa.Schema:
    """The schema an upload is stored with; InvalidRequest names a column that cannot be stored."""
    if not len(schema):
        raise InvalidRequest("columns: an upload needs at least one column (the schema sent has none)")
    fields = []
    for f in schema:
        t = decoded(f.type)
        f = f.with_type(t)
        why = None if _plain(t) else _parquet_refuses(f)
        if why is not None:
            raise InvalidRequest(f"columns: {f.name!r} is {t}, which cannot be stored ({why}); "
                                 "send it as a plain type (e.g. a struct of its parts)")
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def _plain(t: pa.DataType) -> bool:
    """Primitive and string types Parquet always stores (the probe is skipped for them)."""
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_timestamp(t) or pa.types.is_date(t))
