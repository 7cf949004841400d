"""The ``arrowroot`` command line: serve, index, ls, schema, get, demo."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from arrowroot.flight_server import __version__
from arrowroot.flight_server.cli.admin import register, serve_options
from arrowroot.flight_server.cli.workspace import register as register_workspace, workspace_options

DEFAULT_LOCATION = "grpc://127.0.0.1:8815"


def _logging(verbose: int, log_format: str = "text") -> None:
    """Logs to stderr; the access log (one line per call) at INFO. ``json``: the access log's
    lines are bare JSON objects, one per line, for log shippers."""
    from arrowroot.flight_server.service import calllog

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    calllog.set_format(log_format)
    if log_format == "json":
        access = logging.getLogger("arrowroot.access")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False


def serve_until_stopped(server, also_stop=None) -> None:
    """Serve until SIGTERM (docker stop, a pod deletion) or Ctrl-C, then drain: new calls are
    refused, open streams may finish for --drain-seconds, the rest are cut (server/lifecycle.py).
    SIGHUP reloads (rescan, identities) without dropping streams. The Flight port already
    answers (pyarrow starts it in the constructor); the main thread only waits for signals."""
    import threading

    sys.stdout.flush()
    stop = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        stop.set()

    def on_hup(signum: int, frame: object) -> None:
        click.echo("reloading (SIGHUP)", err=True)
        threading.Thread(target=server.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    while not stop.wait(0.5):
        pass
    click.echo("stopping: draining open streams", err=True)
    if also_stop is not None:
        server.ops.drain.also_stop.append(also_stop)
    if not server.ops.drain.stop():
        # a client that reads nothing keeps its call (and gRPC's shutdown) waiting forever:
        # close the catalog and leave without it
        catalog = getattr(server.ctx, "catalog", None)
        if catalog is not None:
            catalog.close()
        click.echo("stopped (a stalled client's call was abandoned)", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    click.echo("stopped", err=True)


def ops_options(fn):
    """--health-port, --metrics-port, --no-metrics and --drain-seconds (server/ops.py)."""
    options = [
        click.option("--health-port", type=click.IntRange(min=0, max=65535),
                     help="Serve the standard gRPC health service (grpc.health.v1) on this port, for "
                          "Kubernetes grpc probes (0 picks a free one) [off]."),
        click.option("--metrics-port", type=click.IntRange(min=0, max=65535),
                     help="Serve Prometheus /metrics on this port (with --http, /metrics is there too) [off]."),
        click.option("--metrics/--no-metrics", "metrics", default=None,
                     help="Count calls for /metrics [on]."),
        click.option("--drain-seconds", type=click.FloatRange(min=0),
                     help="On SIGTERM, how long open streams may finish before they are cut [30]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _echo_ops(server) -> None:
    """Say where the side ports listen (scripts and tests read these lines)."""
    if server.ops.health is not None:
        click.echo(f"gRPC health on {server.settings.host}:{server.ops.health.port}")
    if server.ops.metrics_server is not None:
        click.echo(f"metrics on {server.ops.metrics_server.url}")


def _parse_entries(text: str | None) -> tuple[int | None, int | None] | None:
    if not text:
        return None
    start, sep, stop = text.partition(":")
    if not sep:
        raise click.BadParameter("use START:STOP, e.g. 100:2100 (either side may be empty)")
    try:
        return (int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise click.BadParameter("START and STOP must be integers") from None


class _Commands(click.Group):
    """Client-side failures (not found, bad request, no credentials, server down) end with
    the server's message on stderr and exit status 1, not a Python traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from arrowroot.clients import ArrowrootError

        try:
            return super().invoke(ctx)
        except ArrowrootError as exc:
            click.echo(f"arrowroot {ctx.invoked_subcommand}: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)


@contextlib.contextmanager
def startup(what: str, host: str | None = None, port: int | None = None) -> Iterator[None]:
    """Start-up failures end in one line with the cause and the fix, and exit status 2."""
    import pyarrow as pa

    from arrowroot.flight_server.core.errors import ArrowrootError

    try:
        yield
    except ArrowrootError as exc:  # catalog in use, bad auth or TLS setup, bad settings
        click.echo(f"arrowroot {what}: {exc}", err=True)
        sys.exit(2)
    except (ValueError, OSError, pa.ArrowException) as exc:
        text = str(exc)
        if port and host is not None and "did not start" in text and _port_taken(host, port):
            text = (f"port {port} on {host} is in use (another arrowroot server?): stop it, choose another "
                    "--port, or --port 0 for a free one")
        click.echo(f"arrowroot {what}: {text}", err=True)
        sys.exit(2)


def _port_taken(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="arrowroot")
def main() -> None:
    """Serve ROOT and HDF5 files as Arrow over Flight."""


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8815, show_default=True, help="Port (0 picks a free one and prints it).")
@click.option("--catalog", type=click.Path(path_type=Path), help="DuckDB catalog file [DIR/.arrowroot/catalog.duckdb].")
@click.option("--compression", type=click.Choice(["lz4", "zstd"]), help="Compress IPC bodies (for remote clients).")
@click.option("--endpoint-mb", type=float, help="Target size of one endpoint, MiB of requested columns [64].")
@click.option("--chunk-mb", type=float, help="Target size of one read from a file, MiB [16].")
@click.option("--no-index", is_flag=True, help="Serve the catalog as it is; do not scan the directory at start.")
@click.option("--show-internal", is_flag=True, default=None,
              help="Also list file-library internals (PyTables' index arrays, zero-column objects).")
