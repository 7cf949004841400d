"""The `arrowroot` command line: serve, node, index, ls, schema, get, sql, admin, demo."""

from arrowroot.flight_server.cli.main import main

__all__ = ["main"]
