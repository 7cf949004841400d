"""Command-line flags that fill ``Settings`` fields, and the README's settings table built from them.

A flag made with :func:`setting` has no default of its own (click gives None when it is not
typed), so the environment, ``arrowroot.toml`` and the ``Settings`` default below it count; its
help shows the ``Settings`` default. Every command builds its settings with :func:`load_settings`.

    arrowroot settings --markdown      # the README's settings table (tests/test_settings.py compares)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from arrowroot.flight_server.core import settings as config

LOCATION_KEY = "arrowroot.location"
URL_ENV = "ARROWROOT_URL"   # the server the client commands talk to (as the examples and JupyterLab use it)
DEFAULT_LOCATION = f"grpc://{config.default('host')}:{config.default('port')}"
TABLE_BEGIN = "<!-- settings table: `arrowroot settings --markdown` prints it; edit core/settings.py -->"
TABLE_END = "<!-- end of settings table -->"


class SettingOption(click.Option):
    """A flag that fills the ``Settings`` field ``setting`` (its value times ``scale``)."""

    def __init__(self, *args: Any, setting: str, scale: int = 1, **kwargs: Any) -> None:
        self.setting = setting
        self.scale = scale
        super().__init__(*args, **kwargs)


def _shown_default(name: str, scale: int) -> str:
    value = config.default(name)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if scale != 1:
        value = value / scale
        value = int(value) if value == int(value) else value
    return str(value)


def setting(*decls: str, setting: str, scale: int = 1, help: str = "", **kwargs: Any) -> Callable:
    """``click.option`` for a settings field; the command receives it as keyword ``setting``."""
    shown = _shown_default(setting, scale)
    if shown and not kwargs.get("is_flag") and "/" not in decls[0]:
        help = f"{help} [{shown}]"

    def scaled(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or scale == 1:
            return value
        return int(value * scale)

    return click.option(*decls, setting, cls=SettingOption, setting=setting, scale=scale, default=None,
                        callback=scaled, help=help, **kwargs)


def _remember(ctx: click.Context, param: click.Parameter, value: str) -> str:
    ctx.meta[LOCATION_KEY] = value   # for the hints of cli/failures.py
    return value


def location_option(fn: Callable) -> Callable:
    """``-l/--location``: the server a client command talks to ($ARROWROOT_URL, else the default)."""
    return click.option("-l", "--location", envvar=URL_ENV, default=DEFAULT_LOCATION, show_default=True,
                        callback=_remember, help=f"Server to ask [or ${URL_ENV}].")(fn)


def load_settings(directory: Path | str, flags: Mapping[str, Any]) -> config.Settings:
    """Flags > environment > ``DIR/arrowroot.toml`` [server] > defaults (ValueError names the bad one)."""
    return config.load(directory, {k: v for k, v in flags.items() if k in config.FIELDS})


# ---------------------------------------------------------------- the README table


def _walk(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in sorted(group.commands):
        cmd = group.commands[name]
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, f"{prefix}{name} ")


def flags_by_setting(group: click.Group) -> dict[str, dict[str, list[str]]]:
    """setting → flag spelling → the commands that take it."""
    out: dict[str, dict[str, list[str]]] = {}
    for path, cmd in _walk(group):
        for p in cmd.params:
            if isinstance(p, SettingOption):
                spelled = "/".join(p.opts + p.secondary_opts)
                out.setdefault(p.setting, {}).setdefault(spelled, []).append(path)
    return out


def _default_text(name: str) -> str:
    value = config.default(name)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int) and value >= config.MiB and value % config.MiB == 0:
        unit, size = ("GiB", config.GiB) if value % config.GiB == 0 else ("MiB", config.MiB)
        return f"{value} ({value // size} {unit})"
    return str(value)


def _commands_text(commands: list[str]) -> str:
    admin = [c for c in commands if c.split()[0] not in ("serve", "node", "index", "settings")]
    named = [c for c in commands if c not in admin and c != "settings"]
    return ", ".join(named + (["admin commands"] if admin else []))


def settings_table(group: click.Group) -> str:
    """The Markdown table of every setting: key, variable, flags, default, meaning."""
    flags = flags_by_setting(group)
    rows = ["| `[server]` key | environment | flag (commands) | default | meaning |",
            "| --- | --- | --- | --- | --- |"]
    for name in config.FIELDS:
        spelled = "; ".join(f"`{f}` ({_commands_text(cmds)})" for f, cmds in flags.get(name, {}).items()) or "—"
        meaning = config.doc(name).replace("|", "\\|")
        rows.append(f"| `{name}` | `{config.env_name(name)}` | {spelled} | {_default_text(name)} | {meaning} |")
    return "\n".join(rows)


def readme_block(group: click.Group) -> str:
    """The table between its markers, as the README holds it."""
    return f"{TABLE_BEGIN}\n{settings_table(group)}\n{TABLE_END}"
