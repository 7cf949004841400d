"""Bounds on request-supplied JSON (list_flights criteria, action bodies).

``json.loads`` of 100,000 nested ``[`` raises RecursionError (an INTERNAL error at the
Flight boundary) and an 8 MB criteria took 25 s: size and nesting are checked first, in one
linear pass over the bytes, so bad input gets a clear ValueError (INVALID_ARGUMENT).
"""

from __future__ import annotations

import ast
import json
import threading
from typing import Any

from arrowroot.flight_server.core.errors import InvalidRequest

__all__ = ["parse_expression", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_JSON_KEYS", "JsonLimitError", "load_json", "json_depth"]

MAX_JSON_BYTES = 64 << 10   # criteria and action bodies are small
MAX_JSON_DEPTH = 32
MAX_JSON_KEYS = 1024        # object keys in the whole document


class JsonLimitError(InvalidRequest):
    """Request JSON that is not JSON or breaks a bound (INVALID_ARGUMENT)."""


def json_depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` outside strings (one pass; malformed input still ends)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _count_keys(value: Any) -> int:
    count, stack = 0, [value]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            count += len(cur)
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return count


def load_json(
    data: bytes | str,
    what: str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    max_keys: int = MAX_JSON_KEYS,
) -> Any:
    """Parse request JSON within bounds; ``what`` names it in messages ("criteria")."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonLimitError(f"{what}: {len(raw)} bytes; the limit is {max_bytes}")
    depth = json_depth(raw)
    if depth > max_depth:
        raise JsonLimitError(f"{what}: JSON nested {depth} levels deep; the limit is {max_depth}")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JsonLimitError(f"{what}: not JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JsonLimitError(f"{what}: JSON nested too deeply") from None
    keys = _count_keys(value)
    if keys > max_keys:
        raise JsonLimitError(f"{what}: {keys} object keys; the limit is {max_keys}")
    return value


_AST_LOCK = threading.Lock()


def parse_expression(text: str) -> ast.Expression:
    """``ast.parse(text, mode="eval")``, one call at a time in this process.

    CPython 3.11 keeps the AST constructor's recursion count per interpreter: when the garbage
    collector switches threads in the middle of one ``ast.parse`` and another thread builds an AST,
    the first fails with ``SystemError: AST constructor recursion depth mismatch`` (one cut in
    ~1,000 under a 32-client soak). Our own parses are serialised; others in the process (the
    ``traceback`` module parses source lines to place its carets) cannot be, so a parse that failed
    that way — a miscount, not a fault of the text — is tried again. Cut and file-key texts are short
    (bounded before they get here), so serialising costs nothing.
    """
    with _AST_LOCK:
        for attempt in range(_AST_TRIES):
            try:
                return ast.parse(text, mode="eval")
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc) or attempt == _AST_TRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


_AST_TRIES = 5
