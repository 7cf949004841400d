"""What the HDF5 source lists (PyTables internals hidden by default) and what its errors say
(the file's base name and the object, never a server path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from arrowroot.flight_server.sources import SourceError
from arrowroot.flight_server.sources.base import without_paths
from arrowroot.flight_server.sources.hdf5 import Hdf5Source


@pytest.fixture(scope="module")
def pytables_file(tmp_path_factory) -> Path:
    """A PyTables table with two column indexes (PyTables writes them under ``_i_readings``)."""
    tables = pytest.importorskip("tables")
    path = tmp_path_factory.mktemp("pytables") / "indexed.h5"

    class Reading(tables.IsDescription):
        sensor = tables.Int32Col()
        value = tables.Float64Col()

    with tables.open_file(str(path), "w") as f:
        t = f.create_table("/", "readings", Reading)
        row = t.row
        for i in range(2_000):
            row["sensor"], row["value"] = i % 7, i * 0.5
            row.append()
        t.flush()
        t.cols.sensor.create_index()
        t.cols.value.create_csindex()
        f.create_array("/", "calib", np.arange(12.0).reshape(4, 3))
    with h5py.File(path, "a") as f:
        f.create_dataset("empty_rows", shape=(10, 0), dtype="f4")   # nothing per entry
    return path


def test_pytables_internals_hidden_by_default(pytables_file):
    with h5py.File(pytables_file) as f:
        assert any(k.startswith("_i_") for k in f), "PyTables wrote no index group"
    names = {d.object_path for d in Hdf5Source().scan(str(pytables_file))}
    assert not any("_i_" in n for n in names), names
    assert {"readings", "calib"} <= names
    assert "empty_rows" not in names
    readings = next(d for d in Hdf5Source().scan(str(pytables_file)) if d.object_path == "readings")
    assert [c.name for c in readings.columns] == ["sensor", "value"] and readings.entries == 2_000


def test_show_internal_lists_them(pytables_file):
    names = {d.object_path for d in Hdf5Source(show_internal=True).scan(str(pytables_file))}
    assert any(n.startswith("_i_readings/sensor") for n in names), names
    assert "empty_rows" in names and "readings" in names


def test_pytables_shipped_index_files(tmp_path):
    tables = pytest.importorskip("tables")
    base = Path(os.path.dirname(tables.__file__)) / "tests"
    present = [n for n in ("indexes_2_0.h5", "idx-std-1.x.h5") if (base / n).exists()]
    if not present:
        pytest.skip("this PyTables wheel ships no test files")
    for n in present:
        shutil.copy(base / n, tmp_path / n)
        infos = Hdf5Source().scan(str(tmp_path / n))
        assert infos and not any("_i_" in d.object_path for d in infos), [d.object_path for d in infos]
        assert any(d.kind == "hdf5.compound" and d.entries > 0 for d in infos)


def test_index_groups_hidden_without_the_pytables_marker(tmp_path):
    """A copy of a PyTables index (CLASS=TINDEX) in a file h5py wrote is hidden too; a user's own
    ``_i_`` group without that class is data."""
    with h5py.File(tmp_path / "copy.h5", "w") as f:
        idx = f.create_group("_i_events")
        idx.attrs["CLASS"] = np.bytes_(b"TINDEX")
        idx.create_dataset("energy/sorted", data=np.arange(5.0))
        f.create_dataset("_i_mine", data=np.arange(3))
        f.create_dataset("events", data=np.arange(5.0))
    names = {d.object_path for d in Hdf5Source().scan(str(tmp_path / "copy.h5"))}
    assert "_i_mine" in names and "events" in names
    assert not any(n.startswith("_i_events") for n in names)


# ---------------------------------------------------------------- messages


def _deep(tmp_path: Path) -> Path:
    d = tmp_path / "srv" / "private" / "run"
    d.mkdir(parents=True)
    return d


def _assert_no_server_path(message: str, folder: Path) -> None:
    assert str(folder) not in message
    assert str(folder.parent) not in message
    assert "/usr/" not in message and "/lib/" not in message


def test_open_errors_name_the_file_not_its_path(tmp_path):
    d = _deep(tmp_path)
    with h5py.File(d / "rot.h5", "w") as f:
        f.create_dataset("data", data=np.arange(10))
    with pytest.raises(SourceError) as err:
        Hdf5Source().open(str(d / "rot.h5"), "nope", "hdf5.dataset")
    assert str(err.value).startswith("rot.h5: cannot open 'nope'")
    _assert_no_server_path(str(err.value), d)
    (d / "rot.h5").unlink()
    for call in (lambda: Hdf5Source().open(str(d / "rot.h5"), "data", "hdf5.dataset"),
                 lambda: Hdf5Source().scan(str(d / "rot.h5"))):
        with pytest.raises(SourceError) as err:
            call()
        assert str(err.value).startswith("rot.h5: ")
        assert str(d) not in str(err.value), str(err.value)


def test_read_errors_hide_the_plugin_folder_and_the_file_path(tmp_path):
    """HDF5's own text for a missing filter quotes its plugin folder; neither it nor the file's
    folder reaches the message."""
    d = _deep(tmp_path)
    with h5py.File(d / "rot.h5", "w") as f:
        ds = f.create_dataset("packed", shape=(100,), dtype="<i4", chunks=(100,), compression=305,
                              allow_unknown_filter=True)
        ds.id.write_direct_chunk((0,), np.arange(100, dtype="<i4").tobytes())
    reader = Hdf5Source().open(str(d / "rot.h5"), "packed", "hdf5.dataset")
    try:
        with pytest.raises(SourceError) as err:
            reader.read(["packed"], 0, 100)
    finally:
        reader.close()
    message = str(err.value)
    assert message.startswith("rot.h5:/packed: reading ['packed'] [0:100] failed"), message
    _assert_no_server_path(message, d)


def test_without_paths_keeps_hdf5_object_paths():
    text = "can't open /entry/data/image in /srv/x/rot.h5 (directory (/usr/local/lib/plugin))"
    out = without_paths(text, "/srv/x/rot.h5")
    assert out == "can't open /entry/data/image in rot.h5 (directory (<server path>))"


def test_server_setting_shows_internals(serve, pytables_file, tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(pytables_file, root / "indexed.h5")
    hidden = serve(root, catalog=tmp_path / "a.duckdb")
    shown = serve(root, catalog=tmp_path / "b.duckdb", show_internal=True)
    with hidden.client() as c:
        names = c.datasets()["name"].to_pylist()
        assert "indexed.h5:readings" in names and not any("_i_" in n for n in names)
    with shown.client() as c:
        assert any(n.startswith("indexed.h5:_i_readings") for n in c.datasets()["name"].to_pylist())
