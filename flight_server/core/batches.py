"""Record batches of bounded size: the one splitter every stream uses (DoGet, HTTP, SQL results).

Many gRPC clients refuse messages over 16 MiB, and jagged columns can make one slice of a table
far bigger than the average, so batches are cut by bytes as well as by rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa


def split_batches(table: pa.Table | pa.RecordBatch, max_rows: int, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``max_rows`` rows and (about) ``max_bytes`` bytes each."""
    n = table.num_rows
    if n == 0:
        return
    total = max(table.nbytes, 1)
    rows = max(1, min(max_rows, int(n * max_bytes / total)))
    batches = table.combine_chunks().to_batches(max_chunksize=rows) if isinstance(table, pa.Table) \
        else [table.slice(i, rows) for i in range(0, n, rows)]
    for batch in batches:
        yield from halve_until_small(batch, max_bytes)


def halve_until_small(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """``batch`` in halves until each is at most ``max_bytes`` (or one row)."""
    if batch.num_rows > 1 and batch.nbytes > max_bytes:
        half = batch.num_rows // 2
        yield from halve_until_small(batch.slice(0, half), max_bytes)
        yield from halve_until_small(batch.slice(half), max_bytes)
    else:
        yield batch


__all__ = ["split_batches", "halve_until_small"]
