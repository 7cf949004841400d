"""The real-file sweep (a script; ``tests/test_real_sweep.py`` runs it): every file of
scikit-hep-testdata, km3net-testdata and PyTables' test files, indexed as a server would,
then counted: datasets listed / readable / unreadable by reason, folder groups left unmerged,
and the TTree branches uproot reads that arrowroot cannot name (goal: 0).

    python tests/real_sweep.py [--corpus skhep|km3net|pytables]...
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import uproot

from arrowroot.catalog.store import Catalog
from arrowroot.flight_server.index.indexer import Indexer


def corpora() -> dict[str, Path]:
    out = {}
    try:
        import skhep_testdata
        out["skhep"] = Path(skhep_testdata.data_path("uproot-HZZ.root")).parent
    except ImportError:
        pass
    try:
        import km3net_testdata
        out["km3net"] = Path(km3net_testdata.data_path("hdf5/geamon.h5")).parent.parent
    except ImportError:
        pass
    try:
        import tables
        tests = Path(os.path.dirname(tables.__file__)) / "tests"
        if any(tests.glob("*.h5")):
            out["pytables"] = tests
    except ImportError:
        pass
    return out


def reason_kind(reason: str) -> str:
    """A reason without its particulars (numbers, names in quotes), to count alike ones together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:90]


@dataclass
class Sweep:
    corpus: str
    files: int = 0
    file_errors: int = 0
    listed: int = 0
    readable: int = 0
    unreadable: Counter = field(default_factory=Counter)    # dataset reason kind -> datasets
    not_merged: int = 0
    folder: int = 0
    branches: int = 0          # TTree branches (leaves and parents) of the served trees
    uproot_reads: int = 0      # of those, branches uproot reads
    missed: list[str] = field(default_factory=list)   # uproot reads it, arrowroot cannot name it
    listed_unreadable: list[str] = field(default_factory=list)  # uproot reads it, arrowroot says why it does not


def _uproot_reads(branch) -> bool:
    try:
        arr = branch.array(library="ak")
    except Exception:
        return False
    return not isinstance(arr.layout.form, ak.forms.EmptyForm) and str(arr.type).split(" * ", 1)[-1] != "unknown"


def sweep(corpus: str, root: Path, catalog: Path | None = None) -> Sweep:
    """Index ``root`` (or rescan a copy of ``catalog``, already indexed from it) and count."""
    out = Sweep(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.duckdb"
        if catalog is not None:
            shutil.copy2(catalog, path)
        cat = Catalog(path)
        report = Indexer(root, cat).run()
        out.file_errors = len(cat.file_errors())
        out.files = len(cat.files())
        out.not_merged = len(report.not_merged)
        for rec in cat.datasets():
            if rec.origin == "folder":
                out.folder += 1
                continue
            out.listed += 1
            if any(c.readable for c in rec.columns):
                out.readable += 1
            else:
                why = next((c.reason for c in rec.columns if c.reason), "no columns")
                out.unreadable[reason_kind(why)] += 1
            if rec.kind != "ttree":
                continue
            path, obj = rec.name.split(":", 1)
            named = {c.name for c in rec.columns if c.readable}
            reasons = {c.name: c.reason for c in rec.columns if not c.readable}
            with uproot.open(root / path) as f:
                tree = f[obj] if obj in f else next(o for k, o in f.iteritems(recursive=True) if k.split(";")[0] == obj)
                leaves = [k for k in tree.keys(recursive=True) if not tree[k].branches]
                short = Counter(k.rsplit("/", 1)[-1] for k in leaves)
                for key in tree.keys(recursive=True):
                    out.branches += 1
                    branch = tree[key]
                    if branch.branches:
                        name = key
                    else:
                        name = key.rsplit("/", 1)[-1]
                        name = name if short[name] == 1 else key
                    if name in named:
                        out.uproot_reads += 1
                        continue
                    if _uproot_reads(branch):
                        out.uproot_reads += 1
                        if name in reasons:
                            out.listed_unreadable.append(f"{rec.name}:{key} ({reasons[name][:80]})")
                        else:
                            out.missed.append(f"{rec.name}:{key}")
        cat.close()
    return out


def table(results: list[Sweep]) -> str:
    lines = ["| corpus | files (failed) | datasets listed | readable | unreadable | folder datasets | "
             "folder groups not merged | TTree branches | uproot reads | of those, listed unreadable with a reason | "
             "uproot reads, arrowroot cannot name |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.corpus} | {r.files} ({r.file_errors}) | {r.listed} | {r.readable} | "
                     f"{sum(r.unreadable.values())} | {r.folder} | {r.not_merged} | {r.branches} | "
                     f"{r.uproot_reads} | {len(r.listed_unreadable)} | {len(r.missed)} |")
    lines.append("")
    lines.append("| corpus | unreadable datasets | reason |")
    lines.append("| --- | --- | --- |")
    for r in results:
        for why, n in r.unreadable.most_common():
            lines.append(f"| {r.corpus} | {n} | {why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Sweep]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", choices=["skhep", "km3net", "pytables"])
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    found = corpora()
    results = [sweep(name, path) for name, path in found.items() if not args.corpus or name in args.corpus]
    print(table(results))
    for r in results:
        for m in r.missed:
            print(f"missed: {r.corpus}: {m}", file=sys.stderr)
        for m in r.listed_unreadable:
            print(f"uproot reads, listed unreadable: {r.corpus}: {m}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
