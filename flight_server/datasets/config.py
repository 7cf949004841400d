"""``arrowroot.toml``: the datasets and levels a site declares over many files (see
``datasets/__init__``), and the attribute names multi-file datasets carry in the catalog."""

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
ATTR_LEVEL = "arrowroot.level"            # levels: kind, tiers, where each column comes from (datasets/levels.py)
LEVEL_KINDS = ("hit", "event")
TIER_KEYS = ("files", "object", "keys")


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
class Tier:
    """One tier of a level: its files (a glob), its table template and its file-key template, with
    ``{tier}`` already replaced by the tier's name."""

    name: str
    files: str
    object: str
    keys: str


@dataclass(frozen=True)
class Level:
    """A level, as pygama's DataLoader configures one: a hit level of entry-aligned tiers (raw, dsp,
    hit, ... one table per channel), or an event level (a TCM tier, optional event tiers such as
    evt, and the hit level the TCM points into)."""

    name: str
    kind: str                          # "hit" | "event"
    tiers: tuple[Tier, ...]
    types: dict[str, str] = field(default_factory=dict)
    channel_column: str = "channel"
    hits: str = ""                     # event levels: the hit level's name
    tcm: str = ""                      # event levels: the TCM tier's name

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)


@dataclass(frozen=True)
class Config:
    datasets: tuple[Declared, ...] = ()
    folder_datasets: bool = True
    timeseries: dict = field(default_factory=dict)   # [timeseries.NAME] site mappings (sources/timeseries.py)
    levels: tuple[Level, ...] = ()


def load_config(root: Path) -> Config:
    """Parse ``<root>/arrowroot.toml``; InvalidRequest names the faulty entry."""
    path = Path(root) / CONFIG_NAME
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{CONFIG_NAME}: {exc}") from None
    # [server]: core/settings.py; [auth]: service/sso.py
    unknown = set(data) - {"dataset", "folder_datasets", "timeseries", "level", SECTION, "auth"}
    if unknown:
        raise InvalidRequest(f"{CONFIG_NAME}: unknown top-level keys {sorted(unknown)}; "
                             f"known: dataset, folder_datasets, level, timeseries, {SECTION}, auth")
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
    levels = _levels(data.get("level", []))
    names = [d.name for d in out] + [lv.name for lv in levels]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidRequest(f"{CONFIG_NAME}: {twice[0]!r} is declared twice")
    return Config(tuple(out), folder, dict(series), levels)


def _levels(entries: object) -> tuple[Level, ...]:
    """``[[level]]`` tables → Levels; InvalidRequest names the faulty entry (rules: ``datasets/levels.py``)."""
    if not isinstance(entries, list):
        raise InvalidRequest(f"{CONFIG_NAME}: level must be an array of tables ([[level]])")
    out: list[Level] = []
    for i, d in enumerate(entries):
        where = f"{CONFIG_NAME}: level[{i}]"
        if not isinstance(d, dict):
            raise InvalidRequest(f"{where}: a table expected ([[level]])")
        extra = set(d) - {"name", "tiers", "tier", "hits", "tcm", "types", "channel_column", *TIER_KEYS}
        if extra:
            raise InvalidRequest(f"{where}: unknown keys {sorted(extra)}")
        if not isinstance(d.get("name"), str) or not d["name"]:
            raise InvalidRequest(f"{where}.name: a non-empty string is required")
        tiers = d.get("tiers")
        if (not isinstance(tiers, list) or not tiers or not all(isinstance(t, str) and re.fullmatch(r"\w+", t)
                                                                for t in tiers) or len(set(tiers)) != len(tiers)):
            raise InvalidRequest(f"{where}.tiers: a list of distinct tier names, e.g. [\"raw\", \"dsp\", \"hit\"]")
        own = d.get("tier", {})
        if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
            raise InvalidRequest(f"{where}.tier: tables per tier ([level.tier.dsp] files = ..., object = ...)")
        unknown = set(own) - set(tiers)
        if unknown:
            raise InvalidRequest(f"{where}.tier: {sorted(unknown)} not in tiers {tiers}")
        hits = d.get("hits", "")
        if not isinstance(hits, str):
            raise InvalidRequest(f"{where}.hits: the name of the hit level the TCM points into")
        kind = "event" if hits else "hit"
        built = []
        for t in tiers:
            spec = own.get(t, {})
            bad = set(spec) - set(TIER_KEYS)
            if bad:
                raise InvalidRequest(f"{where}.tier.{t}: unknown keys {sorted(bad)}; known: {', '.join(TIER_KEYS)}")
            values = {}
            for key in TIER_KEYS:
                v = spec.get(key, d.get(key))
                if not isinstance(v, str) or not v:
                    raise InvalidRequest(f"{where}.tier.{t}.{key}: a non-empty string is required (or {key} for every "
                                     "tier, with {tier} standing for the tier's name)")
                values[key] = v.replace("{tier}", t)
            try:
                template = filekeys.Template(values["keys"])
            except ValueError as exc:
                raise InvalidRequest(f"{where}.tier.{t}.keys: {exc}") from None
            if not template.fields:
                raise InvalidRequest(f"{where}.tier.{t}.keys: a file-key template names at least one {{field}}")
            obj_fields = re.findall(r"\{(\w*)\}", values["object"])
            allowed = [["ch"], []] if kind == "event" else [["ch"]]
            if obj_fields not in allowed:
                need = "the table of each channel, with {ch}" if kind == "hit" else "at most {ch}"
                raise InvalidRequest(f"{where}.tier.{t}.object: {need} (got {values['object']!r})")
            built.append(Tier(t, values["files"], values["object"], values["keys"]))
        tcm = d.get("tcm", "")
        if kind == "event":
            tcm = tcm or ("tcm" if "tcm" in tiers else tiers[0])
            if tcm not in tiers:
                raise InvalidRequest(f"{where}.tcm: {tcm!r} is not one of its tiers {tiers}")
            if "{ch}" in next(t for t in built if t.name == tcm).object:
                raise InvalidRequest(f"{where}.tier.{tcm}.object: the TCM is one table per file, without {{ch}}")
        elif tcm:
            raise InvalidRequest(f"{where}.tcm: only event levels (with hits = \"<hit level>\") have a TCM")
        types = d.get("types", {})
        if not isinstance(types, dict) or any(v not in filekeys.KEY_TYPES for v in types.values()):
            raise InvalidRequest(f"{where}.types: a table of key → one of {sorted(filekeys.KEY_TYPES)}")
        channel_column = d.get("channel_column", "channel")
        if not isinstance(channel_column, str) or not channel_column:
            raise InvalidRequest(f"{where}.channel_column: a column name")
        out.append(Level(d["name"], kind, tuple(built), dict(types), channel_column, hits, tcm))
    return tuple(out)
