"""Compressed LH5 waveforms (radware-sigcompress, ULEB128 zig-zag) written by legend-lh5io,
decoded server-side: values equal lh5io's own decompressed read (ArrayOfEncodedEqualSizedArrays)
or, where lh5io 0.3 cannot decode (VectorOfEncodedVectors), lh5io's per-waveform decoder."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow as pa
import pytest

pytestmark = pytest.mark.slow

lh5 = pytest.importorskip("lh5", reason="pip install legend-lh5io")
from lgdo import types as lt  # noqa: E402
from lh5.compression import RadwareSigcompress, ULEB128ZigZagDiff, radware  # noqa: E402

from arrowroot.flight_server.sources import lh5_encoded  # noqa: E402
from arrowroot.flight_server.sources.base import SourceError  # noqa: E402
from arrowroot.flight_server.sources.lh5 import Lh5Source  # noqa: E402

N, SAMPLES = 3000, 120
SHIFT = -32768


def waveforms(rng: np.random.Generator) -> np.ndarray:
    return (rng.normal(0, 15, (N, SAMPLES)).cumsum(axis=1) + 14000).astype(np.uint16)


def encoded_vov(rows: list[np.ndarray]) -> lt.VectorOfEncodedVectors:
    """A VectorOfEncodedVectors built with lh5io's radware encoder, one waveform at a time
    (lh5io 0.3's own VectorOfVectors encoder fails with 'too many values to unpack')."""
    encs = []
    for r in rows:
        data, nbytes = radware.encode(r[None, :], shift=SHIFT)
        encs.append(data[0, :nbytes[0]])
    flat = lt.Array(np.concatenate(encs).astype(np.uint8))
    ends = lt.Array(np.cumsum([len(e) for e in encs]).astype(np.uint32))
    return lt.VectorOfEncodedVectors(
        lt.VectorOfVectors(flattened_data=flat, cumulative_length=ends),
        lt.Array(np.array([len(r) for r in rows], dtype=np.uint32)),
        attrs={"codec": "radware_sigcompress", "codec_shift": SHIFT, "units": "ADC"})


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    rng = np.random.default_rng(7)
    wf = waveforms(rng)
    rad = lt.ArrayOfEqualSizedArrays(nda=wf)
    rad.attrs["compression"] = RadwareSigcompress(codec_shift=SHIFT)
    uleb = lt.ArrayOfEqualSizedArrays(nda=wf.astype(np.int32) - 14000)
    uleb.attrs["compression"] = ULEB128ZigZagDiff()
    rows = [wf[i, :int(rng.integers(8, SAMPLES))] for i in range(N)]  # lh5io 0.3 radware: < 8 samples do not round-trip
    table = lt.Table(col_dict={
        "energy": lt.Array(rng.normal(size=N)),
        "waveform": lt.WaveformTable(t0=lt.Array(np.arange(N) * 1e3), t0_units="ns",
                                     dt=lt.Array(np.full(N, 16.0)), dt_units="ns", values=rad),
        "wf_uleb": lt.WaveformTable(t0=lt.Array(np.zeros(N)), dt=lt.Array(np.full(N, 16.0)), values=uleb),
        "trace": encoded_vov(rows),
    })
    path = tmp_path_factory.mktemp("enc") / "raw.lh5"
    lh5.write(table, "raw", str(path), wo_mode="overwrite_file")
    return path, wf, rows


def test_encoded_columns_are_listed_readable(raw):
    path, *_ = raw
    (info,) = Lh5Source().scan(str(path))
    cols = {c.name: c for c in info.columns}
    assert all(c.readable for c in cols.values()), [c.reason for c in cols.values()]
    s = info.schema
    assert s.field("waveform").type.field("values").type == pa.list_(pa.int32(), SAMPLES)
    assert s.field("trace").type == pa.list_(pa.int32())
    meta = s.field("trace").metadata
    assert meta[b"lh5.codec"] == b"radware_sigcompress" and meta[b"units"] == b"ADC"
    assert meta[b"lh5.datatype"] == b"array<1>{encoded_array<1>{real}}"
    assert cols["trace"].compressed_bytes < cols["trace"].uncompressed_bytes
    # endpoints are sized by decoded bytes, also for encoded values inside a waveform table
    assert cols["waveform"].uncompressed_bytes >= 4 * N * SAMPLES
    assert info.entries == N


@pytest.mark.parametrize("start,stop", [(0, N), (1, 2), (777, 2999), (2048, 2049), (5, 5)])
def test_equal_sized_match_lh5io_decompressed_read(raw, start, stop):
    path, *_ = raw
    reader = Lh5Source().open(str(path), "raw", "lh5.table")
    t = reader.read(["waveform", "wf_uleb"], start, stop)
    assert t.num_rows == stop - start
    ref = lh5.read("raw", str(path), field_mask=["waveform", "wf_uleb"], start_row=start, n_rows=stop - start)
    for col in ("waveform", "wf_uleb"):
        values = t[col].combine_chunks().field("values")
        assert values.type == pa.list_(pa.int32(), SAMPLES)
        got = np.asarray(values.flatten()).reshape(stop - start, SAMPLES)
        want = ref[col].values.nda
        assert want.dtype == np.int32 and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert t["waveform"].combine_chunks().field("t0").to_pylist() == ref["waveform"].t0.nda.tolist()


def test_vector_of_encoded_vectors_match_lh5io_decoder(raw):
    """lh5io 0.3 cannot read a VectorOfEncodedVectors back ('ndarray' has no 'to_vov'), so the
    reference is its radware decoder run on each waveform's stored bytes."""
    path, wf, rows = raw
    reader = Lh5Source().open(str(path), "raw", "lh5.table")
    got = reader.read(["trace"], 100, 2900)["trace"].to_pylist()
    assert [len(g) for g in got] == [len(r) for r in rows[100:2900]]
    with h5py.File(path, "r", locking=False) as f:
        ends = np.concatenate([[0], f["raw/trace/encoded_data/cumulative_length"][()]])
        data = f["raw/trace/encoded_data/flattened_data"][()]
    for i in range(100, 2900):
        row = data[ends[i]:ends[i + 1]][None, :]
        out, n = radware.decode((row, np.array([row.shape[1]], dtype=np.uint32)), shift=SHIFT)
        assert out[0, :n[0]].tolist() == got[i - 100], i
    # and they are the waveforms written (but for lh5io's encoder losing the last bits of a
    # few short waveforms)
    same = sum(g == r.tolist() for g, r in zip(got, rows[100:2900]))
    assert same >= 0.95 * len(got)


def test_parallel_and_serial_decode_agree(raw):
    path, *_ = raw
    with h5py.File(path, "r", locking=False) as f:
        group = f["raw/waveform/values"]
        spec = lh5_encoded.inspect(group, "array_of_encoded_equalsized_arrays<1,1>{real}")
        serial = lh5_encoded.read(group, spec, 3, N, threads=1)
        parallel = lh5_encoded.read(group, spec, 3, N, threads=4)
    assert serial.equals(parallel)


def test_corrupt_encoded_bytes_raise_source_error(raw, tmp_path):
    path, *_ = raw
    bad = tmp_path / "bad.lh5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        data = f["raw/waveform/values/encoded_data/flattened_data"]
        data[0:2] = [0xFF, 0xFF]        # first waveform's header now claims 65535 samples
        f["raw/trace/decoded_size"][7] = 5000
    reader = Lh5Source().open(str(bad), "raw", "lh5.table")
    with pytest.raises(SourceError, match="corrupt"):
        reader.read(["waveform"], 0, 10)
    with pytest.raises(SourceError, match="corrupt"):
        reader.read(["trace"], 0, 10)
    assert reader.read(["waveform"], 1, 10).num_rows == 9


def test_unknown_codec_is_listed_unreadable(raw, tmp_path):
    path, *_ = raw
    odd = tmp_path / "odd.lh5"
    odd.write_bytes(path.read_bytes())
    with h5py.File(odd, "r+") as f:
        f["raw/trace"].attrs["codec"] = "zstd_magic"
    (info,) = Lh5Source().scan(str(odd))
    trace = next(c for c in info.columns if c.name == "trace")
    assert not trace.readable and "unknown codec 'zstd_magic'" in trace.reason


def test_encoded_waveforms_served_over_flight(raw, serve):
    path, *_ = raw
    server = serve(path.parent, endpoint_bytes=64 * 1024)
    with server.client() as client:
        (name,) = [n for n in client.datasets()["name"].to_pylist() if n.endswith("raw")]
        t = client.read(name, ["waveform", "trace"], entries=(10, 2010))
    assert t.num_rows == 2000
    ref = lh5.read("raw", str(path), field_mask=["waveform"], start_row=10, n_rows=2000)
    got = np.asarray(t["waveform"].combine_chunks().field("values").flatten()).reshape(2000, SAMPLES)
    np.testing.assert_array_equal(got, ref["waveform"].values.nda)
    assert t.schema.field("trace").metadata[b"lh5.codec"] == b"radware_sigcompress"
