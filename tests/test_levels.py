"""Levels against pygama itself: a LEGEND-style production written by legend-lh5io (raw, dsp, hit,
evt) and pygama's build_tcm, served by arrowroot, read with pygama.flow's DataLoader + FileDB on the
same files. Hit-level and event-level reads, several cut combinations, both modes: same rows, same
values. Skims of both re-read to the same rows; FileDB's columns; SQL; a task run without a catalog.

pygama 2.6.2's limits decide the references (``test_pygama_limits_the_references_work_around``):
an evt-tier cut fails inside DataLoader, so evt cuts are checked against its documented "advanced
usage" (a second loader on the evt level, the TCM entry list filtered by its events, then
``reset_index`` before ``load``); event-oriented output has no pygama reference (``load_evts``
raises NotImplementedError), so it is checked against the hit-oriented rows it regroups.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from arrowroot.clients import IncompleteKeysWarning, InvalidRequest, ServerError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import legend  # noqa: E402  (bench/legend.py: the production, FileDB and DataLoader configurations)

pytest.importorskip("pygama.flow")
from pygama.flow import DataLoader, FileDB  # noqa: E402

HIT = "l200/hit"
EVT = "l200/evt"
CH = list(legend.CHANNELS)


pytestmark = pytest.mark.slow   # a LEGEND production written by legend-lh5io and compared with pygama


@pytest.fixture(scope="session")
def production(tmp_path_factory):
    return legend.write_production(tmp_path_factory.mktemp("legend"), events=300)


@pytest.fixture(scope="module")
def server(production):
    from conftest import start_server

    r = start_server(production.root)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def filedb(production):
    logging.getLogger("pygama").setLevel(logging.ERROR)
    db = FileDB(legend.filedb_config(production.root))
    db.scan_tables_columns()
    return db


def loader(filedb, channels=None, cuts=None, columns=(), files="all", config=None) -> DataLoader:
    dl = DataLoader(config or legend.DATALOADER_CONFIG, filedb)
    dl.set_files(files)
    if channels is not None:
        dl.set_datastreams(list(channels), "ch")
    if cuts:
        dl.set_cuts(cuts)
    dl.set_output(fmt="pd.DataFrame", columns=list(columns))
    return dl


def quiet(fn, *args, **kwargs):
    """DataLoader logs every field it did not find in a tier; keep the test output readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.CRITICAL)
        try:
            return fn(*args, **kwargs)
        finally:
            logging.getLogger().setLevel(level)


def same(ours: pd.DataFrame, theirs: pd.DataFrame, columns: list[str]) -> None:
    assert len(ours) == len(theirs) > 0
    for c in columns:
        np.testing.assert_array_equal(ours[c].to_numpy(), theirs[c].to_numpy(), err_msg=c)


# ---------------------------------------------------------------- the level datasets


def test_levels_are_datasets_with_qualified_columns(client):
    names = client.datasets("l200/*")["name"].to_pylist()
    assert names == [EVT, HIT]
    hit = client.schema(HIT)
    # trapEmax is in dsp and in hit, and raw has its own 'channel': qualified by tier
    assert {"dsp.trapEmax", "hit.trapEmax", "raw.channel", "channel", "cuspEmax_ctc_cal", "AoE"} <= set(hit.names)
    assert "trapEmax" not in hit.names
    assert hit.field("tp_0_est").type == pa.float32() and hit.field("tp_0_est").metadata[b"units"] == b"ns"
    assert hit.field("dsp.trapEmax").metadata[b"arrowroot.tier"] == b"dsp"
    evt = client.schema(EVT)
    assert evt.field("muon_veto").type == pa.bool_()
    assert evt.field("cuspEmax_ctc_cal").type == pa.list_(pa.float32())
    assert evt.field("channel").type == pa.list_(pa.int64())


# ---------------------------------------------------------------- hit level vs DataLoader

HIT_CASES = [
    pytest.param(None, None, "all", "", id="everything"),
    pytest.param({"hit": "cuspEmax_ctc_cal > 500 and AoE > -1"}, None, "all", "", id="hit-and-dsp-cut"),
    pytest.param({"hit": "daqenergy > 4000 and tp_0_est < 48050 and is_valid_0vbb == True"}, [1084803, 1121601],
                 "all", "", id="three-tiers-two-channels"),
    pytest.param({"hit": "AoE_classifier > 0.5"}, [1121600], "run == 'r000'", "run == 0", id="one-run-one-channel"),
]