@click.option("--sql-timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              help="Seconds a Flight SQL query may run before it is cancelled (DEADLINE_EXCEEDED).")
@click.option("--cache-mb", type=click.FloatRange(min=0), help="Column-chunk cache, MiB (0 disables) [512].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also keep decoded column chunks in this local directory (kept across restarts) [off].")
@click.option("--cache-dir-mb", type=click.FloatRange(min=0), help="Bound of --cache-dir, MiB [4096].")
@click.option("--no-zone-maps", "zone_maps", flag_value=False, default=None,
              help="Do not use zone maps (cuts read every cluster; SQL count/min/max scan).")
@click.option("--zone-index-mb", type=click.FloatRange(min=0),
              help="Collect zone maps while indexing files up to this size, MiB (larger: on their first cut) [32].")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Shared ticket key: data nodes given the same file serve this server's tickets.")
@click.option("--nodes", help="Static data nodes, comma-separated (grpc://n1:8816,grpc://n2:8816); "
                              "nodes started with --join register themselves instead.")
@click.option("--http", "http_port", type=click.IntRange(min=0, max=65535),
              help="Also serve the web view and HTTP API on this port (0 picks a free one) [off].")
@click.option("--http-max-mb", type=click.FloatRange(min=0),
              help="Largest HTTP download in MiB [0: no limit]; HDF5 downloads use as much temporary disk.")
@click.option("-v", "--verbose", count=True, help="-v logs one line per request, -vv debug.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Access-log lines as text or as one JSON object per line (for log shippers).")
@serve_options
@workspace_options
@ops_options
def serve(directory: Path, host: str, port: int, catalog: Path | None, compression: str | None,
          endpoint_mb: float | None, chunk_mb: float | None, no_index: bool, show_internal: bool | None,
          sql_timeout: float, cache_mb: float | None, cache_dir: Path | None, cache_dir_mb: float | None,
          zone_maps: bool | None, zone_index_mb: float | None, key_file: Path | None, nodes: str | None,
          http_port: int | None, http_max_mb: float | None,
          verbose: int, log_format: str, **auth: object) -> None:
    """Serve DIRECTORY; indexing runs in the background while the server answers."""
    from arrowroot.flight_server.core.settings import MiB, from_env
    from arrowroot.flight_server.server.flight import ArrowrootServer

    _logging(max(verbose, 1), log_format)
    with startup("serve", host, port):
        settings = from_env(directory, host=host, port=port, catalog=catalog, compression=compression,
                            endpoint_bytes=int(endpoint_mb * MiB) if endpoint_mb else None,
                            chunk_bytes=int(chunk_mb * MiB) if chunk_mb else None,
                            sql_timeout=sql_timeout, show_internal=show_internal, cache_mb=cache_mb,
                            cache_dir=cache_dir, cache_dir_mb=cache_dir_mb, zone_maps=zone_maps,
                            zone_index_mb=zone_index_mb,
                            ticket_key_file=key_file, nodes=nodes, http_port=http_port,
                            http_max_bytes=int(http_max_mb * MiB) if http_max_mb is not None else None, **auth)
        server = ArrowrootServer(settings)
    n = len(server.catalog.datasets())
    if not no_index:
        server.indexer.start()
        if server.ctx.watcher is not None:  # live data: index files as they come (ARROWROOT_WATCH=0: off)
            server.ctx.watcher.start()
    scheme = settings.location.partition("://")[0]
    click.echo(f"serving {scheme}://{host}:{server.port} ({n} datasets{', indexing ...' if not no_index else ''})")
    _echo_ops(server)
    web = None
    if settings.http_port is not None:
        from arrowroot.flight_server.web import WebServer

        with startup("serve --http"):
            web = WebServer(server.service, flight_port=server.port).start()
        click.echo(f"web view and HTTP API on {web.url}")
    serve_until_stopped(server, web.stop if web is not None else None)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8816, show_default=True, help="Port (0 picks a free one and prints it).")
