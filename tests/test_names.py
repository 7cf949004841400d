"""Dataset names as users type them (uproot's and h5py's spellings) reach the same dataset."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arrowroot.clients import InvalidRequest, NotFound
from arrowroot.flight_server.core.request import dataset_name

DS = "hep/events.root:events"


@pytest.mark.parametrize("typed", ["hep/events.root:events;1", "hep/events.root:/events", "./hep/events.root:events",
                                   "hep//events.root:events", "./hep/./events.root:/events;12"])
def test_spellings_reach_the_dataset(sample_server, typed):
    with sample_server.client() as c:
        got = c.read(typed, ["nMuon"], entries=(0, 50))
        assert got.equals(c.read(DS, ["nMuon"], entries=(0, 50)))


def test_hdf5_leading_slash(sample_server):
    with sample_server.client() as c:
        name = next(n for n in c.datasets("lab/*")["name"].to_pylist() if n.endswith(":detector"))
        path, _, obj = name.partition(":")
        assert c.read(f"{path}:/{obj}", entries=(0, 5)).num_rows == 5


@pytest.mark.parametrize("typed,why", [("/srv/data/hep/events.root:events", "absolute path"),
                                       ("../hep/events.root:events", "leaves the served directory")])
def test_absolute_and_escaping_names_refused_with_a_hint(sample_server, typed, why):
    with sample_server.client() as c:
        with pytest.raises(InvalidRequest, match=why):
            c.read(typed)


def test_unknown_name_is_still_not_found(sample_server):
    with sample_server.client() as c:
        with pytest.raises(NotFound, match="closest"):
            c.read("hep/events.root:event;1")


def test_dataset_name_rules():
    assert dataset_name("a.root:t;3") == "a.root:t"
    assert dataset_name("./x/../a.h5:/g/d") == "a.h5:g/d"
    assert dataset_name("l200/dsp") == "l200/dsp"
    assert pa.array([dataset_name("cms/*.root:Events")]).to_pylist() == ["cms/*.root:Events"]
