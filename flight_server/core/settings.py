"""Server settings: one frozen dataclass, filled from CLI options (and env for Docker)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class Settings:
    root: Path
    catalog: Path | None = None              # default: <root>/.arrowroot/catalog.duckdb
    host: str = "127.0.0.1"
    port: int = 8815
    # Size targets, in uncompressed bytes of the requested columns.
    endpoint_bytes: int = 64 * MiB           # one FlightEndpoint (clients fetch these in parallel)
    chunk_bytes: int = 16 * MiB              # one read from a file (read ahead while sending)
    batch_bytes: int = 4 * MiB               # one record batch on the wire (gRPC limit is 16 MiB)
    batch_rows: int = 131_072                # default upper bound of rows per batch
    compression: str | None = None           # IPC body compression: None | "lz4" | "zstd"
    index_on_start: bool = True
    extra: dict = field(default_factory=dict)
    sql_timeout: float = 300.0                # seconds a Flight SQL query may run (sql_service.py)
    # Authentication and TLS (auth.py). auth None: on exactly when the catalog has users or grants.
    auth: bool | None = None
    token_ttl: float = 12 * 3600             # seconds a bearer token from a login stays valid
    tls_cert: Path | None = None             # PEM server certificate (chain); with tls_key → grpc+tls://
    tls_key: Path | None = None
    tls_client_ca: Path | None = None        # PEM CA: clients must present a certificate it signed (mTLS)

    @property
    def catalog_path(self) -> Path:
        return self.catalog or (self.root / ".arrowroot" / "catalog.duckdb")

    @property
    def location(self) -> str:
        return f"{'grpc+tls' if self.tls_cert else 'grpc'}://{self.host}:{self.port}"


def from_env(root: str | os.PathLike, **overrides) -> Settings:
    """Settings for ``root`` with ARROWROOT_* environment overrides (used by the Docker image)."""
    env = {}
    if "ARROWROOT_CATALOG" in os.environ:
        env["catalog"] = Path(os.environ["ARROWROOT_CATALOG"])
    if "ARROWROOT_HOST" in os.environ:
        env["host"] = os.environ["ARROWROOT_HOST"]
    if "ARROWROOT_PORT" in os.environ:
        env["port"] = int(os.environ["ARROWROOT_PORT"])
    env.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(root=Path(root).expanduser().resolve(), **env)
