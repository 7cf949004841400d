"""Multi-file datasets over a real server: 50 ROOT files as one table, file-key filters,
global entry ranges across file boundaries, schema drift, and files coming and going."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.clients.errors import InvalidRequest
from arrowroot.flight_server.lang import filekeys
from arrowroot.flight_server.core.request import ReadSpec
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.service.caller import Caller

pytestmark = pytest.mark.slow

N_FILES = 50
TOML = """
[[dataset]]
name = "nano"
files = "cms/*.root"
object = "Events"
keys = "nano-{run}-{part}.root"

[[dataset]]
name = "drift"
files = "drift/*.root"
object = "Events"
"""


def write_tree(path: Path, rng: np.random.Generator, n: int, first_event: int, extra: dict | None = None) -> None:
    """A TTree (mktree + extend, two clusters) with flat and jagged branches."""
    branches = {"event": "int64", "nMuon": "int32", "Muon_pt": "var * float32", "x": "int32"}
    for k, v in (extra or {}).items():
        branches[k] = v
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", branches)
        for start in (0, n // 2):
            m = n // 2 if start == 0 else n - n // 2
            counts = rng.poisson(1.5, m).astype(np.int32)
            data = {
                "event": np.arange(first_event + start, first_event + start + m, dtype=np.int64),
                "nMuon": counts,
                "Muon_pt": ak.unflatten(rng.exponential(20.0, int(counts.sum())).astype(np.float32), counts),
                "x": rng.integers(0, 100, m).astype(np.int32),
            }
            for k, v in (extra or {}).items():
                data[k] = rng.integers(0, 100, m).astype(np.dtype(v))
            tree.extend(data)


def cms_name(i: int) -> str:
    return f"nano-r{i // 2:03d}-{i % 2}.root"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("multifile")
    rng = np.random.default_rng(7)
    (root / "cms").mkdir()
    # written in shuffled order so that file order on disk/mtime is not the key order
    for i in rng.permutation(N_FILES):
        write_tree(root / "cms" / cms_name(int(i)), rng, 60 + 7 * int(i), 10_000 * int(i))
    (root / "drift").mkdir()
    write_tree(root / "drift" / "a1.root", rng, 40, 0, {"extra": "int32", "w": "int32"})
    write_tree(root / "drift" / "a2.root", rng, 30, 100, {"w": "float64"})     # no 'extra'; w widened
    write_tree(root / "drift" / "a10.root", rng, 20, 200, {"extra": "int32", "w": "int16"})
    (root / "arrowroot.toml").write_text(TOML)
    settings = Settings(root=Path(root), port=0, endpoint_bytes=8 * 1024, chunk_bytes=4 * 1024)
    server = ArrowrootServer(settings)
    report = server.indexer.run()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    client = Client(f"grpc://127.0.0.1:{server.port}")
    yield root, server, client, report
    client.close()
    server.shutdown()


def reference(root: Path, names: list[str], columns: list[str]) -> pa.Table:
    """uproot's own reads of the files, concatenated in the given order."""
    parts = []
    for name in names:
        with uproot.open(root / name) as f:
            arrays = f["Events"].arrays(columns, library="ak")
        parts.append(pa.table({c: ak.to_arrow(arrays[c], extensionarray=False) for c in columns}))
    return pa.concat_tables([p.cast(parts[0].schema) for p in parts])


def same(got: pa.Table, want: pa.Table) -> None:
    assert got.num_rows == want.num_rows
    for c in want.column_names:
        assert got.column(c).to_pylist() == want.column(c).to_pylist(), c


def key_order() -> list[str]:
    return [f"cms/{cms_name(i)}" for i in range(N_FILES)]  # run, then part


def test_declared_and_folder_datasets_are_listed(served):
    _, server, client, report = served
    names = set(client.datasets()["name"].to_pylist())
    assert {"nano", "cms/*.root:Events", "drift", "cms/nano-r000-0.root:Events"} <= names
    assert report.derived == 3
    # files whose objects differ are no folder dataset (declared, they are one with drift handling)
    assert "drift/*.root:Events" not in names
    why = {d["dataset"]: d for d in report.not_merged}["drift/*.root:Events"]
    assert why["files"] == 3 and why["reason"] == "different columns: a2.root lacks 'extra'"
    nano = server.catalog.dataset("nano")
    assert nano.origin == "declared" and len(nano.parts) == N_FILES
    assert nano.attributes["file_keys"] == {"run": "int", "part": "int"}
    assert [p.path for p in nano.parts] == key_order()
    folder = server.catalog.dataset("cms/*.root:Events")
    assert folder.origin == "folder" and folder.entries == nano.entries
    assert client.datasets("nano")["entries"].to_pylist() == [sum(60 + 7 * i for i in range(N_FILES))]


