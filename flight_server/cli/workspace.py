"""Workspace commands: ``arrowroot put FILE NAME``, ``skim``, ``lineage``, ``rm``, ``mv``, ``ws``.

Client side only (they talk to a running server like ``get``); ``put`` streams the file in
batches, so a file larger than memory uploads fine.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from arrowroot.flight_server.cli.options import location_option, setting
from arrowroot.flight_server.core.settings import GiB, MiB



def _client(location: str):
    from arrowroot.clients import Client

    from arrowroot.flight_server.cli.admin import client_credentials

    return Client(location, **client_credentials())


def _open(path: Path, fmt: str | None):
    """A RecordBatchReader over a Parquet, Feather/Arrow IPC or CSV file (streamed)."""
    import pyarrow as pa

    fmt = fmt or {".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".arrow": "feather",
                  ".ipc": "feather", ".csv": "csv"}.get(path.suffix.lower())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        return pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches(batch_size=65_536))
    if fmt == "feather":
        import pyarrow.ipc as ipc

        try:
            f = ipc.open_file(path)
        except pa.ArrowInvalid:
            return ipc.open_stream(path)
        return pa.RecordBatchReader.from_batches(f.schema, (f.get_batch(i) for i in range(f.num_record_batches)))
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.open_csv(path)
    raise click.BadParameter("cannot tell the format from the suffix; pass --format", param_hint="FILE")


def register(main: click.Group) -> None:
    @main.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.argument("name")
    @click.option("--mode", type=click.Choice(["create", "append", "replace"]), default="create", show_default=True)
    @click.option("--parent", help="Derived columns of this dataset (FILE needs an int64 'entry' column).")
    @click.option("-m", "--meta", multiple=True, help="KEY=VALUE kept with the provenance (repeatable).")
    @click.option("--format", "fmt", type=click.Choice(["parquet", "feather", "csv"]),
                  help="Input format [from the file suffix].")
    @location_option
    def put(file: Path, name: str, mode: str, parent: str | None, meta: tuple[str, ...], fmt: str | None,
            location: str) -> None:
        """Upload FILE as the workspace dataset NAME (home/<you>/...)."""
        metadata = dict(m.partition("=")[::2] for m in meta)
        with _client(location) as c:
            answer = c.put(name, _open(file, fmt), mode=mode, parent=parent, metadata=metadata)
        click.echo(f"{answer['dataset']}: {answer['rows']} rows ({answer['bytes']} bytes stored)")

    @main.command()
    @click.argument("name")
    @click.argument("parent")
    @click.option("-w", "--where", default="", help="The cut, e.g. 'nMuon >= 2' (required unless --materialize).")
    @click.option("--materialize", is_flag=True, help="Store a copy of the rows instead of entry numbers "
                                                      "(without --where: every row).")
    @click.option("-c", "--columns", multiple=True, help="With --materialize: the columns to copy [all].")
    @click.option("--replace", is_flag=True, help="Replace NAME if it exists.")
    @location_option
    def skim(name: str, parent: str, where: str, materialize: bool, columns: tuple[str, ...], replace: bool,
             location: str) -> None:
        """Store the entries of PARENT passing --where as NAME (PARENT: any dataset, derived columns and
        skims included), or with --materialize a copy of the rows."""
        if not where.strip() and not materialize:
            raise click.BadParameter("give the cut, e.g. -w 'nMuon >= 2' (or --materialize to copy every row)",
                                     param_hint="--where")
        with _client(location) as c:
            answer = c.skim(name, parent, where, materialize=materialize, columns=list(columns) or None,
                            mode="replace" if replace else "create")
        click.echo(f"{answer['dataset']}: {answer['rows']} of {answer['parent_entries']} entries "
                   f"({answer['bytes']} bytes stored)")

    @main.command()
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print the provenance as JSON.")
    @location_option
    def lineage(name: str, as_json: bool, location: str) -> None:
        """Where workspace dataset NAME came from, nearest first."""
        with _client(location) as c:
            chain = c.lineage(name)
        if as_json:
            click.echo(json.dumps(chain, indent=2))
            return
        for depth, item in enumerate(chain):
            what = item.get("kind", "")
            if what == "deleted":
                when = dt.datetime.fromtimestamp(item["deleted_at"]).strftime("%Y-%m-%d %H:%M") \
                    if item.get("deleted_at") else "?"
                what = f"deleted on {when}"
            elif what == "missing":
                what = "no longer in the catalog"
            extra = []
            if item.get("cut"):
                extra.append(f"where {item['cut']!r}")
            if item.get("parent_version"):
                extra.append(f"parent version {item['parent_version']}")
            if item.get("version") and what == "source":
                extra.append(f"version {item['version']}")
            click.echo(f"{'  ' * depth}{item['name']} [{what}] {' '.join(extra)}".rstrip())

    @main.command("rm")
    @click.argument("name")
    @location_option
    def rm(name: str, location: str) -> None:
        """Delete your workspace dataset NAME."""
        with _client(location) as c:
            c.delete(name)
        click.echo(f"deleted {name}")

    @main.command("mv")
    @click.argument("name")
    @click.argument("new_name")
    @location_option
    def mv(name: str, new_name: str, location: str) -> None:
        """Rename your workspace dataset NAME to NEW_NAME."""
        with _client(location) as c:
            c.rename(name, new_name)
        click.echo(f"renamed {name} to {new_name}")


def workspace_options(fn):
    """``serve`` options for the workspace; they arrive as the ``Settings`` fields they fill."""
    options = [
        setting("--workspace", setting="workspace", type=click.Path(file_okay=False, path_type=Path),
                help="Directory for uploads and skims [next to the catalog: DIR/.arrowroot/workspace]."),
        setting("--max-upload-mb", setting="max_upload_bytes", scale=MiB, type=click.FloatRange(min=0.001),
                help="Largest upload per request, MiB."),
        setting("--quota-gb", setting="quota_bytes", scale=GiB, type=click.FloatRange(min=0),
                help="Bytes stored per user, GiB."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
