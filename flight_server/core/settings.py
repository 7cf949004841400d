"""Settings: every default lives here, once, and every command reads them the same way.

A value comes from, highest first: a command-line flag, the environment (``ARROWROOT_<FIELD>``
in upper case: ``ARROWROOT_PORT=9000``), the ``[server]`` table of ``<root>/arrowroot.toml``
(the field's name as the key: ``port = 9000``), and the default below. :func:`load` does that
merge for ``serve``, ``node``, ``index`` and the admin commands; :func:`explain` says where each
value came from (``arrowroot settings DIR``). Modules that need one of these values are given it
by whoever builds them; none keeps a default of its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1 << 20
GiB = 1 << 30
ENV_PREFIX = "ARROWROOT_"
CONFIG_NAME = "arrowroot.toml"   # in the served directory: [server] settings, [[dataset]] declarations
SECTION = "server"
#: the ticket-signing secret itself (any text) — the alternative to ``ticket_key_file``; never
#: read from ``arrowroot.toml`` (a secret does not belong in the served directory)
TICKET_KEY_ENV = "ARROWROOT_TICKET_KEY"
COMPRESSIONS = (None, "lz4", "zstd")


def _s(default: Any, doc: str) -> Any:
    """A settings field: its default and the one line the README's table shows."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    root: Path
    catalog: Path | None = _s(None, "DuckDB catalog file [DIR/.arrowroot/catalog.duckdb]")
    host: str = _s("127.0.0.1", "address to listen on")
    port: int = _s(8815, "port of `serve` (0 picks a free one and prints it)")
    # Size targets, in uncompressed bytes of the requested columns.
    endpoint_bytes: int = _s(64 * MiB, "bytes of requested columns per FlightEndpoint (fetched in parallel)")
    chunk_bytes: int = _s(16 * MiB, "bytes per read from a file (the next read overlaps sending this one)")
    batch_bytes: int = _s(4 * MiB, "bytes per record batch on the wire (gRPC's default limit is 16 MiB)")
    batch_rows: int = _s(131_072, "upper bound of rows per record batch")
    compression: str | None = _s(None, "IPC body compression: lz4 or zstd (a request's own choice wins)")
    index_on_start: bool = _s(True, "`serve` indexes the directory in the background at start")
    show_internal: bool = _s(False, "also list file-library internals (PyTables' index arrays, ...)")
    max_streams: int = _s(64, "DoGet streams sending at once (RESOURCE_EXHAUSTED beyond)")
    max_streams_per_principal: int = _s(16, "DoGet streams per logged-in user")
    stream_idle_timeout: float = _s(120.0, "seconds a stream may wait for its client to read")
    links_outside_root: bool = _s(False, "index symbolic links whose target is outside the directory")
    read_threads: int = _s(0, "decompression threads of each read pool (0: one per core, at least 2)")
    sql_timeout: float = _s(300.0, "seconds a Flight SQL query may run (DEADLINE_EXCEEDED beyond)")
    sql_memory_limit: str = _s("2GB", "DuckDB memory_limit of a query; its SQL worker's address space is capped at it + 1 GiB")
    sql_workers: int = _s(4, "SQL worker processes (queries running at once; more wait for one)")
    # Tickets: self-contained signed read tasks (server/tickets.py).
    ticket_ttl: float = _s(3600.0, "seconds a ticket from GetFlightInfo stays valid")
    ticket_key_file: Path | None = _s(None, "file holding the ticket-signing secret data nodes share "
                                            "(else $ARROWROOT_TICKET_KEY, else a random per-process key)")
    # Scale-out (server/membership.py, server/node.py) and the column-chunk cache (execute/cache.py).
    cache_mb: float = _s(512.0, "decoded column chunks kept in memory, MiB (0 disables)")
    cache_dir: Path | None = _s(None, "also keep decoded chunks in this local directory (survives restarts) [off]")
    cache_dir_mb: float = _s(4096.0, "at most this many MiB in cache_dir")
    zone_maps: bool = _s(True, "skip zones a cut cannot pass; count/min/max from them (catalog)")
    zone_index_mb: float = _s(32.0, "files up to this size get zone maps while indexed (others: lazily)")
    nodes: str = _s("", "static data nodes, comma-separated (grpc://n1:8816,grpc://n2:8816)")
    node_ttl: float = _s(3.0, "seconds without a heartbeat before a data node is dropped")
    node_port: int = _s(8816, "port of `node`")
    join: str = _s("", "`node`: the coordinator to register with (grpc://coordinator:8815)")
    advertise: str = _s("", "`node`: the location clients use to reach it [grpc://HOST:PORT]")
    node_id: str = _s("", "`node`: its name in the coordinator's list [hostname:port]")
    # Authentication and TLS (server/auth.py). auth None: on exactly when the catalog has users or grants.
    auth: bool | None = _s(None, "require credentials [on when the catalog has users or grants]")
    token_ttl: float = _s(12 * 3600.0, "seconds a login token stays valid")
    tls_cert: Path | None = _s(None, "PEM server certificate (chain): serve grpc+tls://")
    tls_key: Path | None = _s(None, "PEM private key of tls_cert")
    tls_client_ca: Path | None = _s(None, "PEM CA: clients must present a certificate it signed (mutual TLS)")
    auth_config: Path | None = _s(None, "TOML with the [auth] section: OIDC, JupyterHub (service/sso.py) "
                                        "[DIR/arrowroot.toml]")
    # Workspaces (flight_server/workspace): uploads and skims under home/<user>/
    workspace: Path | None = _s(None, "directory of uploads and skims [next to the catalog]")
    max_upload_bytes: int = _s(4 * GiB, "Arrow bytes one upload (DoPut) may send")
    quota_bytes: int = _s(20 * GiB, "bytes stored per user in the workspace")
    # Web view and HTTP API (flight_server/web/), in the same process. None: off.
    http_port: int | None = _s(None, "also serve the web view and HTTP API on this port (0: a free one) [off]")
    http_max_bytes: int = _s(0, "largest HTTP download, bytes (0: no limit)")
    http_workers: int = _s(0, "threads for HTTP pages, plots and downloads (0: the cores, at least 2)")
    http_max_connections: int = _s(1000, "open HTTP connections (503 and closed at accept beyond)")
    http_max_connections_per_client: int = _s(64, "open HTTP connections from one client address")
    http_request_timeout: float = _s(10.0, "seconds for an HTTP request's head and body to arrive (408 beyond)")
    http_keep_alive: float = _s(5.0, "seconds an idle HTTP keep-alive connection is kept")
    http_max_header_bytes: int = _s(64 << 10, "bytes of an HTTP request line and headers (431 beyond)")
    log_format: str = _s("text", "access-log lines (one per call): text, or json (one object per line, for log shippers)")
    # Operations (server/ops.py): Prometheus metrics, the gRPC health side port, graceful stop.
    metrics: bool = _s(True, "count calls for /metrics (off: the registry stays, nothing counted)")
    metrics_port: int | None = _s(None, "/metrics on its own port (when the HTTP port is off; nodes) [off]")
    health_port: int | None = _s(None, "grpc.health.v1 on this port (Kubernetes grpc probes) [off]")
    admin_socket: bool = _s(True, "let `arrowroot users|groups|keys|grant|revoke|grants` change a running "
                                  "server's catalog through a local socket only its OS user can reach")
    drain_seconds: float = _s(30.0, "on SIGTERM, open streams may finish for this long, then are cut")
    # Live data (index/watch.py, service/follow.py): files indexed as they come, grow and go; follow streams.
    watch: bool = _s(True, "`serve` watches the directory and indexes files as they come, grow and go (off: rescans only)")
    watch_poll: bool | None = _s(None, "poll instead of inotify [on for network file systems]")
    watch_settle: float = _s(0.3, "seconds a file must not change before it is indexed (when its header cannot say "
                                  "it is whole)")
    watch_grace: float = _s(10.0, "seconds a file that fails to scan is taken as still being written")
    follow_heartbeat: float = _s(5.0, "seconds between heartbeats of an idle follow stream")
    max_follows: int = _s(32, "follow streams open at once (each also holds a stream slot)")

    @property
    def catalog_path(self) -> Path:
        return self.catalog or (self.root / ".arrowroot" / "catalog.duckdb")

    @property
    def cache_bytes(self) -> int:
        return max(0, int(self.cache_mb * MiB))

    @property
    def node_list(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.nodes.split(",") if n.strip())

    @property
    def location(self) -> str:
        return f"{'grpc+tls' if self.tls_cert else 'grpc'}://{self.host}:{self.port}"

    def ticket_key(self) -> bytes | None:
        """The shared ticket-signing key (32 bytes), or None for a random per-process key."""
        if self.ticket_key_file is not None:
            try:
                secret = Path(self.ticket_key_file).read_bytes().strip()
            except OSError as exc:
                raise ValueError(f"ticket key file {self.ticket_key_file}: {exc.strerror}") from None
            if len(secret) < 16:
                raise ValueError(f"ticket key file {self.ticket_key_file}: at least 16 bytes of secret needed")
            return hashlib.sha256(b"arrowroot-ticket-key\0" + secret).digest()
        text = os.environ.get(TICKET_KEY_ENV)
        if text:
            if len(text) < 16:
                raise ValueError(f"{TICKET_KEY_ENV}: at least 16 characters of secret needed")
            return hashlib.sha256(b"arrowroot-ticket-key\0" + text.encode()).digest()
        return None


