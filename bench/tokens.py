"""Bearer-token verification overhead (a script, not a test): OIDC JWTs and JupyterHub tokens
against an API key, from one run.

A real OpenID Connect provider (tests/identity: oidc-provider under Node.js) issues the JWT; a
real JupyterHub makes the hub token (skip it with --no-hub: the hub takes ~30 s to start). An
arrowroot server in this process serves a small sample directory. Printed:

1. per Flight call (GetSchema of one dataset, a call that reads no data), p50/p99 with each
   credential, and the ratio of each p50 to the API key's p50 (same run, same server);
2. the authentication step alone (``Authenticator.authenticate`` on the call's headers), p50 of each.

"cached JWKS": the issuer's keys are fetched once before timing; "verify each call" turns off
the verified-token cache, so every call checks the RS256 signature and the claims.

    python bench/tokens.py [--calls 2000] [--no-hub]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from identity_services import AUDIENCE, Hub, OidcProvider  # noqa: E402

from arrowroot.catalog import identities  # noqa: E402
from arrowroot.catalog.store import Catalog  # noqa: E402
from arrowroot.flight_server.cli.demo import write_sample_files  # noqa: E402
from arrowroot.flight_server.core.settings import Settings  # noqa: E402
from arrowroot.flight_server.server.flight import ArrowrootServer  # noqa: E402

EVENTS = "hep/events.root:events"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--no-hub", action="store_true", help="leave out the JupyterHub token")
    args = ap.parse_args()
    n = max(50, min(args.calls, 100_000))
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        provider = OidcProvider(tmp / "oidc").start()
        hub = None if args.no_hub else Hub(tmp / "hub").start()
        try:
            root = write_sample_files(tmp / "data", entries=1000)
            text = (f'[auth.oidc]\nissuer = "{provider.issuer}"\naudience = "{AUDIENCE}"\n'
                    'user_claim = "preferred_username"\n')
            if hub is not None:
                (tmp / "hub-token").write_text(hub.service_token)
                text += f'[auth.jupyterhub]\napi_url = "{hub.api_url}"\napi_token_file = "{tmp / "hub-token"}"\n'
            (root / "arrowroot.toml").write_text(text)
            cat = Catalog(tmp / "catalog.duckdb")
            identities.add_user(cat, "alice", "bench-password-1", ["/l200/analysis"])
            identities.grant(cat, "hep/*", "group:/l200/analysis")
            identities.add_group(cat, "l200-analysis")
            identities.grant(cat, "hep/*", "group:l200-analysis")
            _, key = identities.create_key(cat, "alice", "bench")
            server = ArrowrootServer(Settings(root=root, port=0), catalog=cat)
            server.indexer.run()
            threading.Thread(target=server.serve, daemon=True).start()
            creds = {"API key": key, "OIDC JWT": provider.token("alice-cli"),
                     "WLCG-scoped JWT": provider.token("alice-cli", scope="storage.read:/hep")}
            if hub is not None:
                creds["JupyterHub token"] = hub.user_token("alice", ["access:services!service=arrowroot"])[0]
            auth = server.ctx.auth
            oidc = auth.external.oidc
            desc = fl.FlightDescriptor.for_path(EVENTS)
            rows: list[tuple[str, float, float, float]] = []
            with fl.connect(f"grpc://127.0.0.1:{server.port}") as client:
                def flight_call(token: str) -> Callable[[], object]:
                    opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
                    return lambda: client.get_schema(desc, options=opts)

                def auth_only(token: str) -> Callable[[], object]:
                    values = [f"Bearer {token}"]
                    return lambda: auth.authenticate(values)

                cases = list(creds.items())
                cases.insert(2, ("OIDC JWT, verify each call", creds["OIDC JWT"]))
                calls: dict[str, list[float]] = {label: [] for label, _ in cases}
                fns = [(label, flight_call(token), "each call" not in label) for label, token in cases]
                for _ in range(n):  # interleaved, so drift in the machine's load hits every credential alike
                    for label, fn, cache in fns:
                        oidc.cache = cache
                        t0 = time.perf_counter()
                        fn()
                        calls[label].append(time.perf_counter() - t0)
                for label, token in cases:
                    oidc.cache = "each call" not in label
                    oidc._seen.clear()
                    alone = timed(auth_only(token), n)
                    c = calls[label][10:]
                    rows.append((label, statistics.median(c), pct(c, 0.99), statistics.median(alone)))
            server.shutdown()
            cat.close()
        finally:
            provider.stop()
            if hub is not None:
                hub.stop()
    base_call, base_auth = rows[0][1], rows[0][3]
    print(f"token verification overhead: {n} GetSchema calls per credential, one server, cached JWKS")
    print(f"{'credential':30} {'call p50 µs':>12} {'call p99 µs':>12} {'÷ API key':>10} {'auth p50 µs':>12} {'÷ API key':>10}")
    for label, p50, p99, auth in rows:
        print(f"{label:30} {p50 * 1e6:12.0f} {p99 * 1e6:12.0f} {p50 / base_call:10.2f} {auth * 1e6:12.1f} "
              f"{auth / base_auth:10.2f}")


if __name__ == "__main__":
    main()
