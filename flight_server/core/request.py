"""What a client asks for, once decoded and validated: a plain frozen value (no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadSpec:
    """A validated ReadRequest (see protos/arrowroot.proto for each field's meaning)."""

    dataset: str
    columns: tuple[str, ...] = ()
    entry_start: int | None = None
    entry_stop: int | None = None
    slices: tuple[slice, ...] = ()
    batch_rows: int | None = None
    where: str = ""
    with_entry_numbers: bool = False
    files: str = ""
    channels: tuple[str, ...] = ()
    allow_missing: bool = False
    # Read by time (sources/timeseries.py): bounds in the channel's seconds, or ISO-8601 strings.
    time_start: float | str | None = None
    time_stop: float | str | None = None
    with_time: bool = False
    fill_gaps: bool = False
    dq: str = ""                   # data-quality expression over the channel's flags
    compression: str = ""          # IPC body codec asked for: "" (server default), "none", "lz4", "zstd"
    follow: bool = False           # keep the stream open and send new entries (service/follow.py)
    resume: str = ""               # a follow's resume token: continue where an earlier stream stopped
    # Event levels (datasets/levels.py): the cut on each hit, "any" | "only", "" | "hit" (a row per hit)
    hit_where: str = ""
    mode: str = ""
    orientation: str = ""

    @property
    def by_time(self) -> bool:
        """Whether this is a read by time (any time field set)."""
        return (self.time_start is not None or self.time_stop is not None or self.with_time or self.fill_gaps
                or bool(self.dq))


#: IPC body codecs a client may ask for ("" = the server's default)
COMPRESSIONS = ("", "none", "lz4", "zstd")
#: event levels: how a hit cut selects hits (pygama DataLoader's build_entry_list modes), and the
#: orientations of the answer ("evt": a row per event, "hit": a row per hit)
MODES = ("any", "only")
ORIENTATIONS = ("evt", "hit")


def dataset_name(text: str) -> str:
    """A dataset name as users type it → the catalog's spelling.

    Accepts uproot's and h5py's habits: ``file.root:tree;1`` (a ROOT cycle: the catalog serves the
    highest), ``file.root:/tree`` and ``file.h5:/group/data`` (a leading slash in the object path),
    ``./file.root:tree`` and ``a//b.root:t``. Refuses absolute paths and ``..`` with a hint: names are
    relative to the served directory.
    """
    import posixpath
    import re

    from arrowroot.flight_server.core.errors import InvalidRequest

    path, sep, obj = text.partition(":")
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", text):
        raise InvalidRequest(f"dataset: {text[:200]!r} is an absolute path; names are relative to the served "
                             "directory (e.g. 'cms/HZZ.root:events'); `arrowroot ls` lists them")
    if path:
        norm = posixpath.normpath(path)
        if norm == ".." or norm.startswith("../"):
            raise InvalidRequest(f"dataset: {text[:200]!r} leaves the served directory; names are relative to it")
        path = norm if norm != "." else ""
    if sep:
        obj = re.sub(r";\d+$", "", obj.lstrip("/"))
    return path + sep + obj
