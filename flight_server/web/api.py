"""The JSON/Arrow HTTP API: ``/api/datasets`` (search), ``/api/datasets/NAME`` (one dataset),
``/api/data/NAME`` (the rows, streamed in any export format), ``/api/health``,
``/api/openapi.json``. Views' JSON is ``views.py``'s."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from arrowroot.flight_server import __version__
from arrowroot.flight_server.core.errors import ArrowrootError, InvalidRequest
from arrowroot.flight_server.export.formats import FORMATS, TooLarge, encode, get_format
from arrowroot.flight_server.service.caller import Caller
from arrowroot.flight_server.service.errors import status_of
from arrowroot.flight_server.web import data
from arrowroot.flight_server.web.door import Door
from arrowroot.flight_server.web.connections import ABORT_KEY
from arrowroot.flight_server.web.middleware import CLEANUP, disconnected, record_of
from arrowroot.flight_server.web.openapi import openapi
from arrowroot.flight_server.web.present import describe
from arrowroot.flight_server.web.query import criteria, selection

log = logging.getLogger("arrowroot.http")
COMPRESSIONS = ("", "none", "lz4", "zstd")
SMALL_READ_BYTES = 1 << 20  # planned bytes up to which a download is made whole in its first pool job


def series_of(rec: object) -> dict | None:
    series = getattr(rec, "attributes", {}).get("timeseries")
    return series if isinstance(series, dict) else None


class Api:
    def __init__(self, door: Door):
        self.door = door
        self._health_count: tuple[int, int] | None = None  # (catalog generation, datasets) for probes

    def datasets(self, request: Request) -> Response:
        """list_flights criteria, and ``q``: the search box's words (or a glob), best match first."""
        door = self.door
        caller = door.caller(request)
        q = request.query_params
        crit = criteria(q)
        text = (q.get("q") or "").strip()
        found = data.find(door.service, caller, text, crit) if text else \
            sorted(data.datasets(door.service, caller, crit), key=lambda d: d.name)
        total = len(data.all_visible(door.service, caller)) if crit or text else len(found)
        return JSONResponse({"count": len(found), "total": total, "criteria": crit, "q": text,
                             "datasets": [describe(d, full=False) for d in found]})

    def dataset(self, request: Request) -> Response:
        caller = self.door.caller(request)
        return JSONResponse(describe(data.dataset(self.door.service, caller, request.path_params["name"])))

    async def health(self, request: Request) -> Response:
        """Liveness for probes and load balancers, answered on the event loop when it can be:
        an anonymous probe (no credentials: nothing to verify) while the catalog has not changed
        since the last count. Anything else (a login to check, a catalog query) runs in a thread,
        never in the bounded pool: a probe must not queue behind downloads (≤ 100 ms under load).
        Probes need no login even when authentication is on: they are told only how many datasets
        are public; a caller who sends credentials gets them checked and their own count."""
        catalog = self.door.service.ctx.catalog
        generation = catalog.generation if catalog is not None else -1
        anonymous = self.door.anonymous(request)
        if anonymous and self._health_count is not None and self._health_count[0] == generation:
            count = self._health_count[1]
        else:
            count = await run_in_threadpool(self._count_visible, request, anonymous)
            if anonymous:
                self._health_count = (generation, count)
        indexer = self.door.service.ctx.indexer
        return JSONResponse({"status": "ok", "version": __version__, "datasets": count,
                             "indexing": bool(indexer.running if indexer else False)})

    def _count_visible(self, request: Request, anonymous: bool) -> int:
        caller = Caller(door="http") if anonymous else self.door.caller(request)
        return len(data.all_visible(self.door.service, caller))

    def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi(__version__, list(FORMATS)))

    async def data(self, request: Request) -> Response:
        """A download: planned and its first piece made in the bounded pool (so its errors still
        get a JSON status), then each further piece made there while the client reads. A client
        that goes away stops the read within a chunk; one that stops reading has its connection
        cut by the read path's idle timeout; both free their stream slot."""
        door = self.door
        name = request.path_params["name"]
        record = record_of(request)
        try:
            fmt, plan, pieces, first = await door.workers.run(self._start_download, request)
        except ArrowrootError:
            raise
        except Exception as exc:
            return door.json_error("data", exc, record)
        filename = name.replace("/", "_").replace(":", "_") + fmt.suffix
        headers = {"content-disposition": f"attachment; filename=\"{filename}\"",
                   "x-arrowroot-rows": str(plan.total_records), "cache-control": "no-store"}
        if isinstance(pieces, list):  # a small read, made whole in its first job
            return Response(first + b"".join(pieces), media_type=fmt.media_type, headers=headers)
        rest = door.workers.iterate(pieces)
        request.scope.setdefault(CLEANUP, []).append(rest.aclose)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield first
                async for piece in rest:
                    yield piece
            except Exception as exc:  # headers are sent: the client sees a cut connection
                record.status = status_of(exc).grpc
                f = data.failure(f"http download {name}", exc, record.request_id)
                log.warning("http download %s aborted: %s", name, f.message)
                raise

        return StreamingResponse(body(), media_type=fmt.media_type, headers=headers)

    def _start_download(self, request: Request) -> tuple[Any, Any, Iterator[bytes], bytes]:
        door = self.door
        caller = door.caller(request)
        name = request.path_params["name"]
        q = request.query_params
        fmt = get_format(q.get("format") or "arrow")
        compression = (q.get("compression") or "").strip().lower()
        if compression not in COMPRESSIONS:
            raise InvalidRequest(f"compression: one of lz4, zstd, none (got {compression[:20]!r})")
        if compression not in ("", "none") and fmt.name not in ("arrow", "feather"):
            raise InvalidRequest(f"compression: for arrow and feather downloads only ({fmt.name} has its own)")
        sel = selection(name, q, series_of(data.dataset(door.service, caller, name)) if q.get("time_last") else None)
        plan = data.plan(door.service, caller, data.spec(sel))
        limit = door.options.max_bytes
        if limit and plan.total_bytes > limit:
            raise TooLarge(f"the selection is about {plan.total_bytes / (1 << 20):.0f} MiB, over the server's "
                           f"limit of {limit / (1 << 20):.0f} MiB (--http-max-mb); select fewer columns or entries")
        batches = data.read_batches(door.service, plan, caller, record_of(request), disconnected(request),
                                    request.scope.get(ABORT_KEY))
        pieces = encode(fmt, plan.schema, batches, limit, object_name=name,
                        compression="" if compression == "none" else compression)
        try:
            first = next(pieces, b"")  # the first read happens here: its errors still get a JSON status
            if 0 <= plan.total_bytes <= SMALL_READ_BYTES:
                # a few rows: the rest now, in this job, so the stream slot is freed at once and the
                # answer costs one pool job, not one per piece plus the end (under load each job waits)
                return fmt, plan, list(pieces), first
        except BaseException:
            pieces.close()
            raise
        return fmt, plan, pieces, first