@pytest.mark.parametrize("cuts, channels, dl_files, files", HIT_CASES)
def test_hit_level_equals_dataloader(client, filedb, cuts, channels, dl_files, files):
    columns = ["timestamp", "daqenergy", "tp_0_est", "AoE", "cuspEmax_ctc_cal"]
    dl = loader(filedb, channels, cuts, columns, dl_files)
    theirs = quiet(dl.load).reset_index(drop=True)
    where = cuts["hit"] if cuts else None
    ours = client.read(HIT, columns + ["channel"], where=where, channels=channels, files=files or None, library="pd")
    assert isinstance(ours.index, pd.RangeIndex)
    same(ours, theirs, columns)
    np.testing.assert_array_equal(ours["channel"].to_numpy(), theirs["hit_table"].to_numpy())
    assert ours["tp_0_est"].dtype == np.float32 and ours["daqenergy"].dtype == np.int32


def test_hit_level_qualified_columns_and_cut_on_them(client, production):
    import lh5

    t = client.read(HIT, ["dsp.trapEmax", "hit.trapEmax", "channel"], where="dsp.trapEmax > 1000",
                    channels=[1084804], files="timestamp == '20230311T120000Z'")
    path = production.path("dsp", legend.KEYS[0])
    dsp = lh5.read("ch1084804/dsp", str(path)).view_as("pd")
    hit = lh5.read("ch1084804/hit", str(production.path("hit", legend.KEYS[0]))).view_as("pd")
    keep = dsp["trapEmax"] > 1000
    np.testing.assert_array_equal(t["dsp.trapEmax"].to_numpy(), dsp["trapEmax"][keep].to_numpy())
    np.testing.assert_array_equal(t["hit.trapEmax"].to_numpy(), hit["trapEmax"][keep].to_numpy())


# ---------------------------------------------------------------- event level vs DataLoader


def key_offsets(client, level: str) -> dict[int, int]:
    """FileDB row (file index) → the level's first entry of that key (keys in the same order)."""
    files = client.files(level).to_pandas()
    return dict(enumerate(np.r_[0, np.cumsum(files["entries"].to_numpy())][:-1]))


EVENT_CASES = [
    pytest.param("any", {"hit": "cuspEmax_ctc_cal > 1000"}, [1084803, 1121600], id="any-two-channels"),
    pytest.param("only", {"hit": "cuspEmax_ctc_cal > 300 and AoE > -1"}, None, id="only-hit-and-dsp"),
    pytest.param("any", {"hit": "daqenergy > 8000 or dt_eff < 280"}, None, id="any-raw-or-dsp"),
    pytest.param("only", {"hit": "is_valid_0vbb == True and AoE_classifier < 0"}, [1084804, 1121601],
                 id="only-two-channels"),
]


@pytest.mark.parametrize("mode, cuts, channels", EVENT_CASES)
def test_event_level_by_hit_equals_dataloader(client, filedb, mode, cuts, channels):
    columns = ["cuspEmax_ctc_cal", "AoE", "timestamp"]
    dl = loader(filedb, channels, cuts, columns)
    el = quiet(dl.build_entry_list, tcm_level="tcm", mode=mode)
    theirs = quiet(dl.load, el, tcm_level="tcm").reset_index(drop=True)
    ours = client.read(EVT, columns + ["channel"], hit_where=cuts["hit"], mode=mode, channels=channels,
                       orientation="hit", library="pd")
    assert list(ours.columns[:2]) == ["entry", "hit_entry"]
    same(ours, theirs, columns)
    np.testing.assert_array_equal(ours["hit_entry"].to_numpy(), theirs["hit_idx"].to_numpy())
    np.testing.assert_array_equal(ours["channel"].to_numpy(), theirs["hit_table"].to_numpy())
    offsets = key_offsets(client, EVT)
    np.testing.assert_array_equal(ours["entry"].to_numpy(),
                                  theirs["file"].map(offsets).to_numpy() + theirs["evt_idx"].to_numpy())


