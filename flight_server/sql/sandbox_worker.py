"""The DuckDB side of the SQL sandbox: runs as its own process (``python sandbox_worker.py AS_BYTES``).

Why a process: DuckDB folds constant expressions while it binds (``SELECT length(repeat('x',
2000000000))`` takes 20 s and 4 GB before execution starts) and grows strings and lists per row
outside its own ``memory_limit`` (``repeat('x', nMuon * 300000000)``). Here both are bounded: the
process's address space is capped (``RLIMIT_AS``, set below before DuckDB is loaded), so an
allocation past the cap fails inside DuckDB ("Out of Memory Error") instead of growing the server,
and the server kills the process at the query's deadline. Every query binds, plans and *executes*
here; the datasets' batches come from the server over the pipe, so reading files stays on the
server's one read path, and the results go back the same way.

This file imports nothing from arrowroot (it must start fast and from any install layout).
Frames on stdin/stdout: ``<kind:1 byte><length:8 bytes LE><payload>``.

    server → worker   J job header (JSON), T table (Arrow IPC stream, one per name in the
                      header), P parameter rows (IPC stream); replies to scan requests:
                      A scan opened, D batch (IPC message), Z scan ended, X scan failed (JSON)
    worker → server   K ready; S result schema, B result batch (IPC message), R done (JSON),
                      E error (JSON); scan requests: O open (JSON {scan, table}), N next (scan id),
                      C close (JSON list of scan ids, no reply)

Scan requests come from DuckDB's threads while the main thread writes results: one lock keeps
each request and its reply together, so frames never interleave.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO

HEADER = struct.Struct("<cQ")
SCAN_ID = struct.Struct("<I")
PLANNING_OPTIMIZERS = frozenset({"unused_columns", "column_lifetime"})
BASE_CONFIG: dict[str, object] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,
}


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    kind, size = HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return kind, data


def write_frame(stream: BinaryIO, kind: bytes, data: bytes | memoryview = b"") -> None:
    stream.write(HEADER.pack(kind, len(data)))
    stream.write(data)


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


def walk(node: object):  # noqa: ANN201 - a generator of dicts
    """Every dict in a JSON tree (DuckDB's serialised parse trees and plans)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ScanFailed(Exception):
    """The server could not serve a dataset's batches (it reports its own error)."""


class Channel:
    """The worker's end of the pipe: result frames and scan requests, one at a time."""

    def __init__(self, inp: BinaryIO, out: BinaryIO) -> None:
        self.inp, self.out = inp, out
        self.lock = threading.Lock()
        self.active = False          # a run job is going: scans may talk to the server
        self.closed_scans: list[int] = []  # closed by a finaliser: told with the next request

    def send(self, kind: bytes, data: bytes | memoryview = b"") -> None:
        with self.lock:
            self._flush_closed()
            write_frame(self.out, kind, data)
            self.out.flush()

    def request(self, kind: bytes, data: bytes) -> tuple[bytes, bytes]:
        with self.lock:
            if not self.active:
                raise ScanFailed("the query has ended")
            self._flush_closed()
            write_frame(self.out, kind, data)
            self.out.flush()
            frame = read_frame(self.inp)
            if frame is None:
                raise ScanFailed("the server went away")
            return frame

    def _flush_closed(self) -> None:
        if self.closed_scans and self.active:
            ids, self.closed_scans = self.closed_scans, []
            write_frame(self.out, b"C", json.dumps(ids).encode())


class RemoteScan:
    """A dataset as an Arrow source DuckDB can scan: the schema is known at bind time (free),
    and every scan in the plan asks the server for a stream of its own (self-joins work)."""

    def __init__(self, chan: Channel, table: int, schema: object, ids: Iterator[int]) -> None:
        self.chan, self.table, self.schema, self.ids = chan, table, schema, ids

    def __arrow_c_schema__(self) -> object:
        return self.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        import pyarrow as pa

        scan = next(self.ids)
        kind, data = self.chan.request(b"O", json.dumps({"scan": scan, "table": self.table}).encode())
        if kind == b"X":
            raise ScanFailed(json.loads(data).get("message", "scan failed"))
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches(scan))
        return reader.__arrow_c_stream__(requested_schema)

    def _batches(self, scan: int) -> Iterator[object]:
        import pyarrow as pa

        done = False
        try:
            while True:
                kind, data = self.chan.request(b"N", SCAN_ID.pack(scan))
                if kind == b"D":
                    yield pa.ipc.read_record_batch(pa.py_buffer(data), self.schema)
                elif kind == b"Z":
                    done = True
                    return
                else:
                    done = True
                    raise ScanFailed(json.loads(data).get("message", "scan failed"))
        finally:
            if not done:  # stopped early (LIMIT): the server may end that read now
                self.chan.closed_scans.append(scan)