def test_read_across_all_files_matches_uproot(served):
    root, _, client, _ = served
    got = client.read("nano", ["event", "Muon_pt", "nMuon"])
    same(got, reference(root, key_order(), ["event", "Muon_pt", "nMuon"]))


def test_global_range_starting_and_stopping_mid_file(served):
    root, server, client, _ = served
    want = reference(root, key_order()[:12], ["event", "Muon_pt"])
    got = client.read("nano", ["event", "Muon_pt"], entries=(65, 700), with_entry_numbers=True)
    same(got, want.slice(65, 700 - 65))
    assert got["entry"].to_pylist() == list(range(65, 700))
    # one endpoint per file at least (entries 65..700 touch files 1..8); none spans two files
    plan = server.service.plan(Caller(), ReadSpec("nano", ("event", "Muon_pt"), 65, 700))
    assert len(plan.tasks) >= 8
    for task in plan.tasks:
        owners = [p for p in plan.dataset.parts
                  if p.entry_offset <= task.entry_start and task.entry_stop <= p.entry_offset + p.entries]
        assert len(owners) == 1
    # negative numbers count from the end, as in uproot
    tail = client.read("nano", ["event"], entries=(-5, None))
    assert tail["event"].to_pylist() == reference(root, key_order()[-1:], ["event"])["event"].to_pylist()[-5:]