@pytest.mark.parametrize("mode, cuts, channels", EVENT_CASES[:2])
def test_event_rows_regroup_the_hit_rows(client, mode, cuts, channels):
    """One row per event: evt columns flat, hit columns as lists in TCM order, the same hits as the
    hit-oriented read (which equals DataLoader's)."""
    kw = dict(hit_where=cuts["hit"], mode=mode, channels=channels)
    hits = client.read(EVT, ["cuspEmax_ctc_cal", "channel", "muon_veto", "multiplicity"], orientation="hit", **kw)
    events = client.read(EVT, ["cuspEmax_ctc_cal", "channel", "muon_veto", "multiplicity"], with_entry_numbers=True,
                         **kw)
    assert events.num_rows == len(set(hits["entry"].to_pylist())) > 0
    assert events["cuspEmax_ctc_cal"].type == pa.list_(pa.float32())
    flat = pa.table({"entry": np.repeat(events["entry"].to_numpy(), [len(x) for x in events["channel"].to_pylist()]),
                     "cuspEmax_ctc_cal": pa.concat_arrays([c.flatten() for c in events["cuspEmax_ctc_cal"].chunks]),
                     "channel": pa.concat_arrays([c.flatten() for c in events["channel"].chunks])})
    assert flat.to_pydict() == hits.select(["entry", "cuspEmax_ctc_cal", "channel"]).to_pydict()
    # event columns repeat per hit in the hit rows
    per_event = dict(zip(events["entry"].to_pylist(), events["muon_veto"].to_pylist()))
    assert [per_event[e] for e in hits["entry"].to_pylist()] == hits["muon_veto"].to_pylist()
    if mode == "only":  # every kept hit passes
        assert min(hits["cuspEmax_ctc_cal"].to_pylist()) > 300


def test_event_level_without_hit_cut_is_the_tcm(client, production):
    import lh5

    key = legend.KEYS[1]
    ours = client.read(EVT, ["channel", "daqenergy", "multiplicity"],
                       files=f"timestamp == '{key[2]}'")
    tcm = lh5.read(legend.TCM_TABLE, str(production.path("tcm", key))).view_as("ak")
    assert ours.num_rows == len(tcm)
    assert ours["channel"].to_pylist() == tcm["table_key"].to_list()
    assert [len(x) for x in ours["channel"].to_pylist()] == ours["multiplicity"].to_pylist()


@pytest.mark.parametrize("mode", ["any", "only"])
def test_evt_cut_equals_dataloader_advanced_usage(client, filedb, mode):
    """pygama's documented reference for evt cuts: a second loader on the evt level selects events,
    the TCM entry list is filtered by them (then reset_index, or load() fails)."""
    hit_cut = "cuspEmax_ctc_cal > 800"
    columns = ["cuspEmax_ctc_cal", "tp_0_est"]
    dl = loader(filedb, None, {"hit": hit_cut}, columns)
    el = quiet(dl.build_entry_list, tcm_level="tcm", mode=mode)
    events = quiet(loader(filedb, None, {"evt": "muon_veto == False and multiplicity >= 2"}, [],
                          config={"levels": {"evt": {"tiers": ["evt"]}}}).build_entry_list)
    chosen = el.set_index(["file", "evt_idx"]).index.isin(events.set_index(["file", "evt_idx"]).index)
    theirs = quiet(dl.load, el[chosen].reset_index(drop=True), tcm_level="tcm").reset_index(drop=True)
    ours = client.read(EVT, columns + ["channel"], hit_where=hit_cut, mode=mode,
                       where="muon_veto == False and multiplicity >= 2", orientation="hit", library="pd")
    same(ours, theirs, columns)
    np.testing.assert_array_equal(ours["channel"].to_numpy(), theirs["hit_table"].to_numpy())


