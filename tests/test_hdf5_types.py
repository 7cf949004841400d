"""HDF5 → Arrow: every dataset kind read through a real server equals h5py's own read."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow as pa
import pytest

N = 5_000


@pytest.fixture(scope="module")
def h5_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("h5types")
    rng = np.random.default_rng(3)
    with h5py.File(d / "run.h5", "w") as f:
        f.attrs["facility"] = "test beamline"
        ev = f.create_group("events")
        ev.attrs["run"] = 42
        ev.create_dataset("time", data=np.arange(N) * 0.5, chunks=(512,))
        ev.create_dataset("adc", data=rng.integers(0, 4096, N, dtype=np.uint16), chunks=(512,), compression="gzip")
        ev.create_dataset("be", data=np.arange(N, dtype=">i4"))  # big-endian on disk
        ev.create_dataset("wave", data=rng.normal(size=(N, 8)).astype(np.float32), chunks=(256, 8))
        ev.create_dataset("label", data=np.array([f"ev{i}" for i in range(N)], dtype=h5py.string_dtype()))
        ev.create_dataset("fixed", data=np.array([b"abc"] * N, dtype="S3"))
        ev.create_dataset("ok", data=rng.random(N) > 0.5)
        ev["time"].attrs["units"] = "s"
        images = f.create_dataset("entry/data/image", data=rng.integers(0, 1000, (40, 6, 5), dtype=np.int32),
                                  chunks=(4, 6, 5))
        images.attrs["units"] = "counts"
        dt = np.dtype([("id", "<i8"), ("pos", "<f4", (3,)), ("name", h5py.string_dtype()), ("z", "<c16")])
        comp = np.zeros(100, dtype=dt)
        comp["id"] = np.arange(100)
        comp["pos"] = rng.normal(size=(100, 3))
        comp["name"] = [f"hit{i}" for i in range(100)]
        comp["z"] = np.arange(100) + 1j * np.arange(100)
        f.create_dataset("hits", data=comp)
        f.create_dataset("ragged", data=np.array([np.arange(i % 4, dtype="f8") for i in range(30)], dtype=object),
                         dtype=h5py.vlen_dtype("f8"))
        f.create_dataset("colour", data=np.array([0, 2, 1, 2], dtype="u1"),
                         dtype=h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 2}, basetype="u1"))
        f.create_dataset("f16", data=np.linspace(0, 1, 10, dtype=np.float16))
        sparse = f.create_dataset("sparse", shape=(1000, 2), dtype=">f8", chunks=(100, 2), fillvalue=-1.0)
        sparse[0:100] = np.arange(200).reshape(100, 2)   # chunks 1..4 and 6..9 never written
        sparse[500:600] = 7.0
    return d


@pytest.fixture(scope="module")
def h5_server(h5_dir):
    from conftest import start_server

    r = start_server(h5_dir, endpoint_bytes=20_000, chunk_bytes=8_000)
    yield r
    r.stop()


def read(server, request: dict) -> pa.Table:
    from conftest import read_request

    return read_request(server, request)


def test_listing(h5_server):
    names = {i.descriptor.path[0].decode() for i in h5_server.flight().list_flights()}
    assert {"run.h5:events", "run.h5:events/adc", "run.h5:entry/data/image", "run.h5:entry/data", "run.h5:hits",
            "run.h5:ragged", "run.h5:colour", "run.h5:f16"} <= names
    assert "run.h5:/" not in names  # root children have different lengths: not a table


def test_group_table_values_and_types(h5_server, h5_dir):
    t = read(h5_server, {"dataset": "run.h5:events", "entry_start": 1000, "entry_stop": 3001})
    with h5py.File(h5_dir / "run.h5") as f:
        ev = f["events"]
        assert t["time"].to_numpy().tolist() == ev["time"][1000:3001].tolist()
        assert t["adc"].type == pa.uint16() and t["adc"].to_numpy().tolist() == ev["adc"][1000:3001].tolist()
        assert t["be"].type == pa.int32() and t["be"].to_pylist() == list(range(1000, 3001))
        assert t["wave"].type == pa.list_(pa.float32(), 8)
        np.testing.assert_array_equal(np.stack(t["wave"].to_numpy(zero_copy_only=False)), ev["wave"][1000:3001])
        assert t["label"].type == pa.string() and t["label"].to_pylist() == [f"ev{i}" for i in range(1000, 3001)]
        assert t["fixed"].to_pylist()[:2] == ["abc", "abc"]
        assert t["ok"].type == pa.bool_() and t["ok"].to_pylist() == ev["ok"][1000:3001].tolist()
    assert json.loads(t.schema.metadata[b"arrowroot.attributes"]) == {"run": 42}
    assert json.loads(t.schema.field("time").metadata[b"arrowroot.attributes"]) == {"units": "s"}


def test_nd_dataset_with_slices(h5_server, h5_dir):
    with h5py.File(h5_dir / "run.h5") as f:
        full = f["entry/data/image"][...]
    t = read(h5_server, {"dataset": "run.h5:entry/data/image", "entry_start": 3, "entry_stop": 17,
                         "slices": [{"start": 1, "stop": 5, "step": 2}, {"step": 2}]})
    img = t["image"]
    assert img.type == pa.list_(pa.list_(pa.int32(), 3), 2)
    got = np.array(img.to_pylist())
    np.testing.assert_array_equal(got, full[3:17, 1:5:2, ::2])
    assert json.loads(t.schema.field("image").metadata[b"arrowroot.shape"]) == [2, 3]
    t = read(h5_server, {"dataset": "run.h5:entry/data/image", "slices": [{"start": -2}]})
    np.testing.assert_array_equal(np.array(t["image"].to_pylist()), full[:, -2:, :])


def test_compound_table(h5_server, h5_dir):
    t = read(h5_server, {"dataset": "run.h5:hits", "entry_start": 95})
    assert t.column_names == ["id", "pos", "name", "z"]
    assert t["id"].to_pylist() == [95, 96, 97, 98, 99]
    assert t["name"].to_pylist() == [f"hit{i}" for i in range(95, 100)]
    assert t["z"].type == pa.struct([("real", pa.float64()), ("imag", pa.float64())])
    assert t["z"].to_pylist()[0] == {"real": 95.0, "imag": 95.0}
    with h5py.File(h5_dir / "run.h5") as f:
        np.testing.assert_array_equal(np.array(t["pos"].to_pylist()), f["hits"]["pos"][95:])


def test_vlen_enum_half(h5_server):
    t = read(h5_server, {"dataset": "run.h5:ragged"})
    assert t["ragged"].to_pylist() == [list(np.arange(i % 4, dtype="f8")) for i in range(30)]
    t = read(h5_server, {"dataset": "run.h5:colour"})
    assert t["colour"].to_pylist() == ["RED", "BLUE", "GREEN", "BLUE"]
    t = read(h5_server, {"dataset": "run.h5:f16"})
    assert t["f16"].type == pa.float16()
    assert len(t) == 10


def test_direct_reads_match_h5py(h5_server, h5_dir):
    """Unfiltered data is read straight from the file; unwritten chunks and byte order still
    come out as h5py gives them."""
    with h5py.File(h5_dir / "run.h5") as f:
        expected = f["sparse"][...]
        be = f["events/be"][...]
    t = read(h5_server, {"dataset": "run.h5:sparse", "entry_start": 50, "entry_stop": 650})
    np.testing.assert_array_equal(np.array(t["sparse"].to_pylist()), expected[50:650])
    t = read(h5_server, {"dataset": "run.h5:sparse", "entry_start": 500, "entry_stop": 600})
    assert np.array(t["sparse"].to_pylist()).tolist() == [[7.0, 7.0]] * 100
    t = read(h5_server, {"dataset": "run.h5:events/be", "entry_start": 4990})
    assert t["be"].to_pylist() == be[4990:].tolist()


def test_entry_numbers_column(h5_server):
    t = read(h5_server, {"dataset": "run.h5:events", "columns": ["adc"], "entry_start": 10, "entry_stop": 15,
                         "with_entry_numbers": True})
    assert t.column_names == ["entry", "adc"]
    assert t["entry"].to_pylist() == [10, 11, 12, 13, 14]