# ----------------------------------------------------------------------------- jobs


def connect(key: tuple[str, int]):  # noqa: ANN201 - a DuckDB connection
    import duckdb

    memory_limit, threads = key
    con = duckdb.connect(":memory:", config=dict(BASE_CONFIG, memory_limit=memory_limit, threads=threads))
    con.execute("SET enable_progress_bar = false").fetchall()
    return con


class Database:
    """The worker's one DuckDB database, a fresh connection to it per job.

    Opening a database costs 15-100 ms (and holds the GIL), a connection 0.04 ms: per job, that
    difference would sit between a GetFlightInfo's plan and its DoGet's run. What a job creates
    (the datasets' tables or views, the catalog schema) is dropped when it ends, and the database
    is replaced if anything is left behind; jobs on one worker never overlap."""

    def __init__(self) -> None:
        self.key: tuple[str, int] | None = None
        self.db: object | None = None

    def connection(self, key: tuple[str, int]) -> object:
        if self.db is None or key != self.key:
            self.close()
            self.db, self.key = connect(key), key
        return self.db.cursor()

    def clean(self, con: object, job: dict) -> None:
        """Drop what the job made; replace the database if that fails or anything is left."""
        try:
            for name in job.get("datasets", []):
                con.execute(f"DROP VIEW IF EXISTS memory.main.{quote_ident(name)}").fetchall()
                con.execute(f"DROP TABLE IF EXISTS memory.main.{quote_ident(name)}").fetchall()
            con.execute(f"DROP SCHEMA IF EXISTS memory.{job['catalog_schema']} CASCADE").fetchall()
            con.execute("SET disabled_optimizers = ''").fetchall()
            left = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'memory'"
                               ).fetchall()[0][0]
            con.close()
        except Exception:  # noqa: BLE001 - a database in doubt is not used again
            left = -1
        if left:
            self.close()

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except Exception:  # noqa: BLE001
                pass
        self.db = None


def typed_rows(con: object, params: object) -> list[list]:
    """Parameter rows as DuckDB values of the types DuckDB gives their Arrow columns (an int64
    stays BIGINT whatever its value; a null has no type of its own and binds as NULL)."""
    import duckdb

    types = con.from_arrow(params.slice(0, 0)).types
    columns = [col.to_pylist() for col in params.columns]
    return [[None if v is None else duckdb.Value(v, t) for v, t in zip(row, types)] for row in zip(*columns)]


def sample_row(rows: list[list] | None, n_params: int) -> list | None:
    """One row to bind while planning: each parameter's first non-null value (its type is what
    the plan needs), NULL where a column has none."""
    if not rows:
        return [None] * n_params if n_params else None
    return [next((r[i] for r in rows if r[i] is not None), None) for i in range(len(rows[0]))]


def bind_catalog(con: object, job: dict, tables: dict) -> None:
    catalog = job.get("catalog") or []
    if not catalog:
        return
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {job['catalog_schema']}").fetchall()
    for key in catalog:
        if f"catalog:{key}" not in tables:  # a provider may offer only some catalog tables
            continue
        con.register(f"__arrowroot_catalog_{key}", tables[f"catalog:{key}"])
        con.execute(
            f"CREATE OR REPLACE VIEW {job['catalog_schema']}.{key} AS SELECT * FROM __arrowroot_catalog_{key}"
        ).fetchall()


