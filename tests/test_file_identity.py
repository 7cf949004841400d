"""One file-identity rule: readers, overlays, zone maps, the indexer and the chunk cache agree."""

from __future__ import annotations

import os
import re
from pathlib import Path

from arrowroot.flight_server.core.files import FileIdentity, change, matches

ROOT = Path(__file__).resolve().parents[1] / "flight_server"


def test_change_says_unchanged_modified_and_deleted(tmp_path: Path) -> None:
    f = tmp_path / "a.h5"
    f.write_bytes(b"x" * 10)
    st = os.stat(f)
    assert change(str(f), st.st_size, st.st_mtime) == (os.stat(f), None)
    assert matches(st, 10, st.st_mtime) and not matches(st, 11, st.st_mtime)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))         # 1 ms later, same size
    assert change(str(f), st.st_size, st.st_mtime)[1] == "modified"
    f.unlink()
    assert change(str(f), st.st_size, st.st_mtime) == (None, "deleted")


def test_a_replaced_file_of_the_same_size_and_mtime_is_another_identity(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1" * 8)
    b.write_bytes(b"2" * 8)
    st = os.stat(a)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(b, a)
    again = os.stat(a)
    assert matches(again, st.st_size, st.st_mtime)                      # the catalog's record still matches
    assert FileIdentity.from_stat(str(a), st) != FileIdentity.from_stat(str(a), again)   # the cache does not


def test_no_layer_compares_mtimes_by_hand() -> None:
    by_hand = re.compile(r"st_mtime\s*-|-\s*\w+\.st_mtime|st_size\s*!=")
    found = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
             if p.name != "files.py" and by_hand.search(p.read_text())]
    assert not found, f"compare a stat with core.files.matches/change instead: {found}"
