"""Data nodes under an ``--auth`` coordinator, registrations that cannot be replayed, and tickets
naming a symlink that leads out of the served directory — real processes on loopback.

* ``arrowroot node --join`` registers with a coordinator started with ``--auth``: the call carries the
  ``x-arrowroot-node`` header and no user; the coordinator lets it through for ``node.register``
  only, the registration's HMAC (shared key) being its credential. Users then read through the node.
* A registration captured on the wire and sent again within the clock window is refused.
* A file indexed inside the served directory and then replaced by a symlink to a file outside (same
  size and mtime, so the ticket's identity check passes) is refused by the coordinator and the node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pytest
import uproot

from arrowroot.clients import Client
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.server.auth import NODE_HEADER
from arrowroot.flight_server.service.membership import REGISTER_ACTION, registration
from arrowroot.flight_server.service.tickets import Keys

from test_nodes import Proc, arrowroot_cmd

# real server processes, writers and clients in other processes: not in the quick run
pytestmark = pytest.mark.slow

EVENTS = "hep/events.root:events"
PASSWORD = "correct horse battery staple"


def _cli(*args: str, stdin: str | None = None) -> None:
    subprocess.run(arrowroot_cmd() + list(args), check=True, capture_output=True, text=True, input=stdin)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("secured")
    (root / "hep").mkdir()
    with uproot.recreate(root / "hep" / "events.root") as f:
        f["events"] = {"event": np.arange(5000, dtype=np.int64), "nMuon": np.arange(5000, dtype=np.int32) % 4}
    (root / "swap").mkdir()
    with uproot.recreate(root / "swap" / "victim.root") as f:
        f["t"] = {"v": np.arange(1000, dtype=np.int64)}
    _cli("index", str(root))
    _cli("users", "add", str(root), "alice", "--password-stdin", stdin=PASSWORD + "\n")
    _cli("grant", str(root), "*", "--to", "user:alice")
    logs = tmp_path_factory.mktemp("logs")
    key = logs / "key"
    key.write_text("the secured cluster's shared secret\n")
    env = {"ARROWROOT_NODE_TTL": "2"}
    coord = Proc(["serve", str(root), "--port", "0", "--no-index", "--auth", "--key-file", str(key)],
                 logs / "coordinator.log", env)
    node = Proc(["node", str(root), "--port", "0", "--join", coord.location, "--key-file", str(key), "--id", "n1"],
                logs / "node.log", env)
    yield {"root": root, "coord": coord, "node": node, "key": key, "logs": logs}
    node.stop()
    coord.stop()


def _alice(secured) -> Client:
    return Client(secured["coord"].location, username="alice", password=PASSWORD)


def test_a_node_joins_an_auth_coordinator_and_serves_its_users(secured) -> None:
    assert "joined" in secured["node"].line
    with _alice(secured) as c:
        nodes = c.action("nodes")["nodes"]
        assert [(n["id"], n["alive"]) for n in nodes] == [("n1", True)]
        info = c.flight_info(EVENTS, ["event"])
        assert all(secured["node"].location in [loc.uri.decode() for loc in ep.locations]
                   for ep in info.endpoints)
        assert c.read_info(info).read_all()["event"].to_pylist() == list(range(5000))
        assert c.action("stats")["served"].get(EVENTS, {}).get("requests", 0) == 0  # the node read it
    time.sleep(3)  # heartbeats keep it in (node_ttl 2 s)
    with _alice(secured) as c:
        assert [n["alive"] for n in c.action("nodes")["nodes"]] == [True]


def test_the_node_header_opens_only_the_registration(secured) -> None:
    c = fl.connect(secured["coord"].location)
    header = fl.FlightCallOptions(headers=[(NODE_HEADER.encode(), b"1")])
    with pytest.raises(fl.FlightUnauthenticatedError, match="signs only its registration"):
        list(c.do_action(fl.Action("stats", b""), header))
    with pytest.raises(fl.FlightUnauthenticatedError):
        list(c.list_flights(b"", header))
    wrong = registration(b"w" * 32, "evil", "grpc://127.0.0.1:1")
    with pytest.raises(fl.FlightUnauthorizedError, match="key is not the coordinator's"):
        list(c.do_action(fl.Action(REGISTER_ACTION, wrong), header))


def test_a_captured_registration_is_refused_when_replayed(secured) -> None:
    key = Keys(Settings(root=secured["root"], ticket_key_file=secured["key"]).ticket_key()).key("membership")
    body = registration(key, "n9", "grpc://127.0.0.1:9")  # what a node sent, as captured on the wire
    c = fl.connect(secured["coord"].location)
    header = fl.FlightCallOptions(headers=[(NODE_HEADER.encode(), b"1")])
    answer = json.loads(next(iter(c.do_action(fl.Action(REGISTER_ACTION, body), header))).body.to_pybytes())
    assert answer["nodes"] >= 1
    with pytest.raises(fl.FlightUnauthorizedError, match="used before"):
        list(c.do_action(fl.Action(REGISTER_ACTION, body), header))


def test_a_symlink_swapped_in_after_indexing_is_refused_by_coordinator_and_node(secured, tmp_path) -> None:
    root = secured["root"]
    victim = root / "swap" / "victim.root"
    outside = tmp_path / "outside.root"
    with uproot.recreate(outside) as f:  # another file, outside the served directory ...
        f["t"] = {"v": np.arange(1000, 2000, dtype=np.int64)}
    with _alice(secured) as c:
        info = c.flight_info("swap/victim.root:t", ["v"])
    coord = fl.connect(secured["coord"].location)
    options = fl.FlightCallOptions(headers=[coord.authenticate_basic_token("alice", PASSWORD)])
    node = fl.connect(secured["node"].location)
    for client, opts in ((coord, options), (node, fl.FlightCallOptions())):  # read once: the file is known inside
        assert client.do_get(info.endpoints[0].ticket, opts).read_all().num_rows > 0
    st = victim.stat()
    # ... made to look like the indexed one: same size and mtime, so only the realpath check is left
    shutil.copyfile(victim, outside)
    os.utime(outside, ns=(st.st_atime_ns, st.st_mtime_ns))
    victim.unlink()
    victim.symlink_to(outside)
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    for client, opts in ((coord, options), (node, fl.FlightCallOptions())):
        with pytest.raises(pa.ArrowInvalid, match="outside the served directory"):
            client.do_get(info.endpoints[0].ticket, opts).read_all()