def test_pygama_limits_the_references_work_around(filedb):
    """pygama 2.6.2: why the references above are built the way they are."""
    dl = loader(filedb, None, {"hit": "cuspEmax_ctc_cal > 300", "evt": "muon_veto == False"},
                ["cuspEmax_ctc_cal", "muon_veto"])
    with pytest.raises(ValueError):  # the evt cut reads the same event index once per hit
        quiet(dl.build_entry_list, tcm_level="tcm", mode="any")
    dl.set_cuts({"hit": "cuspEmax_ctc_cal > 300"})
    el = quiet(dl.build_entry_list, tcm_level="tcm", mode="only")
    with pytest.raises(NotImplementedError):
        quiet(dl.load, el, tcm_level="tcm", orientation="evt")
    assert "muon_veto" not in quiet(dl.load, el, tcm_level="tcm").columns   # evt columns dropped
    with pytest.raises(ValueError):
        quiet(loader(filedb, None, {"hit": "cuspEmax_ctc_cal > 300"}, ["cuspEmax_ctc_cal"]).build_entry_list,
              tcm_level="tcm", mode="any", save_output_columns=True)


# ---------------------------------------------------------------- entry lists are skims


def test_hit_skim_rereads_the_same_rows(client):
    kw = dict(where="cuspEmax_ctc_cal > 500 and AoE > -1", channels=[1084803, 1121600], files="period == 3")
    direct = client.read(HIT, ["cuspEmax_ctc_cal", "tp_0_est", "channel"], with_entry_numbers=True, **kw)
    info = client.skim("home/local/hit_sel", HIT, kw["where"], channels=kw["channels"], files=kw["files"])
    assert info["rows"] == direct.num_rows > 0
    again = client.read("home/local/hit_sel", ["entry", "cuspEmax_ctc_cal", "tp_0_est", "channel"])
    assert again.equals(direct)
    lineage = client.lineage("home/local/hit_sel")
    assert lineage[0]["cut"] == kw["where"] and lineage[-1]["name"] == HIT
    client.delete("home/local/hit_sel")


def test_event_skim_rereads_the_same_rows(client):
    kw = dict(hit_where="cuspEmax_ctc_cal > 300 and AoE > -1", mode="only", where="not muon_veto",
              channels=[1084803, 1084804, 1121600])
    columns = ["cuspEmax_ctc_cal", "AoE", "channel", "multiplicity"]
    direct = client.read(EVT, columns, with_entry_numbers=True, **kw)
    info = client.skim("home/local/evt_sel", EVT, kw["where"], hit_where=kw["hit_where"], hit_mode="only",
                       channels=kw["channels"])
    assert info["rows"] == direct.num_rows > 0
    again = client.read("home/local/evt_sel", ["entry", *columns])
    assert again.equals(direct)
    # a cut on the skim's lists, and a skim of the skim, keep the stored hit selection
    sub = client.read("home/local/evt_sel", ["entry", "channel"], where="len(channel) >= 2")
    want = direct.filter(pa.compute.greater_equal(pa.compute.list_value_length(direct["channel"]), 2))
    assert sub.equals(want.select(["entry", "channel"]))
    client.skim("home/local/evt_sel2", "home/local/evt_sel", "len(channel) >= 2")
    assert client.read("home/local/evt_sel2", ["entry", "channel"]).equals(sub)
    client.delete("home/local/evt_sel2")
    client.delete("home/local/evt_sel")


# ---------------------------------------------------------------- FileDB parity, SQL, tasks


def test_files_match_filedb(client, production):
    db = FileDB(legend.filedb_config(production.root, ("raw", "dsp", "hit")))
    ours = client.files(HIT).to_pandas()
    theirs = db.df.reset_index(drop=True)
    assert len(ours) == len(theirs) == len(production.keys)
    assert (ours["timestamp"].dt.strftime("%Y%m%dT%H%M%SZ").to_numpy() == theirs["timestamp"].to_numpy()).all()
    np.testing.assert_array_equal(ours["file_status"].to_numpy(), theirs["file_status"].to_numpy())
    for tier in ("raw", "dsp", "hit"):
        np.testing.assert_array_equal(ours[f"{tier}_size"].to_numpy(), theirs[f"{tier}_size"].to_numpy())
        assert ours[tier].all()
        assert all(a.endswith(b.lstrip("/")) for a, b in zip(ours[f"{tier}_file"], theirs[f"{tier}_file"]))
    assert ours["run"].tolist() == [0, 0, 1, 0] and ours["complete"].all() and not ours["misaligned"].any()
    evt = client.files(EVT, where="period == 3 and file_status == 31").to_pandas()
    assert len(evt) == 3 and list(evt.columns[5:10]) == ["raw", "dsp", "hit", "tcm", "evt"]


