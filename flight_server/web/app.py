"""The web view and HTTP API: a Starlette app over one ArrowrootServer.

Pages (server-side HTML, no JavaScript): ``/`` (tree + search), ``/datasets/NAME``
(metadata, schema, files, snippets, preview, plots, downloads), ``/plot/KIND/NAME`` (PNG),
``/login``. The API: ``/api/datasets``, ``/api/datasets/NAME``, ``/api/data/NAME``,
``/api/health``, ``/api/openapi.json``. Everything goes through ``data.py``: the same
access rules, planner and executor as Flight, and the same error messages.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import ArrowrootError, InvalidRequest, Unauthenticated
from arrowroot.flight_server.service.caller import Caller, new_request_id
from arrowroot.flight_server.service.calllog import CallRecord
from arrowroot.flight_server.service.metrics import CONTENT_TYPE_LATEST, Metrics
from arrowroot.flight_server.service.errors import TABLE, status_of
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web import data, live, plots
from arrowroot.flight_server.export.formats import FORMATS, TooLarge, ahead, encode, get_format
from arrowroot.flight_server.web.openapi import openapi
from arrowroot.flight_server.web.sso import web_sso

log = logging.getLogger("arrowroot.http")

COOKIE = "arrowroot_session"
#: an HTTP status → the gRPC name the access log gives it (the error table, read backwards)
HTTP_TO_GRPC = {row.http: row.grpc for row in reversed(TABLE)} | {404: "NOT_FOUND", 500: "INTERNAL"}
PREVIEW_ROWS = 20
MAX_PREVIEW_ROWS = 500
MAX_FILES_SHOWN = 500
OPEN_TREE_UP_TO = 60         # datasets; larger trees open two levels deep
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
]


@dataclass(frozen=True)
class WebOptions:
    """Settings of the HTTP side (``arrowroot serve --http ...``)."""

    max_bytes: int = 0             # largest download (bytes written); 0 = no limit
    plot_entries: int = 1_000_000  # entries a histogram or line plot reads at most
    secure_cookie: bool = False    # Secure flag on the session cookie (on with TLS)
    flight_location: str = ""      # what snippets connect to (grpc://host:port)


def record_of(request: Request) -> CallRecord:
    """The request's access-log record (opened by :class:`_AccessLog`)."""
    record = request.scope.get("arrowroot.record")
    if record is None:  # the app run without its middleware (not in a server): a detached record
        record = request.scope["arrowroot.record"] = CallRecord("http", f"{request.method} {request.url.path}")
    return record


class _AccessLog:
    """Pure ASGI middleware: one access-log line per HTTP request, written when the response
    has been sent in full (a streamed download's line comes after its last byte), with the
    status of the error table (``http=404``, ``NOT_FOUND``) and the caller."""

    def __init__(self, app: Any, sink: Callable[[CallRecord], None] | None = None):
        self.app = app
        self.sink = sink  # the server's metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if not path.startswith(("/api/data/", "/datasets/", "/plot/", "/api/datasets/")) \
            else "/".join(path.split("/")[:3]) + "/…"
        record = scope["arrowroot.record"] = CallRecord("http", f"{scope.get('method', '?')} {route}",
                                                        request_id=new_request_id(), sink=self.sink)

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                record.http = int(message["status"])
                if record.status == "OK" and record.http >= 400:
                    record.status = HTTP_TO_GRPC.get(record.http, "UNKNOWN")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record.finish()

        async def receive_watched() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":  # the read path stops within a chunk
                gone = scope.get("arrowroot.gone")
                if gone is not None:
                    gone["gone"] = True
                if record.status == "OK":
                    record.status = "CANCELLED"
            return message

        try:
            await self.app(scope, receive_watched, send_logged)
        except BaseException:
            if record.status == "OK":
                record.status = "CANCELLED"
            record.finish()
            raise
        record.finish()


