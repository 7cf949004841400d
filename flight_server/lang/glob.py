"""Shell-glob matching without regular expressions built from user text.

``fnmatch.translate`` is quadratic in the number of ``[`` in a pattern (16,000 of them took
11 s) and ``re`` caches every compiled pattern (a distinct 1 MB glob kept ~24 MB alive). This
matcher parses a pattern once in linear time into tokens and matches by simulating the
pattern's automaton with the set of live positions held as bits of one integer: per name
character a few integer operations on len(pattern) bits (no backtracking, so ``*a*a*a…b``
costs the same as ``abc``). Patterns are bounded in length; nothing is cached globally.

Syntax (as ``fnmatch.fnmatchcase``): ``*`` any run of characters (``/`` included), ``?`` one
character, ``[abc]``, ``[a-z]``, ``[!a-z]`` one character in / not in the
class; ``]`` first in a class is literal; an unclosed ``[`` is a literal ``[``. Case-sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from arrowroot.flight_server.core.errors import InvalidRequest

__all__ = ["MAX_PATTERN", "GlobError", "Glob", "compile", "match"]

#: Longest pattern accepted (characters).
MAX_PATTERN = 1024

_STAR, _ANY, _LIT, _CLASS = 0, 1, 2, 3


class GlobError(InvalidRequest):
    """A pattern that is too long or not a string (the server answers INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class _Class:
    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def has(self, ch: str) -> bool:
        inside = ch in self.chars or any(lo <= ch <= hi for lo, hi in self.ranges)
        return inside != self.negated


class Glob:
    """A parsed pattern; :meth:`match` tests one name."""

    __slots__ = ("pattern", "_literal", "_n", "_stars", "_lits", "_any", "_classes", "_accept")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens = _parse(pattern)
        self._literal = pattern if all(k == _LIT for k, _ in tokens) else None
        self._n = len(tokens)
        self._stars = 0
        self._any = 0
        self._lits: dict[str, int] = {}
        self._classes: list[tuple[int, _Class]] = []
        for i, (kind, arg) in enumerate(tokens):
            bit = 1 << i
            if kind == _STAR:
                self._stars |= bit
            elif kind == _ANY:
                self._any |= bit
            elif kind == _LIT:
                self._lits[arg] = self._lits.get(arg, 0) | bit  # type: ignore[index]
            else:
                self._classes.append((bit, arg))  # type: ignore[arg-type]
        self._accept: dict[str, int] = {}

    def _accepting(self, ch: str) -> int:
        """Positions whose (non-star) token accepts ``ch``."""
        mask = self._accept.get(ch)
        if mask is None:
            mask = self._lits.get(ch, 0) | self._any
            for bit, cls in self._classes:
                if cls.has(ch):
                    mask |= bit
            if len(self._accept) < 4096:  # per pattern, bounded by the alphabet of the names
                self._accept[ch] = mask
        return mask

    def match(self, name: str) -> bool:
        if self._literal is not None:
            return name == self._literal
        stars = self._stars
        live = self._close(1)
        for ch in name:
            live = self._close(((live & self._accepting(ch)) << 1) | (live & stars))
            if not live:
                return False
        return bool(live >> self._n & 1)

    def _close(self, live: int) -> int:
        """Add the position after each live ``*`` (a star may match nothing); stars never
        follow each other after parsing, so one step suffices."""
        return live | ((live & self._stars) << 1)

    def __repr__(self) -> str:
        return f"Glob({self.pattern[:60]!r})"


def check(pattern: object, what: str = "pattern") -> str:
    """The pattern itself when it is a string of at most MAX_PATTERN characters."""
    if not isinstance(pattern, str):
        raise GlobError(f"{what} must be a string")
    if len(pattern) > MAX_PATTERN:
        raise GlobError(f"{what} is {len(pattern)} characters long; the limit is {MAX_PATTERN}")
    return pattern


def compile(pattern: str) -> Glob:  # mirrors re.compile
    """Parse a pattern once (linear time) for matching many names."""
    return Glob(check(pattern))


def match(pattern: str, name: str) -> bool:
    """True if ``name`` matches the shell glob ``pattern`` (case-sensitive)."""
    return compile(pattern).match(name)


def _parse(p: str) -> list[tuple[int, object]]:
    tokens: list[tuple[int, object]] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if not tokens or tokens[-1][0] != _STAR:  # ** is *
                tokens.append((_STAR, None))
            i += 1
        elif c == "?":
            tokens.append((_ANY, None))
            i += 1
        elif c == "[":
            parsed = _parse_class(p, i + 1)
            if parsed is None:  # unclosed: a literal "["
                tokens.append((_LIT, "["))
                i += 1
            else:
                cls, i = parsed
                tokens.append((_CLASS, cls))
        else:
            tokens.append((_LIT, c))
            i += 1
    return tokens


def _parse_class(p: str, i: int) -> tuple[_Class, int] | None:
    """The class starting after ``[`` at ``i``, and the index after its ``]``; None if unclosed.

    Linear: the closing ``]`` is searched once from ``i`` (the quadratic behaviour of
    ``fnmatch.translate`` came from rescanning for it at every ``[``)."""
    n = len(p)
    j = i
    negated = j < n and p[j] == "!"
    if negated:
        j += 1
    start = j
    if j < n and p[j] == "]":
        j += 1
    close = p.find("]", j)
    if close < 0:
        return None
    body = p[start:close]
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo <= hi:
                ranges.append((lo, hi))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    return _Class(negated, frozenset(chars), tuple(ranges)), close + 1
