"""How a command fails: one line with the cause and the fix on stderr, never a Python traceback.

Start-up failures (``serve``, ``node``, ``index``: port in use, an address that is not this
machine's, catalog held by another process, bad settings) exit 2; failures of a client command
(the server said no, no server there, TLS on one side only, an output path that cannot be
written) exit 1. Anything else is a bug: it is reported in one line that says so, with the
traceback only when ``ARROWROOT_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Iterator

import click

DEBUG_ENV = "ARROWROOT_DEBUG"
#: the commands of the server install (`pip install -e ".[server]"`); the others are the client's
SERVER_COMMANDS = {"serve", "node", "index", "demo", "users", "groups", "keys", "grant", "revoke", "grants"}


def one_line(exc: BaseException | str) -> str:
    """The first line of an error's message, without pyarrow's "Detail:" tail and gRPC's debug context."""
    text = str(exc).strip()
    for cut in (". Detail:", " Detail:", ". gRPC client debug context:", "\ngRPC client debug context:"):
        text = text.split(cut, 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__ if isinstance(exc, BaseException) else ""


def short(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- start-up


def _port_taken(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def why_not_listening(host: str, port: int | None) -> str | None:
    """The reason a server could not listen on host:port, found by trying what gRPC tried."""
    what = "--host" if host else "host"
    try:
        infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return (f"{what} {host!r}: no such address ({exc.strerror}); use 127.0.0.1 (this machine only), "
                "0.0.0.0 (every interface) or a name of this machine")
    if port and _port_taken(host, port):
        return (f"port {port} on {host} is in use (another arrowroot server?): stop it, choose another "
                "--port, or --port 0 for a free one")
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (f"port {port} on {host} is in use (another program?): choose another --port, "
                            "or --port 0 for a free one")
                if exc.errno == errno.EACCES:
                    return f"port {port} needs privileges on this machine: choose one above 1023, or --port 0"
                return (f"{what} {host!r}: cannot listen there ({exc.strerror}); use 127.0.0.1, 0.0.0.0 "
                        "or an address of this machine")
    return None


@contextlib.contextmanager
def startup(what: str, host: str | None = None, port: int | None = None) -> Iterator[None]:
    """Start-up failures end in one line with the cause and the fix, and exit status 2."""
    import pyarrow as pa

    from arrowroot.flight_server.core.errors import ArrowrootError

    try:
        yield
    except click.ClickException:
        raise
    except ArrowrootError as exc:  # catalog in use, bad auth or TLS setup, bad settings
        click.echo(f"arrowroot {what}: {one_line(exc)}", err=True)
        sys.exit(2)
    except (ValueError, OSError, pa.ArrowException) as exc:
        text = one_line(exc)
        if host is not None and ("did not start" in text or "add port" in text.lower()):
            text = why_not_listening(host, port) or text
        click.echo(f"arrowroot {what}: {text}", err=True)
        sys.exit(2)


# ---------------------------------------------------------------- client commands


def connection_problem(message: str, location: str | None) -> str | None:
    """The cause and the fix, for the connection failures whose gRPC text says neither."""
    if not location:
        return None
    scheme, _, address = location.partition("://")
    low = message.lower()
    if "wrong version number" in low or scheme == "grpc+tls" and "handshake" in low and "certificate" not in low:
        return f"{location} does not speak TLS: use grpc://{address}"
    if "certificate" in low and ("verify" in low or "handshake" in low):
        return (f"{location}: the server's certificate is not trusted here: ARROWROOT_TLS_CA=ca.pem trusts a private "
                "CA (a client certificate for mutual TLS is given to the Python client)")
    if scheme == "grpc" and any(s in low for s in ("socket closed", "connection reset", "stream removed",
                                                    "end of tcp stream")):
        return (f"{location} closed the connection: the server probably uses TLS; use grpc+tls://{address} "
                "(with ARROWROOT_TLS_CA=ca.pem for a private CA)")
    if "connection refused" in low:
        return (f"no server answers at {location} (connection refused): start one with `arrowroot serve DIR`, "
                "or point -l / ARROWROOT_URL at one")
    if "failed to connect" in low or "dns resolution failed" in low:
        return f"cannot reach {location} ({short(one_line(message), 160)}): check the address, or -l / ARROWROOT_URL"
    return None


def report(command: str, exc: BaseException, location: str | None = None) -> int:
    """Print one line for ``exc`` and return the exit status."""
    import pyarrow as pa

    from arrowroot.clients import ArrowrootError

    if isinstance(exc, ArrowrootError):
        text = one_line(exc)
        click.echo(f"arrowroot {command}: {connection_problem(str(exc), location) or f'{type(exc).__name__}: {text}'}",
                   err=True)
        return 1
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if command.split()[0] in SERVER_COMMANDS:
            fix = 'the server install: pip install -e ".[server]" in the arrowroot clone'
        else:   # a client command writing .root/.h5/.tiff, or library="ak"/"pd"
            fix = f'pip install {top} (the exports extra has the file writers: pip install -e ".[exports]")'
        click.echo(f"arrowroot {command}: needs {top}, which is not installed here; {fix}", err=True)
        return 1
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"arrowroot {command}: {exc.strerror}{where}", err=True)
        return 1
    if isinstance(exc, pa.ArrowException):
        click.echo(f"arrowroot {command}: {one_line(exc)}", err=True)
        return 1
    click.echo(f"arrowroot {command}: internal error ({type(exc).__name__}: {short(one_line(exc), 200)}); "
               f"this is a bug, please report it (set {DEBUG_ENV}=1 for the traceback)", err=True)
    return 1


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")