def plan(con: object, job: dict, tables: dict, rows: list[list] | None) -> dict:
    """Columns each dataset scan needs (EXPLAIN with only the column-pruning optimizers), the
    result schema (bound and optimised with every optimizer: constant folding happens here) and
    the parameter types DuckDB infers from where they are used."""
    import pyarrow as pa

    for i, name in enumerate(job.get("datasets", [])):  # zero-row tables with the real schemas
        con.register(f"__arrowroot_shadow_{i}", tables[name])
        con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM __arrowroot_shadow_{i}").fetchall()
        con.unregister(f"__arrowroot_shadow_{i}")
    bind_catalog(con, job, tables)
    row = sample_row(rows, job["n_params"])
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
    # a column the binder resolves but no scan reads (typeof(x) folds to a constant) must still
    # be there when the query binds again to run: it is read too
    tree = parse_tree(con, query)
    named = referenced_columns(tree)
    for name, cols in needed.items():
        if cols is not None:
            extra = [c for c in tables[name].schema.names if c.lower() in named and c not in cols]
            needed[name] = sorted(set(cols) | set(extra))
    con.execute("SET disabled_optimizers = ''").fetchall()
    rel = con.sql(query, params=row)
    names = rel.columns
    schema = rel.limit(0).to_arrow_reader().schema
    schema = pa.schema([f.with_name(n) for f, n in zip(schema, names)])
    out = {"scans": needed, "schema": schema.serialize().to_pybytes().hex()}
    if job["n_params"] and not rows:
        out["parameters"] = parameter_schema(con, query, job["n_params"], tree).serialize().to_pybytes().hex()
    return out


def parse_tree(con: object, query: str) -> dict:
    """DuckDB's parse tree of a query (parse only)."""
    return json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])


def referenced_columns(tree: dict) -> set[str]:
    """Lower-case names of every column a query refers to (an over-estimate: any table's)."""
    out = set()
    for node in walk(tree):
        if node.get("class") == "COLUMN_REF" and node.get("column_names"):
            out.add(str(node["column_names"][-1]).lower())
    return out


def _bound_parameter_types(con: object, query: str) -> dict[int, str]:
    """Parameter number → DuckDB type id, from the bound plan (empty when it cannot be bound)."""
    try:
        tree = json.loads(con.execute("SELECT json_serialize_plan(?)", [query]).fetchall()[0][0])
    except Exception:  # noqa: BLE001 - no plan, no types
        return {}
    found: dict[int, str] = {}
    for node in walk(tree):
        if node.get("expression_class") != "BOUND_PARAMETER":
            continue
        ident, rtype = str(node.get("identifier", "")), node.get("return_type") or {}
        kind = rtype.get("id")
        if ident.isdigit() and isinstance(kind, str) and rtype.get("type_info") is None \
                and kind.replace("_", "").isalpha() and kind not in ("UNKNOWN", "ANY", "SQLNULL", "INVALID"):
            found.setdefault(int(ident), kind)
    return found


def _parameter_spans(tree: dict, encoded: bytes) -> list[tuple[int, int, int]]:
    """(start, end, number) of each parameter marker (``?`` or ``$n``) in the query's bytes."""
    spans = []
    for node in walk(tree):
        loc = node.get("query_location")
        if node.get("class") != "PARAMETER" or not isinstance(loc, int) or not str(node.get("identifier")).isdigit():
            continue
        end = loc + 1
        if encoded[loc:loc + 1] == b"$":
            while end < len(encoded) and encoded[end:end + 1].isdigit():
                end += 1
        elif encoded[loc:loc + 1] != b"?":
            continue
        spans.append((loc, end, int(node["identifier"])))
    return sorted(spans)


def parameter_schema(con: object, query: str, n: int, tree: dict) -> object:
    """``$1 … $n`` with the types DuckDB's binder gives them (``nMuon > ?`` → the column's type),
    read from ``json_serialize_plan``; null where the binder cannot tell (``SELECT ? AS x``).

    A plan binds only when every parameter's type is known, so a parameter the whole query
    leaves open is asked about alone: the others become NULL, it becomes ``$k``."""
    import pyarrow as pa

    found = _bound_parameter_types(con, query)
    missing = [k for k in range(1, n + 1) if k not in found]
    if missing:
        encoded = query.encode("utf-8")
        spans = _parameter_spans(tree, encoded)
        for k in missing:
            out, last = [], 0
            for start, end, ident in spans:
                out += [encoded[last:start], f"${k}".encode() if ident == k else b"NULL"]
                last = end
            out.append(encoded[last:])
            kind = _bound_parameter_types(con, b"".join(out).decode("utf-8")).get(k)
            if kind is not None:
                found[k] = kind
    fields = []
    for i in range(1, n + 1):
        kind = found.get(i)
        ftype = pa.null()
        if kind is not None:
            try:
                ftype = con.sql(f"SELECT CAST(NULL AS {kind}) AS p").to_arrow_reader().schema.field(0).type
            except Exception:  # noqa: BLE001 - a type without an Arrow spelling stays null
                ftype = pa.null()
        fields.append(pa.field(f"${i}", ftype))
    return pa.schema(fields)


