"""LH5 (pygama) files: the LH5 → Arrow mapping against lgdo's own reads, and a LEGEND-style
tree (periods/runs/types, one table per channel) served as one dataset."""

from __future__ import annotations

import threading
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest

lh5 = pytest.importorskip("lh5", reason="pip install legend-lh5io (lgdo's LH5 I/O)")
from lgdo import Array, ArrayOfEqualSizedArrays, Table, VectorOfVectors, WaveformTable  # noqa: E402

from arrowroot.clients import Client  # noqa: E402
from arrowroot.clients.errors import InvalidRequest  # noqa: E402
from arrowroot.flight_server.core.settings import Settings  # noqa: E402
from arrowroot.flight_server.server.flight import ArrowrootServer  # noqa: E402
from arrowroot.flight_server.sources import detect  # noqa: E402
from arrowroot.flight_server.sources.lh5 import Lh5Source  # noqa: E402

CHANNELS = [1027201, 1027202]
TOML = """
[[dataset]]
name = "l200/dsp"
files = "lh5/*/*/*/*-tier_dsp.lh5"
object = "ch{ch}/dsp"
keys = "{exp}-{period}-{run}-{type}-{timestamp}-tier_{tier}.lh5"
"""


def dsp_table(rng: np.random.Generator, n: int, seed_value: int) -> Table:
    counts = rng.integers(0, 4, n)
    return Table(col_dict={
        "energy": Array(rng.gamma(2.0, 100.0, n) + seed_value, attrs={"units": "keV"}),
        "timestamp": Array(np.arange(n, dtype=np.float64) + seed_value),
        "tp": VectorOfVectors([list(rng.normal(size=int(c))) for c in counts]),
        "wf": WaveformTable(t0=Array(rng.normal(size=n)), dt=Array(np.full(n, 16.0)),
                            values=ArrayOfEqualSizedArrays(nda=rng.integers(0, 1000, (n, 8)).astype(np.float32))),
        "aoesa": ArrayOfEqualSizedArrays(nda=rng.normal(size=(n, 3))),
        "is_valid": Array(rng.integers(0, 2, n).astype(bool)),
    })


def write_by_hand(path: Path, rng: np.random.Generator, n: int) -> None:
    """The same layout written with h5py alone (what non-Python DAQ writers produce)."""
    with h5py.File(path, "w") as f:
        f.attrs["datatype"] = "struct{ch1027201}"
        ch = f.create_group("ch1027201")
        ch.attrs["datatype"] = "struct{dsp}"
        t = ch.create_group("dsp")
        t.attrs["datatype"] = "table{energy,tp,wf}"
        e = t.create_dataset("energy", data=rng.normal(size=n).astype(np.float32), chunks=(16,))
        e.attrs["datatype"], e.attrs["units"] = "array<1>{real}", "keV"
        lengths = rng.integers(0, 5, n)
        tp = t.create_group("tp")
        tp.attrs["datatype"] = "array<1>{array<1>{real}}"
        tp.create_dataset("cumulative_length", data=np.cumsum(lengths).astype(np.uint32)).attrs["datatype"] = \
            "array<1>{real}"
        tp.create_dataset("flattened_data", data=rng.normal(size=int(lengths.sum()))).attrs["datatype"] = \
            "array<1>{real}"
        wf = t.create_group("wf")
        wf.attrs["datatype"] = "table{t0,dt,values}"
        for k, v in (("t0", rng.normal(size=n)), ("dt", np.full(n, 4.0))):
            wf.create_dataset(k, data=v).attrs["datatype"] = "array<1>{real}"
        wf.create_dataset("values", data=rng.integers(0, 9, (n, 5)).astype(np.int16)).attrs["datatype"] = \
            "array_of_equalsized_arrays<1,1>{real}"