def test_sql_on_levels(client):
    direct = client.read(HIT, ["cuspEmax_ctc_cal"], where="AoE > 0", library="np")["cuspEmax_ctc_cal"]
    got = client.sql('SELECT count(*) AS n, sum(cuspEmax_ctc_cal) AS s FROM "l200/hit" WHERE AoE > 0').to_pylist()[0]
    assert got["n"] == len(direct) and got["s"] == pytest.approx(float(direct.astype(np.float64).sum()), rel=1e-6)
    hits = client.read(EVT, ["channel"])
    got = client.sql('SELECT count(*) AS events, sum(len(channel)) AS hits FROM "l200/evt"').to_pylist()[0]
    assert got == {"events": hits.num_rows, "hits": sum(len(x) for x in hits["channel"].to_pylist())}


def test_a_level_task_runs_without_the_catalog(server, production):
    """What a data node does: open the signed tickets with the key alone, read with a fresh
    reader cache over the same files; every tier file travels in the task."""
    import json

    import pyarrow.flight as fl

    from arrowroot.flight_server.execute.executor import StreamStats, stream_task
    from arrowroot.flight_server.execute.readers import ReaderCache
    from arrowroot.flight_server.service.tickets import TicketSigner

    req = {"dataset": EVT, "columns": ["cuspEmax_ctc_cal", "muon_veto", "channel"], "hitWhere": "AoE > 0",
           "mode": "any", "where": "multiplicity >= 2"}
    info = server.flight().get_flight_info(fl.FlightDescriptor.for_command(json.dumps(req)))
    expected = pa.concat_tables(server.flight().do_get(ep.ticket).read_all() for ep in info.endpoints)
    node = TicketSigner(server.server.tickets.key, server.server.settings.ticket_ttl)
    readers = ReaderCache(production.root)
    batches = []
    for ep in info.endpoints:
        task = node.open(ep.ticket.ticket)
        assert {t.tier for t in task.parts[0].tiers} == {"tcm", "evt", "raw", "dsp", "hit"}
        for item in stream_task(task, readers, StreamStats()):
            batch = item[0] if isinstance(item, tuple) else item
            if batch.num_rows:
                batches.append(batch)
    readers.close()
    assert pa.Table.from_batches(batches, info.schema).equals(expected) and expected.num_rows > 0


def test_level_request_errors(client):
    with pytest.raises(InvalidRequest, match="hit_where: applies to event levels"):
        client.read(HIT, ["AoE"], hit_where="AoE > 0")
    with pytest.raises(InvalidRequest, match="mode: .* not 'any' or 'only'"):
        client.read(EVT, ["AoE"], hit_where="AoE > 0", mode="some")
    with pytest.raises(InvalidRequest, match="muon_veto.* is an event column"):
        client.read(EVT, ["AoE"], hit_where="AoE > 0 and muon_veto")
    with pytest.raises(InvalidRequest, match="channels: .*999"):
        client.read(HIT, ["AoE"], channels=[999])
    with pytest.raises(InvalidRequest, match="unknown column 'dsp.trapEmx'"):
        client.read(HIT, ["AoE"], where="dsp.trapEmx > 3")


# ---------------------------------------------------------------- broken productions


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Four keys: complete; no dsp file; one dsp table one row short; a TCM row past a table's end."""
    import lh5
    from lgdo import Array, Table

    root = tmp_path_factory.mktemp("broken")
    prod = legend.Production(root, list(legend.KEYS), legend.CHANNELS[:2])
    rng = np.random.default_rng(3)
    legend.write_key(prod, legend.KEYS[0], 80, rng)
    legend.write_key(prod, legend.KEYS[1], 80, rng, tiers=("raw", "hit", "tcm", "evt"))
    legend.write_key(prod, legend.KEYS[2], 80, rng)
    short = str(prod.path("dsp", legend.KEYS[2]))   # rewritten with channel 1084804's dsp table one row short
    first, second = (lh5.read(f"ch{ch}/dsp", short) for ch in legend.CHANNELS[:2])
    lh5.write(first, "ch1084803/dsp", short, wo_mode="of")
    lh5.write(Table(col_dict={k: Array(v.nda[:-1]) for k, v in second.items()}), "ch1084804/dsp", short)
    legend.write_key(prod, legend.KEYS[3], 80, rng)
    tcm_path = str(prod.path("tcm", legend.KEYS[3]))
    tcm = lh5.read(legend.TCM_TABLE, tcm_path)
    tcm.row_in_table.flattened_data.nda[5] += 10_000
    lh5.write(tcm, legend.TCM_TABLE, tcm_path, wo_mode="of")
    (root / "arrowroot.toml").write_text(legend.TOML)
    return prod