class _SecurityHeaders:
    """Pure ASGI middleware (streams untouched) adding the headers every answer carries."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------- request parsing


def _int(q: Any, key: str) -> int | None:
    text = (q.get(key) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{key}: an integer expected (got {text[:30]!r})") from None


def _list(q: Any, key: str) -> list[str]:
    out: list[str] = []
    for v in q.getlist(key):
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _slices(text: str) -> list[dict]:
    """'0:4,::8' → ReadRequest slices (one per axis after the entries)."""
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        bits = part.split(":")
        if len(bits) > 3 or not part:
            raise InvalidRequest(f"slices[{i}]: {part[:30]!r} is not start:stop[:step]")
        s: dict[str, int] = {}
        for key, bit in zip(("start", "stop", "step"), bits + [""] * (3 - len(bits))):
            if bit.strip():
                try:
                    s[key] = int(bit)
                except ValueError:
                    raise InvalidRequest(f"slices[{i}]: {part[:30]!r}: integers expected") from None
        if len(bits) == 1:  # a single index keeps the axis with length 1
            s = {"start": s["start"], "stop": s["start"] + 1 if s["start"] != -1 else None}
            s = {k: v for k, v in s.items() if v is not None}
        out.append(s)
    return out


def selection(name: str, q: Any) -> dict[str, Any]:
    """The ReadRequest fields of a query string (shared by pages, plots and /api/data)."""
    req: dict[str, Any] = {"dataset": name}
    cols = _list(q, "columns")
    if cols:
        req["columns"] = cols
    for key in ("entry_start", "entry_stop"):
        v = _int(q, key)
        if v is not None:
            req[key] = v
    if (q.get("where") or "").strip():
        req["where"] = q.get("where")
    if (q.get("slices") or "").strip():
        req["slices"] = _slices(q.get("slices"))
    if (q.get("files") or "").strip():
        req["files"] = q.get("files")
    channels = _list(q, "channels")
    if channels:
        req["channels"] = channels
    for key in ("time_start", "time_stop"):  # GPS seconds, or ISO-8601 text
        text = (q.get(key) or "").strip()
        if text:
            try:
                req[key] = float(text)
            except ValueError:
                req[key + "_iso"] = text
    for key in ("with_time", "fill_gaps", "with_entry_numbers", "allow_missing"):
        if _flag(q, key):
            req[key] = True
    return req


def _flag(q: Any, key: str) -> bool:
    """A boolean query parameter: ``1``, ``true``, ``yes``, ``on`` (a checked form box)."""
    text = (q.get(key) or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InvalidRequest(f"{key}: true or false expected (got {text[:30]!r})")


def criteria(q: Any) -> dict[str, Any]:
    """list_flights criteria from a query string; attributes as ``attr=key=value`` (repeatable,
    the value read as JSON when it parses) or ``attributes={...}``."""
    out: dict[str, Any] = {}
    for key in ("name", "format", "kind", "has_column"):
        v = (q.get(key) or "").strip()
        if v:
            out[key] = v
    attrs: dict[str, Any] = {}
    if (q.get("attributes") or "").strip():
        try:
            attrs = json.loads(q.get("attributes"))
        except ValueError as exc:
            raise InvalidRequest(f"attributes: not JSON ({exc})") from None
        if not isinstance(attrs, dict):
            raise InvalidRequest("attributes: a JSON object expected")
    for item in q.getlist("attr"):
        for pair in (p.strip() for p in item.split(";")):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise InvalidRequest(f"attr: {pair[:40]!r} is not key=value")
            try:
                attrs[key.strip()] = json.loads(value)
            except ValueError:
                attrs[key.strip()] = value.strip()
    if attrs:
        out["attributes"] = attrs
    return out


# ---------------------------------------------------------------- presentation helpers


def short(value: Any, width: int = 60) -> str:
    """A cell for the preview table: jagged and N-D cells shortened, floats to 6 digits."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        inner = [short(v, 20) for v in value[:4]]
        more = f", … ({len(value)})" if len(value) > 4 else ""
        text = "[" + ", ".join(inner) + more + "]"
        return text if len(text) <= width else text[: width - 1] + "…"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {short(v, 20)}" for k, v in list(value.items())[:4]) + "}"
        return text if len(text) <= width else text[: width - 1] + "…"
    if isinstance(value, bytes):
        value = value[:width].hex() + ("…" if len(value) > width else "")
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def human(n: int | float | None) -> str:
    if n is None or n < 0:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/:")


def _shape(f: pa.Field) -> tuple[int, ...]:
    shape, t = [], f.type
    while pa.types.is_fixed_size_list(t):
        shape.append(t.list_size)
        t = t.value_type
    return tuple(shape)


