"""A folder dataset never disappears while its files are re-indexed.

A refresh records the changed files (which drops every dataset made of them, the folder's too) and
then derives the folder datasets again: two commits. A reader between them found the folder gone,
so a live follower that reconnected while files were rewritten got 404. Readers now keep the
catalog as it was until the whole refresh is done.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import uproot

from arrowroot.catalog.errors import NotFound
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.index.indexer import Indexer

FOLDER = "runs/*.root:events"


def test_a_folder_dataset_stays_visible_through_refreshes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(2):
        with uproot.recreate(runs / f"run{i:05d}.root") as f:
            f["events"] = {"i": np.arange(i * 10, i * 10 + 10, dtype=np.int64)}
    catalog = Catalog(tmp_path / "c.duckdb")
    indexer = Indexer(tmp_path, catalog)
    indexer.run()
    assert catalog.dataset(FOLDER).entries == 20

    misses, looks = [], 0
    stop = threading.Event()

    def look() -> None:
        nonlocal looks
        while not stop.is_set():
            try:
                catalog.dataset(FOLDER)
            except NotFound as exc:
                misses.append(str(exc))
            looks += 1
            time.sleep(0.0002)

    reader = threading.Thread(target=look)
    reader.start()
    try:
        for _ in range(40):  # each refresh sees both files changed (a new mtime): recorded, then derived
            for i in range(2):
                path = runs / f"run{i:05d}.root"
                os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
            report = indexer.refresh(["runs/run00000.root", "runs/run00001.root"])
            assert report.updated == 2, report
    finally:
        stop.set()
        reader.join(30)
    assert looks > 40
    assert misses == [], f"{len(misses)} of {looks} looks found no folder dataset: {misses[0]}"
    assert catalog.dataset(FOLDER).entries == 20
    catalog.close()
