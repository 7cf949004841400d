"""``arrowroot users|groups|keys|grant|revoke|grants``: identities and grants in a served
directory's catalog, plus the ``serve`` options for authentication and TLS.

They write the catalog file directly when no server holds it. While ``arrowroot serve`` runs
(DuckDB lets one process write the file), they hand the same operation to that server over its
local admin socket (``server/admin_socket.py``): only the server's OS user (or root) may, and the
change takes effect at once, without a restart. The catalog file is found like every setting: --catalog >
$ARROWROOT_CATALOG > ``DIR/arrowroot.toml`` [server] catalog > DIR/.arrowroot/catalog.duckdb. Passwords are read with a hidden
prompt, or one line from stdin with ``--password-stdin`` (scripts); never from an argument, where
they would land in the shell history and ``ps``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from arrowroot.flight_server.cli.options import load_settings, setting

DIR = click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
CATALOG = setting("--catalog", setting="catalog", type=click.Path(path_type=Path),
                  help="DuckDB catalog file [DIR/.arrowroot/catalog.duckdb].")
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")


WRITES_THAT_NEED_AUTH = {"add_user", "add_group", "create_key", "grant"}


def _admin(directory: Path, catalog: Path | None, op: str, **args: Any) -> Any:
    """Run one operation of ``service/admin.py`` on DIR's catalog: directly, or through the
    running server that holds the file. Every failure ends in one line with the fix."""
    import duckdb

    from arrowroot.catalog.errors import CatalogError, CatalogInUse
    from arrowroot.catalog.store import Catalog
    from arrowroot.flight_server.core.errors import ArrowrootError
    from arrowroot.flight_server.server import admin_socket
    from arrowroot.flight_server.service import admin

    try:
        path = load_settings(directory, {"catalog": catalog}).catalog_path
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        cat = Catalog(path)
    except CatalogInUse:
        try:
            result, auth_on = admin_socket.call(path, op, args)
        except admin_socket.AdminRefused as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(
                f"{path} is held by another process and no arrowroot server answers on its admin socket "
                f"({exc}): run this as the user of the `arrowroot serve` that holds it, or stop that "
                "process first") from None
        if not auth_on and op in WRITES_THAT_NEED_AUTH:
            click.echo("note: the running server was started without authentication, so it does not ask "
                       "for logins yet; restart it (or start it with --auth) for this to take effect", err=True)
        return result
    except duckdb.Error as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    except RuntimeError as exc:  # store.py's own message for an incompatible catalog
        raise click.ClickException(str(exc)) from None
    try:
        return admin.run(cat, op, args)
    except (ArrowrootError, CatalogError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()


def _password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise click.ClickException("--password-stdin: got an empty line")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds")


_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")


def _expires(text: str | None) -> float | None:
    """'90d', '12h', '3600' (seconds) → an absolute expiry time."""
    import time

    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter("use a duration such as 3600, 12h, 30d or 4w", param_hint="--expires")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return time.time() + int(m.group(1)) * unit


# ---------------------------------------------------------------- users


@click.group()
def users() -> None:
    """Users who log in with a password (stored as an scrypt hash)."""


@users.command("add")
@DIR
@click.argument("name")
@click.option("-g", "--group", "groups", multiple=True, help="Also join this group (repeatable).")
@PASSWORD_STDIN
@CATALOG
def users_add(directory: Path, name: str, groups: tuple[str, ...], password_stdin: bool, catalog: Path | None) -> None:
    """Add user NAME to DIR's catalog."""
    password = _password(password_stdin)
    _admin(directory, catalog, "add_user", name=name, password=password, groups=list(groups))
    click.echo(f"added user {name}" + (f" (groups: {', '.join(groups)})" if groups else ""))


