"""Scale-out with real processes on loopback, started from the CLI as a user would: a
coordinator (`arrowroot serve --key-file`) and data nodes (`arrowroot node --join`).

Endpoints carry node locations by rendezvous order; clients read from the nodes; a second
identical query hits the nodes' chunk caches; nodes refuse what is not a valid ticket of
their coordinator; a node killed with SIGKILL mid-read is replaced by the fallback location
with exactly the right rows, and the coordinator drops it from the next FlightInfos.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.core.task import PartRead
from arrowroot.flight_server.service.tickets import Keys, TicketSigner

from test_nodejs_client import nodejs_client, run_client  # noqa: F401  (a fixture: npm ci, once)

pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"
BIG = "big/wide.root:t"
BIG_ROWS = 1_000_000
REUSE = "arrow-flight-reuse-connection://?"


def arrowroot_cmd() -> list[str]:
    script = Path(sys.executable).with_name("arrowroot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arrowroot.flight_server.cli"]


class Proc:
    """A CLI process whose first stdout line names its location."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, pattern: str = r"grpc://[\w.:-]+"):
        self.log = log
        self.proc = subprocess.Popen(arrowroot_cmd() + args, stdout=subprocess.PIPE, stderr=open(log, "w"),
                                     text=True, env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        found = re.search(pattern, line)
        if not found:
            self.proc.wait(20)
            raise AssertionError(f"{args[0]} did not start: {line!r}\n{log.read_text()[-2000:]}")
        self.location = found.group(0)
        self.line = line

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def write_big(root: Path) -> None:
    """Two uncompressed TTrees of 8 MiB per column: endpoints too large for gRPC to have sent
    them whole before a test kills the node serving one."""
    (root / "big").mkdir()
    with uproot.recreate(root / "big" / "wide.root", compression=None) as f:
        n = BIG_ROWS
        f.mktree("t", {"i": "int64", "x": "float64"})
        for start in range(0, n, n // 4):
            i = np.arange(start, start + n // 4, dtype=np.int64)
            f["t"].extend({"i": i, "x": i * 0.5})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = write_sample_files(tmp_path_factory.mktemp("nodes"))
    write_big(root)
    (root / "many").mkdir()  # a multi-file dataset: one endpoint per file at least
    for i in range(16):
        with uproot.recreate(root / "many" / f"run-{i:02d}.root") as f:
            f["Events"] = {"event": np.arange(100 * i, 100 * i + 100, dtype=np.int64)}
    (root / "arrowroot.toml").write_text('[[dataset]]\nname = "many"\nfiles = "many/*.root"\n'
                                         'object = "Events"\nkeys = "run-{run}.root"\n')
    subprocess.run(arrowroot_cmd() + ["index", str(root)], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "node.key"
    path.write_text("a shared secret for the coordinator and its nodes\n")
    return path


@pytest.fixture(scope="module")
def cluster(data: Path, key_file: Path, tmp_path_factory) -> Iterator[dict]:
    logs = tmp_path_factory.mktemp("logs")
    env = {"ARROWROOT_NODE_TTL": "1.5"}
    coord = Proc(["serve", str(data), "--port", "0", "--no-index", "--key-file", str(key_file),
                  "--endpoint-mb", "4"], logs / "coordinator.log", env)
    nodes = [Proc(["node", str(data), "--port", "0", "--join", coord.location, "--key-file", str(key_file),
                   "--id", f"n{i}"], logs / f"node{i}.log", env) for i in (1, 2)]
    yield {"coordinator": coord, "nodes": nodes, "logs": logs, "env": env}
    for p in nodes + [coord]:
        p.stop()


def locations(ep: fl.FlightEndpoint) -> list[str]:
    return [loc.uri.decode() if isinstance(loc.uri, bytes) else loc.uri for loc in ep.locations]


def node_stats(location: str) -> dict:
    with Client(location) as c:
        return c.action("stats")


def test_endpoints_name_both_nodes_then_the_coordinator(cluster) -> None:
    coord, nodes = cluster["coordinator"], cluster["nodes"]
    assert "joined" in nodes[0].line
    with Client(coord.location) as c:
        listed = c.action("nodes")["nodes"]
        assert sorted((n["id"], n["alive"]) for n in listed) == [("n1", True), ("n2", True)]
        info = c.flight_info("many", ["event"])
        assert c.read_info(info).read_all()["event"].to_pylist() == list(range(1600))
    assert len(info.endpoints) == 16
    node_locations = {n.location for n in nodes}
    firsts = set()
    for ep in info.endpoints:
        locs = locations(ep)
        assert set(locs[:2]) == node_locations and locs[2] == REUSE
        firsts.add(locs[0])
    assert firsts == node_locations   # both nodes get work


def test_reads_served_by_the_nodes_equal_a_direct_read(cluster, data) -> None:
    coord, nodes = cluster["coordinator"], cluster["nodes"]
    before = [node_stats(n.location)["served"]["requests"] for n in nodes]
    with Client(coord.location) as c:
        info = c.flight_info(EVENTS, ["event", "nMuon", "Muon_pt"], where="nMuon >= 1")
        got = c.read_info(info).read_all()
        coord_served = c.action("stats")["served"].get(EVENTS, {}).get("requests", 0)
    with uproot.open(data / "hep" / "events.root") as f:
        want = f["events"].arrays(["event", "nMuon", "Muon_pt"], library="np")
    keep = want["nMuon"] >= 1
    assert got["event"].to_pylist() == want["event"][keep].tolist()
    assert got["Muon_pt"].to_pylist() == [list(x) for x in want["Muon_pt"][keep]]
    after = [node_stats(n.location)["served"]["requests"] for n in nodes]
    assert sum(after) - sum(before) == len(info.endpoints)
    assert coord_served == 0   # the coordinator planned; the nodes read


def test_second_identical_query_hits_the_node_caches(cluster) -> None:
    coord, nodes = cluster["coordinator"], cluster["nodes"]
    with Client(coord.location) as c:
        first = c.read("hep/events.root:events", ["MET_pt", "nMuon"], where="MET_pt > 10")
        s0 = [node_stats(n.location)["cache"] for n in nodes]
        again = c.read("hep/events.root:events", ["MET_pt", "nMuon"], where="MET_pt > 10")
        s1 = [node_stats(n.location)["cache"] for n in nodes]
    assert again.equals(first) and first.num_rows > 0
    hits = sum(b["hits"] - a["hits"] for a, b in zip(s0, s1))
    misses = sum(b["misses"] - a["misses"] for a, b in zip(s0, s1))
    assert hits > 0 and hits / (hits + misses) >= 0.95


def test_a_node_refuses_what_is_not_a_valid_ticket_of_its_coordinator(cluster, data, key_file) -> None:
    coord, node = cluster["coordinator"], cluster["nodes"][0]
    with Client(coord.location) as c:
        ticket = c.flight_info(EVENTS, ["nMuon"]).endpoints[0].ticket.ticket
    key = Keys(Settings(root=data, ticket_key_file=key_file).ticket_key()).key("tickets")
    task = TicketSigner(key, 3600).open(ticket)
    nc = fl.FlightClient(node.location)

    def refused(raw: bytes, match: str) -> None:
        with pytest.raises(pa.ArrowInvalid, match=match):  # INVALID_ARGUMENT
            nc.do_get(fl.Ticket(raw)).read_all()

    assert nc.do_get(fl.Ticket(ticket)).read_all().num_rows == task.entries   # the real one works
    refused(TicketSigner(b"another key " * 3, 3600).sign([task])[0], "signature does not match")
    refused(TicketSigner(key, 3600).sign([dataclasses.replace(task, expires=time.time() - 30)])[0], "expired")
    outside = dataclasses.replace(task, parts=(dataclasses.replace(task.parts[0], path="../../etc/passwd"),))
    refused(TicketSigner(key, 3600).sign([outside])[0], "outside the served directory")
    moved: PartRead = dataclasses.replace(task.parts[0], size=task.parts[0].size + 1)
    with pytest.raises(fl.FlightUnavailableError, match="modified"):
        nc.do_get(fl.Ticket(TicketSigner(key, 3600).sign([dataclasses.replace(task, parts=(moved,))])[0])).read_all()
    refused(b"not a ticket at all", "malformed")
    with pytest.raises(pa.ArrowNotImplementedError, match="data node"):
        nc.get_flight_info(fl.FlightDescriptor.for_path(EVENTS))
    log = (cluster["logs"] / "node1.log").read_text()
    assert "Traceback" not in log


def test_a_node_with_another_key_is_refused_at_join(cluster, data, tmp_path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("this is not the coordinator's secret\n")
    r = subprocess.run(arrowroot_cmd() + ["node", str(data), "--port", "0", "--join",
                                          cluster["coordinator"].location, "--key-file", str(wrong)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "refused this node" in r.stderr and "key is not the coordinator's" in r.stderr
    assert "Traceback" not in r.stderr
    with Client(cluster["coordinator"].location) as c:
        assert len(c.action("nodes")["nodes"]) == 2


def test_static_nodes_are_polled_and_a_wrong_key_is_left_out(data, key_file, tmp_path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("this is not the coordinator's secret\n")
    good = Proc(["node", str(data), "--port", "0", "--key-file", str(key_file)], tmp_path / "good.log")
    bad = Proc(["node", str(data), "--port", "0", "--key-file", str(wrong)], tmp_path / "bad.log")
    coord = None
    catalog = tmp_path / "catalog.duckdb"  # the module's coordinator holds DIR's catalog
    subprocess.run(arrowroot_cmd() + ["index", str(data), "--catalog", str(catalog)], check=True, capture_output=True)
    try:
        coord = Proc(["serve", str(data), "--port", "0", "--no-index", "--catalog", str(catalog),
                      "--key-file", str(key_file),
                      "--nodes", f"{good.location},{bad.location}"], tmp_path / "coord.log",
                     {"ARROWROOT_NODE_TTL": "1.5"})
        with Client(coord.location) as c:
            deadline = time.time() + 10
            while time.time() < deadline:
                alive = [n["location"] for n in c.action("nodes")["nodes"] if n["alive"]]
                if alive:
                    break
                time.sleep(0.1)
            assert alive == [good.location]
            info = c.flight_info(EVENTS, ["nMuon"])
            assert all(locations(ep) == [good.location, REUSE] for ep in info.endpoints)
            assert c.read_info(info).read_all().num_rows == 20_000
        assert "key is not the coordinator's" in (tmp_path / "coord.log").read_text()
    finally:
        for p in (coord, good, bad):
            if p is not None:
                p.stop()


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js is not installed")
def test_nodejs_client_reads_through_the_first_location(cluster, nodejs_client) -> None:  # noqa: F811
    coord, nodes = cluster["coordinator"], cluster["nodes"]
    before = sum(node_stats(n.location)["served"]["requests"] for n in nodes)
    request = json.dumps({"dataset": EVENTS, "columns": ["nMuon", "MET_pt"]})
    proc = run_client(nodejs_client, "--no-list", coord.location, request)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 20_000
    assert sum(node_stats(n.location)["served"]["requests"] for n in nodes) - before == summary["endpoints"]


def test_killing_a_node_mid_read_finishes_from_the_fallback_and_the_node_is_dropped(cluster, data, key_file) -> None:
    """Last in this module: it kills the node that is the first location of the first endpoint."""
    coord, nodes = cluster["coordinator"], cluster["nodes"]
    with Client(coord.location, threads=2) as c:
        # both nodes in the rotation first (a heartbeat can come late on a loaded machine)
        deadline = time.time() + 15
        while sum(n["alive"] for n in c.action("nodes")["nodes"]) < 2 and time.time() < deadline:
            time.sleep(0.2)
        info = c.flight_info(BIG, ["i", "x"], batch_rows=4096)
        eps = list(info.endpoints)
        # rendezvous hashing decides which node comes first; the victim is whichever that is
        victim = next(n for n in nodes if n.location == locations(eps[0])[0])
        survivor = next(n for n in nodes if n is not victim)
        by_location = {n["location"]: n["id"] for n in c.action("nodes")["nodes"]}
        victim_id, survivor_id = by_location[victim.location], by_location[survivor.location]
        target = next(ep for ep in eps if locations(ep)[0] == victim.location)
        batches = c.endpoint_batches(target)
        got = [next(batches)]
        victim.kill()                                  # SIGKILL mid-stream
        got.extend(batches)
        part = pa.Table.from_batches(got)
        task = TicketSigner(Keys(Settings(root=data, ticket_key_file=key_file).ticket_key()).key("tickets"),
                            3600).open(target.ticket.ticket)
        a, b = task.entry_start, task.entry_stop
        assert b - a > 100_000
        assert part["i"].to_pylist() == list(range(a, b))        # every row once, in order
        assert part["x"].to_pylist() == [v * 0.5 for v in range(a, b)]
        # (whether the rest of that stream came from the fallback depends on how much of it the
        # victim had already pushed into the socket buffers before it died; either way every row
        # arrived exactly once, in order)
        # the whole read, every endpoint, right after the kill: exactly the right rows, and the
        # endpoints whose first location was the dead node are served by their fallback
        served_before = node_stats(survivor.location)["served"]["requests"]
        whole = c.read_info(info).read_all()
        assert whole["i"].to_pylist() == list(range(BIG_ROWS))
        victims = sum(locations(ep)[0] == victim.location for ep in eps)
        assert node_stats(survivor.location)["served"]["requests"] >= served_before + victims
        # the coordinator drops the silent node within seconds; new FlightInfos avoid it
        deadline = time.time() + 10
        while time.time() < deadline:
            alive = {n["id"]: n["alive"] for n in c.action("nodes")["nodes"]}
            if not alive[victim_id]:
                break
            time.sleep(0.2)
        assert alive == {victim_id: False, survivor_id: True}
        fresh = c.flight_info(BIG, ["i", "x"])
        assert all(victim.location not in locations(ep) for ep in fresh.endpoints)
        assert all(locations(ep) == [survivor.location, REUSE] for ep in fresh.endpoints)
