"""The client accepts uproot's spellings, and library="pd" gives jagged columns as uproot does."""

from __future__ import annotations

import pytest
import uproot

DS = "hep/events.root:events"


def test_entry_start_stop_filter_name_and_cut(sample_server):
    with sample_server.client() as c:
        want = c.read(DS, ["Muon_pt", "Muon_eta"], entries=(10, 200), where="nMuon >= 1")
        assert c.read(DS, filter_name="Muon_*", entry_start=10, entry_stop=200, cut="nMuon >= 1").equals(want)
        assert c.read(DS, filter_name=["Muon_pt", "Muon_eta"], entries=slice(10, 200), cut="nMuon >= 1").equals(want)
        with pytest.raises(ValueError, match="not both"):
            c.read(DS, ["nMuon"], filter_name="Muon_*")
        with pytest.raises(ValueError, match="not both"):
            c.read(DS, entries=(0, 5), entry_start=1)


def test_pandas_jagged_columns_like_uproot(sample_server, sample_dir):
    with sample_server.client() as c:
        df = c.read(DS, ["nMuon", "Muon_pt"], entry_stop=300, library="pd")
    with uproot.open(sample_dir / "hep" / "events.root") as f:
        ref = f["events"].arrays(["nMuon", "Muon_pt"], entry_stop=300, library="pd")
    assert list(df.columns) == ["nMuon", "Muon_pt"] and len(df) == 300
    assert str(df["Muon_pt"].dtype) == str(ref["Muon_pt"].dtype) == "awkward"
    assert df["nMuon"].tolist() == ref["nMuon"].tolist()
    assert df["Muon_pt"].ak.sum(axis=1).tolist() == pytest.approx(ref["Muon_pt"].ak.sum(axis=1).tolist())
