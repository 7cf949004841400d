"""A read of all columns tells which columns it left out and why."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pyarrow.flight as fl
import pytest

from arrowroot.clients.client import UnreadableColumnsWarning


@pytest.fixture
def odd(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    with h5py.File(root / "t.h5", "w") as f:
        g = f.create_group("tab")
        g.create_dataset("a", data=np.arange(5, dtype=np.int32))
        g.create_dataset("q", data=np.arange(5).astype(np.longdouble))  # 128-bit floats: no Arrow type
    return root


def test_skipped_columns_are_reported(serve, odd, tmp_path):
    server = serve(odd)
    c = server.flight()
    info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({"dataset": "t.h5:tab"})))
    meta = json.loads(info.app_metadata)
    assert [s["name"] for s in meta["skipped_columns"]] == ["q"] and meta["skipped_columns"][0]["reason"]
    with server.client() as client:
        with pytest.warns(UnreadableColumnsWarning, match=r"t.h5:tab: 1 column\(s\) left out.*q: "):
            table = client.read("t.h5:tab")
        assert table.column_names == ["a"] and table["a"].to_pylist() == list(range(5))
        # naming the readable columns is not "all columns": no note
        info = client.flight_info("t.h5:tab", ["a"])
        assert not info.app_metadata
    r = subprocess.run([sys.executable, "-m", "arrowroot.flight_server.cli", "get", "t.h5:tab",
                        str(tmp_path / "o.parquet"), "-l", server.location], capture_output=True, text=True)
    assert r.returncode == 0 and "note: t.h5:tab: 1 column(s) left out" in r.stderr
