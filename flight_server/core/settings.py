"""Server settings: every default lives here, once.

The CLI, the ``ARROWROOT_*`` environment variables and library callers all fill the same
frozen dataclass. Each field's environment variable is ``ARROWROOT_<FIELD>`` in upper case
(``ARROWROOT_PORT=9000``, ``ARROWROOT_TICKET_TTL=600``); ``settings_help()`` lists them all for
the README. Precedence: explicit arguments (CLI options) > environment > the defaults below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1 << 20
ENV_PREFIX = "ARROWROOT_"
#: the ticket-signing secret itself (any text) — the alternative to ``ticket_key_file``
TICKET_KEY_ENV = "ARROWROOT_TICKET_KEY"


@dataclass(frozen=True)
class Settings:
    root: Path
    catalog: Path | None = None              # default: <root>/.arrowroot/catalog.duckdb
    host: str = "127.0.0.1"
    port: int = 8815
    # Size targets, in uncompressed bytes of the requested columns.
    endpoint_bytes: int = 64 * MiB           # one FlightEndpoint (clients fetch these in parallel)
    chunk_bytes: int = 16 * MiB              # one read from a file (read ahead while sending)
    batch_bytes: int = 4 * MiB               # one record batch on the wire (gRPC's default limit is 16 MiB)
    batch_rows: int = 131_072                # default upper bound of rows per batch
    compression: str | None = None           # IPC body compression: None | "lz4" | "zstd"
    index_on_start: bool = True
    show_internal: bool = False              # also list file-library internals (PyTables' _i_* index arrays, ...)
    max_streams: int = 64                    # DoGet streams sending at once (RESOURCE_EXHAUSTED beyond)
    max_streams_per_principal: int = 16      # ... per logged-in user (anonymous: only the total)
    stream_idle_timeout: float = 120.0       # seconds a stream may wait for its client to read
    links_outside_root: bool = False         # index symlinks whose target is outside root (default: refuse)
    sql_timeout: float = 300.0               # seconds a Flight SQL query may run
    sql_memory_limit: str = "2GB"            # DuckDB memory_limit; a SQL worker's address space is capped at it + 1 GiB
    sql_workers: int = 4                     # SQL worker processes (queries running at once; more wait for one)
    # Tickets: self-contained signed read tasks (server/tickets.py).
    ticket_ttl: float = 3600.0               # seconds a ticket from GetFlightInfo stays valid
    ticket_key_file: Path | None = None      # file holding the shared signing secret (data nodes share it);
                                             # else $ARROWROOT_TICKET_KEY; else a random per-process key
    # Scale-out (server/membership.py, server/node.py) and the column-chunk cache (execute/cache.py).
    cache_mb: float = 512.0                  # decoded column chunks kept in memory, MiB (0 disables)
    cache_dir: Path | None = None            # also keep decoded chunks here (local disk; survives restarts)
    cache_dir_mb: float = 4096.0             # ... at most this many MiB
    zone_maps: bool = True                   # skip zones a cut cannot pass; count/min/max from them (catalog)
    zone_index_mb: float = 32.0              # files up to this size get zone maps while indexed (others: lazily)
    nodes: str = ""                          # static data-node locations, comma-separated (grpc://h:8816,...)
    node_ttl: float = 3.0                    # seconds without a heartbeat/health answer before a node is dropped
    # Authentication and TLS (server/auth.py). auth None: on exactly when the catalog has users or grants.
    auth: bool | None = None
    token_ttl: float = 12 * 3600             # seconds a bearer token from a login stays valid
    tls_cert: Path | None = None             # PEM server certificate (chain); with tls_key → grpc+tls://
    tls_key: Path | None = None
    tls_client_ca: Path | None = None        # PEM CA: clients must present a certificate it signed (mTLS)
    auth_config: Path | None = None          # TOML with the [auth] section (OIDC, JupyterHub; service/sso.py);
                                             # default: <root>/arrowroot.toml
    # Workspaces (flight_server/workspace): uploads and skims under home/<user>/
    workspace: Path | None = None            # default: <catalog dir>/workspace (= <root>/.arrowroot/workspace)
    max_upload_bytes: int = 4 << 30          # Arrow bytes one DoPut may send
    quota_bytes: int = 20 << 30              # bytes stored per user
    # Web view and HTTP API (flight_server/web/), in the same process. None: off.
    http_port: int | None = None             # 0 picks a free port
    http_max_bytes: int = 0                  # largest download (and HDF5 temporary file); 0 = no limit
    # Operations (server/ops.py): Prometheus metrics, the gRPC health side port, graceful stop.
    metrics: bool = True                     # count calls for /metrics (off: the registry stays, nothing counted)
    metrics_port: int | None = None          # /metrics on its own port (when the HTTP port is off; nodes)
    health_port: int | None = None           # grpc.health.v1 on this port (Kubernetes grpc probes); None: off
    drain_seconds: float = 30.0              # on SIGTERM, open streams may finish for this long, then are cut
    # Live data (index/watch.py, service/follow.py): files indexed as they come, grow and go; follow streams.
    watch: bool = True                       # `arrowroot serve` watches the directory (off: rescans only)
    watch_poll: bool | None = None           # poll instead of inotify; None: poll on network file systems
    watch_settle: float = 0.3                # seconds a file must not change before it is indexed (when its
                                             # header cannot say it is whole: see sources/writing.py)
    watch_grace: float = 10.0                # seconds a file that fails to scan is taken as still being written
    follow_heartbeat: float = 5.0            # seconds between heartbeats of an idle follow stream
    max_follows: int = 32                    # follow streams open at once (each also holds a stream slot)

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


def _convert(name: str, text: str) -> Any:
    kind = _TYPES[name]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    base = args[0] if args else kind
    if text == "" and type(None) in typing.get_args(kind):
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
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={text!r}: not a valid {base.__name__}") from None
    raise ValueError(f"{ENV_PREFIX}{name.upper()}: cannot be set from the environment")


def env_overrides(environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings fields given as ``ARROWROOT_<FIELD>`` environment variables."""
    env: typing.Mapping[str, str] = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "root":
            continue
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            out[f.name] = _convert(f.name, env[key])
    return out


def from_env(root: str | os.PathLike, **overrides: Any) -> Settings:
    """Settings for ``root``: defaults < ``ARROWROOT_*`` environment < ``overrides`` (None = not given)."""
    values = env_overrides()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(root=Path(root).expanduser().resolve(), **values)


def settings_help() -> list[tuple[str, str, str]]:
    """(environment variable, type, default) for every setting, for docs and ``--help``."""
    out = []
    for f in dataclasses.fields(Settings):
        if f.name == "root":
            continue
        default = f.default if f.default is not dataclasses.MISSING else ""
        kind = _TYPES[f.name]
        name = kind.__name__ if isinstance(kind, type) else str(kind).replace("pathlib.", "")
        out.append((ENV_PREFIX + f.name.upper(), name, repr(default)))
    return out