@users.command("passwd")
@DIR
@click.argument("name")
@PASSWORD_STDIN
@CATALOG
def users_passwd(directory: Path, name: str, password_stdin: bool, catalog: Path | None) -> None:
    """Change NAME's password (their login tokens stop working)."""
    password = _password(password_stdin)
    _admin(directory, catalog, "set_password", name=name, password=password)
    click.echo(f"changed the password of {name}")


@users.command("remove")
@DIR
@click.argument("name")
@CATALOG
def users_remove(directory: Path, name: str, catalog: Path | None) -> None:
    """Remove NAME with their group memberships, API keys and personal grants."""
    _admin(directory, catalog, "remove_user", name=name)
    click.echo(f"removed user {name}")


@users.command("list")
@DIR
@CATALOG
def users_list(directory: Path, catalog: Path | None) -> None:
    """List users, their groups and number of valid API keys."""
    for u in _admin(directory, catalog, "list_users"):
        click.echo(f"{u['name']}\tgroups={','.join(u['groups']) or '-'}\tkeys={u['keys']}\t"
                   f"since {_when(u['created_at'])}")


# ---------------------------------------------------------------- groups


@click.group()
def groups() -> None:
    """Groups of users, the usual grantee of a collaboration's data."""


@groups.command("add")
@DIR
@click.argument("group")
@click.argument("members", nargs=-1)
@CATALOG
def groups_add(directory: Path, group: str, members: tuple[str, ...], catalog: Path | None) -> None:
    """Create GROUP if needed and add MEMBERS (existing users) to it."""
    _admin(directory, catalog, "add_group", group=group, members=list(members))
    click.echo(f"group {group}" + (f": added {', '.join(members)}" if members else ""))


@groups.command("remove")
@DIR
@click.argument("group")
@click.argument("members", nargs=-1)
@CATALOG
def groups_remove(directory: Path, group: str, members: tuple[str, ...], catalog: Path | None) -> None:
    """Remove MEMBERS from GROUP, or without MEMBERS the group itself and its grants."""
    _admin(directory, catalog, "remove_group", group=group, members=list(members))
    click.echo(f"group {group}: removed {', '.join(members)}" if members else f"removed group {group}")


@groups.command("members")
@DIR
@click.argument("group", required=False)
@CATALOG
def groups_members(directory: Path, group: str | None, catalog: Path | None) -> None:
    """List the members of GROUP (or of every group)."""
    for g, members in _admin(directory, catalog, "group_members", group=group).items():
        click.echo(f"{g}\t{', '.join(members) or '-'}")


# ---------------------------------------------------------------- API keys


@click.group()
def keys() -> None:
    """API keys: long random tokens for scripts and ADBC (sent as 'authorization: Bearer KEY')."""


@keys.command("create")
@DIR
@click.argument("user")
@click.option("--label", default="", help="What the key is for (shown by `keys list`).")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h, 4w [never].")
@CATALOG
def keys_create(directory: Path, user: str, label: str, expires: str | None, catalog: Path | None) -> None:
    """Create an API key for USER and print it once (only its hash is kept)."""
    expires_at = _expires(expires)
    key_id, token = _admin(directory, catalog, "create_key", user=user, label=label, expires_at=expires_at)
    click.echo(f"key {key_id} for {user}, expires {_when(expires_at)}; store it now, it is not shown again:",
               err=True)
    click.echo(token)


@keys.command("revoke")
@DIR
@click.argument("key_id")
@CATALOG
def keys_revoke(directory: Path, key_id: str, catalog: Path | None) -> None:
    """Revoke the API key KEY_ID."""
    _admin(directory, catalog, "revoke_key", key_id=key_id)
    click.echo(f"revoked key {key_id}")


@keys.command("list")
@DIR
@click.argument("user", required=False)
@CATALOG
def keys_list(directory: Path, user: str | None, catalog: Path | None) -> None:
    """List API keys (ids, owners, labels, dates, state; never the keys)."""
    for k in _admin(directory, catalog, "list_keys", user=user):
        click.echo(f"{k['key_id']}\t{k['user']}\t{k['state']}\texpires {_when(k['expires_at'])}\t"
                   f"{k['label'] or '-'}")


