"""A search box over datasets: plain words match anywhere in names, titles, attributes, column
names and column attributes (case-insensitive; every word must match); results ranked with exact
matches first.
Text with glob characters is a glob on names, as list_flights' ``name`` criterion."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.lang import glob
from arrowroot.flight_server.plan.planner import dataset_schema

GLOB_CHARS = set("*?[")
MAX_QUERY = 500
MAX_WORDS = 16
ATTRIBUTE_TEXT = 20_000   # characters of a dataset's attributes searched
_SPLIT = re.compile(r"[/:._\-\s]+")


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def _attributes_text(rec: Any) -> str:
    """The dataset's attributes, its column names and their attributes (HDF5 ``units`` ...) as text."""
    attrs = rec.attributes
    try:
        text = json.dumps({k: v for k, v in attrs.items() if not str(k).startswith("arrowroot.")}, default=str)
    except (TypeError, ValueError):
        text = str(attrs)
    parts = [text[:ATTRIBUTE_TEXT]]
    try:
        schema = dataset_schema(rec)
    except Exception:  # a record whose schema cannot be decoded is still found by name
        schema = None
    for f in schema or ():
        parts.append(f.name)
        parts.append((f.metadata or {}).get(b"arrowroot.attributes", b"").decode(errors="replace")[:1000])
    return " ".join(parts)[:2 * ATTRIBUTE_TEXT].lower()


def rank(rec: Any, text: str, words: Sequence[str]) -> int | None:
    """0 exact name (or its object or file name), 1 a word is a whole name segment, 2 every word
    in the name, 3 in the title, 4 in attributes or columns; None: no match."""
    name = rec.name.lower()
    whole = text.lower()
    file_part, _, obj = name.partition(":")
    if whole in (name, obj, file_part, file_part.rsplit("/", 1)[-1], obj.rsplit("/", 1)[-1]):
        return 0
    segments = set(_SPLIT.split(name))
    title = str(rec.attributes.get("title") or "").lower()
    attrs = None
    best = 0
    for w in words:
        if w in segments:
            level = 1
        elif w in name:
            level = 2
        elif w in title:
            level = 3
        else:
            if attrs is None:
                attrs = _attributes_text(rec)
            if w not in attrs:
                return None
            level = 4
        best = max(best, level)
    return best


def find(records: Sequence[Any], text: str) -> list[Any]:
    """The records matching the search text, best first (then by name)."""
    text = text.strip()
    if len(text) > MAX_QUERY:
        raise InvalidRequest(f"q: at most {MAX_QUERY} characters")
    if not text:
        return sorted(records, key=lambda r: r.name)
    if is_glob(text):
        match = glob.compile(text).match
        return sorted((r for r in records if match(r.name)), key=lambda r: r.name)
    words = [w.lower() for w in text.split()][:MAX_WORDS]
    scored = [(level, r.name, r) for r in records if (level := rank(r, text, words)) is not None]
    return [r for _, _, r in sorted(scored, key=lambda x: (x[0], x[1]))]


__all__ = ["find", "rank", "is_glob"]
