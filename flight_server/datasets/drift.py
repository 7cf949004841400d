"""One short line for a multi-file dataset's schema drift (``derive.py`` records the details in
the dataset's ``schema_drift`` attribute: the log, ``arrowroot index`` and ``action rescan`` show
this line; ``arrowroot ls --errors``, the web page and ``--json`` show the details)."""

from __future__ import annotations

from typing import Any

SHOWN = 3   # column names named per kind of drift; the rest are counted


def _names(columns: Any) -> str:
    names = list(columns)
    shown = ", ".join(names[:SHOWN])
    return shown + (f" +{len(names) - SHOWN} more" if len(names) > SHOWN else "")


def summary(drift: dict[str, Any]) -> str:
    """'3 columns missing from some files (a, b, c), 1 widened (x), 1 with conflicting types (y)'."""
    out = []
    missing, widened, conflicts = drift.get("missing") or {}, drift.get("widened") or {}, drift.get("conflicts") or {}
    if missing:
        out.append(f"{len(missing)} column{'s' * (len(missing) != 1)} missing from some files ({_names(missing)})")
    if widened:
        out.append(f"{len(widened)} widened ({_names(widened)})")
    if conflicts:
        out.append(f"{len(conflicts)} with conflicting types, unreadable ({_names(conflicts)})")
    return ", ".join(out) or "none"
