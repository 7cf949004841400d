"""RNTuple reads under concurrency: ``RootReader.read`` reads columns in parallel threads,
and uproot builds parts of an RNTuple's metadata lazily, in place (``_column_records_dict``
is published empty and then filled). A column read racing that fill failed at random with
"The field_id: N is missing from the columns records" (about 1 first read in 600 on a data
node). The stress below makes thread switches frequent so the race shows within a few
hundred fresh readers; with the metadata settled first it never does.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import uproot

from arrowroot.flight_server.sources.root import RootReader

pytestmark = pytest.mark.slow   # a stress test of parallel first reads

FIELDS = 4
MAX_READERS = 1000
MAX_SECONDS = 20.0


def test_parallel_first_reads_of_fresh_rntuples(tmp_path):
    path = tmp_path / "nt.root"
    with uproot.recreate(path) as f:
        f["nt"] = {f"x{i}": np.arange(10, dtype=np.float64) + i for i in range(FIELDS)}
    columns = [f"x{i}" for i in range(FIELDS)]
    expected = {c: list(np.arange(10, dtype=np.float64) + i) for i, c in enumerate(columns)}
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the race window is a few bytecodes wide
    failures: list[str] = []
    reads = 0
    try:
        # no object cache: every lookup is a fresh RNTuple with none of its metadata built yet
        with uproot.open(path, object_cache=None, array_cache=None) as f:
            t0 = time.monotonic()
            while reads < MAX_READERS and time.monotonic() - t0 < MAX_SECONDS and not failures:
                reader = RootReader(str(path), "nt", "rntuple", obj=f["nt"])
                reads += 1
                try:
                    table = reader.read(columns, 0, 10)
                except Exception as exc:  # the race surfaces as ColumnUnreadable
                    failures.append(f"read {reads}: {exc}")
                    break
                assert table.to_pydict() == expected
    finally:
        sys.setswitchinterval(old)
    assert not failures, failures
    assert reads >= 200, f"only {reads} reads in {MAX_SECONDS} s: too few to show the race"
