"""The DuckDB side of the SQL sandbox: runs as its own process (``python sandbox_worker.py``).

Why a process: DuckDB evaluates constant expressions while it binds and optimises a query
(``SELECT length(repeat('x', 2000000000))`` takes 20 s and 4 GB before execution starts),
outside ``memory_limit`` and deaf to ``interrupt()``. A process can be killed at the
deadline or when its memory passes the bound, and the server keeps serving.

This file imports nothing from arrowroot (it must start fast and from any install layout).
Protocol on stdin/stdout: frames of ``<kind:1 byte><length:8 bytes LE><payload>``.
A job is ``J`` (JSON header) followed by one ``T`` frame (Arrow IPC stream) per table it names
and one ``P`` frame for the parameter rows when it has any. Answers: ``R`` (JSON result),
``E`` (JSON error), or for ``run`` jobs ``S`` (schema) + ``B`` (batches) + ``R``.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import BinaryIO

import duckdb
import pyarrow as pa

BASE_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,
}
PLANNING_OPTIMIZERS = frozenset({"unused_columns", "column_lifetime"})
HEADER = struct.Struct("<cQ")


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    kind, size = HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return kind, data


def write_frame(stream: BinaryIO, kind: bytes, data: bytes) -> None:
    stream.write(HEADER.pack(kind, len(data)))
    stream.write(data)


def ipc_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_qualified(text: str) -> list[str]:
    """Split DuckDB's rendering of a qualified name (memory.main."a.b") into its parts."""
    parts: list[str] = []
    buf: list[str] = []
    i, quoted = 0, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and i + 1 < len(text) and text[i + 1] == '"':
                buf.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                buf.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def walk(node: object):  # noqa: ANN201
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def connect(job: dict) -> duckdb.DuckDBPyConnection:
    config = dict(BASE_CONFIG, memory_limit=job["memory_limit"], threads=job["threads"])
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false").fetchall()
    return con


def bind_tables(con: duckdb.DuckDBPyConnection, job: dict, tables: dict[str, pa.Table]) -> None:
    """Datasets become tables in memory.main, catalog tables views in schema arrowroot."""
    for i, name in enumerate(job.get("datasets", [])):
        con.register(f"__arrowroot_shadow_{i}", tables[name])
        con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrowroot_shadow_{i}").fetchall()
        con.unregister(f"__arrowroot_shadow_{i}")
    catalog = job.get("catalog") or []
    if catalog:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {job['catalog_schema']}").fetchall()
        for key in catalog:
            if f"catalog:{key}" not in tables:  # a provider may offer only some catalog tables
                continue
            con.register(f"__arrowroot_catalog_{key}", tables[f"catalog:{key}"])
            con.execute(
                f"CREATE OR REPLACE VIEW {job['catalog_schema']}.{key} AS SELECT * FROM __arrowroot_catalog_{key}"
            ).fetchall()


def plan(con: duckdb.DuckDBPyConnection, job: dict, tables: dict[str, pa.Table], row: list | None) -> dict:
    """Columns each dataset scan needs (EXPLAIN with only the column-pruning optimizers) and the
    result schema (bound and optimised with every optimizer: constant folding happens here)."""
    optimizers = [r[0] for r in con.execute("SELECT name FROM duckdb_optimizers()").fetchall()]
    disabled = ",".join(o for o in optimizers if o not in PLANNING_OPTIMIZERS)
    con.execute("SET disabled_optimizers = ?", [disabled]).fetchall()
    query = job["query"]
    explained = con.execute("EXPLAIN (FORMAT JSON) " + query, row).fetchall()
    datasets = job.get("datasets", [])
    by_lower = {name.lower(): name for name in datasets}
    needed: dict[str, list[str] | None] = {name: None for name in datasets}
    for node in walk(json.loads(explained[0][1])):
        info = node.get("extra_info")
        if not isinstance(info, dict) or "Table" not in info:
            continue
        parts = split_qualified(info["Table"])
        if len(parts) != 3 or parts[1] != "main" or parts[2].lower() not in by_lower:
            continue
        name = by_lower[parts[2].lower()]
        proj = info.get("Projections") or []
        cols = [proj] if isinstance(proj, str) else list(proj)
        known = tables[name].schema.names
        if any(c not in known for c in cols):  # a rendering we do not understand: read all
            cols = list(known)
        needed[name] = sorted(set(needed[name] or []) | set(cols))
    con.execute("SET disabled_optimizers = ''").fetchall()
    rel = con.sql(query, params=row)
    names = rel.columns
    schema = rel.limit(0).to_arrow_reader().schema
    schema = pa.schema([f.with_name(n) for f, n in zip(schema, names)])
    return {"scans": needed, "schema": schema.serialize().to_pybytes().hex()}


def run(con: duckdb.DuckDBPyConnection, job: dict, rows: list[list] | None, out: BinaryIO) -> None:
    """Execute a query that reads no dataset; stream the batches back."""
    con.execute("SET lock_configuration = true").fetchall()
    schema = None
    for row in rows or [None]:
        reader = con.sql(job["query"], params=row).to_arrow_reader(job["batch_rows"])
        if schema is None:
            schema = reader.schema
            write_frame(out, b"S", schema.serialize().to_pybytes())
            out.flush()
        for batch in reader:
            if not batch.schema.equals(schema):
                batch = batch.cast(schema)
            write_frame(out, b"B", batch.serialize().to_pybytes())
            out.flush()


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, duckdb.PermissionException):
        return "permission"
    if isinstance(exc, duckdb.InterruptException):
        return "interrupt"
    if isinstance(exc, (duckdb.OutOfMemoryException, MemoryError)):
        return "memory"
    return "value"


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    ready: tuple[tuple, duckdb.DuckDBPyConnection] | None = None  # opened ahead (~15 ms)
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        job = json.loads(frame[1])
        tables: dict[str, pa.Table] = {}
        for key in job.get("tables", []):
            tables[key] = ipc_table(read_frame(inp)[1])
        rows = None
        if job.get("params"):
            params = ipc_table(read_frame(inp)[1])
            columns = [col.to_pylist() for col in params.columns]
            rows = [list(r) for r in zip(*columns)]
        key = (job["memory_limit"], job["threads"])
        if ready is not None and ready[0] == key:
            con = ready[1]
        else:
            if ready is not None:
                ready[1].close()
            con = connect(job)
        ready = None
        try:
            bind_tables(con, job, tables)
            if job["kind"] == "plan":
                row = rows[0] if rows else ([None] * job["n_params"] if job["n_params"] else None)
                write_frame(out, b"R", json.dumps(plan(con, job, tables, row)).encode())
            else:
                run(con, job, rows, out)
                write_frame(out, b"R", b"{}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the server as data
            message = str(exc).split("\n", 1)[0]
            write_frame(out, b"E", json.dumps({"kind": error_kind(exc), "message": message}).encode())
        finally:
            out.flush()
            con.close()
        ready = (key, connect(job))  # a fresh database for the next job, opened while idle


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    write_frame(out, b"K", b"")
    out.flush()
    serve(inp, out)


if __name__ == "__main__":
    main()
