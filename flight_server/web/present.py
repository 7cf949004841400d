"""How datasets read on a page and in the API's JSON: the description of one dataset, its
columns' shapes and units, short cells, sizes, and the folder tree of names."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from arrowroot.flight_server.web import data


def short(value: Any, width: int = 60) -> str:
    """A cell for the preview table: jagged and N-D cells shortened, floats to 6 digits."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        inner = [short(v, 20) for v in value[:4]]
        more = f", … ({len(value)})" if len(value) > 4 else ""
        text = "[" + ", ".join(inner) + more + "]"
        return text if len(text) <= width else text[: width - 1] + "…"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {short(v, 20)}" for k, v in list(value.items())[:4]) + "}"
        return text if len(text) <= width else text[: width - 1] + "…"
    if isinstance(value, bytes):
        value = value[:width].hex() + ("…" if len(value) > width else "")
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def human(n: int | float | None) -> str:
    if n is None or n < 0:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/:")


def shape_of(f: pa.Field) -> tuple[int, ...]:
    """The fixed shape of one cell (N-D columns): () for scalars and jagged lists."""
    shape, t = [], f.type
    while pa.types.is_fixed_size_list(t):
        shape.append(t.list_size)
        t = t.value_type
    return tuple(shape)


def field_meta(f: pa.Field) -> dict[str, Any]:
    meta = f.metadata or {}
    try:
        attrs = json.loads(meta.get(b"arrowroot.attributes", b"{}"))
    except ValueError:
        attrs = {}
    if not isinstance(attrs, dict):
        attrs = {}
    return {"source_type": meta.get(b"arrowroot.source_type", b"").decode(errors="replace"), "attributes": attrs}


def units(rec: Any, f: pa.Field) -> str:
    """A column's unit whenever the source has one: HDF5/LH5 ``units``/``unit`` attributes of the
    column, or of a one-column dataset (gwpy writes ``unit`` on the dataset), or the time series'."""
    attrs = field_meta(f)["attributes"]
    for source in (attrs, rec.attributes if len(rec.columns) == 1 else {}):
        for key in ("units", "unit"):
            v = source.get(key)
            if isinstance(v, (str, int, float)) and str(v).strip() and str(v) != "None":
                return str(v).strip()
    series = rec.attributes.get("timeseries")
    if isinstance(series, dict) and series.get("unit") and len(rec.columns) == 1:
        return str(series["unit"])
    meta = f.metadata or {}
    return (meta.get(b"units") or meta.get(b"unit") or b"").decode(errors="replace")


def column_bytes(rec: Any, f: pa.Field) -> int | None:
    """Uncompressed bytes of a column: the catalog's figure, or for fixed-width types (histogram
    bins, which have no file column) width × cells × entries; None when unknown."""
    c = rec.column(f.name)
    if c is not None and c.uncompressed_bytes is not None:
        return int(c.uncompressed_bytes)
    t, cells = f.type, 1
    while pa.types.is_fixed_size_list(t):
        cells *= t.list_size
        t = t.value_type
    try:
        width = t.bit_width
    except ValueError:
        return None
    return (width * cells * rec.entries + 7) // 8


def describe(rec: Any, full: bool = True) -> dict[str, Any]:
    """The JSON of one dataset (the API's and the page's single source)."""
    schema = data.schema_of(rec)
    files = {p.path: p.size for p in rec.parts}
    sizes = {f.name: column_bytes(rec, f) for f in schema}
    known = [v for v in sizes.values() if v is not None]
    out: dict[str, Any] = {
        "name": rec.name, "kind": rec.kind, "format": rec.format, "entries": rec.entries,
        "bytes": sum(known) if known else None,
        "file_bytes": sum(files.values()), "files": len(files),
        "columns": [f.name for f in schema], "attributes": rec.attributes,
    }
    if not full:
        return out
    cols = []
    for f in schema:
        c = rec.column(f.name)
        m = field_meta(f)
        cols.append({"name": f.name, "type": str(f.type), "source_type": m["source_type"],
                     "shape": list(shape_of(f)), "units": units(rec, f), "attributes": m["attributes"],
                     "bytes": sizes[f.name],
                     "compressed_bytes": c.compressed_bytes if c else None})
    out["schema"] = cols
    out["unreadable"] = [{"name": c.name, "source_type": c.source_type, "reason": c.reason}
                         for c in rec.columns if not c.readable]
    out["parts"] = [{"path": p.path, "object": p.object_path, "entry_offset": p.entry_offset,
                     "entries": p.entries, "bytes": p.size, "channel": p.channel, "keys": p.keys}
                    for p in rec.parts]
    return out


@dataclass
class Node:
    label: str
    path: str
    is_file: bool = False
    dataset: Any = None
    children: dict[str, "Node"] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return (1 if self.dataset is not None else 0) + sum(c.count for c in self.children.values())

    def sorted_children(self) -> list["Node"]:
        return [self.children[k] for k in sorted(self.children)]


def tree(records: list[Any]) -> Node:
    """Datasets as folders → files → objects (``dir/file.h5:group/dataset``)."""
    root = Node("", "")
    for rec in records:
        file_part, sep, obj = rec.name.partition(":")
        segments = [(s, False) for s in file_part.split("/") if s]
        if sep and segments:
            segments[-1] = (segments[-1][0], True)
            segments += [(s, False) for s in obj.split("/") if s]
        node, path = root, ""
        for label, is_file in segments:
            path = f"{path}/{label}" if path else label
            node = node.children.setdefault(label, Node(label, path, is_file))
            node.is_file = node.is_file or is_file
        node.dataset = rec
    return root