_TYPES = typing.get_type_hints(Settings)
FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "root"}


def default(name: str) -> Any:
    """The default of setting ``name``, for code that is built without a Settings."""
    return FIELDS[name].default


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def doc(name: str) -> str:
    return FIELDS[name].metadata.get("doc", "")


def kind(name: str) -> tuple[type, bool]:
    """(base type, may be None) of setting ``name``."""
    hint = _TYPES[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


# ---------------------------------------------------------------- the three sources below flags


def _from_text(name: str, text: str, where: str) -> Any:
    base, optional = kind(name)
    if text == "" and optional:
        return None
    try:
        if base is bool:
            low = text.strip().lower()
            if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(text)
            return low in {"1", "true", "yes", "on"}
        if base in (int, float, str):
            return base(text)
        if base is Path:
            return Path(text).expanduser()
    except ValueError:
        raise ValueError(f"{where}={text!r}: not a valid {base.__name__}") from None
    raise ValueError(f"{where}: cannot be set from text")


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings given as ``ARROWROOT_<FIELD>`` environment variables."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    return {name: _from_text(name, env[env_name(name)], env_name(name))
            for name in FIELDS if env_name(name) in env}


def _from_toml(name: str, value: Any, root: Path) -> Any:
    base, _ = kind(name)
    where = f"{CONFIG_NAME} [{SECTION}] {name}"
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:  # str, Path
        ok = isinstance(value, str)
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number"}.get(base, "a string")
        raise ValueError(f"{where} = {value!r}: {want} expected")
    if base is Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else root / path   # relative to the served directory
    return value