@click.option("--join", "coordinator", help="Coordinator to register with (grpc://coordinator:8815); "
                                            "without it, list this node in the coordinator's --nodes.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The coordinator's ticket key file [or $ARROWROOT_TICKET_KEY].")
@click.option("--advertise", help="Location clients use to reach this node [grpc://HOST:PORT].")
@click.option("--id", "node_id", help="Node name in the coordinator's list [hostname:port].")
@click.option("--cache-mb", type=click.FloatRange(min=0), help="Column-chunk cache, MiB (0 disables) [512].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also keep decoded column chunks in this local directory (kept across restarts) [off].")
@click.option("--cache-dir-mb", type=click.FloatRange(min=0), help="Bound of --cache-dir, MiB [4096].")
@click.option("--compression", type=click.Choice(["lz4", "zstd"]), help="Compress IPC bodies (for remote clients).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM server certificate (chain): serve grpc+tls://.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM key of --tls-cert.")
@click.option("-v", "--verbose", count=True, help="-v logs one line per request, -vv debug.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Access-log lines as text or as one JSON object per line (for log shippers).")
@ops_options
def node(directory: Path, host: str, port: int, coordinator: str | None, key_file: Path | None,
         advertise: str | None, node_id: str | None, cache_mb: float | None, cache_dir: Path | None,
         cache_dir_mb: float | None, compression: str | None,
         tls_cert: Path | None, tls_key: Path | None, verbose: int, log_format: str, **ops: object) -> None:
    """Serve the tickets of a coordinator over the same files (a data node; no catalog)."""
    from arrowroot.flight_server.core.settings import from_env
    from arrowroot.flight_server.server.node import JoinRefused, NodeServer

    _logging(verbose, log_format)
    settings = from_env(directory, host=host, port=port, ticket_key_file=key_file, cache_mb=cache_mb,
                        cache_dir=cache_dir, cache_dir_mb=cache_dir_mb, compression=compression,
                        tls_cert=tls_cert, tls_key=tls_key, **ops)
    with startup("node", host, port):
        server = NodeServer(settings, node_id=node_id, advertise=advertise)
    joined = ""
    if coordinator:
        try:
            server.join(coordinator)
            joined = f", joined {coordinator}"
        except JoinRefused as exc:
            server.shutdown()
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            server.shutdown()
            raise click.ClickException(f"cannot reach the coordinator {coordinator}: {exc}") from None
    click.echo(f"node serving {server.advertise} as {server.node_id}{joined}")
    _echo_ops(server)
    serve_until_stopped(server)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--catalog", type=click.Path(path_type=Path), help="DuckDB catalog file [DIR/.arrowroot/catalog.duckdb].")