@pytest.fixture(scope="module")
def broken_client(broken):
    from conftest import start_server

    r = start_server(broken.root)
    with r.client() as c:
        yield r, c
    r.stop()


def test_broken_production_is_reported(broken_client, broken):
    server, c = broken_client
    report = " ".join(e["error"] for e in c.action("rescan")["errors"])
    assert "lacks tier(s) dsp" in report and "tiers disagree on length" in report
    files = c.files(HIT).to_pydict()
    assert files["file_status"] == [7, 5, 7, 7]
    assert files["missing"] == [[], ["dsp"], [], []]
    assert files["misaligned"] == [False, False, True, False]
    assert len(c.files(HIT, where="not complete")) == 1


def test_misaligned_tiers_name_both_files(broken_client):
    _, c = broken_client
    with pytest.raises(InvalidRequest) as err:
        c.read(HIT, ["AoE", "daqenergy"])
    text = str(err.value)
    assert "tiers disagree on length" in text
    assert "tier_raw.lh5:ch1084804/raw" in text and "tier_dsp.lh5:ch1084804/dsp" in text
    with pytest.raises(InvalidRequest, match="tiers disagree on length"):
        c.read(EVT, ["AoE"], files=f"timestamp == '{legend.KEYS[2][2]}'")
    # left out by a file filter, the other keys read
    with pytest.warns(IncompleteKeysWarning):  # (the key without dsp is left out too)
        fine = c.read(HIT, ["AoE"], files=f"timestamp != '{legend.KEYS[2][2]}'")
    assert fine.num_rows > 0


def test_a_missing_tier_leaves_its_key_out_unless_asked(broken_client):
    _, c = broken_client
    good = f"timestamp != '{legend.KEYS[2][2]}'"
    with pytest.warns(IncompleteKeysWarning, match="lacks dsp"):
        some = c.read(HIT, ["AoE", "cuspEmax_ctc_cal", "channel"], files=good)
    with pytest.raises(InvalidRequest, match=r"every selected key .* lacks a tier .*allow_missing"):
        c.read(HIT, ["AoE"], files=f"timestamp == '{legend.KEYS[1][2]}'")
    everything = c.read(HIT, ["AoE", "cuspEmax_ctc_cal", "channel"], files=good, allow_missing=True)
    assert everything.num_rows > some.num_rows
    missing = everything.num_rows - some.num_rows
    assert everything["AoE"].null_count == missing and everything["cuspEmax_ctc_cal"].null_count == 0
    # the event level: the key without dsp is left out too, or read with its dsp columns null
    only = f"timestamp == '{legend.KEYS[1][2]}'"
    with pytest.raises(InvalidRequest, match="lacks a tier"):
        c.read(EVT, ["AoE"], files=only)
    events = c.read(EVT, ["AoE", "cuspEmax_ctc_cal"], files=only, hit_where="cuspEmax_ctc_cal > 100",
                    allow_missing=True)
    assert events.num_rows > 0
    assert all(v is None for hits in events["AoE"].to_pylist() for v in hits)
    assert all(v > 100 for hits in events["cuspEmax_ctc_cal"].to_pylist() for v in hits)


def test_a_tcm_past_a_tables_end_is_an_error(broken_client):
    server, c = broken_client
    with pytest.raises(ServerError, match=r"event \d+ points at entry \d+ of .*tier_raw.lh5:ch\d+/raw, which has \d+ "
                                          "entries"):
        c.read(EVT, ["daqenergy"], files=f"timestamp == '{legend.KEYS[3][2]}'")
    assert c.action("health")["status"] == "ok"
    assert c.read(EVT, ["daqenergy"], files=f"timestamp == '{legend.KEYS[0][2]}'").num_rows > 0


