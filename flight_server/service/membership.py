"""Which data nodes are alive: the coordinator's view of its cluster.

Nodes come two ways, both in one table:

* ``arrowroot node DIR --join grpc://coordinator:8815`` registers itself and then
  heartbeats every ``interval`` seconds (a signed ``node.register`` action);
* ``arrowroot serve DIR --nodes grpc://n1:8816,grpc://n2:8816`` lists them statically;
  the coordinator polls each one's ``health`` with a challenge only the shared key
  answers.

A node that misses heartbeats or polls for ``ttl`` seconds leaves the rotation; one that
comes back rejoins. A node that stops gracefully says so first (a signed registration with
``"leave": true``, or ``"draining": true`` in its health answer): it leaves the rotation at once,
so new FlightInfos name the other nodes while it finishes its open streams.

Every proof is an HMAC with the shared key over a fresh value, so a node with another key
is refused (and told why): a registration (or leave) signs its time and a random nonce, is
accepted only within ``MAX_CLOCK_SKEW`` of the coordinator's clock, and only once — a captured
registration replayed is refused. Registrations pass an ``--auth`` coordinator's door without a
user (the ``x-arrowroot-node`` header), their signature being the credential; that header lets
nothing else through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arrowroot.flight_server.core.task import ReadTask
from arrowroot.flight_server.plan.placement import Placement, chunk_key, file_id
from arrowroot.flight_server.core.errors import InvalidRequest

log = logging.getLogger("arrowroot.nodes")

REGISTER_ACTION = "node.register"
HEALTH_ACTION = "health"
MAX_CLOCK_SKEW = 30.0  # seconds a signed registration stays acceptable
#: an endpoint location meaning "the server you asked": the coordinator, as the last fallback
REUSE_CONNECTION = "arrow-flight-reuse-connection://?"
FALLBACKS = 2          # node locations per endpoint: the preferred one and its fallback


def task_key(task: ReadTask) -> bytes:
    """The placement key of a task: its first part's file identity, object and local range
    (tasks never span two parts, and the same chunks make the same key)."""
    if not task.parts:
        return b""
    p = task.parts[0]
    return chunk_key(file_id(p.path, p.size, p.mtime), p.object_path, p.start, p.stop)


def locations_for(task: ReadTask, placement: Placement | None) -> list[str]:
    """Endpoint locations: the task's nodes by rendezvous order, then this server; none
    (= this server) without live nodes."""
    if placement is None or not len(placement):
        return []
    if any(p.path.startswith("@") for p in task.parts):  # a mounted directory (the workspace): not on nodes
        return []
    return placement.order(task_key(task), FALLBACKS) + [REUSE_CONNECTION]


class NodeRefused(PermissionError):
    """A node's proof does not match the shared key (or is stale)."""


def sign(key: bytes, *fields: str) -> str:
    """Hex HMAC-SHA256 of the fields, newline-joined."""
    return hmac.new(key, "\n".join(fields).encode(), hashlib.sha256).hexdigest()


def registration(key: bytes, node_id: str, location: str, now: float | None = None, leave: bool = False,
                 nonce: str | None = None) -> bytes:
    """The body of a node's ``node.register`` action (``leave``: it is stopping): signed, timed and
    carrying a fresh nonce."""
    t = f"{time.time() if now is None else now:.3f}"
    nonce = nonce or secrets.token_hex(16)
    verb = "leave" if leave else "register"
    body = {"id": node_id, "location": location, "time": t, "nonce": nonce,
            "signature": sign(key, verb, node_id, location, t, nonce)}
    if leave:
        body["leave"] = True
    return json.dumps(body).encode()


def check_registration(key: bytes, body: bytes, now: float | None = None) -> tuple[str, str, str, float]:
    """(node id, location, nonce, signing time) of a valid registration; NodeRefused / InvalidRequest
    otherwise. Whether the nonce was seen before is the caller's to check (:class:`Nonces`)."""
    return _check(key, body, now)[:4]