def _meta(f: pa.Field) -> dict[str, Any]:
    meta = f.metadata or {}
    try:
        attrs = json.loads(meta.get(b"arrowroot.attributes", b"{}"))
    except ValueError:
        attrs = {}
    if not isinstance(attrs, dict):
        attrs = {}
    units = attrs.get("units") or (meta.get(b"units") or meta.get(b"unit") or b"").decode(errors="replace")
    return {"source_type": meta.get(b"arrowroot.source_type", b"").decode(errors="replace"),
            "attributes": attrs, "units": str(units)}


def describe(rec: Any, full: bool = True) -> dict[str, Any]:
    """The JSON of one dataset (the API's and the page's single source)."""
    schema = data.schema_of(rec)
    files = {p.path: p.size for p in rec.parts}
    out: dict[str, Any] = {
        "name": rec.name, "kind": rec.kind, "format": rec.format, "entries": rec.entries,
        "bytes": sum(c.uncompressed_bytes or 0 for c in rec.columns if c.readable),
        "file_bytes": sum(files.values()), "files": len(files),
        "columns": [f.name for f in schema], "attributes": rec.attributes,
    }
    if not full:
        return out
    cols = []
    for f in schema:
        c = rec.column(f.name)
        m = _meta(f)
        cols.append({"name": f.name, "type": str(f.type), "source_type": m["source_type"],
                     "shape": list(_shape(f)), "units": m["units"], "attributes": m["attributes"],
                     "bytes": c.uncompressed_bytes if c else None,
                     "compressed_bytes": c.compressed_bytes if c else None})
    unreadable = [{"name": c.name, "source_type": c.source_type, "reason": c.reason}
                  for c in rec.columns if not c.readable]
    out["schema"] = cols
    out["unreadable"] = unreadable
    out["parts"] = [{"path": p.path, "object": p.object_path, "entry_offset": p.entry_offset,
                     "entries": p.entries, "bytes": p.size, "channel": p.channel, "keys": p.keys}
                    for p in rec.parts]
    return out


@dataclass
class Node:
    label: str
    path: str
    is_file: bool = False
    dataset: Any = None
    children: dict[str, "Node"] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return (1 if self.dataset is not None else 0) + sum(c.count for c in self.children.values())

    def sorted_children(self) -> list["Node"]:
        return [self.children[k] for k in sorted(self.children)]


def tree(records: list[Any]) -> Node:
    """Datasets as folders → files → objects (``dir/file.h5:group/dataset``)."""
    root = Node("", "")
    for rec in records:
        file_part, sep, obj = rec.name.partition(":")
        segments = [(s, False) for s in file_part.split("/") if s]
        if sep and segments:
            segments[-1] = (segments[-1][0], True)
            segments += [(s, False) for s in obj.split("/") if s]
        node, path = root, ""
        for label, is_file in segments:
            path = f"{path}/{label}" if path else label
            node = node.children.setdefault(label, Node(label, path, is_file))
            node.is_file = node.is_file or is_file
        node.dataset = rec
    return root


# ---------------------------------------------------------------- the app


