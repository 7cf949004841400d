"""The ``arrowroot`` command line: serve, node, index, settings, ls, schema, get, sql, action, demo
(and the admin and workspace commands of ``admin.py`` and ``workspace.py``)."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from arrowroot.flight_server import __version__
from arrowroot.flight_server.cli.admin import register, serve_options
from arrowroot.flight_server.cli.failures import debugging, one_line, report, short, startup
from arrowroot.flight_server.cli.options import LOCATION_KEY, load_settings, location_option, setting
from arrowroot.flight_server.cli.workspace import register as register_workspace, workspace_options
from arrowroot.flight_server.core.settings import MiB

COMMAND_KEY = "arrowroot.command"   # how a failure names the command, when more than its name says it
#: libraries that log at INFO about themselves (NumExpr's thread count, absl, ...): WARNING unless -v
_OWN = "arrowroot"


class _Lines(logging.Formatter):
    """The standard line format, with the timestamp text made once per second: one access line per
    call is written for every tiny read, and ``time.strftime`` was a third of the logging's cost."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._second, self._text = second, super().formatTime(record, datefmt)[:-4]
        return f"{self._text},{int(record.msecs):03d}"


def _logging(verbose: int, own: int = logging.WARNING, log_format: str = "text") -> None:
    """arrowroot's own lines at ``own`` (-v: INFO, -vv: DEBUG); other libraries' at WARNING unless -v.
    The access log (one line per call) is arrowroot's at INFO; ``json``: its lines are bare JSON
    objects, one per line, for log shippers."""
    others = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    # what the lines never show is not collected (the logging HOWTO's "Optimization"): the caller's
    # file and line (a walk up the stack per line), thread, process and multiprocessing names
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=others, handlers=[handler])
    logging.getLogger(_OWN).setLevel(own if verbose == 0 else min(own, others))
    if log_format != "text":
        from arrowroot.flight_server.service import calllog

        calllog.set_format(log_format)
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
    # What exists now (modules, the server, its catalog records) lives as long as the process: a
    # full collection need not scan it again and again, holding the GIL while every call waits
    # (longest gen-2 pause in a 40 s soak: 126 ms before, 69 ms after). After the handlers: a
    # SIGTERM during the collection still drains.
    gc.collect()
    gc.freeze()
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
        setting("--health-port", setting="health_port", type=click.IntRange(min=0, max=65535),
                help="Serve the standard gRPC health service (grpc.health.v1) on this port, for "
                     "Kubernetes grpc probes (0 picks a free one) [off]."),
        setting("--metrics-port", setting="metrics_port", type=click.IntRange(min=0, max=65535),
                help="Serve Prometheus /metrics on this port (with --http, /metrics is there too) [off]."),
        setting("--metrics/--no-metrics", setting="metrics", help="Count calls for /metrics [on]."),
        setting("--drain-seconds", setting="drain_seconds", type=click.FloatRange(min=0),
                help="On SIGTERM, how long open streams may finish before they are cut."),
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
    """Every failure ends in one line on stderr (``cli/failures.py``), never a traceback: the
    server's message for client commands (with the fix where gRPC's own says nothing useful),
    the cause and fix for start-up failures, and "internal error" for a bug."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debugging():
                raise
            command = ctx.meta.get(COMMAND_KEY) or ctx.invoked_subcommand or ""
            sys.exit(report(command, exc, ctx.meta.get(LOCATION_KEY)))


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="arrowroot")
def main() -> None:
    """Serve ROOT and HDF5 files as Arrow over Flight."""


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@setting("--host", setting="host", help="Address to listen on.")
@setting("--port", setting="port", type=click.IntRange(0, 65535), help="Port (0 picks a free one and prints it).")
@setting("--catalog", setting="catalog", type=click.Path(path_type=Path),
         help="DuckDB catalog file [DIR/.arrowroot/catalog.duckdb].")
@setting("--compression", setting="compression", type=click.Choice(["lz4", "zstd"]),
         help="Compress IPC bodies (for remote clients) [none].")
@setting("--endpoint-mb", setting="endpoint_bytes", scale=MiB, type=click.FloatRange(min=0.001),
         help="Target size of one endpoint, MiB of requested columns.")
@setting("--chunk-mb", setting="chunk_bytes", scale=MiB, type=click.FloatRange(min=0.001),
         help="Target size of one read from a file, MiB.")
@setting("--index/--no-index", setting="index_on_start",
         help="Scan the directory in the background at start (--no-index: serve the catalog as it is) [--index].")
@setting("--show-internal", setting="show_internal", is_flag=True,
         help="Also list file-library internals (PyTables' index arrays, zero-column objects).")
@setting("--sql-timeout", setting="sql_timeout", type=click.FloatRange(min=0.1),
         help="Seconds a Flight SQL query may run before it is cancelled (DEADLINE_EXCEEDED).")
@setting("--sql-workers", setting="sql_workers", type=click.IntRange(min=1),
         help="SQL worker processes: Flight SQL queries running at once (more wait for a free one).")
@setting("--cache-mb", setting="cache_mb", type=click.FloatRange(min=0), help="Column-chunk cache, MiB (0 disables).")
@setting("--cache-dir", setting="cache_dir", type=click.Path(file_okay=False, path_type=Path),
         help="Also keep decoded column chunks in this local directory (kept across restarts) [off].")
@setting("--cache-dir-mb", setting="cache_dir_mb", type=click.FloatRange(min=0), help="Bound of --cache-dir, MiB.")
@setting("--zone-maps/--no-zone-maps", setting="zone_maps",
         help="Use zone maps: cuts skip clusters they cannot pass, SQL count/min/max come from them [--zone-maps].")
@setting("--zone-index-mb", setting="zone_index_mb", type=click.FloatRange(min=0),
         help="Collect zone maps while indexing files up to this size, MiB (larger: on their first cut).")
@setting("--key-file", setting="ticket_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
         help="Shared ticket key: data nodes given the same file serve this server's tickets.")
@setting("--nodes", setting="nodes", help="Static data nodes, comma-separated (grpc://n1:8816,grpc://n2:8816); "
                                          "nodes started with --join register themselves instead.")
@setting("--http", setting="http_port", type=click.IntRange(min=0, max=65535),
         help="Also serve the web view and HTTP API on this port (0 picks a free one) [off].")
@setting("--http-max-mb", setting="http_max_bytes", scale=MiB, type=click.FloatRange(min=0),
         help="Largest HTTP download in MiB (0: no limit); HDF5 downloads use as much temporary disk.")
@click.option("-v", "--verbose", count=True, help="-v also logs other libraries' INFO lines, -vv debug.")
@setting("--log-format", setting="log_format", type=click.Choice(["text", "json"]),
         help="Access-log lines as text or as one JSON object per line (for log shippers).")
@serve_options
@workspace_options
@ops_options
def serve(directory: Path, verbose: int, **flags: object) -> None:
    """Serve DIRECTORY; indexing runs in the background while the server answers."""
    with startup("serve"):
        settings = load_settings(directory, flags)
    _logging(verbose, own=logging.INFO, log_format=settings.log_format)
    with startup("serve", settings.host, settings.port):
        from arrowroot.flight_server.server.flight import ArrowrootServer

        server = ArrowrootServer(settings)
    n = len(server.catalog.datasets())
    if settings.index_on_start:
        server.indexer.start()
        if server.ctx.watcher is not None:  # live data: index files as they come (ARROWROOT_WATCH=0: off)
            server.ctx.watcher.start()
    scheme = settings.location.partition("://")[0]
    click.echo(f"serving {scheme}://{settings.host}:{server.port} "
               f"({n} datasets{', indexing ...' if settings.index_on_start else ''})")
    _echo_ops(server)
    web = None
    if settings.http_port is not None:
        from arrowroot.flight_server.web import WebServer

        with startup("serve --http", settings.host, settings.http_port):
            web = WebServer(server.service, flight_port=server.port).start()
        click.echo(f"web view and HTTP API on {web.url}")
    serve_until_stopped(server, web.stop if web is not None else None)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@setting("--host", setting="host", help="Address to listen on.")
@setting("--port", setting="node_port", type=click.IntRange(0, 65535), help="Port (0 picks a free one and prints it).")
@setting("--join", setting="join", help="Coordinator to register with (grpc://coordinator:8815); "
                                        "without it, list this node in the coordinator's --nodes.")
@setting("--key-file", setting="ticket_key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
         help="The coordinator's ticket key file [or $ARROWROOT_TICKET_KEY].")
@setting("--advertise", setting="advertise", help="Location clients use to reach this node [grpc://HOST:PORT].")
@setting("--id", setting="node_id", help="Node name in the coordinator's list [hostname:port].")
@setting("--cache-mb", setting="cache_mb", type=click.FloatRange(min=0), help="Column-chunk cache, MiB (0 disables).")
@setting("--cache-dir", setting="cache_dir", type=click.Path(file_okay=False, path_type=Path),
         help="Also keep decoded column chunks in this local directory (kept across restarts) [off].")
@setting("--cache-dir-mb", setting="cache_dir_mb", type=click.FloatRange(min=0), help="Bound of --cache-dir, MiB.")
@setting("--compression", setting="compression", type=click.Choice(["lz4", "zstd"]),
         help="Compress IPC bodies (for remote clients) [none].")
@setting("--tls-cert", setting="tls_cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
         help="PEM server certificate (chain): serve grpc+tls://.")
@setting("--tls-key", setting="tls_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
         help="PEM key of --tls-cert.")
@click.option("-v", "--verbose", count=True, help="-v logs one line per request, -vv debug.")
@setting("--log-format", setting="log_format", type=click.Choice(["text", "json"]),
         help="Access-log lines as text or as one JSON object per line (for log shippers).")
@ops_options
def node(directory: Path, verbose: int, **flags: object) -> None:
    """Serve the tickets of a coordinator over the same files (a data node; no catalog)."""
    import dataclasses

    with startup("node"):
        settings = load_settings(directory, flags)
        settings = dataclasses.replace(settings, port=settings.node_port)
    _logging(verbose, log_format=settings.log_format)
    with startup("node", settings.host, settings.port):
        from arrowroot.flight_server.server.node import NodeServer

        server = NodeServer(settings, node_id=settings.node_id or None, advertise=settings.advertise or None)
    joined = ""
    if settings.join:
        from arrowroot.flight_server.server.node import JoinRefused

        try:
            server.join(settings.join)
            joined = f", joined {settings.join}"
        except JoinRefused as exc:
            server.shutdown()
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            server.shutdown()
            raise click.ClickException(f"cannot reach the coordinator {settings.join}: {one_line(exc)}") from None
    click.echo(f"node serving {server.advertise} as {server.node_id}{joined}")
    _echo_ops(server)
    serve_until_stopped(server)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@setting("--catalog", setting="catalog", type=click.Path(path_type=Path),
         help="DuckDB catalog file [DIR/.arrowroot/catalog.duckdb].")
@setting("--zone-index-mb", setting="zone_index_mb", type=click.FloatRange(min=0),
         help="Collect zone maps while indexing files up to this size, MiB (larger: on their first cut).")
@click.option("--path", "sub", help="Only this sub-path of DIRECTORY.")
@setting("--show-internal", setting="show_internal", is_flag=True,
         help="Also list file-library internals (PyTables' index arrays, zero-column objects).")
@click.option("-v", "--verbose", count=True, help="-v also logs other libraries' INFO lines, -vv debug.")
def index(directory: Path, sub: str | None, verbose: int, **flags: object) -> None:
    """Index DIRECTORY into its catalog without serving (with a progress bar)."""
    from rich.progress import Progress

    from arrowroot.catalog.store import Catalog

    from arrowroot.flight_server.core import readpool
    from arrowroot.flight_server.index.indexer import Indexer

    _logging(verbose, own=logging.ERROR)  # the report below names every error and drift, one line each
    with startup("index"):
        settings = load_settings(directory, flags)
        readpool.configure(settings.read_threads)
        cat = Catalog(settings.catalog_path)
    with Progress(transient=True) as progress:
        bar = progress.add_task("indexing", total=None)

        def update(path: str, done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total, description=f"indexing {path[-40:]}")

        indexer = Indexer(settings.root, cat, show_internal=settings.show_internal,
                          links_outside_root=settings.links_outside_root,
                          zone_index_bytes=int(settings.zone_index_mb * MiB))
        report = indexer.run(sub, progress=update)
        progress.update(bar, description="zone maps")
        indexer.zones.wait(timeout=24 * 3600)   # the catalog is complete when the command ends
    from arrowroot.flight_server.datasets.drift import summary

    click.echo(f"{report.added} added, {report.updated} updated, {report.removed} removed, "
               f"{report.unchanged} unchanged, {len(report.errors)} errors "
               f"({len(cat.datasets())} datasets in {settings.catalog_path})")
    for path, error in report.errors:
        click.echo(f"  error: {path}: {short(error, 200)}", err=True)
    for d in report.drift:
        click.echo(f"  schema drift in {d['dataset']}: {summary(d)}", err=True)
    if report.errors or report.drift:
        click.echo("  (in full: `arrowroot ls --errors` against a server of this directory)", err=True)
    cat.close()


@main.command("settings")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="As JSON: {setting: {value, from}}.")
@click.option("--markdown", is_flag=True, help="The README's table of every setting, its variable, flags and default.")
def settings_(directory: Path | None, as_json: bool, markdown: bool) -> None:
    """Print every setting for DIRECTORY (default: the current one) and where its value comes from:
    the environment, DIRECTORY/arrowroot.toml [server], or the default (a command's flags win over all)."""
    from arrowroot.flight_server.cli.options import readme_block
    from arrowroot.flight_server.core import settings as config

    if markdown:
        click.echo(readme_block(main))
        return
    with startup("settings"):
        values = config.explain(directory or Path.cwd())
    if as_json:
        click.echo(json.dumps({k: {"value": v if v is None or isinstance(v, (bool, int, float)) else str(v),
                                   "from": origin} for k, (v, origin) in values.items()}, indent=2))
        return
    for name, (value, origin) in values.items():
        click.echo(f"{name} = {'-' if value is None else value}\t({origin})")


def _client(location: str):
    from arrowroot.clients import Client

    from arrowroot.flight_server.cli.admin import client_credentials

    return Client(location, **client_credentials())


def _attributes(schema) -> dict:
    raw = (schema.metadata or {}).get(b"arrowroot.attributes")
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


@main.command("ls")
@click.argument("pattern", required=False)
@location_option
@click.option("--format", "fmt", help="Only this source format (root, hdf5, lh5, ...).")
@click.option("--kind", help="Only this object kind (ttree, rntuple, th1, hdf5.table, ...).")
@click.option("--has-column", help="Only datasets with this column.")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="Only datasets whose attribute KEY is VALUE.")
@click.option("--errors", is_flag=True, help="List the files that failed to index (or hold no datasets) and why, "
                                             "and the schema drift of multi-file datasets in full.")
