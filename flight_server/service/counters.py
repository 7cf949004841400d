"""Per-dataset counters of what was served (``stats`` action): one implementation for the
Flight reads and the Flight SQL scans."""

from __future__ import annotations

import threading
from collections.abc import Iterator


class Counters:
    """dataset → {name: total}; thread-safe increments, copies out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, dict[str, int]] = {}

    def add(self, dataset: str, **amounts: int) -> None:
        with self._lock:
            c = self._by.setdefault(dataset, {})
            for k, v in amounts.items():
                c[k] = c.get(k, 0) + int(v)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {k: dict(v) for k, v in self._by.items()}

    def __getitem__(self, dataset: str) -> dict[str, int]:
        with self._lock:
            return dict(self._by[dataset])

    def items(self) -> Iterator[tuple[str, dict[str, int]]]:
        return iter(self.snapshot().items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Counters):
            return self.snapshot() == other.snapshot()
        return self.snapshot() == other
