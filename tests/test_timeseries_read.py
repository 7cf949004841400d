"""Reading by time through a real server: GWOSC-layout files spread over a folder (one channel,
gaps, fill), gwpy's shipped file, ASDF (UTC) traces, time columns, channel search, errors, and
Client.read_timeseries to pyarrow / gwpy / pandas."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients.errors import InvalidRequest
from tests.test_timeseries_scan import GPS, write_gwosc

RATE = 4096
DUR = 8


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from tests.conftest import start_server
    root = tmp_path_factory.mktemp("gwosc")
    (root / "H1").mkdir()
    starts = [GPS, GPS + DUR, GPS + 3 * DUR]          # a gap of 8 s between the 2nd and 3rd file
    strains = {}
    for i, t0 in enumerate(starts):
        path = root / "H1" / f"H-H1_GWOSC_4KHZ_R1-{t0}-{DUR}.hdf5"
        strains[t0] = write_gwosc(path, t0, DUR, RATE, seed=i)
    (root / "L1").mkdir()                                  # overlapping files: refused by time
    for t0 in (GPS, GPS + DUR // 2):
        write_gwosc(root / "L1" / f"L-L1_GWOSC_4KHZ_R1-{t0}-{DUR}.hdf5", t0, DUR, RATE, detector="L1")
    (root / "plain.h5").write_bytes(b"")
    with h5py.File(root / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.arange(10.0))
    server = start_server(root)
    yield server, strains
    server.stop()


def strain_name(client, det: str = "H1") -> str:
    (name,) = [n for n in client.datasets()["name"].to_pylist() if n.startswith(f"{det}/*") and
               n.endswith("strain/Strain")]
    return name


def expected(strains: dict, a: float, b: float) -> np.ndarray:
    out = []
    for t0, values in sorted(strains.items()):
        times = t0 + np.arange(len(values)) / RATE
        out.append(values[(times >= a) & (times < b)])
    return np.concatenate(out)


def test_time_range_across_files_mid_sample(gw):
    server, strains = gw
    with server.client() as c:
        name = strain_name(c)
        a, b = GPS + 5.00003, GPS + 13.5                   # starts between samples, spans two files
        t = c.read(name, time=(a, b), with_time=True)
    np.testing.assert_array_equal(t["Strain"].to_numpy(), expected(strains, a, b))
    times = t["time"].to_numpy()
    assert t.schema.field("time").type == pa.float64()
    assert times[0] >= a and times[0] - a < 1 / RATE and times[-1] < b
    np.testing.assert_allclose(np.diff(times), 1 / RATE, rtol=0, atol=1e-6)
    meta = json.loads(t.schema.metadata[b"arrowroot.timeseries"])
    assert meta["channel"] == "H1:Strain" and meta["rate"] == RATE and meta["scale"] == "gps" and meta["gaps"] == []


def test_gap_reported_and_filled(gw):
    server, strains = gw
    with server.client() as c:
        name = strain_name(c)
        info = c.flight_info(name, time=(GPS + 14, GPS + 26))
        gaps = json.loads(info.app_metadata)["gaps"]
        assert gaps == [{"start": GPS + 16.0, "stop": GPS + 24.0, "samples": 8 * RATE, "between": True}]
        plain = c.read(name, time=(GPS + 14, GPS + 26))
        filled = c.read(name, time=(GPS + 14, GPS + 26), fill_gaps=True, with_time=True)
    assert plain.num_rows == 4 * RATE and info.total_records == plain.num_rows
    assert filled.num_rows == 12 * RATE and filled["Strain"].null_count == 8 * RATE
    values = filled["Strain"].to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(values[:2 * RATE], strains[GPS + DUR][6 * RATE:])
    np.testing.assert_array_equal(values[10 * RATE:], strains[GPS + 3 * DUR][:2 * RATE])
    np.testing.assert_allclose(np.diff(filled["time"].to_numpy()), 1 / RATE, atol=1e-6)   # one regular grid
    assert json.loads(filled.schema.metadata[b"arrowroot.timeseries"])["filled"] is True


def test_empty_and_outside_ranges(gw):
    server, _ = gw
    with server.client() as c:
        name = strain_name(c)
        inside_gap = c.read(name, time=(GPS + 17, GPS + 18))
        before = c.flight_info(name, time=(GPS - 100, GPS - 50))
        empty = c.read(name, time=(GPS + 3, GPS + 3))
    assert inside_gap.num_rows == 0 and empty.num_rows == 0 and before.total_records == 0
    assert json.loads(before.app_metadata)["gaps"][0]["between"] is False


def test_iso_bounds_and_single_file(gw):
    server, strains = gw
    with server.client() as c:
        (single,) = [n for n in c.datasets()["name"].to_pylist() if n.startswith(f"H1/H-H1_GWOSC_4KHZ_R1-{GPS}")
                     and n.endswith("strain/Strain")]
        # GPS 1126259446 = 2015-09-14T09:50:29Z (17 leap seconds)
        t = c.read(single, time=("2015-09-14T09:50:30Z", "2015-09-14T09:50:31.5Z"))
    np.testing.assert_array_equal(t["Strain"].to_numpy(), strains[GPS][RATE:int(2.5 * RATE)])


def test_overlap_rate_and_bad_requests_are_invalid(gw):
    server, _ = gw
    with server.client() as c:
        with pytest.raises(InvalidRequest, match=r"L-L1_GWOSC_4KHZ_R1-1126259446-8\.hdf5.*overlap"):
            c.read(strain_name(c, "L1"), time=(GPS, GPS + 4))
        name = strain_name(c)
        with pytest.raises(InvalidRequest, match="before time_start"):
            c.read(name, time=(GPS + 5, GPS + 1))
        with pytest.raises(InvalidRequest, match="by entries or by time"):
            c.read(name, entries=(0, 10), time=(GPS, GPS + 1))
        with pytest.raises(InvalidRequest, match="ISO-8601"):
            c.read(name, time=("next tuesday", None))
        with pytest.raises(InvalidRequest, match="cannot be read by time"):
            c.read("plain.h5:x", time=(0, 1))
        with pytest.raises(InvalidRequest, match="fill_gaps"):
            c.read(name, time=(GPS, GPS + 1), fill_gaps=True, with_entry_numbers=True)
    flight = server.flight()                   # a JSON request with the proto's field names
    cmd = {"dataset": name, "timeStart": GPS + 1, "timeStopIso": "2015-09-14T09:50:31Z", "withTime": True}
    info = flight.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(cmd)))
    assert info.total_records == RATE
    with pytest.raises(pa.ArrowInvalid, match="not both"):       # INVALID_ARGUMENT
        flight.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(
            {"dataset": name, "timeStart": GPS, "timeStartIso": "2015-09-14T09:50:31Z"})))


def test_channel_search(gw):
    server, _ = gw
    with server.client() as c:
        found = c.channels("H1:*")
        assert set(found["channel"].to_pylist()) == {"H1:Strain", "H1:DQmask"}
        strain = c.channels("H1:Str*", rate=[1000, None])
        names = strain["name"].to_pylist()
        assert len(names) == 4 and all(n.endswith("strain/Strain") for n in names)   # 3 files + the folder
        later = c.channels("H1:Strain", time=[GPS + 20, GPS + 30])
        assert sorted(later["name"].to_pylist()) == sorted(
            [n for n in names if "*" in n or f"-{GPS + 3 * DUR}-" in n])
        assert c.channels("H1:Strain", unit="m").num_rows == 0
        with pytest.raises(InvalidRequest, match="criteria.rate"):
            c.channels("H1:*", rate="fast")


@pytest.mark.slow
def test_read_timeseries_to_gwpy_and_pandas(gw):
    gwpy = pytest.importorskip("gwpy.timeseries")
    server, strains = gw
    with server.client() as c:
        with pytest.raises(InvalidRequest, match="datasets have it"):
            c.read_timeseries("H1:Strain", GPS, GPS + 1)          # three files and the folder
        name = strain_name(c)
        ts = c.read_timeseries("H1:Strain", GPS + 14, GPS + 26, dataset=name, library="gwpy")
        df = c.read_timeseries("H1:Strain", GPS + 1, GPS + 2, dataset=name, library="pd")
        table = c.read_timeseries("H1:Strain", GPS + 1, GPS + 2, dataset=name)
    assert isinstance(ts, gwpy.TimeSeries)
    assert ts.t0.value == GPS + 14 and ts.sample_rate.value == RATE and str(ts.channel) == "H1:Strain"
    assert str(ts.unit) == "strain" and len(ts) == 12 * RATE and np.isnan(ts.value[2 * RATE:10 * RATE]).all()
    np.testing.assert_array_equal(ts.value[:2 * RATE], strains[GPS + DUR][6 * RATE:])
    assert df.index.name == "time" and len(df) == RATE and df.index[0] == GPS + 1
    assert table.column_names == ["time", "Strain"]


@pytest.mark.slow
def test_gwpy_shipped_file_by_time(tmp_path, serve):
    gwpy = pytest.importorskip("gwpy")
    from gwpy.timeseries import TimeSeries
    src = os.path.join(os.path.dirname(gwpy.__file__), "testing", "data", "HLV-HW100916-968654552-1.hdf")
    (tmp_path / "HLV.hdf").write_bytes(open(src, "rb").read())
    server = serve(tmp_path)
    with server.client() as c:
        (name,) = [n for n in c.datasets()["name"].to_pylist() if n.endswith("H1:LDAS-STRAIN")]
        ts = c.read_timeseries("L1:LDAS-STRAIN", 968654552.25, 968654552.5, library="gwpy")
        t = c.read(name, time=(968654552.1, 968654552.2))
    ref = TimeSeries.read(str(tmp_path / "HLV.hdf"), "L1:LDAS-STRAIN").crop(968654552.25, 968654552.5)
    np.testing.assert_array_equal(ts.value, ref.value)
    assert ts.t0 == ref.t0 and ts.dt == ref.dt and ts.unit == ref.unit and ts.name == "L1:LDAS-STRAIN"
    with h5py.File(tmp_path / "HLV.hdf") as f:
        want = f["H1:LDAS-STRAIN"][int(np.ceil(0.1 * 16384)):int(np.ceil(0.2 * 16384))]
    np.testing.assert_array_equal(t["H1:LDAS-STRAIN"].to_numpy(), want)


def test_asdf_utc_time_column(tmp_path, serve):
    obspy = pytest.importorskip("obspy")
    pyasdf = pytest.importorskip("pyasdf")
    start = obspy.UTCDateTime("2026-01-01T00:00:00")
    tr = obspy.Trace(np.arange(6000, dtype=np.int32), header={"network": "XX", "station": "STA1", "location": "",
                                                              "channel": "HHZ", "sampling_rate": 100.0,
                                                              "starttime": start})
    ds = pyasdf.ASDFDataSet(str(tmp_path / "s.h5"), compression=None)
    ds.add_waveforms(tr, tag="raw_recording")
    del ds
    server = serve(tmp_path)
    with server.client() as c:
        t = c.read_timeseries("XX.STA1..HHZ", "2026-01-01T00:00:10Z", "2026-01-01T00:00:12.005Z")
        df = c.read_timeseries("XX.STA1..HHZ", 1767225600.0, 1767225601.0, library="pd")
    assert t.schema.field("time").type == pa.timestamp("ns", tz="UTC")
    assert t.num_rows == 201 and t.column(1).to_pylist() == list(range(1000, 1201))
    assert t["time"][0].value == 1767225610 * 10**9 and t["time"][200].value == 1767225612 * 10**9
    assert str(df.index.dtype) == "datetime64[ns, UTC]" and len(df) == 100


def test_site_mapping_from_arrowroot_toml(tmp_path, serve):
    with h5py.File(tmp_path / "site.h5", "w") as f:
        d = f.create_dataset("seis", data=np.arange(1000, dtype=np.float32))
        d.attrs.update({"start": 1000.0, "fs": 50.0, "units": "m/s", "name": "ET:SEIS-Z"})
    (tmp_path / "arrowroot.toml").write_text(
        '[timeseries.et]\nt0 = "start"\nrate = "fs"\nunit = "units"\nchannel = "name"\n')
    server = serve(tmp_path)
    with server.client() as c:
        t = c.read_timeseries("ET:SEIS-Z", 1002.0, 1003.0)
        with pytest.raises(InvalidRequest, match="no data-quality flags"):
            c.read_timeseries("ET:SEIS-Z", 1002.0, 1003.0, dq="DATA")
    assert t["seis"].to_pylist() == [float(v) for v in range(100, 150)]
    assert t["time"][0].as_py() == 1002.0


def test_dq_restriction(gw):
    server, strains = gw
    with server.client() as c:
        name = strain_name(c)
        good = c.read(name, time=(GPS, GPS + 4), dq="DATA & CBC_CAT1", with_time=True)
        bad = c.read(name, time=(GPS, GPS + 4), dq="DATA and not CBC_CAT1")
        # second 2 of every file fails CBC_CAT1; over the folder: files 1, 2 and 4 (one gap)
        whole = c.read(name, dq="DATA & CBC_CAT1")
        with pytest.raises(InvalidRequest, match="unknown flag 'NOPE'"):
            c.read(name, time=(GPS, GPS + 4), dq="DATA & NOPE")
        with pytest.raises(InvalidRequest, match="dq: unexpected"):
            c.read(name, dq="DATA; import os")
    s = strains[GPS]
    np.testing.assert_array_equal(good["Strain"].to_numpy(), np.concatenate([s[:2 * RATE], s[3 * RATE:4 * RATE]]))
    assert good["time"][2 * RATE].as_py() == GPS + 3
    np.testing.assert_array_equal(bad["Strain"].to_numpy(), s[2 * RATE:3 * RATE])
    assert whole.num_rows == 3 * 7 * RATE
    meta = json.loads(good.schema.metadata[b"arrowroot.timeseries"])
    assert meta["dq_segments"] == [[GPS, GPS + 2], [GPS + 3, GPS + 4]]
