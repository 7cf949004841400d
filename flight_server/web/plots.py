"""PNG pictures of the views (matplotlib's Agg backend; no display, no pyplot state): the page's
picture when JavaScript is off, and what ``/plot/VIEW/NAME`` answers. Each draws the very numbers
the view's JSON carries, so the picture and the interactive plot cannot disagree."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import numpy as np  # noqa: E402

_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread safe


def _figure() -> Figure:
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def label(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def message_png(text: str) -> bytes:
    """A small image saying why there is no plot (an <img> cannot show JSON)."""
    with _lock:
        fig = _figure()
        fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
        return _png(fig)


def _nan(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def histogram_png(v: dict[str, Any], log: bool = False) -> bytes:
    """A ROOT histogram: TH1/TProfile as steps with error bars, TH2 (or a TH3 slice) as a colour map."""
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        xa = v["axes"][0]
        edges = np.array(xa["edges"])
        if v["dims"] == 1:
            content, error = _nan(v["content"]), _nan(v["error"])
            ax.stairs(content, edges, color="#1f4e9c", lw=1.2)
            centres = (edges[:-1] + edges[1:]) / 2
            ax.errorbar(centres, content, yerr=error, fmt="none", ecolor="#1f4e9c", lw=0.8)
            if log:
                ax.set_yscale("log")
            ax.set_ylabel(v["value_title"] or ("mean" if v["profile"] else "entries"))
            ax.text(0.99, 0.98, f"underflow {v['underflow']:g}\noverflow {v['overflow']:g}", ha="right", va="top",
                    transform=ax.transAxes, fontsize=8)
        else:
            ya = v["axes"][1]
            grid = _nan([x for row in v["content"] for x in row]).reshape(len(v["content"]), -1)
            norm = None
            if log:
                positive = grid[grid > 0]
                norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
                grid = np.where(grid > 0, grid, np.nan)
            mesh = ax.pcolormesh(edges, np.array(ya["edges"]), grid, cmap="viridis", norm=norm)
            fig.colorbar(mesh, ax=ax, label=v["value_title"] or ("mean" if v["profile"] else "entries"))
            ax.set_ylabel(ya["title"] or ya["name"])
            if ya.get("labels"):
                ax.set_yticks((np.array(ya["edges"][:-1]) + np.array(ya["edges"][1:])) / 2, ya["labels"], fontsize=7)
        ax.set_xlabel(xa["title"] or xa["name"])
        if xa.get("labels"):
            ax.set_xticks((edges[:-1] + edges[1:]) / 2, xa["labels"], rotation=30, ha="right", fontsize=7)
        title = v["title"]
        if v.get("slice"):
            s = v["slice"]
            title += f"  ({s['axis']} bin {s['index']}: [{s['low']:g}, {s['high']:g}))"
        ax.set_title(title, fontsize=9)
        return _png(fig)


def series_png(v: dict[str, Any]) -> bytes:
    """Value against time (seconds from the range's start, gwpy's way) or entry number."""
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        x = _nan(v["x"])
        if v["mode"] == "samples":
            ax.plot(x, _nan(v["y"]), lw=0.8, color="#1f4e9c")
        else:
            ax.fill_between(x, _nan(v["min"]), _nan(v["max"]), step="post", color="#1f4e9c", lw=0.6)
        for i, (_flag, segs) in enumerate(v.get("dq", {}).items()):
            for a, b in segs:
                ax.axvspan(a - v["origin"], b - v["origin"], ymin=0.02 * i, ymax=0.02 * (i + 1), color="#2e8b57")
        if v["axis"] == "time":
            ax.set_xlabel(f"Time [s] from {v['origin']:.6f} ({v['scale'].upper()})")
        else:
            ax.set_xlabel("entry" + (f" from {v['origin']:.0f}" if v["origin"] else ""))
            ax.set_xlim(0, v["span"])
        ax.set_ylabel(label(v.get("channel") or v["column"], v.get("unit", "")))
        note = f"{v['samples']} samples" + (f", min/max of {v['per_pixel']} per pixel" if v["mode"] == "minmax" else "")
        ax.set_title(note, fontsize=9)
        return _png(fig)


def plane_values(v: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(v["values"]), dtype="<f4").reshape(v["rows"], v["cols"])


def plane_png(v: dict[str, Any], log: bool = False) -> bytes:
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        data = plane_values(v).astype(np.float64)
        norm = None
        if log:
            data = np.where(data > 0, data, np.nan)
            if v.get("min_positive") is not None:
                norm = LogNorm(vmin=v["min_positive"], vmax=v["max"])
        im = ax.imshow(data, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest", norm=norm)
        fig.colorbar(im, ax=ax, label=label(v["column"], v["unit"]) + (" (log)" if log else ""))
        rows, cols = (v["names"][i] for i in v["shown"])
        ax.set_ylabel(rows + (f" (every {v['steps'][0]})" if v["steps"][0] > 1 else ""))
        ax.set_xlabel(cols + (f" (every {v['steps'][1]})" if v["steps"][1] > 1 else ""))
        ax.set_title(f"{v['column']}[{v['plane']}]", fontsize=9)
        return _png(fig)


def column_png(v: dict[str, Any], log: bool = False) -> bytes:
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        ax.stairs(v["counts"], v["edges"], fill=True, color="#3465a4", alpha=0.85)
        if log:
            ax.set_yscale("log")
        name = f"elements per entry of {v['column']}" if v["per"] == "count" else v["column"]
        ax.set_xlabel(label(name, v["unit"]))
        ax.set_ylabel("entries" if not v["jagged"] or v["per"] == "count" else "values")
        where = f" where {v['where']}" if v["where"] else ""
        ax.set_title(f"{v['values']} values in {v['entries']} entries{where}", fontsize=9)
        return _png(fig)


def scatter_png(v: dict[str, Any], log: bool = False) -> bytes:
    with _lock:
        fig = _figure()
        ax = fig.add_subplot()
        if v["mode"] == "points":
            ax.scatter(v["xs"], v["ys"], s=4, color="#1f4e9c")
        else:
            counts = np.array(v["counts"], dtype=np.float64)
            norm = LogNorm(vmin=1, vmax=max(1, counts.max())) if log else None
            mesh = ax.pcolormesh(v["x_edges"], v["y_edges"], np.where(counts > 0, counts, np.nan), cmap="viridis",
                                 norm=norm)
            fig.colorbar(mesh, ax=ax, label="count")
        ax.set_xlabel(label(v["x"], v["x_unit"]))
        ax.set_ylabel(label(v["y"], v["y_unit"]))
        where = f" where {v['where']}" if v["where"] else ""
        ax.set_title(f"{v['points']} points from {v['entries']} entries{where}", fontsize=9)
        return _png(fig)
