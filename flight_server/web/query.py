"""Query strings → the request fields they mean: a ReadRequest's selection (shared by pages, plots,
views and ``/api/data``), list_flights criteria, and the small typed parameters of each."""

from __future__ import annotations

import json
import math
from typing import Any

from arrowroot.flight_server.core.errors import InvalidRequest

#: the query parameters that are part of a selection (kept across forms and links)
SELECTION_KEYS = ("columns", "entry_start", "entry_stop", "where", "slices", "files", "channels",
                  "time_start", "time_stop", "time_last", "with_time", "fill_gaps", "allow_missing", "dq",
                  "hit_where", "mode", "orientation")


def integer(q: Any, key: str) -> int | None:
    text = (q.get(key) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{key}: an integer expected (got {text[:30]!r})") from None


def number(q: Any, key: str) -> float | None:
    text = (q.get(key) or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise InvalidRequest(f"{key}: a number expected (got {text[:30]!r})") from None
    if not math.isfinite(v):
        raise InvalidRequest(f"{key}: a finite number expected")
    return v


def flag(q: Any, key: str) -> bool:
    """A boolean query parameter: ``1``, ``true``, ``yes``, ``on`` (a checked form box)."""
    text = (q.get(key) or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InvalidRequest(f"{key}: true or false expected (got {text[:30]!r})")


def names(q: Any, key: str) -> list[str]:
    out: list[str] = []
    for v in q.getlist(key):
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def slices(text: str) -> list[dict]:
    """'0:4,::8' → ReadRequest slices (one per axis after the entries)."""
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        bits = part.split(":")
        if len(bits) > 3 or not part:
            raise InvalidRequest(f"slices[{i}]: {part[:30]!r} is not start:stop[:step]")
        s: dict[str, int] = {}
        for key, bit in zip(("start", "stop", "step"), bits + [""] * (3 - len(bits))):
            if bit.strip():
                try:
                    s[key] = int(bit)
                except ValueError:
                    raise InvalidRequest(f"slices[{i}]: {part[:30]!r}: integers expected") from None
        if len(bits) == 1:  # a single index keeps the axis with length 1
            s = {"start": s["start"], "stop": s["start"] + 1 if s["start"] != -1 else None}
            s = {k: v for k, v in s.items() if v is not None}
        out.append(s)
    return out


def selection(name: str, q: Any, series: dict | None = None) -> dict[str, Any]:
    """The ReadRequest fields of a query string. ``time_last=N`` (seconds) is the last N seconds
    of a time series' coverage (``series`` is its record: ``t_end``)."""
    req: dict[str, Any] = {"dataset": name}
    cols = names(q, "columns")
    if cols:
        req["columns"] = cols
    for key in ("entry_start", "entry_stop"):
        v = integer(q, key)
        if v is not None:
            req[key] = v
    # event levels (pygama's vocabulary): a hit cut, how it selects an event's hits, a row per event or hit
    for key in ("where", "files", "dq", "hit_where", "mode", "orientation"):
        if (q.get(key) or "").strip():
            req[key] = q.get(key)
    if (q.get("slices") or "").strip():
        req["slices"] = slices(q.get("slices"))
    channels = names(q, "channels")
    if channels:
        req["channels"] = channels
    for key in ("time_start", "time_stop"):  # GPS seconds, or ISO-8601 text
        text = (q.get(key) or "").strip()
        if text:
            try:
                req[key] = float(text)
            except ValueError:
                req[key + "_iso"] = text
    last = number(q, "time_last")
    if last is not None:
        if last <= 0:
            raise InvalidRequest("time_last: a number of seconds > 0 expected")
        if not series or "t_end" not in series:
            raise InvalidRequest(f"time_last: {name!r} is not a time series")
        if any(k.startswith(("time_start", "time_stop")) for k in req):
            raise InvalidRequest("time_last: give either time_last or time_start/time_stop")
        req["time_start"], req["time_stop"] = float(series["t_end"]) - last, float(series["t_end"])
    for key in ("with_time", "fill_gaps", "with_entry_numbers", "allow_missing"):
        if flag(q, key):
            req[key] = True
    return req


def criteria(q: Any) -> dict[str, Any]:
    """list_flights criteria from a query string; attributes as ``attr=key=value`` (repeatable,
    the value read as JSON when it parses) or ``attributes={...}``."""
    out: dict[str, Any] = {}
    for key in ("name", "format", "kind", "has_column"):
        v = (q.get(key) or "").strip()
        if v:
            out[key] = v
    attrs: dict[str, Any] = {}
    if (q.get("attributes") or "").strip():
        try:
            attrs = json.loads(q.get("attributes"))
        except ValueError as exc:
            raise InvalidRequest(f"attributes: not JSON ({exc})") from None
        if not isinstance(attrs, dict):
            raise InvalidRequest("attributes: a JSON object expected")
    for item in q.getlist("attr"):
        for pair in (p.strip() for p in item.split(";")):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise InvalidRequest(f"attr: {pair[:40]!r} is not key=value")
            try:
                attrs[key.strip()] = json.loads(value)
            except ValueError:
                attrs[key.strip()] = value.strip()
    if attrs:
        out["attributes"] = attrs
    return out


def safe_next(target: str | None) -> str:
    """Only paths on this site (no ``//host`` or scheme): the login cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
