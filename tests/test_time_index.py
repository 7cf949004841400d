"""pandas time indexes of a time-series read: GPS seconds that print in full (as gwpy shows
them), or a UTC DatetimeIndex, on gwpy's own shipped test file."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

START, STOP = 968654552.25, 968654552.5


pytestmark = pytest.mark.slow   # gwpy time series through pandas


@pytest.fixture
def hlv(tmp_path, serve):
    gwpy = pytest.importorskip("gwpy")
    src = os.path.join(os.path.dirname(gwpy.__file__), "testing", "data", "HLV-HW100916-968654552-1.hdf")
    (tmp_path / "HLV.hdf").write_bytes(open(src, "rb").read())
    return serve(tmp_path), tmp_path / "HLV.hdf"


def test_gps_index_prints_every_digit(hlv):
    from gwpy.timeseries import TimeSeries

    server, path = hlv
    ref = TimeSeries.read(str(path), "L1:LDAS-STRAIN").crop(START, STOP)
    with server.client() as c:
        df = c.read_timeseries("L1:LDAS-STRAIN", START, STOP, library="pd")
    assert df.index.name == "time" and len(df) == len(ref)
    np.testing.assert_array_equal(df.index.to_numpy(dtype=np.float64), ref.times.value)
    np.testing.assert_array_equal(df.iloc[:, 0].to_numpy(), ref.value)
    text = df.head(3).to_string()
    assert "e+08" not in text
    assert "968654552.25 " in text or "968654552.25\n" in text or "968654552.250000" in text
    assert "968654552.250061" in text  # the second sample, 1/16384 s later


def test_utc_datetime_index(hlv):
    from gwpy.time import from_gps

    server, _ = hlv
    with server.client() as c:
        df = c.read_timeseries("L1:LDAS-STRAIN", START, STOP, library="pd", time_index="utc")
        with pytest.raises(ValueError, match="time_index"):
            c.read_timeseries("L1:LDAS-STRAIN", START, STOP, library="pd", time_index="tai")
    assert str(df.index.dtype) == "datetime64[ns, UTC]"
    first = pd.Timestamp(from_gps(START)).tz_convert("UTC")
    assert df.index[0] == first  # 2010-09-16 06:42:17.250 UTC: GPS - UTC was 15 s
    assert (df.index[1] - df.index[0]) == pd.Timedelta(nanoseconds=61035)