# ---------------------------------------------------------------- grants


TO = click.option("--to", "grantees", multiple=True, required=True,
                  help="user:NAME, group:NAME or public (repeatable).")


@click.command("grant")
@DIR
@click.argument("pattern")
@TO
@click.option("--permission", type=click.Choice(["read", "admin"]), default="read", show_default=True,
              help="admin: may run server operations (rescan); PATTERN is then not used (give '*').")
@CATALOG
def grant(directory: Path, pattern: str, grantees: tuple[str, ...], permission: str, catalog: Path | None) -> None:
    """Let grantees read the datasets whose names match PATTERN (a shell glob, e.g. 'cms/*')."""
    for to in grantees:
        added = _admin(directory, catalog, "grant", pattern=pattern, to=to, permission=permission)
        click.echo(f"{'granted' if added else 'already granted'}: {permission} {pattern} to {to}")


@click.command("revoke")
@DIR
@click.argument("pattern")
@TO
@CATALOG
def revoke(directory: Path, pattern: str, grantees: tuple[str, ...], catalog: Path | None) -> None:
    """Remove the read grant of PATTERN from the grantees."""
    for to in grantees:
        _admin(directory, catalog, "revoke", pattern=pattern, to=to)
        click.echo(f"revoked: read {pattern} from {to}")


@click.command("grants")
@DIR
@CATALOG
def grants(directory: Path, catalog: Path | None) -> None:
    """List the read grants and the datasets each one matches now."""
    for g in _admin(directory, catalog, "grants"):
        click.echo(f"{g['permission']}\t{g['pattern']}\t{g['to']}\t({g['datasets']} datasets now)")


# ---------------------------------------------------------------- serve options


def serve_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --auth/--no-auth and the TLS options to ``serve``; configuration errors become CLI errors.

    The options arrive as keyword arguments named like the ``Settings`` fields they fill.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from arrowroot.flight_server.server.auth import AuthConfigError

        try:
            return fn(*args, **kwargs)
        except AuthConfigError as exc:
            raise click.ClickException(str(exc)) from None

    options = [
        setting("--auth/--no-auth", setting="auth",
                help="Require credentials [on when the catalog has users or grants]; "
                     "--auth refuses to start without any."),
        setting("--token-ttl", setting="token_ttl", type=click.FloatRange(min=1),
                help="Seconds a login token stays valid."),
        setting("--tls-cert", setting="tls_cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM server certificate (chain): serve grpc+tls://."),
        setting("--tls-key", setting="tls_key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM private key of --tls-cert."),
        setting("--tls-client-ca", setting="tls_client_ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="PEM CA: clients must present a certificate it signed (mutual TLS)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def client_credentials() -> dict[str, Any]:
    """Client arguments for the CLI's own client commands, from the environment, so secrets stay
    out of argv: ARROWROOT_TOKEN (login token or API key), or ARROWROOT_USER + ARROWROOT_PASSWORD;
    ARROWROOT_TLS_CA (PEM file) to trust a private CA on grpc+tls://."""
    import os

    out: dict[str, Any] = {}
    if os.environ.get("ARROWROOT_TOKEN"):
        out["token"] = os.environ["ARROWROOT_TOKEN"]
    elif os.environ.get("ARROWROOT_USER"):
        out["username"] = os.environ["ARROWROOT_USER"]
        out["password"] = os.environ.get("ARROWROOT_PASSWORD", "")
    if os.environ.get("ARROWROOT_TLS_CA"):
        out["tls_root_certs"] = Path(os.environ["ARROWROOT_TLS_CA"]).read_bytes()
    return out


groups.add_command(groups_members, "list")  # `users list`, `keys list`, and so `groups list` too


def register(main: click.Group) -> None:
    """Add the identity commands to the ``arrowroot`` command group."""
    for command in (users, groups, keys, grant, revoke, grants):
        main.add_command(command)
