"""Browser view and HTTP API (``arrowroot serve DIR --http PORT``): see app.py."""

from arrowroot.flight_server.web.server import WebServer

__all__ = ["WebServer"]
