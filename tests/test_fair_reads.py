"""Head-of-line blocking: a tiny read must not wait for all the large reads' queued work.

The source pools (core/readpool.py) serve small reads first. The first tests use the pool itself
with sleeping jobs (no CPU needed, so they hold on a loaded machine); the last runs a real server
with large ROOT streams in flight and times a tiny read against them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.flight_server.core.readpool import ReadPool
from arrowroot.flight_server.sources import root as root_source

from conftest import start_server


def _in_thread(fn) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_a_small_read_is_served_before_queued_large_work():
    pool = ReadPool(2, name="test")
    large = [pool.submit(time.sleep, 0.05) for _ in range(40)]  # 1 s of work on 2 workers
    t0 = time.perf_counter()
    assert pool.submit(lambda: 42, nbytes=1600).result(timeout=10) == 42
    tiny = time.perf_counter() - t0
    done = sum(f.done() for f in large)
    assert done < 10, f"the small job ran after {done} of 40 large jobs"  # FIFO: after all 40
    assert tiny < 0.5, tiny
    for f in large:
        f.result(timeout=10)


def test_large_reads_keep_their_order_and_are_not_starved():
    pool = ReadPool(2, name="test", large_every=4)
    order: list[str] = []
    lock = threading.Lock()

    def job(name: str) -> str:
        with lock:
            order.append(name)
        return name

    gate = threading.Event()
    held = [pool.submit(gate.wait, 10) for _ in range(2)]  # both workers busy while the jobs queue
    deadline = time.monotonic() + 10
    while pool.pending() != (0, 0) and time.monotonic() < deadline:  # both workers have taken one
        time.sleep(0.001)
    large = [pool.submit(job, f"L{i}") for i in range(5)]
    small = [pool.submit(job, "s", nbytes=10) for _ in range(40)]
    assert pool.pending() == (40, 5)
    gate.set()
    assert all(f.result(timeout=10) for f in held)
    assert [f.result(timeout=10) for f in large] == [f"L{i}" for i in range(5)]
    assert all(f.result(timeout=10) == "s" for f in small)
    assert [x for x in order if x != "s"] == [f"L{i}" for i in range(5)]  # first come, first served
    assert order[:3] == ["s", "s", "s"] and order.index("L4") < 25, order  # one large in every 4 picks
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=10)
    assert list(pool.map(lambda x: x * x, range(5), nbytes=10)) == [0, 1, 4, 9, 16]
    assert pool.pending() == (0, 0)


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fair")
    rng = np.random.default_rng(5)
    n = 800_000
    with uproot.recreate(root / "big.root", compression=uproot.ZLIB(4)) as f:
        f.mktree("t", {f"x{i}": np.float64 for i in range(8)})
        for _ in range(0, n, 50_000):
            f["t"].extend({f"x{i}": np.round(rng.normal(size=50_000), 2) for i in range(8)})
    return root


@pytest.mark.slow
def test_a_tiny_read_does_not_wait_for_large_reads_in_flight(big_root: Path):
    """Large streams of 8 columns each queue their decompression jobs; a tiny read then asks for 2
    columns × 100 entries. First come first served, it would finish after most of them."""
    server = start_server(big_root, endpoint_bytes=16 << 20, chunk_bytes=16 << 20)
    location = f"grpc://127.0.0.1:{server.server.port}"
    try:
        with Client(location) as c:
            c.read("big.root:t", ["x0", "x1"], entries=(0, 100))  # open the file outside the timing
        big = Client(location, threads=8)
        out: dict = {}

        def large() -> None:
            t0 = time.perf_counter()
            out["table"] = big.read("big.root:t")
            out["seconds"] = time.perf_counter() - t0

        worker = _in_thread(large)
        deadline = time.monotonic() + 30
        while root_source._POOL.pending()[1] < 24 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)
        queued = root_source._POOL.pending()[1]
        with Client(location) as c:
            t0 = time.perf_counter()
            tiny = c.read("big.root:t", ["x0", "x1"], entries=(200_000, 200_100))
            latency = time.perf_counter() - t0
        worker.join(120)
        big.close()
        assert tiny.num_rows == 100 and out["table"].num_rows == 800_000
        with uproot.open(big_root / "big.root") as f:
            x1, x7 = (f["t"][x].array(library="np") for x in ("x1", "x7"))
        np.testing.assert_array_equal(tiny["x1"].to_numpy(), x1[200_000:200_100])
        np.testing.assert_array_equal(out["table"]["x7"].to_numpy(), x7)
        assert queued >= 16, "the large read finished before it queued work: nothing was measured"
        assert latency < 0.5 * out["seconds"], (latency, out["seconds"])
    finally:
        server.stop()