@click.option("--zone-index-mb", type=click.FloatRange(min=0),
              help="Collect zone maps while indexing files up to this size, MiB (larger: on their first cut) [32].")
@click.option("--path", "sub", help="Only this sub-path of DIRECTORY.")
@click.option("--show-internal", is_flag=True, default=None,
              help="Also list file-library internals (PyTables' index arrays, zero-column objects).")
def index(directory: Path, catalog: Path | None, zone_index_mb: float | None, sub: str | None,
          show_internal: bool | None) -> None:
    """Index DIRECTORY into its catalog without serving (with a progress bar)."""
    from rich.progress import Progress

    from arrowroot.catalog.store import Catalog

    from arrowroot.flight_server.core.settings import from_env
    from arrowroot.flight_server.index.indexer import Indexer

    with startup("index"):
        settings = from_env(directory, catalog=catalog, show_internal=show_internal, zone_index_mb=zone_index_mb)
        cat = Catalog(settings.catalog_path)
    with Progress(transient=True) as progress:
        bar = progress.add_task("indexing", total=None)

        def update(path: str, done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total, description=f"indexing {path[-40:]}")

        indexer = Indexer(settings.root, cat, show_internal=settings.show_internal,
                          zone_index_bytes=int(settings.zone_index_mb * (1 << 20)))
        report = indexer.run(sub, progress=update)
        progress.update(bar, description="zone maps")
        indexer.zones.wait(timeout=24 * 3600)   # the catalog is complete when the command ends
    click.echo(f"{report.added} added, {report.updated} updated, {report.removed} removed, "
               f"{report.unchanged} unchanged, {len(report.errors)} errors "
               f"({len(cat.datasets())} datasets in {settings.catalog_path})")
    for path, error in report.errors:
        click.echo(f"  error: {path}: {error}", err=True)
    cat.close()


def _client(location: str):
    from arrowroot.clients import Client

    from arrowroot.flight_server.cli.admin import client_credentials

    return Client(location, **client_credentials())