def ls_(pattern: str | None, location: str, fmt: str | None, kind: str | None, has_column: str | None,
        attrs: tuple[str, ...], errors: bool) -> None:
    """List datasets (PATTERN is a shell glob on names), optionally filtered."""
    if errors:
        with _client(location) as c:
            failed = c.action("stats").get("file_errors", [])
            drifted = [(info.descriptor.path[0].decode(), _attributes(info.schema).get("schema_drift"))
                       for info in c.dataset_infos(pattern)]
        for f in failed:
            click.echo(f"{f['path']}\t{f['error']}")
        for dataset, drift in drifted:
            if drift:
                click.echo(f"{dataset}\tschema drift: {json.dumps(drift, default=str)}")
        if not failed and not any(d for _, d in drifted):
            click.echo("no file failed to index, no dataset has schema drift", err=True)
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
@location_option
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
@location_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result to a .csv or .parquet file instead of printing a table.")
@click.option("--max-rows", default=50, show_default=True, help="Rows printed (not written).")
def sql(query: str, location: str, output: Path | None, max_rows: int) -> None:
    """Run a SQL QUERY through the server's Flight SQL front end (datasets are tables)."""
    fmt = None
    if output is not None:
        fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(output.suffix.lower())
        if fmt is None:
            raise click.BadParameter("write .csv or .parquet", param_hint="--output")
        check_writable(output, "--output")
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
        rows = write_file(output, fmt, reader)
        click.echo(f"wrote {rows} rows to {output}")


