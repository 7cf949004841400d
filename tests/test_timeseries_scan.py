"""Time-series conventions recorded at index time, on files written by the real writers
(gwpy's own test file and TimeSeries.write, gwdama, pyasdf from ObsPy traces), GWOSC's
published layout (written with h5py) and a site's declared mapping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from arrowroot.flight_server.sources import detect, timeseries
from arrowroot.flight_server.sources.hdf5 import Hdf5Source

GPS = 1126259446


def series_of(path: Path | str) -> dict[str, dict]:
    """object path → timeseries record, for every dataset in the file that has one."""
    src = detect(str(path))
    return {d.object_path: d.attributes[timeseries.KEY] for d in src.scan(str(path))
            if timeseries.KEY in d.attributes}


def write_gwosc(path: Path, gps: int, duration: int = 8, rate: int = 4096, detector: str = "H1",
                seed: int = 0) -> np.ndarray:
    """A strain file in GWOSC's published HDF5 layout (meta/, quality/simple/, strain/Strain)."""
    rng = np.random.default_rng(seed)
    strain = rng.normal(0, 1e-21, duration * rate)
    with h5py.File(path, "w") as f:
        meta = f.create_group("meta")
        for key, value in (("Description", "Strain data time series from LIGO"), ("Detector", detector),
                           ("Duration", duration), ("GPSstart", gps), ("Observatory", detector[0]),
                           ("Type", "StrainTimeSeries"), ("UTCstart", "2015-09-14T09:50:29")):
            meta[key] = value
        simple = f.create_group("quality/simple")
        names = ["DATA", "CBC_CAT1", "CBC_CAT2", "BURST_CAT1"]
        simple["DQShortnames"] = np.array([n.encode() for n in names])
        simple["DQDescriptions"] = np.array([f"{n} description".encode() for n in names])
        mask = np.full(duration, 0b1111, dtype=np.int32)
        mask[2] = 0b0001
        dq = simple.create_dataset("DQmask", data=mask)
        dq.attrs.update({"Xstart": gps, "Xspacing": 1.0, "Npoints": duration, "Xunits": "second"})
        s = f.create_dataset("strain/Strain", data=strain)
        s.attrs.update({"Xstart": gps, "Xspacing": 1.0 / rate, "Npoints": len(strain), "Xunits": "second",
                        "Description": "Strain time series"})
    return strain


@pytest.mark.slow
def test_gwpy_shipped_file():
    gwpy = pytest.importorskip("gwpy")
    path = os.path.join(os.path.dirname(gwpy.__file__), "testing", "data", "HLV-HW100916-968654552-1.hdf")
    found = series_of(path)
    assert set(found) == {"H1:LDAS-STRAIN", "L1:LDAS-STRAIN", "V1:h_16384Hz"}
    h1 = found["H1:LDAS-STRAIN"]
    assert h1 == {"convention": "gwpy", "channel": "H1:LDAS-STRAIN", "scale": "gps", "t0": 968654552.0,
                  "t0_ns": 968654552 * 10**9, "rate": 16384.0, "dt": 1 / 16384, "count": 16384,
                  "t_end": 968654553.0, "unit": "strain", "dtype": "float64"}


def test_gwpy_written_timeseries(tmp_path):
    ts_mod = pytest.importorskip("gwpy.timeseries")
    ts = ts_mod.TimeSeries(np.arange(2048, dtype=np.float32), t0=GPS + 0.5, sample_rate=512, unit="m",
                           name="X1:TEST-CHANNEL", channel="X1:TEST-CHANNEL")
    ts.write(str(tmp_path / "x.h5"), format="hdf5")
    (rec,) = series_of(tmp_path / "x.h5").values()
    assert rec["channel"] == "X1:TEST-CHANNEL" and rec["unit"] == "m" and rec["dtype"] == "float32"
    assert rec["t0"] == GPS + 0.5 and rec["rate"] == 512 and rec["count"] == 2048 and rec["t_end"] == GPS + 4.5
    back = ts_mod.TimeSeries.read(str(tmp_path / "x.h5"), "X1:TEST-CHANNEL")
    assert back.t0.value == rec["t0"] and back.sample_rate.value == rec["rate"]