def test_levels_over_http(server, client):
    """The HTTP API and the web view need nothing level-specific: a level is a dataset with tasks."""
    import httpx

    from arrowroot.flight_server.web import WebServer

    web = WebServer(server.server.service, 0).start()
    try:
        with httpx.Client(base_url=web.url.rstrip("/"), timeout=60) as h:
            d = h.get(f"/api/datasets/{HIT}").json()
            assert d["kind"] == "level" and d["entries"] == client.datasets(HIT)["entries"][0].as_py()
            r = h.get(f"/api/data/{HIT}", params={"columns": "cuspEmax_ctc_cal,AoE,channel",
                                                 "where": "cuspEmax_ctc_cal > 500 and AoE > -1", "format": "arrow"})
            assert r.status_code == 200, r.text
            got = pa.ipc.open_stream(r.content).read_all()
            want = client.read(HIT, ["cuspEmax_ctc_cal", "AoE", "channel"], where="cuspEmax_ctc_cal > 500 and AoE > -1")
            assert got.to_pydict() == want.to_pydict() and got.num_rows > 0
            for name in (HIT, EVT):
                page = h.get(f"/datasets/{name}")
                assert page.status_code == 200 and "cuspEmax_ctc_cal" in page.text
            r = h.get(f"/api/data/{EVT}", params={"columns": "channel,muon_veto", "format": "parquet"})
            assert r.status_code == 200
            # event reads by a hit cut take the same words as Flight and the Python client
            for kw in (dict(hit_where="cuspEmax_ctc_cal > 500", mode="any", where="not muon_veto"),
                       dict(hit_where="cuspEmax_ctc_cal > 300 and AoE > -1", mode="only", orientation="hit")):
                r = h.get(f"/api/data/{EVT}", params={"columns": "cuspEmax_ctc_cal,channel", "format": "arrow", **kw})
                assert r.status_code == 200, r.text
                got = pa.ipc.open_stream(r.content).read_all()
                want = client.read(EVT, ["cuspEmax_ctc_cal", "channel"], **kw)
                assert got.num_rows > 0 and got.to_pydict() == want.to_pydict()
            r = h.get(f"/api/data/{EVT}", params={"columns": "channel", "hit_where": "AoE > 0", "mode": "some"})
            assert r.status_code == 400 and "mode" in r.json()["message"]
            # the page's form has them for an event level (and previews with them), not for a hit level
            page = h.get(f"/datasets/{EVT}", params={"columns": "cuspEmax_ctc_cal,channel", "rows": "5",
                                                     "hit_where": "cuspEmax_ctc_cal > 500", "mode": "any"})
            only = h.get(f"/datasets/{EVT}", params={"columns": "cuspEmax_ctc_cal,channel", "rows": "5",
                                                     "hit_where": "cuspEmax_ctc_cal > 500"})
            assert page.status_code == 200 and 'id="preview-error"' not in page.text
            assert 'name="hit_where" value="cuspEmax_ctc_cal &gt; 500"' in page.text
            assert '<option value="any" selected>' in page.text and 'id="preview"' in page.text
            assert 'name="hit_where"' not in h.get(f"/datasets/{HIT}").text

            def shown(text: str) -> str:
                return text[text.index('id="preview"'):].split("</table>")[0]

            plain = h.get(f"/datasets/{EVT}", params={"columns": "cuspEmax_ctc_cal,channel", "rows": "5"})
            assert shown(only.text) != shown(plain.text)  # mode "only": the hits at or below 500 are gone
            assert "hit_where=cuspEmax_ctc_cal" in only.text  # the downloads and snippets carry it too
    finally:
        web.stop()