def _check(key: bytes, body: bytes, now: float | None = None) -> tuple[str, str, str, float, bool]:
    """(node id, location, nonce, signing time, leaving) of a valid registration or leave."""
    try:
        d = json.loads(body)
        node_id, location, t, nonce, signature = d["id"], d["location"], d["time"], d["nonce"], d["signature"]
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest('node.register: body must be {"id", "location", "time", "nonce", "signature"} '
                             "(a node of another arrowroot version?)") from None
    if not all(isinstance(x, str) and x for x in (node_id, location, t, nonce, signature)):
        raise InvalidRequest("node.register: id, location, time, nonce and signature must be non-empty strings")
    if len(nonce) > 64 or len(node_id) > 256 or len(location) > 512:
        raise InvalidRequest("node.register: id, location or nonce too long")
    if not all(x.isprintable() for x in (node_id, location, t, nonce)):  # the signed text joins them by lines
        raise InvalidRequest("node.register: id, location, time and nonce must be printable text")
    if not location.startswith(("grpc://", "grpc+tcp://", "grpc+tls://")):
        raise InvalidRequest(f"node.register: location {location[:100]!r} is not a grpc:// URI")
    leave = d.get("leave") is True
    if not hmac.compare_digest(signature, sign(key, "leave" if leave else "register", node_id, location, t, nonce)):
        raise NodeRefused("node.register: signature does not match: the node's key is not the coordinator's "
                          "(give both the same --key-file or ARROWROOT_TICKET_KEY)")
    try:
        signed = float(t)
    except ValueError:
        raise InvalidRequest("node.register: time must be a number of seconds") from None
    skew = abs((time.time() if now is None else now) - signed)
    if not skew <= MAX_CLOCK_SKEW:
        raise NodeRefused(f"node.register: signed {skew:.0f} s away from the coordinator's clock "
                          f"(more than {MAX_CLOCK_SKEW:.0f} s): check the clocks")
    return node_id, location, nonce, signed, leave


class Nonces:
    """Registration nonces seen while they could still be replayed (their signing time is within
    the clock-skew window): a captured registration sent again is refused."""

    def __init__(self, window: float = MAX_CLOCK_SKEW, clock: Callable[[], float] = time.time):
        self.window = window
        self._clock = clock
        self._seen: dict[str, float] = {}   # nonce → signing time
        self._lock = threading.Lock()

    def first_use(self, nonce: str, signed: float) -> bool:
        """Record ``nonce``; False if it was used before."""
        now = self._clock()
        with self._lock:
            if nonce in self._seen:
                return False
            if len(self._seen) > 1024:  # only validly signed bodies get here: a node's heartbeats
                self._seen = {n: t for n, t in self._seen.items() if now - t <= self.window}
            self._seen[nonce] = signed
            return True


def health_answer(key: bytes, challenge: str) -> dict:
    """What a node adds to its health answer: proof that it holds the key."""
    return {"proof": sign(key, "health", challenge)} if challenge else {}


@dataclass
class Node:
    id: str
    location: str
    last_seen: float
    static: bool = False
    alive: bool = True


#: asks a node location for its health: (location, JSON body, timeout) → the answer's JSON (raises
#: when the node is down); the Flight door provides it, so this module needs no network code
Probe = Callable[[str, bytes, float], dict]


