"""Quiet by default: one short line per schema drift (the details in `ls --errors`), a summary from
`action rescan` (the report with --json), other libraries' INFO lines only with -v."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
import uproot

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.index.indexer import Indexer

from cli_process import Running, run_cli

DECLARED = """
folder_datasets = false

[[dataset]]
name = "runs"
files = "runs/*.root"
object = "Events"
"""


@pytest.fixture
def drifting(tmp_path):
    """A declared dataset over three files: 'extra' is missing from one, 'w' is int32/float64/int16."""
    root = tmp_path / "data"
    (root / "runs").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, n, extra, w in (("r1", 40, True, "int32"), ("r2", 30, False, "float64"), ("r10", 20, True, "int16")):
        with uproot.recreate(root / "runs" / f"{name}.root") as f:
            types = {"event": "int64", "w": w, **({"extra": "int32"} if extra else {})}
            for i in range(40):
                types[f"long_branch_name_number_{i:02d}"] = "float32" if name != "r2" else "float64"
            t = f.mktree("Events", types)
            t.extend({k: (np.arange(n) if k == "event" else rng.integers(0, 9, n)).astype(v) for k, v in types.items()})
    (root / "arrowroot.toml").write_text(DECLARED)
    return root


def test_drift_is_one_short_line_at_index_time(drifting, caplog):
    cat = Catalog(drifting / ".arrowroot" / "catalog.duckdb")
    try:
        with caplog.at_level(logging.WARNING, logger="arrowroot"):
            report = Indexer(drifting, cat).run()
    finally:
        cat.close()
    assert report.drift and json.dumps(report.drift[0]).count('"') > 50   # the report keeps every detail
    lines = [r.getMessage() for r in caplog.records if "schema drift" in r.getMessage()]
    assert lines == ["schema drift in runs: 1 column missing from some files (extra), 41 widened (w, "
                     "long_branch_name_number_00, long_branch_name_number_01 +38 more)"]


@pytest.mark.slow
def test_index_prints_a_line_per_drift_and_rescan_a_summary(drifting, serve):
    r = run_cli("index", str(drifting))
    assert r.returncode == 0, r.stderr
    drift = [line for line in r.stderr.splitlines() if "schema drift" in line]
    assert len(drift) == 1 and len(drift[0]) < 200 and "{" not in drift[0], r.stderr
    assert "arrowroot ls --errors" in r.stderr
    server = serve(drifting)
    r = run_cli("action", "rescan", "-l", server.location, "-b", '{"path": "."}')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("rescan: 0 added, 0 updated, 0 removed, ") and "0 errors" in lines[0]
    assert "1 multi-file datasets (1 with schema drift)" in lines[0]
    assert len(lines) <= 3 and all(len(line) < 300 for line in lines), r.stdout
    r = run_cli("action", "rescan", "--json", "-l", server.location)
    assert json.loads(r.stdout)["drift"][0]["missing"]["extra"]["examples"] == ["runs/r2.root:Events"]
    r = run_cli("ls", "--errors", "-l", server.location)
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("runs\t")]
    assert json.loads(line.split("\t", 1)[1].removeprefix("schema drift: "))["widened"]["w"]["type"] == "double"


@pytest.mark.slow
def test_other_libraries_log_info_only_with_v(tmp_path):
    data = write_sample_files(tmp_path / "data", entries=2000)

    def serve_log(*flags: str) -> str:
        # NumExpr says at INFO how many threads it takes, unless one of these is set (Dask's tests set them)
        with Running("serve", str(data), "--port", "0", "--catalog", str(tmp_path / f"c{len(flags)}.duckdb"),
                     *flags, unset=("OMP_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS")) as s:
            assert "serving" in s.line
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:   # until the index is done (its line ends the start-up)
                time.sleep(0.5)
                if run_cli("action", "health", "-l", f"grpc://127.0.0.1:{s.port}").stdout.count('"indexing": false'):
                    break
            return s.stop()

    quiet, verbose = serve_log(), serve_log("-v")
    assert "arrowroot.indexer: indexed" in quiet and "arrowroot.indexer: indexed" in verbose
    assert "numexpr" not in quiet.lower() and "absl" not in quiet
    assert "INFO numexpr" in verbose
