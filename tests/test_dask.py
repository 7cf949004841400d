"""Dask over arrowroot on a real distributed.LocalCluster (two worker processes): one
partition per endpoint, divisions from entry ranges, column projection, and results
equal to a direct read with the Client."""

from __future__ import annotations


import numpy as np
import pytest

pytestmark = pytest.mark.slow

dd = pytest.importorskip("dask.dataframe", reason="pip install arrowroot[dask]")
distributed = pytest.importorskip("distributed", reason="pip install arrowroot[dask]")
dak = pytest.importorskip("dask_awkward", reason="pip install arrowroot[dask]")

import awkward as ak  # noqa: E402
import uproot  # noqa: E402

from arrowroot.clients.dask import endpoint_range, read_dask, read_dask_awkward  # noqa: E402
from arrowroot.flight_server.cli.demo import write_sample_files  # noqa: E402

from conftest import start_server  # noqa: E402

EVENTS = "hep/events.root:events"


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit="1GiB") as lc:
        with distributed.Client(lc) as dclient:
            yield dclient


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = write_sample_files(tmp_path_factory.mktemp("dask"))
    (root / "runs").mkdir()
    for i in range(4):  # a multi-file dataset, for a files= selection
        with uproot.recreate(root / "runs" / f"run-{i}.root") as f:
            n = 300 + 50 * i
            f["Events"] = {"event": np.arange(1000 * i, 1000 * i + n, dtype=np.int64),
                           "x": np.full(n, i, dtype=np.int32)}
    (root / "arrowroot.toml").write_text('[[dataset]]\nname = "runs"\nfiles = "runs/*.root"\n'
                                         'object = "Events"\nkeys = "run-{run}.root"\n')
    r = start_server(root, endpoint_bytes=100_000)  # several endpoints per dataset
    yield r
    r.stop()


def served_bytes(server) -> int:
    with server.client() as c:
        return sum(v["bytes"] for v in c.action("stats")["served"].values())


def test_dataframe_equals_a_direct_read(server, cluster) -> None:
    with server.client() as c:
        info = c.flight_info(EVENTS)
        direct = c.read(EVENTS, library="pd")
    df = read_dask(server.location, EVENTS)
    assert df.npartitions == len(info.endpoints) > 1
    ranges = [endpoint_range(ep) for ep in info.endpoints]
    assert df.divisions == tuple([a for a, _ in ranges] + [ranges[-1][1] - 1])
    got = df.compute()
    assert list(got.columns) == list(direct.columns)
    assert list(got.index) == list(range(len(direct)))
    for col in ("run", "event", "nMuon", "MET_pt"):
        assert got[col].dtype == direct[col].dtype
        np.testing.assert_array_equal(got[col].to_numpy(), direct[col].to_numpy())
    assert str(got["Muon_pt"].dtype).startswith("list<")  # ArrowDtype, not strings
    assert [list(x) for x in got["Muon_pt"]] == [list(x) for x in direct["Muon_pt"]]
    assert float(df.MET_pt.sum().compute()) == pytest.approx(float(direct.MET_pt.sum()), rel=1e-6)


def test_dataframe_projection_and_divisions_prune_the_read(server, cluster) -> None:
    df = read_dask(server.location, EVENTS)
    before = served_bytes(server)
    part = df["event"].loc[7000:7999].compute()  # (dask projects a column, then a row range)
    assert part.tolist() == list(range(7000, 8000))
    moved = served_bytes(server) - before
    # one int64 column of the one or two partitions that hold 7000..7999, not the dataset
    assert 0 < moved <= 2 * 5000 * 8 + 4096


def test_dataframe_with_a_cut_and_a_file_selection(server, cluster) -> None:
    with server.client() as c:
        cut = c.read(EVENTS, ["nMuon", "MET_pt"], where="nMuon >= 2 and MET_pt > 20", library="pd")
        some = c.read("runs", ["event", "x"], files="run >= 1 and run != 2", with_entry_numbers=True, library="pd")
    df = read_dask(server.location, EVENTS, ["nMuon", "MET_pt"], where="nMuon >= 2 and MET_pt > 20")
    assert df.divisions[0] is None  # rows per partition are decided by the cut
    got = df.compute()
    assert len(got) == len(cut) > 0
    np.testing.assert_array_equal(got["MET_pt"].to_numpy(), cut["MET_pt"].to_numpy())
    runs = read_dask(server.location, "runs", ["event", "x"], files="run >= 1 and run != 2",
                     with_entry_numbers=True).compute()
    assert runs["event"].tolist() == some["event"].tolist()
    assert runs["entry"].tolist() == some["entry"].tolist() == list(runs.index)
    assert sorted(set(runs["x"])) == [1, 3]


def test_awkward_equals_a_direct_read_and_reads_only_used_columns(server, cluster) -> None:
    with server.client() as c:
        direct = c.read(EVENTS, library="ak")
    events = read_dask_awkward(server.location, EVENTS)
    assert events.fields == direct.fields
    assert events.divisions == (0, 5000, 10000, 15000, 20000)
    assert ak.array_equal(events.compute(), direct)
    high = dak.num(events.Muon_pt[events.Muon_pt > 20], axis=1)
    assert dak.necessary_columns(high) == {events.name: frozenset({"Muon_pt"})}
    before = served_bytes(server)
    got = high.compute()
    moved = served_bytes(server) - before
    assert got.tolist() == ak.num(direct.Muon_pt[direct.Muon_pt > 20], axis=1).tolist()
    with server.client() as c:
        one_column = c.read(EVENTS, ["Muon_pt"]).nbytes
    assert moved <= 1.2 * one_column  # Muon_pt only, not the other seven columns


def test_awkward_with_a_cut(server, cluster) -> None:
    with server.client() as c:
        direct = c.read(EVENTS, ["nMuon", "Muon_eta"], where="nMuon >= 3", library="ak")
    events = read_dask_awkward(server.location, EVENTS, ["nMuon", "Muon_eta"], where="nMuon >= 3")
    got = events.compute()
    assert len(got) == len(direct) > 0
    assert ak.array_equal(got, direct)
    assert str(got.type.content) == str(direct.type.content)
