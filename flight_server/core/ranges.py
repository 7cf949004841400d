"""Cutting entry ranges at cluster/chunk boundaries: shared by planning (endpoints) and
execution (reads), so both agree on where baskets start."""

from __future__ import annotations


def split_range(start: int, stop: int, boundaries: tuple[int, ...], max_rows: int,
                split_above: int | None = None) -> list[tuple[int, int]]:
    """Cut [start, stop) at ``boundaries`` into pieces of about ``max_rows`` rows.

    Whole clusters are packed together up to max_rows. A single cluster is cut (evenly)
    only when it is larger than ``split_above`` (default max_rows): cutting inside a
    cluster makes each piece decompress the same baskets again.
    """
    max_rows = max(1, int(max_rows))
    split_above = max(max_rows, int(split_above or max_rows))
    edges = [start] + [b for b in boundaries if start < b < stop] + [stop]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for prev, cut in zip(edges, edges[1:]):
        if cut - piece_start > max_rows and prev > piece_start:
            pieces.append((piece_start, prev))
            piece_start = prev
    pieces.append((piece_start, stop))
    out: list[tuple[int, int]] = []
    for a, b in pieces:
        if b <= a:
            continue
        if b - a <= split_above:
            out.append((a, b))
            continue
        k = -(-(b - a) // max_rows)
        step = -(-(b - a) // k)
        out.extend((i, min(b, i + step)) for i in range(a, b, step))
    return out
