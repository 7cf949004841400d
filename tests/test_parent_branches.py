"""Parent branches of split objects as records: ROOT's Event example (scikit-hep-testdata)
and KM3NeT's online files (km3net-testdata). Naming ``event/fEvtHdr`` returns the struct
uproot builds for it; its leaves stay columns; "all columns" and globs list leaves only."""

from __future__ import annotations

import shutil

import pytest
import uproot

from arrowroot.clients import Client

from root_expect import strip_bookkeeping

skhep = pytest.importorskip("skhep_testdata")
km3 = pytest.importorskip("km3net_testdata")
MUPAGE = "mupage/mcv8.1.mupage_tuned_100G.sirene.jterbr00013288.10.root"
HEADER = "km3net_timeslice_L1/KM3NETDAQ::JDAQTimeslice/KM3NETDAQ::JDAQTimesliceHeader"


pytestmark = pytest.mark.slow   # ROOT's Event file, parent branches against uproot


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import start_server

    d = tmp_path_factory.mktemp("parents")
    shutil.copy(skhep.data_path("uproot-Event.root"), d / "Event.root")
    shutil.copy(km3.data_path(MUPAGE), d / "mupage.root")
    r = start_server(d)
    yield r
    r.stop()


def uproot_record(path, tree: str, branch: str, stop: int) -> list:
    with uproot.open(path) as f:
        return strip_bookkeeping(f[tree][branch].array(entry_stop=stop, library="ak").to_list())


def test_event_header_is_the_record_uproot_builds(server):
    want = uproot_record(skhep.data_path("uproot-Event.root"), "T", "event/fEvtHdr", 50)
    with Client(server.location) as c:
        got = c.read("Event.root:T", ["event/fEvtHdr", "fEvtHdr.fRun"], entries=(0, 50))
        everything = c.read("Event.root:T", entries=(0, 2))
        globbed = c.read("Event.root:T", ["*fEvtHdr*"], entries=(0, 2))
        schema = c.schema("Event.root:T")
    assert got["event/fEvtHdr"].to_pylist() == want
    assert want[3] == {"fEvtHdr.fEvtNum": 3, "fEvtHdr.fRun": 200, "fEvtHdr.fDate": 960312}
    assert got["fEvtHdr.fRun"].to_pylist() == [r["fEvtHdr.fRun"] for r in want]  # the leaf stays a column
    # nothing twice by default: "all columns" and globs hold leaves only
    assert not any("/" in n and n.startswith("event/") for n in everything.column_names)
    assert "event/fEvtHdr" not in schema.names and "fEvtHdr.fEvtNum" in schema.names
    assert globbed.column_names == ["fEvtHdr.fEvtNum", "fEvtHdr.fRun", "fEvtHdr.fDate"]


def test_km3net_timeslice_header_parent(server):
    rec = server.server.catalog.dataset("mupage.root:KM3NET_TIMESLICE_L1")
    assert HEADER in {c.name for c in rec.columns if c.readable}
    want = uproot_record(km3.data_path(MUPAGE), "KM3NET_TIMESLICE_L1", HEADER, 3)
    with Client(server.location) as c:
        got = c.read("mupage.root:KM3NET_TIMESLICE_L1", [HEADER], entries=(0, 3))
        default = c.read("mupage.root:KM3NET_TIMESLICE_L1", entries=(0, 1))
    assert got.column(0).to_pylist() == want and want
    assert HEADER not in default.column_names
