"""The column-chunk cache (execute/cache.py) over real ROOT reads: pieces keyed by storage
(clusters), so other columns, other ranges and other users hit; LRU bound in bytes; invalidation
when the file changes; the disk tier across restarts; 0 disables; counters."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.flight_server.core.files import FileIdentity
from arrowroot.flight_server.execute.cache import ChunkCache, ChunkKey, DiskTier, column_bytes
from arrowroot.flight_server.sources import source_for

COLUMNS = ["a", "b", "c"]
CLUSTER = 2500


def write(path: Path, n: int, offset: int = 0) -> FileIdentity:
    """A TTree of ``n`` entries in clusters of CLUSTER entries (one ``extend`` each)."""
    with uproot.recreate(path) as f:
        t = f.mktree("t", {"a": "int64", "b": "float64", "c": "int32"})
        for s in range(0, n, CLUSTER):
            e = min(n, s + CLUSTER)
            t.extend({"a": np.arange(offset + s, offset + e, dtype=np.int64),
                      "b": np.arange(s, e, dtype=np.float64) * 0.5 + offset,
                      "c": np.full(e - s, offset, dtype=np.int32)})
    return FileIdentity.from_stat(str(path), os.stat(path))


class CountingReader:
    """A real uproot reader that records each read it is asked for."""

    def __init__(self, path: Path):
        self.reader = source_for("root").open(str(path), "t", "ttree")
        self.calls: list[tuple[list[str], int, int]] = []

    def read(self, columns: list[str], a: int, b: int) -> pa.Table:
        self.calls.append((list(columns), a, b))
        return self.reader.read(columns, a, b)

    def units(self, column: str):
        return self.reader.units(column)


def cached(cache: ChunkCache, ident: FileIdentity, r: CountingReader, columns, a: int, b: int) -> pa.Table:
    return cache.read(ident, "t", columns, a, b, r.read, r.units)


@pytest.fixture
def file(tmp_path: Path) -> tuple[Path, FileIdentity]:
    path = tmp_path / "f.root"
    return path, write(path, 10_000)


def test_pieces_are_clusters_so_other_columns_and_ranges_hit(file) -> None:
    path, ident = file
    r = CountingReader(path)
    assert r.units("a").covering(1000, 6000) == [(0, 2500), (2500, 5000), (5000, 7500)]
    cache = ChunkCache(64 << 20)
    first = cached(cache, ident, r, ["a", "b"], 0, 5000)
    assert r.calls == [(["a", "b"], 0, 5000)]
    assert first["a"].to_pylist() == list(range(5000))
    # another range inside the same clusters, another column set: a and b from memory, c read
    got = cached(cache, ident, r, ["c", "b"], 1000, 4000)
    assert r.calls[1:] == [(["c"], 0, 5000)]              # whole clusters, so c is cached for others too
    assert got.column_names == ["c", "b"] and got.num_rows == 3000
    assert got["b"].to_pylist() == [x * 0.5 for x in range(1000, 4000)]
    # a range reaching into a new cluster reads only that cluster
    got = cached(cache, ident, r, ["a"], 4000, 7500)
    assert r.calls[2:] == [(["a"], 5000, 7500)]
    assert got["a"].to_pylist() == list(range(4000, 7500))
    s = cache.stats()
    assert (s["hits"], s["misses"]) == (3, 7)
    assert s["bytes"] == cache.bytes == sum(column_bytes(c) for c, _ in cache._chunks.values())


def test_a_small_read_inside_a_large_cluster_reads_just_its_rows(file, monkeypatch) -> None:
    monkeypatch.setattr("arrowroot.flight_server.execute.cache.SMALL_PIECE_ROWS", 1000)
    path, ident = file
    r = CountingReader(path)
    cache = ChunkCache(64 << 20)
    assert cached(cache, ident, r, ["a"], 100, 120)["a"].to_pylist() == list(range(100, 120))
    assert r.calls == [(["a"], 100, 120)]                   # not the whole 2500-entry cluster
    cached(cache, ident, r, ["a"], 100, 120)
    assert len(r.calls) == 1                                # the same small read hits
    cached(cache, ident, r, ["a"], 0, 2500)                 # the whole cluster ...
    assert cached(cache, ident, r, ["a"], 7, 9)["a"].to_pylist() == [7, 8]   # ... serves any part
    assert len(r.calls) == 2


def test_a_multi_cluster_read_caches_each_cluster_at_its_own_size(file) -> None:
    path, ident = file
    r = CountingReader(path)
    cache = ChunkCache(64 << 20)
    cached(cache, ident, r, ["a"], 0, 10_000)
    assert r.calls == [(["a"], 0, 10_000)] and len(cache) == 4
    assert cache.bytes == 10_000 * 8                        # copies, not four views of one buffer


def test_bounded_in_bytes_least_recently_used_out(file) -> None:
    path, ident = file
    r = CountingReader(path)
    one = CLUSTER * 8
    cache = ChunkCache(3 * one)
    for start in (0, 2500, 5000):
        cached(cache, ident, r, ["a"], start, start + CLUSTER)
    cached(cache, ident, r, ["a"], 0, 100)                  # cluster 0 is now the most recent
    cached(cache, ident, r, ["a"], 7500, 10_000)            # evicts 2500..5000
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    assert cache.stats()["evictions"] == 1
    assert cache.get(ChunkKey(ident, "t", "a", 2500, 5000)) is None
    assert cache.get(ChunkKey(ident, "t", "a", 0, 2500)).to_pylist() == list(range(2500))
    huge = r.read(["a"], 0, 10_000)["a"]
    assert not cache.put(ChunkKey(ident, "t", "a", 0, 10_000), huge)  # larger than the cache
    assert cache.bytes <= cache.max_bytes


def test_a_changed_file_is_never_answered_from_old_chunks(file) -> None:
    path, ident = file
    cache = ChunkCache(64 << 20)
    old = cached(cache, ident, CountingReader(path), ["a"], 0, 100)
    assert old["a"].to_pylist() == list(range(100))
    time.sleep(0.01)
    new_ident = write(path, 12_000, offset=7)
    assert new_ident != ident
    r = CountingReader(path)
    new = cached(cache, new_ident, r, ["a"], 0, 100)
    assert len(r.calls) == 1
    assert new["a"].to_pylist() == list(range(7, 107))
    assert len(cache) == 1 and cache.stats()["invalidations"] == 1   # the old chunk is gone
    assert cache.invalidate(str(path)) == 1 and len(cache) == 0 and cache.bytes == 0


def test_same_size_and_mtime_but_another_file_is_another_identity(file, tmp_path: Path) -> None:
    """A file replaced by one with equal size and mtime (cp -p, rsync -t): inode/ctime differ."""
    path, ident = file
    other = tmp_path / "g.root"
    write(other, 10_000)
    st = os.stat(path)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    new_ident = FileIdentity.from_stat(str(path), os.stat(path))
    assert (new_ident.size, new_ident.mtime_ns) == (ident.size, ident.mtime_ns) and new_ident != ident


def test_zero_disables(file) -> None:
    path, ident = file
    r = CountingReader(path)
    cache = ChunkCache(0)
    for _ in range(3):
        assert cached(cache, ident, r, ["a", "b"], 0, 10)["b"].to_pylist()[:2] == [0.0, 0.5]
    assert len(r.calls) == 3 and len(cache) == 0 and not cache.enabled
    assert cache.stats()["hit_rate"] is None


def test_variants_are_separate_chunks(file) -> None:
    path, ident = file
    cache = ChunkCache(1 << 20)
    cache.put(ChunkKey(ident, "t", "a", 0, 3), pa.array([1, 2, 3]))
    assert cache.get(ChunkKey(ident, "t", "a", 0, 3, variant="(slice(0, 1, None),)")) is None
    assert cache.get(ChunkKey(ident, "t", "a", 0, 3)).to_pylist() == [1, 2, 3]


def test_concurrent_readers_keep_the_accounting_exact(file) -> None:
    path, ident = file
    cache = ChunkCache(3 * CLUSTER * 8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        r = CountingReader(path)
        rng = np.random.default_rng(seed)
        try:
            for _ in range(60):
                a = int(rng.integers(0, 9)) * 1000
                got = cached(cache, ident, r, COLUMNS, a, a + 1000)
                assert got["a"].to_pylist() == list(range(a, a + 1000))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 0 < cache.bytes <= cache.max_bytes
    assert cache.bytes == sum(size for _, size in cache._chunks.values())
    s = cache.stats()
    assert s["hits"] > 0 and s["evictions"] > 0


# ---------------------------------------------------------------- disk tier


def test_the_disk_tier_keeps_pieces_across_a_restart(file, tmp_path: Path) -> None:
    path, ident = file
    where = tmp_path / "cache"
    r = CountingReader(path)
    cache = ChunkCache(64 << 20, DiskTier(where, 64 << 20))
    first = cached(cache, ident, r, ["a", "b"], 0, 10_000)
    cache.disk.flush()
    assert cache.disk.stats()["chunks"] == 8 and cache.disk.stats()["writes"] == 8
    # a new process: empty memory, the same directory
    restarted = ChunkCache(64 << 20, DiskTier(where, 64 << 20))
    r2 = CountingReader(path)
    again = cached(restarted, ident, r2, ["a", "b"], 1000, 9000)
    assert r2.calls == []                                   # nothing decoded again
    assert again.equals(first.slice(1000, 8000))
    s = restarted.stats()
    assert s["disk"]["hits"] == 8 and s["hits"] == 8 and len(restarted) == 8   # promoted to memory
    # a changed file: its old pieces on disk are removed, not served
    time.sleep(0.01)
    new_ident = write(path, 10_000, offset=5)
    r3 = CountingReader(path)
    assert cached(restarted, new_ident, r3, ["a"], 0, 3)["a"].to_pylist() == [5, 6, 7]
    assert len(r3.calls) == 1
    restarted.disk.flush()
    left = [p for p in (where / "v1").rglob("*.arrow")]
    assert len(left) == 1 and restarted.disk.stats()["chunks"] == 1


def test_the_disk_tier_is_bounded_and_survives_broken_files(file, tmp_path: Path) -> None:
    path, ident = file
    where = tmp_path / "cache"
    r = CountingReader(path)
    disk = DiskTier(where, 3 * (CLUSTER * 8) + 3000)        # room for three clusters of `a`
    cache = ChunkCache(0, disk)
    assert cache.enabled
    cached(cache, ident, r, ["a"], 0, 10_000)
    disk.flush()
    s = disk.stats()
    assert s["bytes"] <= s["max_bytes"] and s["chunks"] == 3 and s["evictions"] == 1
    assert sum(f.stat().st_size for f in (where / "v1").rglob("*.arrow")) == s["bytes"]
    # a truncated cache file and a temporary file left by a crash: a miss and a clean-up, no error
    victim = sorted((where / "v1").rglob("*.arrow"))[0]
    victim.write_bytes(victim.read_bytes()[:50])
    (victim.parent / ".leftover.arrow.123.tmp").write_bytes(b"x")
    again = ChunkCache(0, DiskTier(where, 1 << 30))
    r2 = CountingReader(path)
    assert cached(again, ident, r2, ["a"], 0, 10_000)["a"].to_pylist() == list(range(10_000))
    again.disk.flush()                                      # the re-read cluster is written back
    assert not list((where / "v1").rglob("*.tmp"))
    assert again.disk.stats()["hits"] == 2                  # the two intact clusters


# ---------------------------------------------------------------- through the server


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
        # other columns over another range of the same clusters: a, b come from memory
        part = c.read("f.root:t", ["b", "c"], entries=(1000, 4000))
        s2 = c.action("stats")["cache"]
        assert part["b"].to_pylist() == [x * 0.5 for x in range(1000, 4000)]
        assert s2["hits"] - s1["hits"] >= 2
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


def test_users_share_pieces_and_hidden_data_stays_absent(tmp_path) -> None:
    """Alice warms the cache; Bob, allowed the same file, hits it with other columns; Carol, not
    allowed, gets exactly "not found" and moves no cache counter."""
    import threading as th

    from arrowroot.catalog import identities
    from arrowroot.catalog.store import Catalog
    from arrowroot.clients import Client, NotFound
    from arrowroot.flight_server.core.settings import Settings
    from arrowroot.flight_server.server.flight import ArrowrootServer

    root = tmp_path / "served"
    (root / "hep").mkdir(parents=True)
    write(root / "hep" / "f.root", 10_000)
    cat = Catalog(tmp_path / "cat.duckdb")
    identities.add_user(cat, "alice", "alice-pw-1", ["cms"])
    identities.add_user(cat, "bob", "bob-pw-22", ["cms2"])
    identities.add_user(cat, "carol", "carol-pw-3")
    identities.grant(cat, "hep/*", "group:cms")
    identities.grant(cat, "hep/f*", "group:cms2")
    server = ArrowrootServer(Settings(root=root, port=0, cache_mb=64), catalog=cat)
    server.indexer.run()
    th.Thread(target=server.serve, daemon=True).start()
    location = f"grpc://127.0.0.1:{server.port}"
    try:
        with Client(location, username="alice", password="alice-pw-1") as c:
            c.read("hep/f.root:t", ["a", "b"])
        before = server.readers.chunks.stats()
        with Client(location, username="carol", password="carol-pw-3") as c:
            with pytest.raises(NotFound):
                c.read("hep/f.root:t", ["a"])
        assert server.readers.chunks.stats() == before
        with Client(location, username="bob", password="bob-pw-22") as c:
            got = c.read("hep/f.root:t", ["b", "c"], entries=(2500, 7000))
        after = server.readers.chunks.stats()
        assert got["b"].to_pylist() == [x * 0.5 for x in range(2500, 7000)]
        assert after["hits"] - before["hits"] == 2          # b's two clusters, decoded for alice
        assert after["misses"] - before["misses"] == 2      # c's
    finally:
        server.shutdown()


def test_pieces_of_image_stacks_handed_out_work_with_take(tmp_path: Path) -> None:
    """A cached HDF5 N-D piece serves part of it as a slice; pyarrow's take/filter misread a slice
    of a fixed_size_list of fixed_size_lists, so the cache rebuilds it over its values (the
    executor takes a cut's passing rows)."""
    import h5py

    stack = np.arange(200 * 4 * 3, dtype=np.uint16).reshape(200, 4, 3)
    path = tmp_path / "stack.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=stack, chunks=(10, 4, 3), compression="gzip")
    reader = source_for("hdf5").open(str(path), "images", "hdf5.dataset")
    try:
        ident = FileIdentity.from_stat(str(path), os.stat(path))
        cache = ChunkCache(64 << 20)
        for a, b in [(0, 200), (7, 9), (150, 160)]:
            col = cache.read(ident, "images", ["images"], a, b, lambda c, x, y: reader.read(c, x, y),
                             reader.units).column(0)
            assert col.take(pa.array([0, b - a - 1])).to_pylist() == stack[[a, b - 1]].tolist()
            assert col.filter(pa.array([True] + [False] * (b - a - 1))).to_pylist() == stack[[a]].tolist()
    finally:
        reader.close()
