"""The real-file sweep (``tests/real_sweep.py``) as a test: PyTables' shipped files (the sweep of
scikit-hep-testdata's ROOT files is in ``test_root_files.py``, next to the other tests that start
from the same indexed catalog)."""

from __future__ import annotations

import pytest

import real_sweep

pytestmark = pytest.mark.slow   # every real file of the test-data packages


def test_pytables_files():
    found = real_sweep.corpora()
    if "pytables" not in found:
        pytest.skip("this PyTables wheel ships no test files")
    r = real_sweep.sweep("pytables", found["pytables"])
    assert r.listed >= 150 and r.readable >= 109
    assert sum(r.unreadable.values()) == r.listed - r.readable
    assert all(why for why in r.unreadable), r.unreadable  # every unreadable dataset says why
