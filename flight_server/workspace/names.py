"""Workspace dataset names: ``home/<owner>/<name>[/<name>...]``.

A name's second segment is its owner; only the owner may write, delete or rename it, and
nobody else sees it until a grant whose pattern starts with ``home/`` says so. Workspace
names never contain ``:``, so they cannot collide with a file's dataset (``path:object``).
"""

from __future__ import annotations

import re

from arrowroot.flight_server.core.errors import InvalidRequest

HOME = "home"
LOCAL_USER = "local"          # the owner when authentication is off (single-user mode)
MAX_SEGMENTS = 8
MAX_NAME = 512
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class InvalidName(InvalidRequest):
    """Not a workspace name; the message says what one looks like."""


def is_workspace(name: str) -> bool:
    return isinstance(name, str) and name.startswith(HOME + "/") and ":" not in name


def owner_of(name: str) -> str | None:
    """The owner of a workspace name, None for any other dataset name."""
    if not is_workspace(name):
        return None
    parts = name.split("/")
    return parts[1] if len(parts) >= 3 else None


def check(name: str, what: str = "dataset") -> str:
    """``name`` if it is a well-formed workspace name; InvalidName otherwise."""
    example = f"e.g. '{HOME}/alice/higgs'"
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what}: a name in your home namespace is required ({example})")
    if len(name) > MAX_NAME:
        raise InvalidName(f"{what}: at most {MAX_NAME} characters")
    parts = name.split("/")
    if parts[0] != HOME or len(parts) < 3:
        raise InvalidName(f"{what} {name!r}: workspace datasets live under '{HOME}/<user>/' ({example})")
    if len(parts) > MAX_SEGMENTS + 2:
        raise InvalidName(f"{what} {name!r}: at most {MAX_SEGMENTS} segments after '{HOME}/<user>/'")
    if not _OWNER.match(parts[1]):
        raise InvalidName(f"{what} {name!r}: {parts[1]!r} is not a user name")
    for seg in parts[2:]:
        if not _SEGMENT.match(seg):
            raise InvalidName(f"{what} {name!r}: segment {seg!r} must be 1-128 letters, digits, '.', '_' or '-' "
                              "(starting with a letter or digit)")
    return name


def home_of(user: str) -> str:
    return f"{HOME}/{user}/"
