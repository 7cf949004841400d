"""PNG plots with matplotlib's Agg backend (no display, no pyplot state): a histogram, a
2-D image of a planar cut, a line plot. The data is collected with bounded memory: at most
``max_entries`` entries are read, images and lines are downsampled for the screen."""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from arrowroot.flight_server.core.errors import InvalidRequest  # noqa: E402

MAX_PIXELS = 512        # image side on screen: planar axes are strided down to about this
MAX_POINTS = 4000       # points in a line plot
MAX_BINS = 500
_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread safe


def _figure() -> Figure:
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def message_png(text: str) -> bytes:
    """A small image saying why there is no plot (an <img> cannot show JSON)."""
    with _lock:
        fig = _figure()
        fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
        return _png(fig)


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """All numbers of a (possibly jagged or N-D) numeric column, flattened, NaN dropped."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = pc.list_flatten(arr)
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)):
        raise InvalidRequest(f"plot: the column holds {arr.type}, not numbers")
    values = arr.drop_null().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return values[np.isfinite(values)]


def is_numeric(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def histogram(batches: Iterator[pa.RecordBatch], column: str, bins: int, title: str,
              lo: float | None = None, hi: float | None = None, log: bool = False) -> tuple[bytes, int]:
    """PNG of a histogram of ``column`` (jagged cells contribute every value); returns the PNG
    and the number of values."""
    bins = max(1, min(int(bins), MAX_BINS))
    chunks = [numeric_values(b.column(column)) for b in batches]
    values = np.concatenate(chunks) if chunks else np.empty(0)
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        if len(values):
            rng = (values.min() if lo is None else lo, values.max() if hi is None else hi)
            if rng[0] >= rng[1]:
                rng = (rng[0] - 0.5, rng[0] + 0.5)
            ax.hist(values, bins=bins, range=rng, histtype="stepfilled", color="#3465a4", alpha=0.85, log=log)
        else:
            ax.text(0.5, 0.5, "no values (no entry passed the cut)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel(column)
        ax.set_ylabel("count")
        ax.set_title(title, fontsize=9)
        return _png(fig), len(values)


@dataclass(frozen=True)
class PlaneCut:
    """A planar cut of an N-D column: one index or ``:`` per axis (entries first), exactly
    two ``:``. E.g. ``10,:,:`` is image 10 of a stack; ``:,5,:`` cuts across entries."""

    axes: tuple[int | None, ...]

    @staticmethod
    def parse(text: str, shape: tuple[int, ...]) -> "PlaneCut":
        """``shape`` includes the entry axis first."""
        parts = [p.strip() for p in (text or "").split(",")] if text and text.strip() else []
        if not parts:  # default: first entry, index 0 on extra axes, the last two axes planar
            parts = ["0"] * (len(shape) - 2) + [":", ":"]
        if len(parts) != len(shape):
            raise InvalidRequest(f"plane: {len(parts)} axes given, the column has {len(shape)} "
                                 f"(entries × {' × '.join(map(str, shape[1:]))}); e.g. "
                                 f"{','.join(['0'] * (len(shape) - 2) + [':', ':'])}")
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

    def request(self, shape: tuple[int, ...]) -> dict:
        """The ReadRequest fields that read just this plane, strided to about MAX_PIXELS a side."""
        first = self.axes[0]
        slices = []
        for k, n in zip(self.axes[1:], shape[1:]):
            if k is None:
                slices.append({"step": max(1, math.ceil(n / MAX_PIXELS))})
            else:
                slices.append({"start": k, "stop": k + 1})
        out: dict = {"slices": slices}
        if first is not None:
            out["entryStart"], out["entryStop"] = first, first + 1
        return out

    def entry_step(self, entries: int) -> int:
        return 1 if self.axes[0] is not None else max(1, math.ceil(entries / MAX_PIXELS))


def plane_values(batches: Iterator[pa.RecordBatch], column: str, cut: PlaneCut, entry_step: int) -> np.ndarray:
    """The 2-D plane (rows = first planar axis), keeping every ``entry_step``-th entry."""
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
    return np.squeeze(arr, axis=tuple(i for i, a in enumerate(cut.axes) if a is not None))


def image(values: np.ndarray, title: str, labels: tuple[str, str], log: bool = False) -> bytes:
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        data = values.astype(np.float64)
        if log:
            data = np.log10(np.clip(data, 1e-12, None))
        im = ax.imshow(data, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="log10 value" if log else "value")
        ax.set_ylabel(labels[0])
        ax.set_xlabel(labels[1])
        ax.set_title(title, fontsize=9)
        return _png(fig)


def line(batches: Iterator[pa.RecordBatch], column: str, x: str | None, title: str) -> tuple[bytes, int]:
    """y (``column``) against x (a column, or the entry number), min/max-decimated to MAX_POINTS."""
    ys, xs = [], []
    for b in batches:
        ys.append(numeric_scalar(b.column(column)))
        xs.append(numeric_scalar(b.column(x or "entry")))
    y = np.concatenate(ys) if ys else np.empty(0)
    xv = np.concatenate(xs) if xs else np.empty(0)
    if len(y) > MAX_POINTS:  # keep each bucket's min and max so spikes survive
        k = math.ceil(len(y) / (MAX_POINTS // 2))
        n = len(y) // k * k
        yb, xb = y[:n].reshape(-1, k), xv[:n].reshape(-1, k)
        lo, hi = yb.argmin(axis=1), yb.argmax(axis=1)
        r = np.arange(len(yb))
        idx = np.sort(np.stack([lo, hi], axis=1), axis=1)
        y = yb[r[:, None], idx].ravel()
        xv = xb[r[:, None], idx].ravel()
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        if len(y):
            ax.plot(xv, y, lw=0.8, color="#3465a4")
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(x or "entry")
        ax.set_ylabel(column)
        ax.set_title(title, fontsize=9)
        return _png(fig), len(y)


def numeric_scalar(column: pa.Array) -> np.ndarray:
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        raise InvalidRequest(f"plot: a line needs a numeric scalar column, {column.type} given")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def units(field: pa.Field) -> str:
    meta = field.metadata or {}
    try:
        return str(json.loads(meta.get(b"arrowroot.attributes", b"{}")).get("units", ""))
    except (ValueError, AttributeError):
        return ""
