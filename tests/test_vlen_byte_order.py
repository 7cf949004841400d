"""Variable-length data of a big-endian base type: h5py hands the elements over unconverted
(labelled native), PyTables converts. PyTables' own ``vlunicode_endian.h5`` stores the string
'paraŀlel' as UCS-4 code points, once big-endian and once little-endian."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from arrowroot.clients import Client

tables = pytest.importorskip("tables")
VLUNICODE = Path(os.path.dirname(tables.__file__)) / "tests" / "vlunicode_endian.h5"


def test_vlunicode_decoded_as_pytables_does(tmp_path, serve):
    if not VLUNICODE.exists():
        pytest.skip("this PyTables wheel ships no test files")
    shutil.copy(VLUNICODE, tmp_path / "vlunicode_endian.h5")
    with tables.open_file(VLUNICODE) as f:
        expected = {n: [f.get_node("/" + n)[0]] for n in ("vlunicode_big", "vlunicode_little")}
    assert expected["vlunicode_big"] == ["para\u0140lel"]
    s = serve(tmp_path)
    with Client(s.location) as client:
        for name, want in expected.items():
            table = client.read(f"vlunicode_endian.h5:{name}")
            assert str(table.schema.field(name).type) == "string"
            assert table[name].to_pylist() == want


def test_big_endian_vlen_numbers(tmp_path, serve):
    with h5py.File(tmp_path / "be.h5", "w") as f:
        d = f.create_dataset("v", (3,), dtype=h5py.vlen_dtype(np.dtype(">i4")))
        d[0] = np.array([1, 2, 3], dtype=">i4")
        d[1] = np.array([70000], dtype=">i4")
        d[2] = np.array([], dtype=">i4")
    s = serve(tmp_path)
    with Client(s.location) as client:
        assert client.read("be.h5:v")["v"].to_pylist() == [[1, 2, 3], [70000], []]
