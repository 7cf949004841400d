"""Uploads are all or nothing, under concurrency and with types that could not be read back.

A real server on a loopback port; clients through the arrowroot Client and raw pyarrow.flight.
The interrupted-upload cases (killed client processes) are in ``test_upload_interrupts.py``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from arrowroot.clients.errors import InvalidRequest
from arrowroot.flight_server.cli.demo import write_sample_files

from conftest import start_server


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = write_sample_files(tmp_path_factory.mktemp("uploads"), entries=200)
    r = start_server(root)
    yield r
    r.stop()


def _temp_files(r) -> list[Path]:
    home = r.server.ctx.workspace.dir / "home"
    return [p for p in home.rglob(".tmp-*")] if home.exists() else []


def test_concurrent_appends_all_land(ws) -> None:
    """Six clients append to one name at once: every append lands (they take turns on the name's
    lock before reading its entry), none fails with an internal error."""
    c = ws.client()
    c.put("home/local/grown", pa.table({"x": np.arange(10, dtype=np.int64)}))
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            with ws.client() as mine:
                mine.put("home/local/grown", pa.table({"x": np.arange(100 * (i + 1), 100 * (i + 1) + 10,
                                                                   dtype=np.int64)}), mode="append")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    got = sorted(c.read("home/local/grown", "x")["x"].to_pylist())
    want = sorted(list(range(10)) + [v for i in range(6) for v in range(100 * (i + 1), 100 * (i + 1) + 10)])
    assert got == want
    assert _temp_files(ws) == []


def test_dictionary_columns_are_stored_as_their_values(ws) -> None:
    c = ws.client()
    labels = pa.array(["mu", "e", "mu", None, "tau"]).dictionary_encode()
    nested = pa.array([["a"], ["b", "a"], [], None, ["c"]], pa.list_(pa.string())).cast(
        pa.list_(pa.dictionary(pa.int32(), pa.string())))
    c.put("home/local/dict", pa.table({"x": np.arange(5), "label": labels, "tags": nested}))
    got = c.read("home/local/dict")
    assert got.schema.field("label").type == pa.string()
    assert got.schema.field("tags").type == pa.list_(pa.string())
    assert got["label"].to_pylist() == ["mu", "e", "mu", None, "tau"]
    assert got["tags"].to_pylist() == [["a"], ["b", "a"], [], None, ["c"]]
    # appending dictionary batches to it works too (same values, same stored type)
    c.put("home/local/dict", pa.table({"x": np.arange(5, 6), "label": pa.array(["e"]).dictionary_encode(),
                                       "tags": nested.slice(0, 1)}), mode="append")
    assert c.read("home/local/dict", "label")["label"].to_pylist()[-1] == "e"


@pytest.mark.parametrize("column", [
    pa.UnionArray.from_sparse(pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])]),
    pa.array([pa.MonthDayNano([1, 2, 3])] * 2, pa.month_day_nano_interval()),
    pa.RunEndEncodedArray.from_arrays([2], [1]),
], ids=["union", "interval", "run_end_encoded"])
def test_types_that_cannot_be_stored_are_refused_with_the_reason(ws, column) -> None:
    c = ws.client()
    with pytest.raises(InvalidRequest, match="'v' is .* cannot be stored"):
        c.put("home/local/odd", pa.table({"x": [1, 2], "v": column}))
    assert "home/local/odd" not in c.datasets("home/*")["name"].to_pylist()
    assert _temp_files(ws) == []


def test_zero_column_upload_is_refused(ws) -> None:
    c = ws.client()
    with pytest.raises(InvalidRequest, match="at least one column"):
        c.put("home/local/empty", pa.table({}))
    raw = ws.flight()
    writer, reader = raw.do_put(fl.FlightDescriptor.for_command(b'{"dataset": "home/local/empty2"}'), pa.schema([]))
    with pytest.raises(pa.ArrowInvalid, match="at least one column"):
        writer.done_writing()
        reader.read()
        writer.close()
    assert not {"home/local/empty", "home/local/empty2"} & set(c.datasets("home/*")["name"].to_pylist())