def test_file_key_filter(served):
    root, _, client, _ = served
    files = "run >= 10 and run <= 20 and part == 1"
    chosen = [f"cms/{cms_name(i)}" for i in range(N_FILES) if 10 <= i // 2 <= 20 and i % 2 == 1]
    info = client.flight_info("nano", ["event"], files=files)
    assert info.total_records == sum(60 + 7 * i for i in range(N_FILES) if 10 <= i // 2 <= 20 and i % 2 == 1)
    assert len(info.endpoints) >= len(chosen)
    same(client.read("nano", ["event", "Muon_pt"], files=files), reference(root, chosen, ["event", "Muon_pt"]))
    # ranges count within the selection; entry numbers stay the dataset's
    one = client.read("nano", ["event"], entries=(10, 50), files="run == 'r012' and part == 0",
                      with_entry_numbers=True)
    assert one["event"].to_pylist() == list(range(240_010, 240_050))
    offset = sum(60 + 7 * i for i in range(24))
    assert one["entry"].to_pylist() == list(range(offset + 10, offset + 50))
    assert client.read("nano", ["event"], files="run in [3, 4]").num_rows == sum(60 + 7 * i for i in (6, 7, 8, 9))
    assert client.read("nano", ["event"], files="path == 'cms/nano-r001-1.root'").num_rows == 60 + 7 * 3
    assert client.flight_info("nano", ["event"], files="run > 1000").total_records == 0


@pytest.mark.parametrize("bad", ["run >", "__import__('os').system('true')", "run.__class__", "nope == 1",
                                 "run == 'abc'", "(lambda: 1)()", "[x for x in run]", "run + 1"])
def test_bad_filters_are_invalid_requests(served, bad):
    _, _, client, _ = served
    with pytest.raises(InvalidRequest, match="files"):
        client.flight_info("nano", ["event"], files=bad)


def test_files_listing(served):
    _, _, client, _ = served
    t = client.files("nano", where="run >= 23")
    assert t.column_names == ["path", "run", "part", "entries", "size"]
    assert t.schema.field("run").type == pa.int64()
    assert t["path"].to_pylist() == key_order()[46:]
    assert t["entries"].to_pylist() == [60 + 7 * i for i in range(46, 50)]
    assert client.files("nano").num_rows == N_FILES
    actions = dict((a.type, a.description) for a in client.flight.list_actions())
    assert "files" in actions


def test_schema_drift_is_reported_and_enforced(served):
    root, server, client, report = served
    drift = {d["dataset"]: d for d in report.drift}["drift"]
    assert drift["missing"]["extra"]["examples"] == ["drift/a2.root:Events"]
    assert drift["widened"]["w"]["type"] == "double"
    rec = server.catalog.dataset("drift")
    assert "schema_drift" in rec.attributes
    assert [p.path for p in rec.parts] == ["drift/a1.root", "drift/a2.root", "drift/a10.root"]  # natural order
    with pytest.raises(InvalidRequest, match=r"'extra'.*drift/a2\.root"):
        client.read("drift", ["event", "extra"])
    got = client.read("drift", ["event", "extra", "w"], allow_missing=True)
    names = ["drift/a1.root", "drift/a2.root", "drift/a10.root"]
    extra = []
    for name in names:
        with uproot.open(root / name) as f:
            extra += f["Events"]["extra"].array(library="np").tolist() if "extra" in f["Events"] else [None] * 30
    assert got["extra"].to_pylist() == extra
    w = [float(v) for name in names for v in uproot.open(root / name)["Events"]["w"].array(library="np")]
    assert got.schema.field("w").type == pa.float64() and got["w"].to_pylist() == w
    # a read that avoids the missing column's files needs no allow_missing
    assert client.read("drift", ["extra"], entries=(0, 40)).num_rows == 40


def test_rescan_picks_up_added_and_removed_files(served):
    root, _, client, _ = served
    before = client.datasets("nano")["entries"].to_pylist()[0]
    rng = np.random.default_rng(99)
    write_tree(root / "cms" / "nano-r100-0.root", rng, 33, 5_000_000)
    out = client.action("rescan", {})
    assert out["added"] == 1 and out["derived"] == 3
    assert client.datasets("nano")["entries"].to_pylist()[0] == before + 33
    last = client.read("nano", ["event"], files="run == 100")
    assert last["event"].to_pylist() == list(range(5_000_000, 5_000_033))
    (root / "cms" / "nano-r100-0.root").unlink()
    (root / "cms" / cms_name(0)).unlink()
    out = client.action("rescan", {})
    assert out["removed"] == 2
    assert client.datasets("nano")["entries"].to_pylist()[0] == before - 60
    assert client.files("nano")["path"].to_pylist()[0] == f"cms/{cms_name(1)}"


def test_key_type_rules():
    assert filekeys.infer_type("run", ["r004", "r120"]) == "int"
    assert filekeys.infer_type("period", ["p03"]) == "int"
    assert filekeys.infer_type("exp", ["l200"]) == "str"           # 'l' is not exp's initial
    assert filekeys.infer_type("n", ["007", "12"]) == "int"
    assert filekeys.infer_type("timestamp", ["20230311T235840Z"]) == "timestamp"
    assert filekeys.infer_type("t", ["2023-03-11T23:58:40"]) == "timestamp"
    assert filekeys.infer_type("e", ["1.5", "2"]) == "float"
    assert filekeys.infer_type("type", ["cal", "phy"]) == "str"
    assert filekeys.convert("r004", "int") == 4
    assert filekeys.convert("20230311T235840Z", "timestamp") == "2023-03-11T23:58:40Z"
    t = filekeys.Template("{type}/{period}/l200-{period2}-{run}.lh5")
    assert t.match("data/cal/p03/l200-p03-r004.lh5") == {"type": "cal", "period": "p03", "period2": "p03",
                                                         "run": "r004"}
    assert t.match("data/cal/p03/other.lh5") is None


def test_config_errors_are_reported(tmp_path):
    from arrowroot.flight_server.datasets.config import load_config
    (tmp_path / "arrowroot.toml").write_text('[[dataset]]\nname = "x"\nfiles = "*.root"\nobject = "t{run}"\n')
    with pytest.raises(ValueError, match="placeholder"):
        load_config(tmp_path)
    (tmp_path / "arrowroot.toml").write_text("[[dataset]\n")
    with pytest.raises(ValueError, match="arrowroot.toml"):
        load_config(tmp_path)


def test_drift_is_logged_once_not_at_every_run(served, caplog):
    root, server, client, report = served
    with caplog.at_level(logging.WARNING, logger="arrowroot.multifile"):
        again = server.indexer.run()  # nothing changed
    assert any(d["dataset"] == "drift" for d in again.drift)  # the report still has it
    assert not [r for r in caplog.records if "schema drift" in r.getMessage()]
