"""``arrowroot.toml``: the datasets a site declares over many files (see ``datasets/__init__``),
and the attribute names multi-file datasets carry in the catalog."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from arrowroot.flight_server.core.settings import CONFIG_NAME, SECTION
from arrowroot.flight_server.lang import filekeys
from arrowroot.flight_server.core.errors import InvalidRequest

ATTR_MISSING = "arrowroot.missing"        # column → member names ("path:object") lacking it
ATTR_FINGERPRINT = "arrowroot.fingerprint"
ATTR_KEYS = "file_keys"                   # key field → type
ATTR_CHANNEL = "channel_column"
TIMESERIES_KEY = "timeseries"             # a channel's time-series record (sources/timeseries.py)
ATTR_TIMESERIES_PARTS = "arrowroot.timeseries_parts"   # multi-file channels: [[t0, t0_ns, count, rate]] per part
ATTR_TIMESERIES_DQ = "arrowroot.timeseries_dq"         # multi-file channels: data-quality flags as segments


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Declared:
    name: str
    files: str
    object: str
    keys: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    channel_column: str = "channel"


@dataclass(frozen=True)
class Config:
    datasets: tuple[Declared, ...] = ()
    folder_datasets: bool = True
    timeseries: dict = field(default_factory=dict)   # [timeseries.NAME] site mappings (sources/timeseries.py)


def load_config(root: Path) -> Config:
    """Parse ``<root>/arrowroot.toml``; ValueError names the faulty entry."""
    path = Path(root) / CONFIG_NAME
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{CONFIG_NAME}: {exc}") from None
    # [server]: core/settings.py; [auth]: service/sso.py
    unknown = set(data) - {"dataset", "folder_datasets", "timeseries", SECTION, "auth"}
    if unknown:
        raise InvalidRequest(f"{CONFIG_NAME}: unknown top-level keys {sorted(unknown)}; "
                             f"known: dataset, folder_datasets, timeseries, {SECTION}, auth")
    series = data.get("timeseries", {})
    if not isinstance(series, dict) or not all(isinstance(v, dict) for v in series.values()):
        raise InvalidRequest(f"{CONFIG_NAME}: timeseries must hold tables ([timeseries.NAME] t0 = ..., rate = ...)")
    out = []
    for i, d in enumerate(data.get("dataset", [])):
        where = f"{CONFIG_NAME}: dataset[{i}]"
        if not isinstance(d, dict):
            raise InvalidRequest(f"{where}: a table expected ([[dataset]])")
        extra = set(d) - {"name", "files", "object", "keys", "types", "channel_column"}
        if extra:
            raise InvalidRequest(f"{where}: unknown keys {sorted(extra)}")
        for req in ("name", "files", "object"):
            if not isinstance(d.get(req), str) or not d[req]:
                raise InvalidRequest(f"{where}.{req}: a non-empty string is required")
        types = d.get("types", {})
        if not isinstance(types, dict) or any(v not in filekeys.KEY_TYPES for v in types.values()):
            raise InvalidRequest(f"{where}.types: a table of key → one of {sorted(filekeys.KEY_TYPES)}")
        if d.get("keys") is not None:
            try:
                filekeys.Template(d["keys"])
            except ValueError as exc:
                raise InvalidRequest(f"{where}.keys: {exc}") from None
        obj_fields = re.findall(r"\{(\w*)\}", d["object"])
        if obj_fields not in ([], ["ch"]):
            raise InvalidRequest(f"{where}.object: the only placeholder allowed is {{ch}} (got {obj_fields})")
        out.append(Declared(d["name"], d["files"], d["object"], d.get("keys"), dict(types),
                            d.get("channel_column", "channel")))
    folder = data.get("folder_datasets", True)
    if not isinstance(folder, bool):
        raise InvalidRequest(f"{CONFIG_NAME}: folder_datasets must be true or false")
    return Config(tuple(out), folder, dict(series))
