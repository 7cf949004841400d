"""Coordinator membership (server/membership.py): signed registrations and heartbeats,
nodes leaving the rotation when silent, static nodes proven by a health challenge."""

from __future__ import annotations

import json
import threading

import pyarrow.flight as fl
import pytest

from arrowroot.flight_server.server.node import flight_health_probe
from arrowroot.flight_server.service.membership import (Membership, NodeRefused, check_registration,
                                                       health_answer, registration, sign)

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_registration_is_signed_and_fresh() -> None:
    body = registration(KEY, "n1", "grpc://10.0.0.1:8816")
    assert check_registration(KEY, body)[:2] == ("n1", "grpc://10.0.0.1:8816")
    with pytest.raises(NodeRefused, match="the node's key is not the coordinator's"):
        check_registration(b"x" * 32, body)
    forged = json.loads(body)
    forged["location"] = "grpc://evil:1"
    with pytest.raises(NodeRefused, match="signature"):
        check_registration(KEY, json.dumps(forged).encode())
    with pytest.raises(NodeRefused, match="clock"):
        check_registration(KEY, registration(KEY, "n1", "grpc://a:1", now=1000.0))
    for bad in (b"", b"[]", b'{"id": "n"}', json.dumps({"id": "n", "location": "http://a", "time": "1",
                                                        "nonce": "1", "signature": "00"}).encode(),
                json.dumps({"id": "n\ngrpc://a:1", "location": "grpc://a:1", "time": "1", "nonce": "1",
                            "signature": "00"}).encode()):
        with pytest.raises(ValueError, match="node.register"):
            check_registration(KEY, bad)
    old = json.loads(body)  # a registration of an older node (no nonce) is refused with the reason
    del old["nonce"]
    with pytest.raises(ValueError, match="nonce"):
        check_registration(KEY, json.dumps(old).encode())
    nan = registration(KEY, "n1", "grpc://a:1")
    with pytest.raises(NodeRefused, match="clock"):  # a time that is no time: refused, not accepted
        check_registration(KEY, nan.replace(json.loads(nan)["time"].encode(), b"nan").replace(
            json.loads(nan)["signature"].encode(), sign(KEY, "register", "n1", "grpc://a:1", "nan",
                                                         json.loads(nan)["nonce"]).encode()))


def test_a_captured_registration_cannot_be_replayed() -> None:
    """Replayed within the clock window (the hole: 30 s), a registration is refused; the node's
    own next heartbeat, signed afresh, is not."""
    m = Membership(KEY, ttl=3.0)
    body = registration(KEY, "n1", "grpc://h1:8816")
    m.register(body)
    with pytest.raises(NodeRefused, match="used before"):
        m.register(body)
    m.register(registration(KEY, "n1", "grpc://h1:8816"))
    assert [n.id for n in m.live()] == ["n1"]


def test_silent_nodes_leave_and_placement_follows() -> None:
    clock = Clock()
    m = Membership(KEY, ttl=3.0, clock=clock)
    for i in (1, 2, 3):
        m.register(registration(KEY, f"n{i}", f"grpc://h{i}:8816"))
    assert [n.id for n in m.live()] == ["n1", "n2", "n3"]
    assert m.placement().nodes == ("grpc://h1:8816", "grpc://h2:8816", "grpc://h3:8816")
    clock.now += 2.0
    m.register(registration(KEY, "n1", "grpc://h1:8816"))   # heartbeats from n1 and n3 only
    m.register(registration(KEY, "n3", "grpc://h3:8816"))
    clock.now += 2.0
    assert [n.id for n in m.live()] == ["n1", "n3"]
    assert m.placement().nodes == ("grpc://h1:8816", "grpc://h3:8816")
    states = {d["id"]: d["alive"] for d in m.describe()}
    assert states == {"n1": True, "n2": False, "n3": True}
    m.register(registration(KEY, "n2", "grpc://h2:8816"))   # back
    assert len(m.live()) == 3


class HealthOnlyServer(fl.FlightServerBase):
    """A real Flight server answering ``health`` with a proof made from ``key``."""

    def __init__(self, key: bytes):
        super().__init__("grpc://127.0.0.1:0")
        self.key = key

    def do_action(self, context, action):
        challenge = json.loads(action.body.to_pybytes()).get("challenge", "")
        yield fl.Result(json.dumps({"status": "ok", "node": f"node-{self.port}",
                                    **health_answer(self.key, challenge)}).encode())


def test_static_nodes_count_once_proven_by_the_key() -> None:
    good, wrong = HealthOnlyServer(KEY), HealthOnlyServer(b"w" * 32)
    for s in (good, wrong):
        threading.Thread(target=s.serve, daemon=True).start()
    dead = "grpc://127.0.0.1:1"
    try:
        m = Membership(KEY, ttl=3.0, probe=flight_health_probe)
        m.add_static([f"grpc://127.0.0.1:{good.port}", f"grpc://127.0.0.1:{wrong.port}", dead])
        assert m.live() == []
        m.poll_once(timeout=1.0)
        assert [n.location for n in m.live()] == [f"grpc://127.0.0.1:{good.port}"]
        assert m.live()[0].id == f"node-{good.port}"
    finally:
        good.shutdown()
        wrong.shutdown()


def test_locations_for_tasks() -> None:
    import pyarrow as pa

    from arrowroot.flight_server.core.task import PartRead, ReadTask
    from arrowroot.flight_server.plan.placement import Placement
    from arrowroot.flight_server.service.membership import REUSE_CONNECTION, locations_for

    def task(path: str) -> ReadTask:
        return ReadTask(dataset="d", format="root", kind="ttree", read_schema=pa.schema([("x", pa.int32())]),
                        columns=("x",), parts=(PartRead(path, 10, 1.0, "t", 0, 0, 10),),
                        batch_rows=1024, batch_bytes=1 << 20, chunk_rows=4096)

    nodes = Placement(["grpc://a:1", "grpc://b:1", "grpc://c:1"])
    got = locations_for(task("runs/r1.root"), nodes)
    assert len(got) == 3 and set(got[:2]) <= set(nodes.nodes) and got[2] == REUSE_CONNECTION
    assert got == locations_for(task("runs/r1.root"), Placement(["grpc://c:1", "grpc://b:1", "grpc://a:1"]))
    assert locations_for(task("runs/r1.root"), Placement([])) == []
    assert locations_for(task("runs/r1.root"), None) == []
    assert locations_for(task("@workspace/home/u/x.parquet"), nodes) == []  # mounted: the coordinator's