def test_gwdama_written(tmp_path):
    io = pytest.importorskip("gwdama.io")
    from gwpy.timeseries import TimeSeries
    dm = io.GwDataManager("station")
    dm.from_TimeSeries(TimeSeries(np.sin(np.arange(1000) / 10), t0=GPS, sample_rate=100, unit="m/s"),
                       dts_key="sosenattos/HHE")
    dm.create_dataset("notes", data=np.arange(5))
    dm.write_gwdama(str(tmp_path / "dama.h5"))
    dm.close()
    found = series_of(tmp_path / "dama.h5")
    assert set(found) == {"sosenattos/HHE"}
    rec = found["sosenattos/HHE"]
    assert rec["convention"] == "gwdama" and rec["channel"] == "sosenattos/HHE"
    assert (rec["t0"], rec["rate"], rec["count"], rec["unit"]) == (GPS, 100.0, 1000, "m / s")  # astropy spells it so
    with h5py.File(tmp_path / "dama.h5") as f:   # what GWDama's users read
        assert f["sosenattos/HHE"].attrs["t0"] == rec["t0"]


def test_gwosc_layout_with_dq_bits(tmp_path):
    write_gwosc(tmp_path / "H-H1_GWOSC_4KHZ_R1-1126259447-8.hdf5", GPS + 1)
    found = series_of(tmp_path / "H-H1_GWOSC_4KHZ_R1-1126259447-8.hdf5")
    strain = found["strain/Strain"]
    assert strain["convention"] == "gwosc" and strain["channel"] == "H1:Strain" and strain["unit"] == "strain"
    assert (strain["t0"], strain["rate"], strain["count"], strain["t_end"]) == (GPS + 1, 4096.0, 8 * 4096, GPS + 9)
    dq = found["quality/simple/DQmask"]
    assert dq["channel"] == "H1:DQmask" and dq["rate"] == 1.0 and dq["count"] == 8
    assert dq["flags"] == {"DATA": 0, "CBC_CAT1": 1, "CBC_CAT2": 2, "BURST_CAT1": 3}
    assert dq["flag_descriptions"][1] == "CBC_CAT1 description"


def test_asdf_written_by_pyasdf(tmp_path):
    obspy = pytest.importorskip("obspy")
    pyasdf = pytest.importorskip("pyasdf")
    start = obspy.UTCDateTime("2026-01-01T00:00:00.25")
    traces = []
    for i, cha in enumerate(("HHZ", "HHE")):
        traces.append(obspy.Trace(np.arange(3000, dtype=np.int32) * (i + 1), header={
            "network": "XX", "station": "STA1", "location": "00", "channel": cha,
            "sampling_rate": 100.0, "starttime": start + 60 * i}))
    ds = pyasdf.ASDFDataSet(str(tmp_path / "s.h5"), compression=None)
    ds.add_waveforms(obspy.Stream(traces), tag="raw_recording")
    del ds
    found = {r["channel"]: r for r in series_of(tmp_path / "s.h5").values()}
    assert set(found) == {"XX.STA1.00.HHZ", "XX.STA1.00.HHE"}
    z, e = found["XX.STA1.00.HHZ"], found["XX.STA1.00.HHE"]
    assert z["scale"] == "utc" and z["tag"] == "raw_recording" and z["rate"] == 100.0 and z["count"] == 3000
    with h5py.File(tmp_path / "s.h5") as f:       # integer ns as pyasdf stored them (via a float)
        stored = {k.split("__")[0]: int(v.attrs["starttime"]) for k, v in f["Waveforms/XX.STA1"].items()}
    assert z["t0_ns"] == stored["XX.STA1.00.HHZ"] and e["t0_ns"] == stored["XX.STA1.00.HHE"]
    assert abs(z["t0"] - start.timestamp) < 1e-6 and abs(e["t_end"] - (start.timestamp + 90)) < 1e-6
    assert z["t0_iso"].startswith("2026-01-01T00:00:00.2499") and z["t0_iso"].endswith("Z")
    with pyasdf.ASDFDataSet(str(tmp_path / "s.h5"), mode="r") as back:
        tr = back.waveforms["XX.STA1"].raw_recording.select(channel="HHZ")[0]
    assert abs(tr.stats.starttime.timestamp - z["t0"]) < 1e-6 and tr.stats.npts == z["count"]