def lgdo_column(path: Path, table: str, column: str, start: int = 0, stop: int | None = None) -> list:
    """One column as lgdo reads it, as Python lists (the reference)."""
    obj = lh5.read(f"{table}/{column}", str(path))
    if isinstance(obj, VectorOfVectors):
        out = [list(map(float, v)) for v in obj.view_as("ak").tolist()]
    elif isinstance(obj, Table):
        out = [dict(zip(obj.keys(), vals)) for vals in zip(*(lgdo_column(path, f"{table}/{column}", k)
                                                             for k in obj.keys()))]
        return out[start:stop]
    else:
        out = obj.nda.tolist()
    return out[start:stop]


@pytest.fixture(scope="module")
def legend(tmp_path_factory):
    root = tmp_path_factory.mktemp("legend")
    rng = np.random.default_rng(3)
    files = []
    stamp = 0
    for period in ("p03", "p04"):
        for run in (0, 1, 2):
            for typ in ("cal", "phy"):
                stamp += 1
                ts = f"202303{10 + stamp:02d}T{stamp:02d}0000Z"
                folder = root / "lh5" / typ / period / f"r{run:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"l200-{period}-r{run:03d}-{typ}-{ts}-tier_dsp.lh5"
                for k, ch in enumerate(CHANNELS):
                    n = 20 + 3 * stamp + k
                    lh5.write(dsp_table(rng, n, 1000 * stamp + k), "dsp", str(path), group=f"ch{ch}",
                              wo_mode="append" if k else "overwrite_file")
                files.append((period, run, typ, ts, path))
    write_by_hand(root / "hand.lh5", rng, 50)
    (root / "arrowroot.toml").write_text(TOML)
    server = ArrowrootServer(Settings(root=Path(root), port=0, endpoint_bytes=4096, chunk_bytes=2048))
    report = server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    client = Client(f"grpc://127.0.0.1:{server.port}")
    yield root, files, server, client, report
    client.close()
    server.shutdown()


def test_lh5_detected_before_plain_hdf5(legend, tmp_path):
    root, files, *_ = legend
    assert detect(str(files[0][-1])).format == "lh5"
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    assert detect(str(tmp_path / "plain.h5")).format == "hdf5"


def test_lh5_types_and_metadata(legend):
    _, files, *_ = legend
    (info,) = [i for i in Lh5Source().scan(str(files[0][-1])) if i.object_path == "ch1027201/dsp"]
    s = info.schema
    assert s.field("energy").type == pa.float64()
    assert s.field("energy").metadata[b"units"] == b"keV"
    assert s.field("energy").metadata[b"lh5.datatype"] == b"array<1>{real}"
    assert s.field("tp").type == pa.list_(pa.float64())
    assert s.field("aoesa").type == pa.list_(pa.float64(), 3)
    assert s.field("is_valid").type == pa.bool_()
    wf = s.field("wf").type
    assert pa.types.is_struct(wf) and {wf.field(i).name for i in range(wf.num_fields)} == {"t0", "dt", "values"}
    assert wf.field("values").type == pa.list_(pa.float32(), 8)


@pytest.mark.parametrize("start,stop", [(0, None), (3, 17), (7, 8), (5, 5)])
def test_lh5_reads_match_lgdo(legend, start, stop):
    _, files, *_ = legend
    path = files[2][-1]
    reader = Lh5Source().open(str(path), "ch1027202/dsp", "lh5.table")
    stop_ = reader.entries if stop is None else stop
    t = reader.read(["energy", "tp", "aoesa", "is_valid", "wf"], start, stop_)
    table = "ch1027202/dsp"
    assert t["energy"].to_pylist() == lgdo_column(path, table, "energy", start, stop_)
    assert t["tp"].to_pylist() == lgdo_column(path, table, "tp", start, stop_)
    assert t["aoesa"].to_pylist() == lgdo_column(path, table, "aoesa", start, stop_)
    assert t["is_valid"].to_pylist() == [bool(v) for v in lgdo_column(path, table, "is_valid", start, stop_)]
    wf = t["wf"].to_pylist()
    assert [w["t0"] for w in wf] == lgdo_column(path, f"{table}/wf", "t0", start, stop_)
    assert [w["values"] for w in wf] == lgdo_column(path, f"{table}/wf", "values", start, stop_)


