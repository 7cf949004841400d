"""Arrow table → the user's library, as uproot's ``library=`` does. Optional libraries
are imported only when asked for, and a missing one names the pip command."""

from __future__ import annotations

import importlib
from typing import Any

import pyarrow as pa

LIBRARIES = {
    "pa": "pyarrow", "pyarrow": "pyarrow", "arrow": "pyarrow",
    "pd": "pandas", "pandas": "pandas",
    "pl": "polars", "polars": "polars",
    "ak": "awkward", "awkward": "awkward",
    "np": "numpy", "numpy": "numpy",
}


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"library={module!r} needs {module}: pip install {module}") from None


def _tight_field(field: pa.Field, column: pa.ChunkedArray) -> pa.Field:
    """``field`` marked non-nullable where ``column`` holds no nulls (lists: their items too)."""
    t = field.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        values = [c.flatten() for c in column.chunks]
        item = _tight_field(t.value_field, pa.chunked_array(values, t.value_type))
        if pa.types.is_list(t):
            t = pa.list_(item)
        elif pa.types.is_large_list(t):
            t = pa.large_list(item)
        else:
            t = pa.list_(item, t.list_size)
    return pa.field(field.name, t, nullable=column.null_count > 0, metadata=field.metadata)


def _tight_schema(table: pa.Table) -> pa.Schema:
    fields = [_tight_field(f, table.column(i)) for i, f in enumerate(table.schema)]
    return pa.schema(fields, metadata=table.schema.metadata)


def _to_pandas(table: pa.Table) -> Any:
    """A DataFrame as uproot's ``library="pd"`` makes it: flat columns as numpy-backed columns,
    jagged and record columns as awkward-pandas columns (``df["Muon_pt"].ak.sum(axis=1)``)."""
    pd = _need("pandas")
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if not nested:
        return table.to_pandas()
    try:
        from awkward_pandas import AwkwardExtensionArray
    except ImportError:
        raise ImportError('library="pd" with jagged columns needs awkward-pandas, as uproot does: '
                          "pip install awkward-pandas") from None
    ak = _need("awkward")
    flat = table.drop_columns(nested)
    df = flat.to_pandas() if flat.num_columns else pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    tight = table.select(nested)
    tight = tight.cast(_tight_schema(tight))
    for column in nested:
        df[column] = pd.Series(AwkwardExtensionArray(ak.from_arrow(tight[column])), index=df.index)
    return df[table.column_names]


def convert(table: pa.Table, library: str = "pa") -> Any:
    """Convert a table; unknown library names list the known ones."""
    name = LIBRARIES.get(library)
    if name is None:
        raise ValueError(f"library={library!r} is not known; use one of {sorted(set(LIBRARIES))}")
    if name == "pyarrow":
        return table
    if name == "pandas":
        return _to_pandas(table)
    if name == "polars":
        return _need("polars").from_arrow(table)
    if name == "awkward":
        # Arrow fields are nullable by default; awkward would make every such column an
        # option type (`?float32`). Mark fields without nulls as non-nullable first.
        return _need("awkward").from_arrow(table.cast(_tight_schema(table)))
    # numpy: flat columns as arrays; list columns as object arrays of arrays (uproot's "np")
    import numpy as np

    out = {}
    for field, column in zip(table.schema, table.columns):
        t = field.type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            column = column.combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False)
            offsets = column.offsets.to_numpy()
            arr = np.empty(len(column), dtype=object)
            for i in range(len(column)):
                arr[i] = values[offsets[i] - offsets[0]: offsets[i + 1] - offsets[0]]
            out[field.name] = arr
        elif pa.types.is_fixed_size_list(t):
            column = column.combine_chunks()
            shape = []
            inner = t
            while pa.types.is_fixed_size_list(inner):
                shape.append(inner.list_size)
                inner = inner.value_type
            flat = column.flatten()
            for _ in shape[1:]:
                flat = flat.flatten()
            out[field.name] = flat.to_numpy(zero_copy_only=False).reshape([len(column)] + shape)
        else:
            out[field.name] = column.to_numpy()
    return out
