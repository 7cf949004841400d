"""The local admin door: ``arrowroot users|groups|keys|grant|revoke|grants`` while the server runs.

DuckDB lets one process write a catalog file and a running server holds it, so the admin commands,
finding the file held, hand their operation to the server over a Unix socket instead of asking the
operator to stop it. Who may: the socket lives in a directory only the server's OS user can enter
(``/tmp/arrowroot-UID``, mode 0700, checked at start), and each connection's peer credentials
(``SO_PEERCRED``) must be that user or root: the people who could edit the catalog file with the
server stopped. Nothing else is exposed: the operations are those of ``service/admin.py``, one
JSON line each way (at most 64 KiB), handled one at a time with a 10 s timeout, each logged on one
access-log line (door ``admin``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arrowroot.catalog.errors import CatalogError
from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.core.errors import ArrowrootError
from arrowroot.flight_server.service import admin
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.errors import status_of

log = logging.getLogger("arrowroot.admin")

MAX_MESSAGE = 64 << 10
TIMEOUT_S = 10.0

__all__ = ["AdminSocket", "AdminUnreachable", "AdminRefused", "call", "socket_path"]


class AdminUnreachable(OSError):
    """No running server answers on this catalog's admin socket."""


class AdminRefused(Exception):
    """The server ran the operation and refused it; the message says why."""


def socket_dir() -> Path:
    return Path("/tmp") / f"arrowroot-{os.getuid()}"


def socket_path(catalog_path: Path) -> Path:
    """Where the server holding ``catalog_path`` listens: a digest of the file's real path, so a
    deep catalog path never exceeds the 107 bytes a socket's name may have."""
    digest = hashlib.sha256(str(Path(catalog_path).resolve()).encode()).hexdigest()[:24]
    return socket_dir() / f"{digest}.sock"


def _private_dir(path: Path) -> None:
    """Create the socket directory 0700, or check that the one there is ours and private."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path} must be a directory of this user with mode 0700 (the admin socket's); "
                              "remove it and start the server again")


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"message over {MAX_MESSAGE} bytes")
    return data


class AdminSocket:
    """Listens on the admin socket of ``catalog`` in a thread of its own; ``stop`` removes it."""

    def __init__(self, catalog: Catalog, catalog_path: Path, auth_on: Callable[[], bool] = lambda: True):
        self.catalog = catalog
        self.auth_on = auth_on  # answers say when the running server does not check logins
        self.path = socket_path(catalog_path)
        _private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)  # a server killed earlier left it; DuckDB's lock says no other runs
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._sock.bind(str(self.path))
        finally:
            os.umask(old)
        self._sock.listen(8)
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="admin-socket", daemon=True)

    def start(self) -> AdminSocket:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except Exception:  # one bad connection must not end the door
                    log.exception("admin socket: a call failed")

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT_S)
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
        record = CallRecord("admin", "?", user=f"uid:{uid}", peer=f"pid:{pid}")
        answer: dict[str, Any]
        try:
            if uid not in (os.getuid(), 0):
                raise PermissionError(f"uid {uid} may not administer this server; run the command as "
                                      "the server's user")
            request = json.loads(_read_line(conn) or b"null")
            if not isinstance(request, dict):
                raise ValueError("expected one JSON object: {\"op\": ..., \"args\": {...}}")
            record.method = str(request.get("op"))[:40]
            answer = {"ok": True, "result": admin.run(self.catalog, request.get("op"), request.get("args") or {}),
                      "auth": bool(self.auth_on())}
        except (ArrowrootError, CatalogError) as exc:
            record.status = status_of(exc).grpc
            answer = {"ok": False, "error": str(exc)}
        except PermissionError as exc:
            record.status = "PERMISSION_DENIED"
            answer = {"ok": False, "error": str(exc)}
        except (ValueError, TimeoutError) as exc:
            record.status = "INVALID_ARGUMENT"
            answer = {"ok": False, "error": f"bad admin request: {exc}"}
        except Exception:
            record.status = "INTERNAL"
            log.exception("admin %s failed", record.method)
            answer = {"ok": False, "error": "internal error; the server's log has the details"}
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            record.status = "CANCELLED"
        record.finish()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self.path.unlink(missing_ok=True)


def call(catalog_path: Path, op: str, args: dict[str, Any], timeout: float = 60.0) -> tuple[Any, bool]:
    """Run ``op`` in the server that holds ``catalog_path``: its result and whether that server
    checks logins; AdminRefused with the server's reason, or AdminUnreachable when none listens."""
    path = socket_path(catalog_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AdminUnreachable(f"no server answers on {path}") from exc
        except PermissionError as exc:
            raise AdminUnreachable(f"{path} belongs to another user: run this as the server's user") from exc
        sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
        line = _read_line(sock)
    finally:
        sock.close()
    if not line:
        raise AdminUnreachable("the server closed the admin socket without an answer")
    answer = json.loads(line)
    if not answer.get("ok"):
        raise AdminRefused(str(answer.get("error")))
    return answer.get("result"), bool(answer.get("auth", True))