@main.command("ls")
@click.argument("pattern", required=False)
@click.option("-l", "--location", default=DEFAULT_LOCATION, show_default=True)
@click.option("--format", "fmt", help="Only this source format (root, hdf5, lh5, ...).")
@click.option("--kind", help="Only this object kind (ttree, rntuple, th1, hdf5.table, ...).")
@click.option("--has-column", help="Only datasets with this column.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="Only datasets whose attribute KEY is VALUE.")
@click.option("--errors", is_flag=True, help="List the files that failed to index (or hold no datasets) and why.")
def ls_(pattern: str | None, location: str, fmt: str | None, kind: str | None, has_column: str | None,
        attrs: tuple[str, ...], errors: bool) -> None:
    """List datasets (PATTERN is a shell glob on names), optionally filtered."""
    if errors:
        with _client(location) as c:
            failed = c.action("stats").get("file_errors", [])
        for f in failed:
            click.echo(f"{f['path']}\t{f['error']}")
        if not failed:
            click.echo("no file failed to index", err=True)
        return
    criteria: dict[str, object] = {}
    if fmt:
        criteria["format"] = fmt
    if kind:
        criteria["kind"] = kind
    if has_column:
        criteria["has_column"] = has_column
    if attrs:
        pairs = {}
        for a in attrs:
            key, sep, value = a.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{a!r}: use KEY=VALUE", param_hint="--attr")
            try:
                pairs[key] = json.loads(value)  # numbers and true/false as such
            except json.JSONDecodeError:
                pairs[key] = value
        criteria["attributes"] = pairs
    with _client(location) as c:
        table = c.datasets(pattern, **criteria)
    if table.num_rows == 0:
        what = " and ".join([f"name {pattern!r}"] * bool(pattern) + [f"{k}={v!r}" for k, v in criteria.items()])
        click.echo(f"no dataset matches {what or 'anything'}; `arrowroot ls` without filters lists all", err=True)
        return
    for name, n, cols in zip(table["name"].to_pylist(), table["entries"].to_pylist(), table["columns"].to_pylist()):
        click.echo(f"{name}\t{n} entries\t{len(cols)} columns")


@main.command()
@click.argument("dataset")
@click.option("-l", "--location", default=DEFAULT_LOCATION, show_default=True)
@click.option("--full", is_flag=True, help="The whole Arrow schema with field and dataset metadata.")
def schema(dataset: str, location: str, full: bool) -> None:
    """Print a dataset's columns and types (--full: with all metadata), then the columns
    that cannot be read, each with the reason."""
    from arrowroot.clients.client import notes

    with _client(location) as c:
        info = c.flight_info(dataset)  # its notes name the unreadable columns, as a read would
    s = info.schema
    if full:
        click.echo(s.to_string(show_schema_metadata=True))
    else:
        for f in s:
            meta = f.metadata or {}
            unit = meta.get(b"units") or meta.get(b"unit")
            extra = f"  [{unit.decode(errors='replace')}]" if unit else ""
            click.echo(f"{f.name}: {f.type}{extra}")
    for col in notes(info).get("skipped_columns") or ():
        click.echo(f"{col.get('name')}: cannot be read: {col.get('reason')}")


@main.command()
@click.argument("query")
@click.option("-l", "--location", default=DEFAULT_LOCATION, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result to a .csv or .parquet file instead of printing a table.")
@click.option("--max-rows", default=50, show_default=True, help="Rows printed (not written).")
def sql(query: str, location: str, output: Path | None, max_rows: int) -> None:
    """Run a SQL QUERY through the server's Flight SQL front end (datasets are tables)."""


    with _client(location) as c:
        reader = c.sql_batches(query)
        if output is None:
            from rich.console import Console
            from rich.table import Table

            table = Table(*reader.schema.names)
            shown = total = 0
            for batch in reader:
                total += batch.num_rows
                for row in batch.slice(0, max(0, max_rows - shown)).to_pylist():
                    table.add_row(*(str(v) for v in row.values()))
                    shown += 1
            Console().print(table)
            click.echo(f"{total} rows" + (f" ({shown} shown; -o FILE writes all)" if total > shown else ""))
            return
        fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(output.suffix.lower())
        if fmt is None:
            raise click.BadParameter("write .csv or .parquet", param_hint="--output")
        rows = write_file(output, fmt, reader)
        click.echo(f"wrote {rows} rows to {output}")


def write_file(output: Path, fmt: str, reader, on_batch=None, object_name: str = "") -> int:
    """Stream ``reader`` into OUTPUT in ``fmt`` (any export format); returns the rows written.

    Written to a hidden file beside OUTPUT and renamed at the end: a failure (bad request, a file
    that breaks mid-stream, Ctrl-C) never truncates or replaces an existing good file. The
    encoders are the HTTP download's (``flight_server/export``).
    """
    from arrowroot.flight_server.export.formats import FORMATS, write

    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")

    def batches():
        for batch in reader:
            yield batch
            if on_batch is not None:
                on_batch(batch.num_rows)

    from arrowroot.flight_server.core.errors import InvalidRequest

    try:
        rows = write(FORMATS[fmt], reader.schema, batches(), str(partial), object_name=object_name)
        os.replace(partial, output)
    except InvalidRequest as exc:  # the format cannot hold these columns: one line, no traceback
        raise click.ClickException(str(exc)) from None
    finally:
        partial.unlink(missing_ok=True)
    return rows


@main.command()
@click.argument("dataset")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-c", "--columns", multiple=True, help="Column name or glob (repeatable).")
@click.option("-e", "--entries", help="START:STOP entry range.")
@click.option("-w", "--where", help="Server-side cut, e.g. 'nMuon >= 2 and MET_pt > 40'.")
@click.option("-l", "--location", default=DEFAULT_LOCATION, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "feather", "arrow", "csv", "hdf5", "root", "rntuple",
                                                    "tiff"]),
              help="Output format [from the file suffix: .parquet .feather .arrows .csv .h5 .root .tiff].")