@pytest.mark.slow
def test_a_data_node_serves_level_tasks(production, client, tmp_path):
    """Real processes: a coordinator plans, a data node (no catalog) runs the level tasks."""
    import os
    import re
    import subprocess
    import time

    from arrowroot.clients import Client as Reader

    key = tmp_path / "node.key"
    key.write_text("a shared secret for the coordinator and its node\n")
    cmd = [sys.executable, "-m", "arrowroot.flight_server.cli"]
    env = {**os.environ, "ARROWROOT_NODE_TTL": "3"}
    procs = []

    def start(args: list[str], log: str) -> str:
        p = subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=open(tmp_path / log, "w"), text=True, env=env)
        procs.append(p)
        line = p.stdout.readline()
        found = re.search(r"grpc://[\w.:-]+", line)
        assert found, (line, (tmp_path / log).read_text()[-2000:])
        return found.group(0)

    try:
        coordinator = start(["serve", str(production.root), "--port", "0", "--catalog", str(tmp_path / "cat.duckdb"),
                             "--key-file", str(key)], "coordinator.log")
        node = start(["node", str(production.root), "--port", "0", "--join", coordinator, "--key-file", str(key),
                      "--id", "n1"], "node.log")
        with Reader(coordinator) as c:
            deadline = time.monotonic() + 60
            while c.action("health")["indexing"] or not any(n["alive"] for n in c.action("nodes")["nodes"]):
                assert time.monotonic() < deadline, "the coordinator did not index or see its node"
                time.sleep(0.2)
            kw = dict(hit_where="cuspEmax_ctc_cal > 500", mode="any", where="not muon_veto", orientation="hit")
            info = c.flight_info(EVT, ["cuspEmax_ctc_cal", "channel"], **kw)
            first = {loc.uri.decode() if isinstance(loc.uri, bytes) else loc.uri for ep in info.endpoints
                     for loc in ep.locations[:1]}
            assert first == {node}
            got = c.read_info(info).read_all()
        with Reader(node) as n:
            served = n.action("stats")["served"]
            assert served["requests"] == len(info.endpoints) and served["rows"] == got.num_rows
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
    assert got.to_pydict() == client.read(EVT, ["cuspEmax_ctc_cal", "channel"], **kw).to_pydict()
    assert got.num_rows > 0


def test_older_tcm_layout_array_id_array_idx(production, client, tmp_path):
    """pygama before 2.1 named the TCM's lists array_id/array_idx: the same events come out."""
    import shutil

    import lh5
    from lgdo import Table

    root = tmp_path / "old"
    key = legend.KEYS[0]
    for tier in legend.TIERS:
        dst = root / production.path(tier, key).relative_to(production.root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(production.path(tier, key), dst)
    tcm_path = str(root / production.path("tcm", key).relative_to(production.root))
    tcm = lh5.read(legend.TCM_TABLE, tcm_path)
    lh5.write(Table(col_dict={"array_id": tcm.table_key, "array_idx": tcm.row_in_table}), legend.TCM_TABLE,
              tcm_path, wo_mode="of")
    (root / "arrowroot.toml").write_text(legend.TOML)
    from conftest import start_server

    old = start_server(root)
    try:
        with old.client() as c:
            assert c.schema(EVT).metadata  # the level exists with the old layout
            kw = dict(hit_where="cuspEmax_ctc_cal > 500", mode="only")
            got = c.read(EVT, ["cuspEmax_ctc_cal", "channel", "muon_veto"], **kw)
        want = client.read(EVT, ["cuspEmax_ctc_cal", "channel", "muon_veto"], files=f"timestamp == '{key[2]}'", **kw)
        assert got.to_pydict() == want.to_pydict() and got.num_rows > 0
    finally:
        old.stop()


def test_a_level_skim_notices_a_changed_tier(production, tmp_path):
    """A skim pins its level's files, every tier's: a dsp file rewritten since refuses the skim."""
    import os
    import shutil

    from conftest import start_server

    root = tmp_path / "one"
    key = legend.KEYS[2]
    for tier in legend.TIERS:
        dst = root / production.path(tier, key).relative_to(production.root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(production.path(tier, key), dst)
    (root / "arrowroot.toml").write_text(legend.TOML)
    one = start_server(root)
    try:
        with one.client() as c:
            c.skim("home/local/sel", HIT, "AoE > 0")
            c.skim("home/local/evsel", EVT, "multiplicity >= 2", hit_where="AoE > 0", hit_mode="any")
            assert c.read("home/local/sel", ["AoE"]).num_rows > 0
            dsp = root / production.path("dsp", key).relative_to(production.root)
            st = dsp.stat()
            os.utime(dsp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))    # rewritten (same bytes, new mtime)
            c.action("rescan")
            for name in ("home/local/sel", "home/local/evsel"):
                with pytest.raises(InvalidRequest, match="parent changed since the skim was made"):
                    c.read(name, ["AoE"])
    finally:
        one.stop()
