"""The `arrowroot` command line: serve, node, index, settings, ls, schema, get, sql, admin, demo."""

import os

# gRPC (inside pyarrow) logs its own start-up failures — "E0000 ... add_port.cc" lines and absl's
# "before absl::InitializeLog()" notice — before our one-line message says the same with the fix.
# It reads this when pyarrow.flight loads, so it is set before anything imports pyarrow; a user's
# own GRPC_VERBOSITY (e.g. DEBUG) still wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from arrowroot.flight_server.cli.main import main  # noqa: E402

__all__ = ["main"]
