"""The real-file sweep (``tests/real_sweep.py``) as a test: PyTables' shipped files and
scikit-hep-testdata's ROOT files. Every TTree branch uproot reads is a column arrowroot can
name (readable, or listed with the reason it is not)."""

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


def test_skhep_branches_uproot_reads_are_all_named():
    found = real_sweep.corpora()
    if "skhep" not in found:
        pytest.skip("scikit-hep-testdata is not installed")
    r = real_sweep.sweep("skhep", found["skhep"])
    print("\n" + real_sweep.table([r]))
    assert r.branches > 4000 and r.uproot_reads > 4000
    assert not r.missed, r.missed
