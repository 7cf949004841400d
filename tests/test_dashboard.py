"""docker/grafana-dashboard.json: valid JSON Grafana can import, and every metric its queries name
is exported by a real coordinator or data node after a small workload (scraped and parsed with
prometheus_client's text parser)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from arrowroot.clients import Client
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.flight import ArrowrootServer
from arrowroot.flight_server.server.node import NodeServer

DASHBOARD = Path(__file__).resolve().parents[1] / "docker" / "grafana-dashboard.json"
METRIC = re.compile(r"\b((?:arrowroot|process)_[a-z0-9_]+)\b")


def queries(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_is_importable(dashboard: dict) -> None:
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    assert {i["name"] for i in dashboard["__inputs"]} == {"DS_PROMETHEUS"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("calls", "latency", "bytes", "streams", "cache", "nodes", "index", "sql", "logins"):
        assert topic in titles, topic
    for q in queries(dashboard):
        assert q.count("(") == q.count(")") and q.count("{") == q.count("}"), q


def test_every_metric_the_dashboard_names_is_exported(dashboard: dict, tmp_path: Path) -> None:
    root = write_sample_files(tmp_path / "data", entries=2000)
    (tmp_path / "key").write_text("d" * 32)
    coord = ArrowrootServer(Settings(root=root, port=0, ticket_key_file=tmp_path / "key",
                                     catalog=tmp_path / "catalog.duckdb"))
    coord.indexer.run()
    threading.Thread(target=coord.serve, daemon=True).start()
    node = NodeServer(Settings(root=root, port=0, ticket_key_file=tmp_path / "key"))
    threading.Thread(target=node.serve, daemon=True).start()
    try:
        node.join(f"grpc://127.0.0.1:{coord.port}")
        deadline = time.monotonic() + 10
        while not coord.membership.live() and time.monotonic() < deadline:
            time.sleep(0.05)
        with Client(f"grpc://127.0.0.1:{coord.port}") as c:
            assert c.read("hep/events.root:events", ["nMuon"]).num_rows == 2000
            assert c.sql('SELECT count(*) AS n FROM "hep/events.root:events"').num_rows == 1
        time.sleep(0.3)
        exported = set()
        for server in (coord, node):
            for family in text_string_to_metric_families(server.ops.metrics.exposition().decode()):
                exported |= {s.name for s in family.samples}
    finally:
        node.shutdown()
        coord.shutdown()
    named = {m for q in queries(dashboard) for m in METRIC.findall(q)}
    assert len(named) >= 25
    missing = sorted(named - exported)
    assert not missing, f"the dashboard names metrics no server exports: {missing}"
