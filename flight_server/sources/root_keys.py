"""Objects of a ROOT file by key name, also when the name contains ``/``.

ROOT allows any key name (``chi2/NDF`` is a histogram in KM3NeT's acoustics files), but
``file["chi2/NDF"]`` reads the slash as a TDirectory. Names in the catalog are the full
paths uproot's ``classnames(recursive=True)`` lists; this resolves them either way.
"""

from __future__ import annotations

import uproot


def get_object(directory, path: str):
    """The highest cycle of the object at ``path`` (``dir/name``, no cycle), like ``f[path]``."""
    try:
        return directory[path]
    except uproot.KeyInFileError:
        pass
    parts = path.split("/")
    # the longest directory prefix that exists, then the rest as one key name
    for i in range(len(parts) - 1, -1, -1):
        try:
            d = directory["/".join(parts[:i])] if i else directory
        except uproot.KeyInFileError:
            continue
        if not isinstance(d, uproot.ReadOnlyDirectory):
            continue
        name = "/".join(parts[i:])

        def same_name(n: str, name: str = name) -> bool:
            return n == name

        cycles = [int(full.rpartition(";")[2] or 0)
                  for full in d.iterkeys(recursive=False, cycle=True, filter_name=same_name)]
        if cycles:
            top = max(cycles)
            return next(obj for full, obj in d.iteritems(recursive=False, cycle=True, filter_name=same_name)
                        if int(full.rpartition(";")[2] or 0) == top)
    raise uproot.KeyInFileError(path)
