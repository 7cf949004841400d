"""Which data nodes serve a piece of a file: rendezvous (highest-random-weight) hashing.

Every node gets a pseudo-random weight for every key (here: a file's identity and an
entry range); a key's nodes are ordered by falling weight. The same key so lands on the
same node while membership is unchanged (its column chunks stay in that node's cache),
adding a node takes over only the keys for which it now weighs most (about 1/N of
them), and removing one moves only its own keys, each to its former second node: the
fallback location a client already had. No table or ring to keep in sync: any process
with the same list of node ids computes the same order.

Pure and stdlib only (hashlib's BLAKE2b), so the coordinator and tests share it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence


def chunk_key(file_id: str, object_path: str, entry_start: int, entry_stop: int) -> bytes:
    """The placement key of an entry range of one object in one file.

    ``file_id`` should change when the file does (path, size and mtime), so a rewritten
    file is placed, and cached, afresh.
    """
    return f"{file_id}\0{object_path}\0{entry_start}\0{entry_stop}".encode()


def file_id(path: str, size: int, mtime: float) -> str:
    """A file's identity for placement and caching: path, size and mtime (ns)."""
    return f"{path}\0{size}\0{int(round(mtime * 1e9))}"


class Placement:
    """Orders node ids for keys; build one per membership change (it precomputes per node)."""

    def __init__(self, nodes: Iterable[str]):
        self.nodes: tuple[str, ...] = tuple(sorted(set(nodes)))
        # one BLAKE2b state per node, already fed the node id; copying it is cheaper than
        # hashing the id again for every key
        self._seeds = [(hashlib.blake2b(n.encode() + b"\0", digest_size=8), n) for n in self.nodes]

    def __len__(self) -> int:
        return len(self.nodes)

    def _weights(self, key: bytes) -> Iterable[tuple[int, str]]:
        for seed, node in self._seeds:
            h = seed.copy()
            h.update(key)
            yield int.from_bytes(h.digest(), "big"), node

    def order(self, key: bytes, k: int | None = None) -> list[str]:
        """Node ids for ``key``, best first; ``k`` keeps only the first k (cheaper)."""
        if k is None or k >= len(self._seeds):
            return [n for _, n in sorted(self._weights(key), reverse=True)]
        return [n for _, n in heapq.nlargest(k, self._weights(key))]

    def owner(self, key: bytes) -> str:
        """The first node for ``key`` (ValueError when there are no nodes)."""
        if not self._seeds:
            raise ValueError("no nodes to place on")
        return max(self._weights(key))[1]


def order(key: bytes, nodes: Sequence[str], k: int | None = None) -> list[str]:
    """One-off form of ``Placement(nodes).order(key, k)``."""
    return Placement(nodes).order(key, k)
