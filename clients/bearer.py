"""Finding the bearer token a user already has, so ``Client()`` needs no pasted secret.

The order is the WLCG Bearer Token Discovery rules, then JupyterHub:

1. ``$BEARER_TOKEN`` (the token itself);
2. ``$BEARER_TOKEN_FILE`` (a file holding it);
3. ``$XDG_RUNTIME_DIR/bt_u<uid>``;
4. ``/tmp/bt_u<uid>`` (where ``htgettoken`` and ``oidc-agent`` tools put it);
5. ``$JUPYTERHUB_API_TOKEN``: inside a JupyterHub single-user server, the hub user's token.

Surrounding whitespace is stripped (as the rules say); an empty or unreadable file is skipped
with the next source tried. The token text is never printed; :func:`find_token` reports only
where it was found.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["find_token", "read_token_file"]

MAX_TOKEN_BYTES = 64 * 1024


def read_token_file(path: str | os.PathLike) -> str:
    """The token in ``path`` (whitespace stripped); ValueError when it is empty or too large."""
    p = Path(path).expanduser()
    with open(p, "rb") as f:
        data = f.read(MAX_TOKEN_BYTES + 1)
    if len(data) > MAX_TOKEN_BYTES:
        raise ValueError(f"token file {p}: larger than {MAX_TOKEN_BYTES} bytes, not a token")
    token = data.decode("utf-8", "strict").strip()
    if not token:
        raise ValueError(f"token file {p}: empty")
    return token


def find_token(environ: Mapping[str, str] | None = None, uid: int | None = None) -> tuple[str, str] | None:
    """(token, where it came from) by the discovery order above, or None."""
    env = os.environ if environ is None else environ
    if env.get("BEARER_TOKEN", "").strip():
        return env["BEARER_TOKEN"].strip(), "$BEARER_TOKEN"
    uid = (os.getuid() if hasattr(os, "getuid") else 0) if uid is None else uid
    files: list[tuple[str, str]] = []
    if env.get("BEARER_TOKEN_FILE"):
        files.append((env["BEARER_TOKEN_FILE"], "$BEARER_TOKEN_FILE"))
    if env.get("XDG_RUNTIME_DIR"):
        files.append((os.path.join(env["XDG_RUNTIME_DIR"], f"bt_u{uid}"), f"$XDG_RUNTIME_DIR/bt_u{uid}"))
    files.append((f"/tmp/bt_u{uid}", f"/tmp/bt_u{uid}"))
    for path, where in files:
        try:
            return read_token_file(path), where
        except (OSError, ValueError):
            continue
    if env.get("JUPYTERHUB_API_TOKEN", "").strip():
        return env["JUPYTERHUB_API_TOKEN"].strip(), "$JUPYTERHUB_API_TOKEN"
    return None