def test_site_mapping(tmp_path):
    with h5py.File(tmp_path / "site.h5", "w") as f:
        d = f.create_dataset("raw/seismo", data=np.zeros(500, dtype=np.int16))
        d.attrs.update({"start": 1_700_000_000_123, "fs": 250.0, "units": "counts", "name": "ET:SEIS-X"})
        f.create_dataset("other/x", data=np.zeros(3)).attrs.update({"start": 1.0, "fs": 2.0})
    sites = timeseries.parse_sites({"mysite": {"t0": "start", "rate": "fs", "unit": "units", "channel": "name",
                                               "scale": "utc", "t0_unit": "ms", "match": "raw/*"}})
    timeseries.configure(sites)
    try:
        found = {d.object_path: d.attributes.get(timeseries.KEY) for d in Hdf5Source().scan(str(tmp_path / "site.h5"))}
    finally:
        timeseries.configure(())
    rec = found["raw/seismo"]
    assert rec["convention"] == "site:mysite" and rec["channel"] == "ET:SEIS-X" and rec["unit"] == "counts"
    assert rec["t0"] == 1_700_000_000.123 and rec["rate"] == 250.0 and rec["t_end"] == rec["t0"] + 2
    assert found["other/x"] is None                       # outside the match glob
    assert timeseries.KEY not in Hdf5Source().scan(str(tmp_path / "site.h5"))[-1].attributes


@pytest.mark.parametrize("entry,message", [
    ({"rate": "fs"}, "t0"),
    ({"t0": "a"}, "exactly one of rate"),
    ({"t0": "a", "rate": "b", "dt": "c"}, "exactly one of rate"),
    ({"t0": "a", "rate": "b", "scale": "tai"}, "scale"),
    ({"t0": "a", "rate": "b", "colour": "x"}, "unknown keys"),
    ({"t0": 3, "rate": "b"}, "non-empty string"),
])
def test_bad_site_mapping_names_the_entry(entry, message):
    with pytest.raises(ValueError, match=r"\[timeseries\.s\].*" + message):
        timeseries.parse_sites({"s": entry})


def test_odd_attributes_are_not_series(tmp_path):
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f.create_dataset("a", data=np.zeros(4)).attrs.update({"x0": 0.0, "dx": 0.0})         # no spacing
        f.create_dataset("b", data=np.zeros(4)).attrs.update({"x0": 0.0, "dx": 1.0, "xunit": "Hz"})  # spectrum
        f.create_dataset("c", data=np.zeros(4)).attrs.update({"t0": "soon", "sample_rate": 4.0})
        f.create_dataset("d", data=np.zeros(4)).attrs.update({"x0": np.nan, "dx": 1.0})
        f.create_dataset("e", data=3.0).attrs.update({"x0": 0.0, "dx": 1.0})                 # scalar
    assert series_of(tmp_path / "odd.h5") == {}


def test_lh5_waveform_table(tmp_path):
    lh5 = pytest.importorskip("lh5")
    from lgdo import types as lt
    n = 40
    table = lt.Table(col_dict={
        "timestamp": lt.Array(1.7e9 + np.arange(n) * 0.5, attrs={"units": "s"}),
        "waveform": lt.WaveformTable(t0=lt.Array(np.zeros(n)), t0_units="ns", dt=lt.Array(np.full(n, 16.0)),
                                     dt_units="ns", values=lt.ArrayOfEqualSizedArrays(nda=np.zeros((n, 100)))),
    })
    lh5.write(table, "raw", str(tmp_path / "r.lh5"), group="ch1027201", wo_mode="overwrite_file")
    rec = series_of(tmp_path / "r.lh5")["ch1027201/raw"]
    assert rec["layout"] == "waveforms" and rec["channel"] == "ch1027201"
    assert rec["waveforms"] == [{"column": "waveform", "dt": 16.0, "dt_unit": "ns", "t0_unit": "ns",
                                 "samples": 100, "rate": 62.5e6}]
    assert (rec["t0"], rec["t_last"], rec["count"], rec["scale"]) == (1.7e9, 1.7e9 + 19.5, n, "utc")


def test_records_reach_the_catalog(tmp_path, serve):
    write_gwosc(tmp_path / "H-H1_GWOSC_4KHZ_R1-1126259447-8.hdf5", GPS + 1)
    server = serve(tmp_path)
    with server.client() as client:
        (name,) = [n for n in client.datasets()["name"].to_pylist() if n.endswith("strain/Strain")]
        attrs = json.loads(client.schema(name).metadata[b"arrowroot.attributes"])
    assert attrs["timeseries"]["channel"] == "H1:Strain" and attrs["timeseries"]["count"] == 8 * 4096
