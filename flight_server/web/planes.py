"""N-D arrays and image stacks one plane at a time: every axis but two is held at an index (a
slider each on the page), the two shown are strided to about 512 pixels a side (the factor is
stated). Axes the source cannot slice (PyTables' multidimensional atoms: a 5×5×5 array of
3-vectors) are read whole and cut here."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.present import shape_of, units

MAX_PIXELS = 512        # image side on screen: planar axes are strided down to about this


def sliceable_axes(f: pa.Field) -> int:
    """How many axes after the entries the source slices (``arrowroot.shape``); the rest of the
    cell's axes (an HDF5 array atom's) come whole."""
    try:
        return len(json.loads((f.metadata or {}).get(b"arrowroot.shape", b"[]")))
    except ValueError:
        return 0


@dataclass(frozen=True)
class PlaneCut:
    """A planar cut of an N-D column: one index or ``:`` per axis (entries first), exactly
    two ``:``. E.g. ``10,:,:`` is image 10 of a stack; ``:,5,:`` cuts across entries."""

    axes: tuple[int | None, ...]

    @staticmethod
    def default(shape: tuple[int, ...]) -> str:
        return ",".join(["0"] * (len(shape) - 2) + [":", ":"])

    @staticmethod
    def parse(text: str, shape: tuple[int, ...]) -> "PlaneCut":
        """``shape`` includes the entry axis first."""
        parts = [p.strip() for p in (text or "").split(",")] if text and text.strip() else []
        if not parts:  # default: first entry, index 0 on extra axes, the last two axes planar
            parts = PlaneCut.default(shape).split(",")
        if len(parts) != len(shape):
            raise InvalidRequest(f"plane: {len(parts)} axes given, the column has {len(shape)} "
                                 f"(entries × {' × '.join(map(str, shape[1:]))}); e.g. {PlaneCut.default(shape)}")
        axes: list[int | None] = []
        for i, (p, n) in enumerate(zip(parts, shape)):
            if p == ":":
                axes.append(None)
                continue
            try:
                k = int(p)
            except ValueError:
                raise InvalidRequest(f"plane: axis {i} is {p[:20]!r}; an integer index or ':' expected") from None
            if k < 0:
                k += n
            if not 0 <= k < n:
                raise InvalidRequest(f"plane: index {p} is outside axis {i} (length {n})")
            axes.append(k)
        if axes.count(None) != 2:
            raise InvalidRequest("plane: exactly two axes must be ':' (the plane to show)")
        return PlaneCut(tuple(axes))

    def text(self) -> str:
        return ",".join(":" if a is None else str(a) for a in self.axes)

    def steps(self, shape: tuple[int, ...]) -> list[int]:
        """The stride of each shown axis (1 = every element)."""
        return [max(1, math.ceil(n / MAX_PIXELS)) for a, n in zip(self.axes, shape) if a is None]

    def request(self, shape: tuple[int, ...], sliceable: int | None = None) -> dict:
        """The ReadRequest fields that read just this plane (strided); axes past ``sliceable``
        (atom axes) are read whole."""
        sliceable = len(shape) - 1 if sliceable is None else sliceable
        first = self.axes[0]
        out: dict = {}
        if sliceable:
            slices = []
            for k, n in zip(self.axes[1:1 + sliceable], shape[1:1 + sliceable]):
                if k is None:
                    slices.append({"step": max(1, math.ceil(n / MAX_PIXELS))})
                else:
                    slices.append({"start": k, "stop": k + 1})
            out["slices"] = slices
        if first is not None:
            out["entryStart"], out["entryStop"] = first, first + 1
        return out

    def entry_step(self, entries: int) -> int:
        return 1 if self.axes[0] is not None else max(1, math.ceil(entries / MAX_PIXELS))


def plane_values(batches: Iterator[pa.RecordBatch], column: str, cut: PlaneCut, entry_step: int,
                 sliceable: int | None = None) -> np.ndarray:
    """The 2-D plane (rows = first planar axis), keeping every ``entry_step``-th entry; axes past
    ``sliceable`` arrive whole and are cut (and strided) here."""
    rows = []
    seen = 0
    for b in batches:
        col = b.column(column)
        take = [i for i in range(len(col)) if (seen + i) % entry_step == 0]
        seen += len(col)
        if not take:
            continue
        col = col.take(pa.array(take))
        shape = []
        t = col.type
        flat = col
        while pa.types.is_fixed_size_list(t):
            shape.append(t.list_size)
            t = t.value_type
            flat = pc.list_flatten(flat)
        rows.append(flat.to_numpy(zero_copy_only=False).reshape((len(col), *shape)))
    if not rows:
        raise InvalidRequest("plane: no entries selected")
    arr = np.concatenate(rows)
    if sliceable is not None and arr.ndim - 1 > sliceable:  # atom axes: index or stride them here
        index: list[Any] = [slice(None)] * (1 + sliceable)
        for k, n in zip(cut.axes[1 + sliceable:], arr.shape[1 + sliceable:]):
            index.append(slice(None, None, max(1, math.ceil(n / MAX_PIXELS))) if k is None else slice(k, k + 1))
        arr = arr[tuple(index)]
    return np.squeeze(arr, axis=tuple(i for i, a in enumerate(cut.axes) if a is not None))


def read_plane(service: Service, caller: Caller, rec: Any, column: str, text: str) -> tuple[PlaneCut, np.ndarray]:
    schema = data.schema_of(rec)
    if column not in schema.names:
        raise InvalidRequest(f"column: {column[:60]!r} is not a column of {rec.name!r}")
    f = schema.field(column)
    shape = (rec.entries, *shape_of(f))
    if len(shape) < 2:
        raise InvalidRequest(f"plane: column {column!r} has one value per entry; use a line or histogram")
    cut = PlaneCut.parse(text, shape)
    sliceable = sliceable_axes(f)
    req = {"dataset": rec.name, "columns": [column], **cut.request(shape, sliceable)}
    batches = data.read_batches(service, data.spec(req), caller)
    return cut, plane_values(batches, column, cut, cut.entry_step(rec.entries), sliceable)


def axis_names(rec: Any, column: str, ndim: int) -> list[str]:
    """Axis names: ``entry`` first, then the source's dimension labels when it has them."""
    labels = rec.attributes.get("hdf5.dims") or []
    names = ["entry"] + [f"axis {i}" for i in range(1, ndim)]
    for i, label in enumerate(labels[1:ndim], start=1):
        if isinstance(label, str) and label:
            names[i] = label
    return names


def plane_view(service: Service, caller: Caller, rec: Any, column: str, q: Any) -> dict[str, Any]:
    """One plane as float32 values (base64, row-major) with its shape, strides, range and unit."""
    cut, values = read_plane(service, caller, rec, column, q.get("plane") or "")
    f = data.schema_of(rec).field(column)
    shape = (rec.entries, *shape_of(f))
    names = axis_names(rec, column, len(shape))
    shown = [i for i, a in enumerate(cut.axes) if a is None]
    v = values.astype(np.float32)
    finite = v[np.isfinite(v)]
    positive = finite[finite > 0]
    return {"view": "plane", "column": column, "shape": list(shape), "names": names, "plane": cut.text(),
            "shown": shown, "steps": cut.steps(shape), "rows": int(v.shape[0]), "cols": int(v.shape[1]),
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None,
            "min_positive": float(positive.min()) if positive.size else None,
            "unit": units(rec, f), "dtype": str(values.dtype),
            "values": base64.b64encode(np.ascontiguousarray(v).astype("<f4").tobytes()).decode()}