class Membership:
    """The live nodes, and the placement over them (rebuilt when membership changes)."""

    def __init__(self, key: bytes, ttl: float = 3.0, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, probe: Probe | None = None):
        self.key = key
        self.probe = probe
        self.ttl = ttl
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._placement = Placement([])
        self._placement_of: tuple[str, ...] = ()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._nonces = Nonces()
        self._counts = {"heartbeats": 0, "refused": 0, "polls_ok": 0, "polls_failed": 0, "leaves": 0}

    # ------------------------------------------------------------ registration

    def register(self, body: bytes) -> dict:
        """A node's signed registration, heartbeat or leave; returns what the node should know."""
        try:
            node_id, location, nonce, signed, leave = _check(self.key, body)
            if not self._nonces.first_use(nonce, signed):
                raise NodeRefused("node.register: this registration was used before (a replay); a node signs "
                                  "every registration afresh")
        except (NodeRefused, InvalidRequest, ValueError):
            with self._lock:
                self._counts["refused"] += 1
            raise
        if leave:
            return self._leave(node_id, location)
        with self._lock:
            self._counts["heartbeats"] += 1
            node = self._nodes.get(location)
            if node is None or not node.alive:
                log.warning("node %s joined at %s", node_id, location)
            self._nodes[location] = Node(node_id, location, self._clock(), static=bool(node and node.static))
        return {"ttl": self.ttl, "interval": self.interval, "nodes": len(self.live())}

    def _leave(self, node_id: str, location: str) -> dict:
        """A node stopping gracefully: out of the rotation now (a static one until its polls say
        it is back and not draining)."""
        with self._lock:
            self._counts["leaves"] += 1
            node = self._nodes.get(location)
            if node is not None:
                log.warning("node %s at %s left (stopping)", node_id, location)
                if node.static:
                    node.last_seen, node.alive = float("-inf"), False
                else:
                    del self._nodes[location]
        return {"left": True, "nodes": len(self.live())}

    def counts(self) -> dict[str, int]:
        """Heartbeats received and refused, polls by outcome, graceful leaves (metrics)."""
        with self._lock:
            return dict(self._counts)

    def add_static(self, locations: Sequence[str]) -> None:
        """Nodes given on the command line; they count once a health poll proves them."""
        with self._lock:
            for loc in locations:
                self._nodes.setdefault(loc, Node(loc, loc, float("-inf"), static=True, alive=False))

    # ------------------------------------------------------------ views

    def live(self) -> list[Node]:
        now = self._clock()
        with self._lock:
            out = []
            for n in self._nodes.values():
                alive = now - n.last_seen <= self.ttl
                if n.alive and not alive:
                    log.warning("node %s at %s left the rotation (silent for %.1f s)", n.id, n.location,
                                now - n.last_seen)
                n.alive = alive
                if alive:
                    out.append(n)
            return sorted(out, key=lambda n: n.location)

    def placement(self) -> Placement:
        """Rendezvous placement over the live nodes' locations."""
        locations = tuple(n.location for n in self.live())
        with self._lock:
            if locations != self._placement_of:
                self._placement, self._placement_of = Placement(locations), locations
            return self._placement

    def describe(self) -> list[dict]:
        now = self._clock()
        live = {n.location for n in self.live()}
        with self._lock:
            return [{"id": n.id, "location": n.location, "alive": n.location in live, "static": n.static,
                     "seen_seconds_ago": None if n.last_seen == float("-inf") else round(now - n.last_seen, 2)}
                    for n in sorted(self._nodes.values(), key=lambda n: n.location)]

    # ------------------------------------------------------------ polling static nodes

    def poll_once(self, timeout: float = 2.0) -> None:
        """Ask every static node for its health, with a challenge only the key answers."""
        with self._lock:
            static = [n.location for n in self._nodes.values() if n.static]
        for loc in static:
            challenge = secrets.token_hex(16)
            if self.probe is None:
                return
            try:
                answer = self.probe(loc, json.dumps({"challenge": challenge}).encode(), timeout)
            except Exception as exc:  # down, unreachable, or not an arrowroot node
                log.debug("node %s: health poll failed: %s", loc, exc)
                with self._lock:
                    self._counts["polls_failed"] += 1
                continue
            if not hmac.compare_digest(str(answer.get("proof", "")), sign(self.key, "health", challenge)):
                log.error("node %s: its key is not the coordinator's; not used", loc)
                with self._lock:
                    self._counts["polls_failed"] += 1
                continue
            if answer.get("draining") is True:  # stopping: no new endpoints there
                with self._lock:
                    self._counts["polls_ok"] += 1
                    n = self._nodes[loc]
                    n.last_seen, n.alive = float("-inf"), False
                continue
            with self._lock:
                self._counts["polls_ok"] += 1
                n = self._nodes[loc]
                if not n.alive:
                    log.warning("node %s joined (static)", loc)
                n.id = str(answer.get("node", loc))
                n.last_seen = self._clock()

    def start_polling(self) -> None:
        if self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once(timeout=max(0.5, self.interval))
                self._stop.wait(self.interval)

        self._poller = threading.Thread(target=loop, name="node-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