def toml_settings(root: str | os.PathLike) -> dict[str, Any]:
    """The ``[server]`` table of ``<root>/arrowroot.toml`` (empty without one); ValueError names
    the faulty key, with the closest known name."""
    root = Path(root)
    path = root / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    table = data.get(SECTION, {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [{SECTION}] must be a table of settings (port = 8815, ...)")
    out = {}
    for key, value in table.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; `arrowroot settings DIR` lists them"
            raise ValueError(f"{path}: [{SECTION}] has no setting {key!r}{hint}")
        out[key] = _from_toml(key, value, root)
    return out


def _check(name: str, value: Any, origin: str) -> None:
    """Values no type check catches; the message names where the value came from."""
    bad = None
    if name == "compression" and value not in COMPRESSIONS:
        bad = "lz4, zstd or none"
    elif name == "log_format" and value not in ("text", "json"):
        bad = "text or json"
    elif name.endswith("port") and value is not None and not 0 <= value <= 65535:
        bad = "a port between 0 and 65535"
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        bad = "not negative"
    if bad:
        raise ValueError(f"{origin}: {name} = {value!r}: {bad}")


def explain(root: str | os.PathLike, flags: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """Every setting's value and where it came from: ``--flag``, ``$ARROWROOT_X``,
    ``arrowroot.toml`` or ``default`` (flags given as None count as not given)."""
    root = Path(root).expanduser().resolve()
    out: dict[str, tuple[Any, str]] = {name: (f.default, "default") for name, f in FIELDS.items()}
    for name, value in toml_settings(root).items():
        out[name] = (value, f"{root / CONFIG_NAME} [{SECTION}]")
    for name, value in env_overrides(environ).items():
        out[name] = (value, "$" + env_name(name))
    for name, value in (flags or {}).items():
        if name not in FIELDS:
            raise TypeError(f"no setting named {name!r}")
        if value is not None:
            out[name] = (value, "the command line")
    for name, (value, origin) in out.items():
        if origin != "default":
            _check(name, value, origin)
    return out


def load(root: str | os.PathLike, flags: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for ``root``: flags > environment > ``arrowroot.toml`` [server] > defaults."""
    values = {name: value for name, (value, origin) in explain(root, flags, environ).items() if origin != "default"}
    return Settings(root=Path(root).expanduser().resolve(), **values)


def from_env(root: str | os.PathLike, **flags: Any) -> Settings:
    """:func:`load` with the flags as keywords (None = not given)."""
    return load(root, flags)
