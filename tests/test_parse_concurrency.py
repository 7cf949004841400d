"""The cut and file-key parsers under concurrency (lang/limits.py ``parse_expression``).

CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not per thread: when the
garbage collector runs Python finalizers in the middle of one thread's ``ast.parse``, another
thread's parse can run and leave the count off, and the first one fails with ``SystemError: AST
constructor recursion depth mismatch`` — one cut in ~1,000 under the 32-client soak. This harness
provokes exactly that (16 threads, cyclic garbage with finalizers, deep and long cuts) and must see
no error: arrowroot parses one expression at a time, and two bystander threads that build ASTs
outside that lock (as ``traceback`` does) only make it try again. (Without the lock, the same
harness on plain ``ast.parse`` fails a few times in 10 s on this machine; with the lock but no
retry, the bystanders made CI fail once.)
"""

from __future__ import annotations

import ast
import gc
import random
import threading
import time

import pyarrow as pa
import pytest

from arrowroot.flight_server.lang import cuts, filekeys

SCHEMA = pa.schema([("nMuon", pa.int32()), ("MET_pt", pa.float32()), ("Muon_pt", pa.list_(pa.float32()))])
CUTS = ["(" * 40 + "MET_pt + nMuon * 2" + ")" * 40 + " > 3",
        " + ".join(["MET_pt"] * 150) + " > 0",
        " and ".join(["nMuon >= 2", "any(Muon_pt > 30)"] * 20),
        "not " * 60 + "(nMuon > 1)"]
KEYS = ["run >= 10 and type == 'cal'", "(" * 30 + "run" + ")" * 30 + " < 5"]
FILES = pa.table({"path": ["a", "b"], "run": [1, 12], "type": ["cal", "phy"]})


class _Finalized:
    """Cyclic garbage whose finalizer runs Python code: the collector switches threads mid-parse."""

    def __del__(self) -> None:
        total = 0
        for i in range(50):
            total += i


@pytest.mark.slow
def test_concurrent_parses_never_fail() -> None:
    errors: list[str] = []
    parsed = [0]
    old = gc.get_threshold()
    gc.set_threshold(50, 5, 5)

    def run(seed: int) -> None:
        rng = random.Random(seed)
        stop = time.monotonic() + 6.0
        while time.monotonic() < stop:
            for _ in range(20):
                a, b = _Finalized(), _Finalized()
                a.other, b.other = b, a
            try:
                if rng.random() < 0.8:
                    cuts.parse(rng.choice(CUTS), SCHEMA)
                else:
                    filekeys.evaluate(rng.choice(KEYS), FILES)
                parsed[0] += 1
            except (cuts.ExprError, ValueError):
                parsed[0] += 1
            except Exception as exc:  # noqa: BLE001 - what must never happen, collected
                errors.append(repr(exc))

    def bystander() -> None:
        """Another library building ASTs outside our lock, as ``traceback`` does to place its carets."""
        stop = time.monotonic() + 6.0
        while time.monotonic() < stop:
            for _ in range(20):
                a, b = _Finalized(), _Finalized()
                a.other, b.other = b, a
            try:
                ast.parse(CUTS[0], mode="eval")
            except SystemError:
                pass  # theirs to retry; ours must not fail

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        threads += [threading.Thread(target=bystander) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        gc.set_threshold(*old)
    assert errors == []
    assert parsed[0] > 100
