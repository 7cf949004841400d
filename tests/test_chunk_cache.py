"""The column-chunk cache (execute/cache.py) over real ROOT reads: hits, LRU bound in
bytes, invalidation when the file changes, 0 disables, counters."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.flight_server.execute.cache import ChunkCache, ChunkKey, FileIdentity, column_bytes
from arrowroot.flight_server.sources import source_for

COLUMNS = ["a", "b", "c"]


def write(path: Path, n: int, offset: int = 0) -> FileIdentity:
    with uproot.recreate(path) as f:
        f["t"] = {"a": np.arange(offset, offset + n, dtype=np.int64),
                  "b": np.arange(n, dtype=np.float64) * 0.5 + offset,
                  "c": np.full(n, offset, dtype=np.int32)}
    st = os.stat(path)
    return FileIdentity.of(str(path), st.st_size, st.st_mtime)


class CountingReader:
    """A real uproot reader that records which columns each read asked for."""

    def __init__(self, path: Path):
        self.reader = source_for("root").open(str(path), "t", "tree")
        self.calls: list[list[str]] = []

    def at(self, a: int, b: int):
        def read(columns: list[str]) -> pa.Table:
            self.calls.append(list(columns))
            return self.reader.read(columns, a, b)
        return read


@pytest.fixture
def file(tmp_path: Path) -> tuple[Path, FileIdentity]:
    path = tmp_path / "f.root"
    return path, write(path, 10_000)


def test_second_read_is_served_from_memory_and_equal(file) -> None:
    path, ident = file
    r = CountingReader(path)
    cache = ChunkCache(64 << 20)
    first = cache.read(ident, "t", COLUMNS, 0, 5000, r.at(0, 5000))
    again = cache.read(ident, "t", COLUMNS, 0, 5000, r.at(0, 5000))
    assert r.calls == [COLUMNS]                 # the second read touched no file
    assert again.equals(first)
    assert first["a"].to_pylist() == list(range(5000))
    # a subset in another order comes from memory too; another range is another chunk
    wider = cache.read(ident, "t", ["c", "a"], 0, 5000, r.at(0, 5000))
    assert wider.column_names == ["c", "a"] and r.calls == [COLUMNS]
    cache.read(ident, "t", ["a"], 5000, 10_000, r.at(5000, 10_000))
    assert r.calls[-1] == ["a"]
    s = cache.stats()
    assert (s["hits"], s["misses"], s["chunks"]) == (5, 4, 4)
    assert s["bytes"] == cache.bytes == sum(column_bytes(first[c]) for c in COLUMNS) + 5000 * 8


def test_bounded_in_bytes_least_recently_used_out(file) -> None:
    path, ident = file
    r = CountingReader(path)
    one = column_bytes(r.at(0, 1000)(["a"])["a"])   # 8000 bytes for 1000 int64
    cache = ChunkCache(3 * one)
    for start in (0, 1000, 2000):
        cache.read(ident, "t", ["a"], start, start + 1000, r.at(start, start + 1000))
    cache.read(ident, "t", ["a"], 0, 1000, r.at(0, 1000))          # 0 is now the most recent
    cache.read(ident, "t", ["a"], 3000, 4000, r.at(3000, 4000))    # evicts 1000..2000
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    assert cache.stats()["evictions"] == 1
    assert cache.get(ChunkKey(ident, "t", "a", 1000, 2000)) is None
    assert cache.get(ChunkKey(ident, "t", "a", 0, 1000)).to_pylist() == list(range(1000))
    huge = r.at(0, 10_000)(["a"])["a"]
    assert not cache.put(ChunkKey(ident, "t", "a", 0, 10_000), huge)  # larger than the cache
    assert cache.bytes <= cache.max_bytes


def test_a_changed_file_is_never_answered_from_old_chunks(file) -> None:
    path, ident = file
    cache = ChunkCache(64 << 20)
    old = cache.read(ident, "t", ["a"], 0, 100, CountingReader(path).at(0, 100))
    assert old["a"].to_pylist() == list(range(100))
    new_ident = write(path, 12_000, offset=7)
    assert new_ident != ident
    r = CountingReader(path)
    new = cache.read(new_ident, "t", ["a"], 0, 100, r.at(0, 100))
    assert r.calls == [["a"]]
    assert new["a"].to_pylist() == list(range(7, 107))
    assert len(cache) == 1 and cache.stats()["invalidations"] == 1   # the old chunk is gone
    assert cache.invalidate(str(path)) == 1 and len(cache) == 0 and cache.bytes == 0


def test_zero_disables(file) -> None:
    path, ident = file
    r = CountingReader(path)
    cache = ChunkCache(0)
    for _ in range(3):
        assert cache.read(ident, "t", ["a", "b"], 0, 10, r.at(0, 10))["b"].to_pylist()[:2] == [0.0, 0.5]
    assert len(r.calls) == 3 and len(cache) == 0 and not cache.enabled
    assert cache.stats()["hit_rate"] is None


def test_variants_are_separate_chunks(file) -> None:
    path, ident = file
    cache = ChunkCache(1 << 20)
    cache.put(ChunkKey(ident, "t", "a", 0, 3), pa.array([1, 2, 3]))
    assert cache.get(ChunkKey(ident, "t", "a", 0, 3, variant="cut")) is None
    assert cache.get(ChunkKey(ident, "t", "a", 0, 3)).to_pylist() == [1, 2, 3]


def test_concurrent_readers_keep_the_accounting_exact(file) -> None:
    path, ident = file
    cache = ChunkCache(200_000)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        r = CountingReader(path)
        rng = np.random.default_rng(seed)
        try:
            for _ in range(60):
                a = int(rng.integers(0, 9)) * 1000
                got = cache.read(ident, "t", COLUMNS, a, a + 1000, r.at(a, a + 1000))
                assert got["a"].to_pylist() == list(range(a, a + 1000))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.bytes <= cache.max_bytes
    assert cache.bytes == sum(size for _, size in cache._chunks.values())
    s = cache.stats()
    assert s["hits"] + s["misses"] == 4 * 60 * 3 and s["hits"] > 0


def test_the_server_reads_through_its_cache_and_never_serves_a_changed_file_from_it(serve, tmp_path) -> None:
    from arrowroot.clients import Unavailable

    root = tmp_path / "served"
    root.mkdir()
    write(root / "f.root", 5000)
    server = serve(root, cache_mb=64)
    with server.client() as c:
        first = c.read("f.root:t", ["a", "b"], where="c == 0")
        s0 = c.action("stats")["cache"]
        again = c.read("f.root:t", ["a", "b"], where="c == 0")
        s1 = c.action("stats")["cache"]
        assert again.equals(first) and first["a"].to_pylist() == list(range(5000))
        assert s1["hits"] > s0["hits"] and s1["misses"] == s0["misses"]   # all from memory
        assert s1["bytes"] > 0 and s1["max_bytes"] == 64 << 20
        time.sleep(0.01)
        write(root / "f.root", 6000, offset=3)                                # the file changes
        with pytest.raises(Unavailable, match="modified"):
            c.read("f.root:t", ["a"])
        server.server.indexer.run()
        assert c.read("f.root:t", ["a"])["a"].to_pylist() == list(range(3, 6003))


def test_cache_mb_zero_disables_it_in_the_server(serve, tmp_path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    write(root / "f.root", 100)
    server = serve(root, cache_mb=0)
    with server.client() as c:
        for _ in range(2):
            assert c.read("f.root:t", ["a"]).num_rows == 100
        s = c.action("stats")["cache"]
    assert (s["hits"], s["misses"], s["chunks"], s["max_bytes"]) == (0, 0, 0, 0)
