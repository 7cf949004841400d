"""Cut one client's TCP connection to this process, by its gRPC peer address.

Why: pyarrow's Flight server gives a handler no way to end a call. A DoGet whose client stopped
reading blocks its gRPC thread in a write until the client reads or goes away, and a DoPut whose
client stopped sending blocks in a read; the idle timeout of the stream slots (service/streams.py)
can free the slot but not that thread (100 stalled DoGets held 215 threads after 150 s). Shutting
the socket down (the file descriptor stays gRPC's, which closes it) makes gRPC fail the blocked
write or read at once, so the thread, the batch it held and the upload's temporary file go.

Only connections accepted on a port this process listens on are cut (never one of its own
outgoing connections, say a coordinator's to a data node). Linux and macOS (psutil); elsewhere,
or when the connection is already gone, nothing happens and False is returned.
"""

from __future__ import annotations

import logging
import os
import socket

import psutil

log = logging.getLogger("arrowroot")

__all__ = ["parse_peer", "cut"]


def parse_peer(peer: str) -> tuple[str, int] | None:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` (gRPC's peer strings) → (address, port)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or not rest:
        return None
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if host.startswith("::ffff:") and "." in host:  # an IPv4 client on a dual-stack socket
        host = host[len("::ffff:"):]
    try:
        return host, int(port)
    except ValueError:
        return None


def _same_host(a: str, b: str) -> bool:
    return a == b or a.removeprefix("::ffff:") == b.removeprefix("::ffff:")


def cut(peer: str) -> bool:
    """Shut down this process's accepted TCP connection from ``peer``; True when one was cut."""
    address = parse_peer(peer)
    if address is None:
        return False
    host, port = address
    try:
        conns = psutil.Process().net_connections(kind="tcp")
    except (psutil.Error, OSError, NotImplementedError):
        return False
    listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    done = False
    for c in conns:
        if not c.raddr or c.fd < 0 or c.laddr.port not in listening:
            continue
        if c.raddr.port != port or not _same_host(c.raddr.ip, host):
            continue
        try:
            dup = socket.socket(fileno=os.dup(c.fd))
        except OSError:
            continue
        try:
            dup.shutdown(socket.SHUT_RDWR)
            done = True
        except OSError:
            pass
        finally:
            dup.close()
    if done:
        log.info("cut the connection of %s (its stream was idle past the timeout)", peer)
    return done