def test_hand_written_lh5_matches_lgdo(legend):
    root, *_ = legend
    path = root / "hand.lh5"
    reader = Lh5Source().open(str(path), "ch1027201/dsp", "lh5.table")
    t = reader.read(["energy", "tp", "wf"], 11, 43)
    assert t["energy"].to_pylist() == lgdo_column(path, "ch1027201/dsp", "energy", 11, 43)
    assert t["tp"].to_pylist() == lgdo_column(path, "ch1027201/dsp", "tp", 11, 43)
    assert [w["values"] for w in t["wf"].to_pylist()] == lgdo_column(path, "ch1027201/dsp/wf", "values", 11, 43)


def expected(files, channels, pred, column):
    out, chans = [], []
    order = sorted(files, key=lambda f: (3 if f[0] == "p03" else 4, f[1], f[2], f[3]))  # key order
    for period, run, typ, _ts, path in order:
        if not pred(period, run, typ):
            continue
        for ch in channels:
            vals = lgdo_column(path, f"ch{ch}/dsp", column)
            out += vals
            chans += [ch] * len(vals)
    return out, chans


def test_legend_dataset_channels_and_keys(legend):
    _, files, server, client, report = legend
    assert not report.errors
    rec = server.catalog.dataset("l200/dsp")
    assert rec.attributes["file_keys"] == {"exp": "str", "period": "int", "run": "int", "type": "str",
                                           "timestamp": "timestamp", "tier": "str"}
    assert rec.attributes["channels"] == [str(c) for c in CHANNELS]
    got = client.read("l200/dsp", ["energy", "tp", "channel"], files="period == 'p03' and type == 'cal'",
                      channels=[1027201])
    want, chans = expected(files, [1027201], lambda p, r, t: p == "p03" and t == "cal", "energy")
    assert got["energy"].to_pylist() == want
    assert got["channel"].to_pylist() == chans
    assert got["tp"].to_pylist() == expected(files, [1027201], lambda p, r, t: p == "p03" and t == "cal", "tp")[0]
    both = client.read("l200/dsp", ["energy", "channel"], files="run >= 1 and run <= 2")
    want, chans = expected(files, CHANNELS, lambda p, r, t: 1 <= r <= 2, "energy")
    assert both["energy"].to_pylist() == want and both["channel"].to_pylist() == chans
    info = client.flight_info("l200/dsp", ["energy"], channels=["ch1027202"], files="timestamp >= '2023-03-20'")
    assert info.total_records == sum(len(lgdo_column(f[-1], "ch1027202/dsp", "energy")) for f in files
                                     if f[3] >= "20230320")


def test_legend_global_range_across_files(legend):
    _, files, _, client, _ = legend
    want, _ = expected(files, [1027202], lambda *a: True, "energy")
    got = client.read("l200/dsp", ["energy", "wf"], entries=(30, 200), channels=["1027202"])
    assert got["energy"].to_pylist() == want[30:200]


def test_legend_files_listing(legend):
    _, files, _, client, _ = legend
    t = client.files("l200/dsp", where="type == 'phy' and period == 4")
    assert t.schema.field("timestamp").type == pa.timestamp("s", tz="UTC")
    assert t.schema.field("run").type == pa.int64()
    assert t["run"].to_pylist() == [0, 1, 2]
    assert t["channels"].to_pylist() == [[str(c) for c in CHANNELS]] * 3
    assert t["exp"].to_pylist() == ["l200"] * 3


def test_unknown_channel_is_invalid(legend):
    *_, client, _ = legend
    with pytest.raises(InvalidRequest, match="channels"):
        client.flight_info("l200/dsp", ["energy"], channels=["999"])
