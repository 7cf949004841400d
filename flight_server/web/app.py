"""The HTTP door: a Starlette app over one service — the routes, the error handlers (one per
error type of the one table) and the middleware. Each room does one job:

    pages.py     /  and  /datasets/NAME           HTML (server-side; usable without JavaScript)
    views.py     /api/view/NAME, /plot/VIEW/NAME  each view's numbers as JSON, or as a PNG
    api.py       /api/datasets, /api/data, ...    the JSON/Arrow API
    live.py      /api/follow/NAME                  live data: a follow stream as SSE or Arrow IPC
    login.py     /login, /logout                   the browser session (sso.py: an outside issuer's login)
    door.py      who is calling, error boundaries, rendering
    middleware   one access-log line per request (also feeding /metrics), security headers
    static/      the page's JavaScript (arrowroot.js) and the vendored uPlot

Everything reaches the service layer through ``data.py``: the same access rules, planner, read
path and error messages as every other door.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from arrowroot.flight_server.service.errors import TABLE
from arrowroot.flight_server.service.metrics import CONTENT_TYPE_LATEST, Metrics
from arrowroot.flight_server.service.service import Service
from arrowroot.flight_server.web.api import Api
from arrowroot.flight_server.web import live
from arrowroot.flight_server.web.door import Door, WebOptions
from arrowroot.flight_server.web.login import Login
from arrowroot.flight_server.web.middleware import AccessLog, SecurityHeaders, record_of
from arrowroot.flight_server.web.pages import Pages
from arrowroot.flight_server.web.views import Views

STATIC = Path(__file__).parent / "static"


def create_app(service: Service, options: WebOptions | None = None) -> Any:
    """The ASGI app over one service (the HTTP door)."""
    door = Door(service, options or WebOptions())
    pages, api, login, views = Pages(door), Api(door), Login(door), Views(door)
    routes = [
        Route("/", door.page("index", pages.index)),
        Route("/datasets/{name:path}", door.page("dataset", pages.dataset)),
        Route("/plot/{kind}/{name:path}", door.heavy(views.png)),
        Route("/login", login.form, methods=["GET"]),
        Route("/login", login.login, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        *([Route("/login/sso", door.sso.start), Route("/auth/callback", door.sso.callback)] if door.sso else []),
        Route("/api/openapi.json", api.openapi),
        Route("/api/health", door.api("health", api.health, light=True)),  # outside the pool
        Route("/api/datasets", door.api("datasets", api.datasets)),
        Route("/api/datasets/{name:path}", door.api("dataset", api.dataset)),
        Route("/api/data/{name:path}", api.data),  # its pieces in the pool (api.py)
        Route("/api/view/{name:path}", door.api("view", views.json)),
        Route("/api/follow/{name:path}", door.api("follow", live.endpoint(door))),
        Route("/metrics", metrics_page(service.ctx.metrics)),  # Prometheus (service/metrics.py)
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        message = f"no such page: {request.url.path[:200]}; the API is described at /api/openapi.json"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not_found", "status": 404, "message": message}, 404)
        return Response(message, 404, media_type="text/plain; charset=utf-8")

    def table_handler(row_error: type) -> Callable:
        async def handler(request: Request, exc: Exception) -> Response:
            return door.json_error(f"{request.method} {request.url.path[:200]}", exc, record_of(request))
        return handler

    handlers: dict[Any, Callable] = {row.error: table_handler(row.error) for row in TABLE}  # one per error type
    handlers[404] = not_found
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.door = door
    metrics = service.ctx.metrics
    return AccessLog(SecurityHeaders(app), metrics.record if metrics is not None else None)


def metrics_page(metrics: Metrics | None) -> Callable:
    """``GET /metrics``: the server's registry in Prometheus' text format (counts only, no login)."""
    async def endpoint(request: Request) -> Response:
        if metrics is None:
            return Response("no metrics on this server", 404, media_type="text/plain; charset=utf-8")
        body = await run_in_threadpool(metrics.exposition)  # collectors may query the catalog
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return endpoint


__all__ = ["create_app", "WebOptions"]