def check_writable(output: Path, option: str = "OUTPUT") -> None:
    """Refuse an output path that cannot be written before asking the server for anything."""
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise click.BadParameter(f"the directory {parent} does not exist: create it first (mkdir -p {parent})",
                                 param_hint=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write in {parent} (permission denied): choose another directory",
                                 param_hint=option)


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
@location_option
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
    check_writable(output)

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
@location_option
@click.option("-b", "--body", default="{}", help="JSON body.")
@click.option("--json", "as_json", is_flag=True, help="rescan: print the whole report as JSON, not a summary.")
def action(name: str, location: str, body: str, as_json: bool) -> None:
    """Run a server action (health, rescan, stats) and print its answer (JSON; rescan: a summary,
    --json for the whole report); exits 1 on failure (a healthcheck)."""
    click.get_current_context().meta[COMMAND_KEY] = f"action {name}"   # "arrowroot action health: ..."
    try:
        args = json.loads(body)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--body") from None
    with _client(location) as c:
        answer = c.action(name, args)
    if name == "rescan" and not as_json and isinstance(answer, dict) and "added" in answer:
        for line in rescan_summary(answer):
            click.echo(line)
        return
    click.echo(json.dumps(answer, indent=2))


def rescan_summary(report: dict, shown: int = 10) -> list[str]:
    """A rescan report in a few lines: the counts, then one short line per error and per drift."""
    from arrowroot.flight_server.datasets.drift import summary

    errors, drift = report.get("errors") or [], report.get("drift") or []
    lines = [f"rescan: {report.get('added', 0)} added, {report.get('updated', 0)} updated, "
             f"{report.get('removed', 0)} removed, {report.get('unchanged', 0)} unchanged, {len(errors)} errors, "
             f"{report.get('derived', 0)} multi-file datasets ({len(drift)} with schema drift) "
             f"in {report.get('seconds', 0):.1f} s"]
    lines += [f"  error: {e.get('path')}: {short(e.get('error', ''), 200)}" for e in errors[:shown]]
    lines += [f"  drift: {d.get('dataset')}: {summary(d)}" for d in drift[:shown]]
    if len(errors) > shown or len(drift) > shown:
        lines.append("  ... (all of them: `arrowroot ls --errors`, or this command with --json)")
    return lines


@main.command()
def demo() -> None:
    """Write sample ROOT and HDF5 files, serve them on a free port, read slices back, stop."""
    from arrowroot.flight_server.cli.demo import run_demo

    run_demo(click.echo)


register(main)  # users, groups, keys, grant, revoke, grants (cli_admin.py)
register_workspace(main)  # put, skim, lineage, rm, mv (cli/workspace.py)

if __name__ == "__main__":
    main()
