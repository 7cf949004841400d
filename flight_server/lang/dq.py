"""Data-quality expressions: keep only the time where flags hold.

"DATA & CBC_CAT1", "DATA and not BURST_CAT1", "(CBC_CAT1 | BURST_CAT1) & ~HW_INJ": a small whitelist
parser (flag names, ``& | ~``, ``and/or/not``, parentheses), evaluated as set operations on the
flags' segments (``core/segments.py``); never evaluated as Python. Bounded in length and depth.
"""

from __future__ import annotations

import re

from arrowroot.flight_server.core.errors import InvalidRequest
from arrowroot.flight_server.core.segments import Segments, complement, intersect, union

MAX_DQ_TEXT = 1000
MAX_DQ_DEPTH = 32
_DQ_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<and>&|\band\b)|(?P<or>\||\bor\b)|(?P<not>~|!|\bnot\b)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))")


def dq_segments(text: str, flags: dict[str, Segments], lo: float, hi: float) -> Segments:
    """Where the flag expression ``text`` holds inside [lo, hi); InvalidRequest says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("dq: empty expression; e.g. 'DATA & CBC_CAT1'")
    if len(text) > MAX_DQ_TEXT:
        raise InvalidRequest(f"dq: longer than {MAX_DQ_TEXT} characters")
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _DQ_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidRequest(f"dq: unexpected {text[pos:pos + 10]!r} at {pos}; use flag names, & | ~ "
                             "(or and/or/not) and parentheses")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    at = 0

    def peek() -> str:
        return tokens[at][0] if at < len(tokens) else "end"

    def take() -> tuple[str, str]:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def expr(depth: int) -> Segments:
        out = term(depth)
        while peek() == "or":
            take()
            out = union(out, term(depth))
        return out

    def term(depth: int) -> Segments:
        out = factor(depth)
        while peek() == "and":
            take()
            out = intersect(out, factor(depth))
        return out

    def factor(depth: int) -> Segments:
        if depth > MAX_DQ_DEPTH:
            raise InvalidRequest(f"dq: nested deeper than {MAX_DQ_DEPTH}")
        kind, value = take() if at < len(tokens) else ("end", "")
        if kind == "not":
            return complement(factor(depth + 1), lo, hi)
        if kind == "lp":
            out = expr(depth + 1)
            if peek() != "rp":
                raise InvalidRequest("dq: a '(' is not closed")
            take()
            return out
        if kind == "name":
            if value not in flags:
                raise InvalidRequest(f"dq: unknown flag {value!r}; this channel has {sorted(flags)}")
            return intersect(flags[value], [(lo, hi)])
        raise InvalidRequest("dq: a flag name or '(' expected" + (f", got {value!r}" if value else " at the end"))

    result = expr(0)
    if at != len(tokens):
        raise InvalidRequest(f"dq: unexpected {tokens[at][1]!r}")
    return result


__all__ = ["dq_segments", "MAX_DQ_TEXT", "MAX_DQ_DEPTH"]