@click.option("--follow", is_flag=True, help="Keep going: write new entries as the server indexes them "
              "(OUTPUT '-' prints JSON lines; .csv or .arrows files are flushed per batch); Ctrl-C stops.")
@click.option("--resume", help="With --follow: continue from a resume token an earlier follow printed.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --follow: keep the latest resume token in this file.")
@click.option("--time-start", help="Read by time from T (seconds in the channel's scale, or ISO-8601); with "
                                   "--follow: from T and keep going.")
@click.option("--allow-missing", is_flag=True,
              help="Multi-file datasets: read columns some files lack as nulls instead of failing.")
def get(dataset: str, output: Path, columns: tuple[str, ...], entries: str | None, where: str | None,
        location: str, fmt: str | None, allow_missing: bool, follow: bool = False, resume: str | None = None,
        token_file: Path | None = None, time_start: str | None = None) -> None:
    """Fetch DATASET into OUTPUT (Parquet, Feather, Arrow, CSV, HDF5, ROOT TTree or RNTuple,
    TIFF for image data), with a progress bar."""
    from rich.progress import Progress

    from arrowroot.flight_server.core.errors import InvalidRequest
    from arrowroot.flight_server.export.formats import format_for

    since: float | str | None = None
    if time_start:
        try:
            since = float(time_start)
        except ValueError:
            since = time_start
    if follow or resume:
        from arrowroot.flight_server.cli.follow import follow_to

        extra: dict[str, object] = {"where": where} if where else {}
        if allow_missing:
            extra["allow_missing"] = True
        if since is not None:
            extra["time"] = (since, None)
        with _client(location) as c:
            follow_to(c, dataset, output, list(columns) or None, _parse_entries(entries), extra, resume, token_file)
        return
    try:
        fmt = format_for(str(output), fmt).name
    except InvalidRequest as exc:
        raise click.BadParameter(f"{exc}; or pass --format", param_hint="OUTPUT") from None

    from arrowroot.clients.client import notes, skipped_message

    kwargs: dict[str, object] = {"where": where} if where else {}
    if allow_missing:
        kwargs["allow_missing"] = True
    if since is not None:
        kwargs["time"] = (since, None)
    with _client(location) as c:
        info = c.flight_info(dataset, list(columns) or None, _parse_entries(entries), **kwargs)
        skipped = notes(info).get("skipped_columns")
        if skipped:
            click.echo(f"note: {skipped_message(dataset, skipped)}", err=True)
        total = info.total_records if info.total_records >= 0 else None
        with Progress() as progress:
            bar = progress.add_task(f"{dataset} → {output.name}", total=total)
            rows = write_file(output, fmt, c.read_info(info),
                              on_batch=lambda n: progress.update(bar, advance=n), object_name=dataset)
    click.echo(f"wrote {rows} rows to {output}")
    if rows == 0 and entries and info.total_records == 0:
        click.echo(f"note: the range {entries} holds no entries of {dataset} (past its end?); "
                   "`arrowroot ls` shows how many it has", err=True)


@main.command()
@click.argument("name", default="health")
@click.option("-l", "--location", default=DEFAULT_LOCATION, show_default=True)
@click.option("-b", "--body", default="{}", help="JSON body.")
def action(name: str, location: str, body: str) -> None:
    """Run a server action (health, rescan, stats) and print its JSON answer; exits 1 on failure."""
    try:
        with _client(location) as c:
            click.echo(json.dumps(c.action(name, json.loads(body)), indent=2))
    except Exception as exc:
        click.echo(f"arrowroot action {name}: {exc}", err=True)
        sys.exit(1)


@main.command()
def demo() -> None:
    """Write sample ROOT and HDF5 files, serve them on a free port, read slices back, stop."""
    from arrowroot.flight_server.cli.demo import run_demo

    run_demo(click.echo)


register(main)  # users, groups, keys, grant, revoke, grants (cli_admin.py)
register_workspace(main)  # put, skim, lineage, rm, mv (cli/workspace.py)

if __name__ == "__main__":
    main()
