"""ROOT → Arrow: every branch kind read through a real server equals uproot's own read."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

N = 30_000
FLAT = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "u16": np.uint16,
        "u32": np.uint32, "u64": np.uint64, "f32": np.float32, "f64": np.float64}


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("roottypes")
    rng = np.random.default_rng(7)
    branches = {name: np.dtype(t).name for name, t in FLAT.items()}
    branches.update({"flag": "bool", "n": "int32", "jag": "var * float32", "jag64": "var * int64",
                     "fix": "3 * float64", "img": "2 * 4 * int16"})
    with uproot.recreate(d / "types.root") as f:
        tree = f.mktree("events", branches, title="all types")
        inner = f.mktree("dir/sub/tree", {"x": "float64"})
        for start in range(0, N, 7_000):  # uneven clusters
            n = min(7_000, N - start)
            counts = rng.integers(0, 5, n).astype(np.int32)
            data = {name: (rng.integers(0, 100, n).astype(t) if t != np.float32 and t != np.float64
                           else rng.normal(size=n).astype(t)) for name, t in FLAT.items()}
            data.update({
                "flag": rng.random(n) > 0.5,
                "n": counts,
                "jag": ak.unflatten(rng.normal(size=int(counts.sum())).astype(np.float32), counts),
                "jag64": ak.unflatten(rng.integers(-5, 5, int(counts.sum())), counts),
                "fix": rng.normal(size=(n, 3)),
                "img": rng.integers(-100, 100, (n, 2, 4)).astype(np.int16),
            })
            tree.extend(data)
        inner.extend({"x": np.arange(10.0)})
        f["nt"] = {"a": np.arange(100, dtype=np.int32), "b": ak.Array([[1.0, 2.0]] * 100)}  # an RNTuple
    return d


@pytest.fixture(scope="module")
def root_server(root_dir):
    from conftest import start_server

    r = start_server(root_dir, endpoint_bytes=200_000, chunk_bytes=60_000)
    yield r
    r.stop()


def read(server, request: dict) -> pa.Table:
    from conftest import read_request

    return read_request(server, request)


def test_datasets_listed_with_nested_dirs_and_rntuple(root_server):
    names = {i.descriptor.path[0].decode(): i.total_records for i in root_server.flight().list_flights()}
    assert names == {"types.root:events": N, "types.root:dir/sub/tree": 10, "types.root:nt": 100}


def test_arrow_types(root_server):
    schema = root_server.flight().get_schema(fl.FlightDescriptor.for_path("types.root:events")).schema
    for name, t in FLAT.items():
        assert schema.field(name).type == pa.from_numpy_dtype(np.dtype(t)), name
    assert schema.field("flag").type == pa.bool_()
    assert schema.field("jag").type == pa.list_(pa.float32())
    assert pa.types.is_list(schema.field("jag64").type) and schema.field("jag64").type.value_type == pa.int64()
    assert schema.field("fix").type.list_size == 3 and schema.field("fix").type.value_type == pa.float64()
    img = schema.field("img").type
    assert img.list_size == 2 and img.value_type.list_size == 4 and img.value_type.value_type == pa.int16()
    assert schema.field("jag").metadata[b"arrowroot.source_type"] == b"float[]"


@pytest.mark.parametrize("start,stop", [(0, N), (6_999, 7_001), (7_000, 14_000), (123, 29_877), (N - 1, N), (500, 500)])
def test_values_equal_uproot(root_server, root_dir, start, stop):
    table = read(root_server, {"dataset": "types.root:events", "entry_start": start, "entry_stop": stop})
    expected = uproot.open(root_dir / "types.root")["events"].arrays(entry_start=start, entry_stop=stop)
    assert table.num_rows == stop - start
    for name in expected.fields:
        got = ak.from_arrow(table[name])
        assert ak.all(ak.flatten(got, axis=None) == ak.flatten(expected[name], axis=None)), name
        assert ak.to_list(ak.num(got, axis=1)) == ak.to_list(ak.num(expected[name], axis=1)) \
            if expected[name].ndim > 1 else True


def test_many_endpoints_cluster_aligned(root_server, root_dir):
    c = root_server.flight()
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"dataset": "types.root:events"})))
    assert len(info.endpoints) > 3
    clusters = set(uproot.open(root_dir / "types.root")["events"].common_entry_offsets())
    table = pa.concat_tables(c.do_get(ep.ticket).read_all() for ep in info.endpoints)
    assert table.num_rows == N
    assert table["i64"].to_pylist() == uproot.open(root_dir / "types.root")["events"]["i64"].array(library="np").tolist()
    # endpoints of a large range start at cluster boundaries (the planner cuts nowhere else
    # unless one cluster alone is bigger than an endpoint)
    starts = [root_server.server.tickets.open(ep.ticket.ticket).entry_start for ep in info.endpoints]
    assert starts == sorted(starts)
    assert sum(s in clusters for s in starts) >= len(clusters) - 1


def test_nested_directory_tree_and_rntuple(root_server, root_dir):
    t = read(root_server, {"dataset": "types.root:dir/sub/tree"})
    assert t["x"].to_pylist() == list(np.arange(10.0))
    nt = read(root_server, {"dataset": "types.root:nt", "entry_start": 10, "entry_stop": 20})
    assert nt["a"].to_pylist() == list(range(10, 20))
    assert nt["b"].to_pylist() == [[1.0, 2.0]] * 10


def test_globs_and_exact_names(root_server):
    t = read(root_server, {"dataset": "types.root:events", "columns": ["u*", "f32"], "entry_stop": 5})
    assert t.column_names == ["u8", "u16", "u32", "u64", "f32"]
    t = read(root_server, {"dataset": "types.root:events", "columns": ["jag", "j*"], "entry_stop": 5})
    assert t.column_names == ["jag", "jag64"]