def run(con: object, job: dict, tables: dict, rows: list[list] | None, chan: Channel) -> None:
    """Execute the query over the server's datasets; stream the batches back, cast to the
    planned schema (one execution per parameter row, results concatenated)."""
    import itertools

    import pyarrow as pa

    ids = itertools.count()
    for i, name in enumerate(job.get("datasets", [])):
        # a view in memory.main (what CommandGetTables advertises) over a source whose every
        # scan asks the server for the dataset's batches
        con.register(f"__arrowroot_source_{i}", RemoteScan(chan, i, tables[name].schema, ids))
        con.execute(f"CREATE VIEW memory.main.{quote_ident(name)} AS SELECT * FROM __arrowroot_source_{i}").fetchall()
    bind_catalog(con, job, tables)
    schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(job["schema"])))
    chan.send(b"S")
    for row in rows or [None]:
        reader = con.sql(job["query"], params=row).to_arrow_reader(job["batch_rows"])
        for batch in reader:
            if not batch.num_rows:
                continue
            if not batch.schema.equals(schema):
                arrays = [col.cast(f.type) for col, f in zip(batch.columns, schema)]
                batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
            chan.send(b"B", batch.serialize())


def error_kind(exc: BaseException) -> str:
    import duckdb

    if isinstance(exc, ScanFailed):
        return "scan"
    if isinstance(exc, duckdb.PermissionException):
        return "permission"
    if isinstance(exc, duckdb.InterruptException):
        return "interrupt"
    if isinstance(exc, (duckdb.OutOfMemoryException, MemoryError)):
        return "memory"
    return "value"


def serve(chan: Channel, database: Database) -> None:
    import pyarrow as pa

    def ipc_table(data: bytes) -> object:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()

    while True:
        frame = read_frame(chan.inp)
        if frame is None:
            return
        job = json.loads(frame[1])
        tables: dict[str, object] = {}
        for key in job.get("tables", []):
            tables[key] = ipc_table(read_frame(chan.inp)[1])
        params = ipc_table(read_frame(chan.inp)[1]) if job.get("params") else None
        con = database.connection((job["memory_limit"], job["threads"]))
        try:
            rows = typed_rows(con, params) if params is not None and params.num_rows else None
            if job["kind"] == "plan":
                chan.send(b"R", json.dumps(plan(con, job, tables, rows)).encode())
            else:
                chan.active = True
                run(con, job, tables, rows, chan)
                chan.active = False
                chan.send(b"R", b"{}")
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the server as data
            chan.active = False
            message = str(exc).split("\n", 1)[0]
            chan.send(b"E", json.dumps({"kind": error_kind(exc), "message": message}).encode())
        finally:
            chan.active = False
            database.clean(con, job)


def limit_address_space(limit: int) -> None:
    """Cap this process's virtual memory (soft and hard): allocations past it fail."""
    if limit > 0:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    """``sandbox_worker.py AS_BYTES [MEMORY_LIMIT THREADS]``: cap, load, open the database, say ready."""
    limit_address_space(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    import duckdb  # noqa: F401 - loaded under the cap, before the ready signal
    import pyarrow  # noqa: F401

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    chan = Channel(inp, out)
    database = Database()
    if len(sys.argv) > 3:  # the database the jobs will want, opened before the first job
        database.connection((sys.argv[2], int(sys.argv[3]))).close()
    write_frame(out, b"K")
    out.flush()
    serve(chan, database)


if __name__ == "__main__":
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    main()