class Web:
    """Request handlers bound to one ArrowrootServer."""

    def __init__(self, service: Service, options: WebOptions):
        self.service = service
        self.options = options
        assert service.ctx.auth is not None
        self.auth = service.ctx.auth
        #: login through an OIDC issuer or the JupyterHub instead of the password form ([auth.web])
        self.sso = web_sso(self.auth, COOKIE, options.secure_cookie, _safe_next)

    # ------------------------------------------------------------ auth

    def caller(self, request: Request) -> Caller:
        """Who is calling: Authorization (Bearer token/API key, Basic), X-API-Key or the
        session cookie; Unauthenticated when that is required and missing/wrong."""
        record = record_of(request)
        record.peer = request.client.host if request.client else "?"
        auth = request.headers.getlist("authorization")
        key = request.headers.get("x-api-key")
        if key and not auth:
            auth = [f"Bearer {key}"]
        if auth:
            login = self.auth.authenticate(auth, issue=False)
        else:
            login = self.auth.session_login(request.cookies.get(COOKIE))
        record.user = login.user
        return Caller(user=login.user, door="http", peer=record.peer, request_id=record.request_id,
                      groups=login.groups, scopes=login.scopes)

    @property
    def auth_on(self) -> bool:
        return bool(self.auth.enabled)

    # ------------------------------------------------------------ error boundaries

    def api(self, what: str, fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """An API endpoint: our errors go to the table's exception handlers (``create_app``);
        anything else is answered here as an internal error (logged with the request id)."""
        def endpoint(request: Request) -> Response:
            try:
                return fn(request)
            except ArrowrootError:
                raise
            except Exception as exc:
                return self.json_error(what, exc, record_of(request))
        return endpoint

    def json_error(self, what: str, exc: BaseException, record: CallRecord | None = None) -> JSONResponse:
        f = data.failure(what, exc, record.request_id if record is not None else "")
        if record is not None:
            record.status = status_of(exc).grpc
        headers = {"www-authenticate": 'Bearer realm="arrowroot", Basic realm="arrowroot"'} if f.status == 401 else None
        return JSONResponse({"error": f.kind, "status": f.status, "message": f.message}, f.status, headers=headers)

    def page(self, what: str, fn: Callable[[Request, Caller], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                caller = self.caller(request)
            except Unauthenticated as exc:
                return self.to_login(request, str(exc))
            try:
                return fn(request, caller)
            except Exception as exc:
                record = record_of(request)
                record.status = status_of(exc).grpc
                f = data.failure(what, exc, record.request_id)
                return self.render(request, caller, "error.html", {"failure": f}, f.status)
        return endpoint

    def to_login(self, request: Request, why: str) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        resp = RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), 303)
        if request.cookies.get(COOKIE):
            resp.delete_cookie(COOKIE, path="/")
        return resp

    def render(self, request: Request, caller: Caller | None, template: str, ctx: dict, status: int = 200) -> Response:
        base = {"user": caller.user if caller else None, "auth_on": self.auth_on, "version": __version__,
                "quote": quote, "human": human, "short": short}
        return TEMPLATES.TemplateResponse(request, template, {**base, **ctx}, status_code=status)

    # ------------------------------------------------------------ pages

    def index(self, request: Request, caller: Caller) -> Response:
        q = request.query_params
        visible = data.all_visible(self.service, caller)
        error = None
        try:
            crit = criteria(q)
            found = data.datasets(self.service, caller, crit) if crit else visible
        except Exception as exc:
            f = data.failure("search", exc)
            error, crit, found = f.message, {}, []
        ctx = {"root": tree(found), "found": len(found), "total": len(visible), "q": q, "searching": bool(crit),
               "open_all": bool(crit) or len(found) <= OPEN_TREE_UP_TO,
               "error": error, "formats": sorted({d.format for d in visible}),
               "kinds": sorted({d.kind for d in visible}), "results": sorted(found, key=lambda d: d.name)}
        return self.render(request, caller, "index.html", ctx, 400 if error else 200)

    def dataset_page(self, request: Request, caller: Caller) -> Response:
        name = request.path_params["name"]
        q = request.query_params
        rec = data.dataset(self.service, caller, name)
        info = describe(rec)
        schema = data.schema_of(rec)
        ctx: dict[str, Any] = {"rec": rec, "info": info, "q": q, "formats": list(FORMATS)}
        status = 200
        try:
            sel = selection(name, q)
            ctx["preview"] = self.preview(caller, sel, q, schema)
        except Exception as exc:
            f = data.failure(f"preview {name}", exc)
            ctx["preview_error"], status = f.message, f.status
            sel = {"dataset": name}
        ctx["sel"] = sel
        query = {k: v for k, v in q.multi_items() if k in ("columns", "entry_start", "entry_stop", "where",
                                                              "slices", "files", "channels", "allow_missing") and v.strip()}
        ctx["query"] = urllib.parse.urlencode(query)
        ctx["downloads"] = [(f, f"/api/data/{quote(name)}?" + urllib.parse.urlencode({**dict(query), "format": f}))
                            for f in FORMATS]
        ctx["snippets"] = self.snippets(request, sel, caller.user)
        ctx["plots"] = self.plot_choices(rec, schema, q)
        return self.render(request, caller, "dataset.html", ctx, status)

    def preview(self, caller: Caller, sel: dict, q: Any, schema: pa.Schema) -> dict[str, Any]:
        rows = min(max(_int(q, "rows") or PREVIEW_ROWS, 1), MAX_PREVIEW_ROWS)
        req = dict(sel)
        numbered = "entry" not in schema.names
        if numbered:
            req["with_entry_numbers"] = True
        plan = data.plan(self.service, caller, data.spec(req))
        if not req.get("where"):  # no cut: read just the rows shown
            start = plan.entry_start
            req["entry_start"], req["entry_stop"] = start, min(plan.entry_stop, start + rows)
            plan = data.plan(self.service, caller, data.spec(req))
        got: list[pa.RecordBatch] = []
        n = 0
        t0 = time.perf_counter()
        batches = data.read_batches(self.service, plan, caller)
        try:
            for b in batches:
                got.append(b.slice(0, rows - n))
                n += min(b.num_rows, rows - n)
                if n >= rows:
                    break
        finally:
            batches.close()
        table = pa.Table.from_batches(got, schema=plan.schema) if got else plan.schema.empty_table()
        return {"columns": table.column_names, "rows": [[short(v) for v in r.values()] for r in table.to_pylist()],
                "count": table.num_rows, "scanned": plan.entries, "secs": time.perf_counter() - t0,
                "range": (plan.entry_start, plan.entry_stop), "cut": bool(req.get("where")), "limit": rows}

    def plot_choices(self, rec: Any, schema: pa.Schema, q: Any) -> dict[str, Any]:
        hist = [f.name for f in schema if plots.is_numeric(f.type) and not _shape(f)]
        image = [f.name for f in schema if plots.is_numeric(f.type) and len(_shape(f)) >= 1]
        line = [f.name for f in schema if plots.is_numeric(f.type) and not _shape(f)
                and not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))]
        line.sort(key=lambda c: not pa.types.is_floating(schema.field(c).type))  # measurements first
        name = quote(rec.name)
        base = {k: v for k, v in q.items() if k in ("entry_start", "entry_stop", "where") and v.strip()}
        out: dict[str, Any] = {"hist": hist, "image": image, "line": line, "cap": self.options.plot_entries}
        if hist:
            col = q.get("hist") if q.get("hist") in hist else hist[0]
            bins = q.get("bins") or "50"
            out["hist_col"], out["bins"] = col, bins
            out["hist_url"] = f"/plot/hist/{name}?" + urllib.parse.urlencode({**base, "column": col, "bins": bins})
        if image:
            col = q.get("image") if q.get("image") in image else image[0]
            shape = (rec.entries, *_shape(schema.field(col)))
            plane = q.get("plane") or ""
            out["image_col"], out["image_shape"] = col, shape
            out["plane"] = plane or ",".join(["0"] * (len(shape) - 2) + [":", ":"])
            out["image_url"] = f"/plot/image/{name}?" + urllib.parse.urlencode({"column": col, "plane": out["plane"]})
        if line and rec.format in ("hdf5", "lh5"):
            col = q.get("line") if q.get("line") in line else line[0]
            out["line_col"] = col
            out["line_url"] = f"/plot/line/{name}?" + urllib.parse.urlencode({**base, "column": col})
        return out

    def snippets(self, request: Request, sel: dict, user: str | None = None) -> dict[str, str]:
        """Code that reads this selection, for the logged-in user (they type only the password)."""
        host = request.url.hostname or "127.0.0.1"
        loc = self.options.flight_location or f"grpc://{host}:{self.service.ctx.settings.port}"
        scheme, _, rest = loc.partition("://")
        loc = f"{scheme}://{host}:{rest.rpartition(':')[2]}"
        name = sel["dataset"]
        cols = sel.get("columns")
        entries = (sel.get("entry_start"), sel.get("entry_stop"))
        login = user or "USER"
        auth = f', username={login!r}, password=getpass.getpass()' if self.auth_on else ""
        args = [repr(name), repr(cols) if cols else "None"]
        if entries != (None, None):
            args.append(f"entries={entries!r}")
        if sel.get("where"):
            args.append(f"where={sel['where']!r}")
        imports = "import getpass\n" if self.auth_on else ""
        client = (f"{imports}from arrowroot.clients import Client\n\n"
                  f"with Client({loc!r}{auth}) as c:\n"
                  f"    table = c.read({', '.join(args)})\n")
        request_json = json.dumps({k: v for k, v in sel.items()})
        options = (f'fl.FlightCallOptions(headers=[client.authenticate_basic_token({login!r}, getpass.getpass())])'
                   if self.auth_on else "fl.FlightCallOptions()")
        pyflight = (f"{'import getpass' + chr(10) if self.auth_on else ''}import pyarrow as pa\nimport pyarrow.flight as fl\n\n"
                    f"client = fl.connect({loc!r})\n"
                    f"options = {options}\n"
                    f"request = {request_json!r}\n"
                    "info = client.get_flight_info(fl.FlightDescriptor.for_command(request), options)\n"
                    "table = pa.concat_tables([client.do_get(ep.ticket, options).read_all() for ep in info.endpoints])\n")
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in cols) if cols else "*"
        sql_from = '"' + name.replace('"', '""') + '"'
        if sel.get("entry_start") is not None or sel.get("entry_stop") is not None:
            first = sel.get("entry_start") or 0
            count = f"LIMIT {max(0, sel['entry_stop'] - first)} " if sel.get("entry_stop") is not None else ""
            sql_from = f"(SELECT * FROM {sql_from} {count}OFFSET {first})"  # the range, then the cut
        query = f"SELECT {select} FROM {sql_from}" + (f" WHERE {sel['where']}" if sel.get("where") else "")
        note = "# slices and file filters have no SQL form: use the Client or pyarrow.flight\n" \
            if sel.get("slices") or sel.get("files") or sel.get("channels") else ""
        adbc_auth = f',\n                        db_kwargs={{"username": {login!r}, "password": getpass.getpass()}}' \
            if self.auth_on else ""
        adbc = (f"{'import getpass' + chr(10) if self.auth_on else ''}import adbc_driver_flightsql.dbapi as flight_sql\n"
                f"import pandas as pd\n\n{note}"
                f"with flight_sql.connect({loc!r}{adbc_auth}) as conn:\n"
                f"    df = pd.read_sql({query!r}, conn)\n")
        base = f"{request.url.scheme}://{request.url.netloc}"
        query = {k: v for k, v in sel.items() if k in ("entry_start", "entry_stop", "where", "files")}
        if cols:
            query["columns"] = ",".join(cols)
        if sel.get("slices"):
            query["slices"] = request.query_params.get("slices", "")
        if sel.get("channels"):
            query["channels"] = ",".join(sel["channels"])
        url = f"{base}/api/data/{quote(name)}?" + urllib.parse.urlencode({**query, "format": "csv"})
        header = ' -H "Authorization: Bearer $ARROWROOT_TOKEN"' if self.auth_on else ""
        curl = f"curl -fsS{header} -o data.csv '{url}'\n"
        return {"arrowroot Client": client, "pyarrow.flight": pyflight, "ADBC / pandas (Flight SQL)": adbc,
                "curl (CSV; format=parquet|arrow|feather|hdf5)": curl}

    # ------------------------------------------------------------ plots

    def plot(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        name = request.path_params["name"]
        try:
            caller = self.caller(request)
            png = self._plot(kind, name, request.query_params, caller)
            return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=60"})
        except Exception as exc:
            record = record_of(request)
            record.status = status_of(exc).grpc
            f = data.failure(f"plot {name}", exc, record.request_id)
            return Response(plots.message_png(f.message), status_code=f.status, media_type="image/png")

    def _plot(self, kind: str, name: str, q: Any, caller: Caller) -> bytes:
        rec = data.dataset(self.service, caller, name)
        column = q.get("column") or ""
        schema = data.schema_of(rec)
        if column not in schema.names:
            raise InvalidRequest(f"column: {column[:60]!r} is not a column of {name!r}")
        if kind == "image":
            f = schema.field(column)
            shape = (rec.entries, *_shape(f))
            if len(shape) < 2:
                raise InvalidRequest(f"plane: column {column!r} has one value per entry; use a line or histogram")
            cut = plots.PlaneCut.parse(q.get("plane") or "", shape)
            req = {"dataset": name, "columns": [column], **cut.request(shape)}
            batches = data.read_batches(self.service, data.spec(req), caller)
            values = plots.plane_values(batches, column, cut, cut.entry_step(rec.entries))
            axes = [("entry" if i == 0 else f"axis {i}") for i, a in enumerate(cut.axes) if a is None]
            u = plots.units(f)
            title = f"{name} {column}[{','.join(':' if a is None else str(a) for a in cut.axes)}]" + (f" ({u})" if u else "")
            return plots.image(values, title, (axes[0], axes[1]), log=q.get("log") == "1")
        if kind not in ("hist", "line"):
            raise InvalidRequest(f"plot: {kind[:20]!r} is not one of hist, image, line")
        req = selection(name, q)
        req["columns"] = [column] + ([q["x"]] if kind == "line" and q.get("x") else [])
        if kind == "line" and not q.get("x"):
            req["with_entry_numbers"] = True
        p = data.plan(self.service, caller, data.spec(req))
        cap = self.options.plot_entries
        capped = p.entries > cap
        if capped:
            req["entry_start"], req["entry_stop"] = p.entry_start, p.entry_start + cap
            p = data.plan(self.service, caller, data.spec(req))
        where = f" where {req['where']}" if req.get("where") else ""
        span = f"entries {p.entry_start}–{p.entry_stop}" + (" (capped)" if capped else "")
        if kind == "hist":
            lo = _float(q, "lo")
            hi = _float(q, "hi")
            png, n = plots.histogram(data.read_batches(self.service, p, caller), column, _int(q, "bins") or 50,
                                     f"{name}{where}\n{span}", lo, hi, log=q.get("log") == "1")
            return png
        png, _ = plots.line(data.read_batches(self.service, p, caller), column, q.get("x") or None,
                            f"{name}{where}\n{span}")
        return png

    # ------------------------------------------------------------ login

    async def login_form(self, request: Request) -> Response:
        if self.sso is not None:
            return RedirectResponse("/login/sso?" + urllib.parse.urlencode(
                {"next": _safe_next(request.query_params.get("next"))}), 303)
        return self.render(request, None, "login.html", {"next": _safe_next(request.query_params.get("next")),
                                                         "error": None})

    def cross_site(self, request: Request) -> Response | None:
        """403 for a form posted from another site (login CSRF): browsers send Origin on POST."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != request.url.netloc:
            return self.render(request, None, "error.html", {"failure": data.Failure(
                403, "cross-site form post refused: log in from this server's own page", "permission_denied")}, 403)
        return None

    async def login(self, request: Request) -> Response:
        refused = self.cross_site(request)
        if refused is not None:
            return refused
        form = await request.form()
        user = str(form.get("username") or "")
        password = str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or "/"))
        try:
            token = await run_in_threadpool(self.auth.login, user, password)
        except Unauthenticated as exc:
            return self.render(request, None, "login.html", {"next": target, "error": str(exc).split(". Detail")[0]},
                               401)
        resp = RedirectResponse(target, 303)
        resp.set_cookie(COOKIE, token, max_age=int(self.auth.token_ttl), path="/", httponly=True,
                        secure=self.options.secure_cookie, samesite="lax")
        return resp

    async def logout(self, request: Request) -> Response:
        refused = self.cross_site(request)
        if refused is not None:
            return refused
        token = request.cookies.get(COOKIE)
        if token:
            self.auth.revoke_token(token)
        resp = RedirectResponse("/login" if self.auth_on else "/", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # ------------------------------------------------------------ API

    def api_datasets(self, request: Request) -> Response:
        caller = self.caller(request)
        crit = criteria(request.query_params)
        found = data.datasets(self.service, caller, crit)
        total = len(data.all_visible(self.service, caller)) if crit else len(found)
        return JSONResponse({"count": len(found), "total": total, "criteria": crit,
                             "datasets": [describe(d, full=False) for d in sorted(found, key=lambda d: d.name)]})

    def api_dataset(self, request: Request) -> Response:
        caller = self.caller(request)
        return JSONResponse(describe(data.dataset(self.service, caller, request.path_params["name"])))

    def api_health(self, request: Request) -> Response:
        caller = self.caller(request)
        return JSONResponse({"status": "ok", "version": __version__,
                             "datasets": len(data.all_visible(self.service, caller)),
                             "indexing": bool(self.service.ctx.indexer.running if self.service.ctx.indexer else False)})

    def api_openapi(self, request: Request) -> Response:
        return JSONResponse(openapi(__version__, list(FORMATS)))

    def api_data(self, request: Request) -> Response:
        caller = self.caller(request)
        name = request.path_params["name"]
        q = request.query_params
        fmt = get_format(q.get("format") or "arrow")
        plan = data.plan(self.service, caller, data.spec(selection(name, q)))
        limit = self.options.max_bytes
        if limit and plan.total_bytes > limit:
            raise TooLarge(f"the selection is about {plan.total_bytes / (1 << 20):.0f} MiB, over the server's "
                           f"limit of {limit / (1 << 20):.0f} MiB (--http-max-mb); select fewer columns or entries")
        record = record_of(request)
        gone = _disconnected(request)
        pieces = ahead(encode(fmt, plan.schema, data.read_batches(self.service, plan, caller, record, gone), limit,
                              object_name=name))
        first = next(pieces, b"")  # the first read happens here: its errors still get a JSON status
        filename = name.replace("/", "_").replace(":", "_") + fmt.suffix
        headers = {"content-disposition": f"attachment; filename=\"{filename}\"",
                   "x-arrowroot-rows": str(plan.total_records), "cache-control": "no-store"}

        def body() -> Iterator[bytes]:
            try:
                yield first
                yield from pieces
            except Exception as exc:  # headers are sent: the client sees a cut connection
                record.status = status_of(exc).grpc
                f = data.failure(f"http download {name}", exc, record.request_id)
                log.warning("http download %s aborted: %s", name, f.message)
                raise

        return StreamingResponse(body(), media_type=fmt.media_type, headers=headers)


def _float(q: Any, key: str) -> float | None:
    text = (q.get(key) or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise InvalidRequest(f"{key}: a number expected (got {text[:30]!r})") from None
    if not math.isfinite(v):
        raise InvalidRequest(f"{key}: a finite number expected")
    return v


def _safe_next(target: str | None) -> str:
    """Only paths on this site (no ``//host`` or scheme): the login cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _disconnected(request: Request) -> Callable[[], bool]:
    """A cheap "has the client gone?" for a streamed response's read path (checked between chunks)."""
    state = {"gone": False}

    def gone() -> bool:
        return state["gone"]

    request.scope["arrowroot.gone"] = state
    return gone


def create_app(service: Service, options: WebOptions | None = None) -> Any:
    """The ASGI app over one service (the HTTP door)."""
    web = Web(service, options or WebOptions())
    routes = [
        Route("/", web.page("index", web.index)),
        Route("/datasets/{name:path}", web.page("dataset", web.dataset_page)),
        Route("/plot/{kind}/{name:path}", web.plot),
        Route("/login", web.login_form, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        *([Route("/login/sso", web.sso.start), Route("/auth/callback", web.sso.callback)] if web.sso else []),
        Route("/api/openapi.json", web.api_openapi),
        Route("/api/health", web.api("health", web.api_health)),
        Route("/api/datasets", web.api("datasets", web.api_datasets)),
        Route("/api/datasets/{name:path}", web.api("dataset", web.api_dataset)),
        Route("/api/data/{name:path}", web.api("data", web.api_data)),
        Route("/api/follow/{name:path}", web.api("follow", lambda r: live.follow(  # live data (live.py)
            service, web.caller(r), r, selection(r.path_params["name"], r.query_params), record_of(r),
            _disconnected(r)))),
        Route("/metrics", metrics_page(service.ctx.metrics)),  # Prometheus (service/metrics.py)
    ]
    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"no such page: {request.url.path[:200]}; the API is described at /api/openapi.json"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not_found", "status": 404, "message": message}, 404)
        return Response(message, 404, media_type="text/plain; charset=utf-8")

    def table_handler(row_error: type) -> Callable:
        async def handler(request: Request, exc: Exception) -> Response:
            return web.json_error(f"{request.method} {request.url.path[:200]}", exc, record_of(request))
        return handler

    handlers: dict[Any, Callable] = {row.error: table_handler(row.error) for row in TABLE}  # one per error type
    handlers[404] = not_found
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.web = web
    metrics = service.ctx.metrics
    return _AccessLog(_SecurityHeaders(app), metrics.record if metrics is not None else None)


def metrics_page(metrics: Metrics | None) -> Callable:
    """``GET /metrics``: the server's registry in Prometheus' text format (counts only, no login)."""
    async def endpoint(request: Request) -> Response:
        if metrics is None:
            return Response("no metrics on this server", 404, media_type="text/plain; charset=utf-8")
        body = await run_in_threadpool(metrics.exposition)  # collectors may query the catalog
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return endpoint
