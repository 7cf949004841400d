"""The one-way flow, checked on the source: who may import whom (README "Architecture").

Each folder lists the arrowroot packages it may import; anything else of arrowroot is a
violation. Third-party rules: the catalog does not parse Arrow, only server/web/cli face the
network (pyarrow.flight), sources and the executor know neither protos nor DuckDB. A second
test finds import cycles between modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
P = "arrowroot.flight_server."

# folder → arrowroot packages it may import (prefix match), besides itself
ALLOWED = {
    "protos": [],
    "flight_server/core": [],
    "catalog": [P + "core.errors"],
    "flight_server/sources": [P + "core"],
    "flight_server/lang": [P + "core"],
    "flight_server/datasets": [P + "core", P + "lang", "arrowroot.catalog"],
    "flight_server/plan": [P + "core", P + "lang", P + "datasets", "arrowroot.catalog"],
    "flight_server/execute": [P + "core", P + "lang", P + "sources"],
    "flight_server/index": [P + "core", P + "sources", P + "datasets", "arrowroot.catalog"],
    "flight_server/sql": [P + "core"],
    "flight_server/workspace": [P + "core", P + "sources", "arrowroot.catalog"],
    # the one context and service layer every door shares (no door, no network)
    "flight_server/service": [P + "core", P + "lang", P + "datasets", P + "plan", P + "execute", P + "index",
                              P + "sources", P + "workspace", "arrowroot.catalog", "arrowroot.protos"],
    # the Flight doors: the service layer below them, DuckDB's engine for Flight SQL; never the web
    "flight_server/server": [P + "core", P + "service", P + "sql", P + "plan", P + "execute", "arrowroot.catalog",
                             "arrowroot.protos"],
    # file formats users' other tools read (Arrow, Parquet, CSV, HDF5, ROOT, TIFF): the HTTP and CLI downloads
    "flight_server/export": [P + "core"],
    # the HTTP door: the service layer only (never the Flight doors)
    "flight_server/web": [P + "core", P + "service", P + "plan", P + "export"],
    "clients": ["arrowroot.protos"],
}
# third-party modules a folder must never import
FORBIDDEN = {
    "protos": ["pyarrow", "duckdb"],
    "flight_server/core": ["duckdb", "pyarrow.flight", "uproot", "h5py", "google"],
    "catalog": ["pyarrow", "uproot", "h5py"],
    "flight_server/sources": ["pyarrow.flight", "duckdb", "google"],
    "flight_server/lang": ["pyarrow.flight", "duckdb"],
    "flight_server/execute": ["pyarrow.flight", "duckdb", "google"],
    "flight_server/plan": ["pyarrow.flight", "duckdb", "google"],
    "flight_server/sql": ["pyarrow.flight"],
    "flight_server/workspace": ["pyarrow.flight", "google"],
    "flight_server/web": ["duckdb", "uproot", "pyarrow.flight"],
    "flight_server/service": ["pyarrow.flight", "duckdb", "uproot", "h5py"],
    "flight_server/export": ["pyarrow.flight", "duckdb", "google"],
    "clients": ["duckdb", "uproot", "h5py"],
}
# only these folders face the network with Flight
FLIGHT_USERS = ("flight_server/server", "flight_server/cli", "clients")
# the doors on the Flight port are siblings: none imports another; only the composition roots
# (the coordinator's port and the data node's) put them together
DOORS = ("datasets_door", "flight_sql", "workspace_api")
ROOTS = ("flight", "node")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "arrowroot." + ".".join(parts)


NAMED_IMPORT = re.compile(r"^(arrowroot(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_][A-Za-z0-9_]*)?$")


PACKAGE_DIRS = {"arrowroot.protos": "protos", "arrowroot.catalog": "catalog",
                "arrowroot.flight_server": "flight_server", "arrowroot.clients": "clients"}


def _is_module(name: str) -> bool:
    for pkg, folder in PACKAGE_DIRS.items():
        if name == pkg or name.startswith(pkg + "."):
            rel = Path(folder, *name[len(pkg) + 1:].split(".")) if name != pkg else Path(folder)
            return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()
    return False


def _imports(path: Path) -> list[str]:
    """Every arrowroot module a file imports: import statements (those under ``if TYPE_CHECKING:``
    too — a type-only import still couples the modules) and modules named in strings, as a lazy
    registry does (``"arrowroot.flight_server.sources.root:RootSource"``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = "arrowroot." + ".".join(path.relative_to(ROOT).parent.parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = NAMED_IMPORT.match(node.value)
            if m and _is_module(m.group(1)):  # not a metadata key such as "arrowroot.missing"
                out.append(m.group(1))
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def _files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if not p.name.endswith("_pb2.py")
                  and "node_modules" not in p.parts)


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix.rstrip(".") or mod.startswith(prefix.rstrip(".") + ".")


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_layers(folder):
    own = "arrowroot." + folder.replace("/", ".")
    bad = []
    for path in _files(folder):
        for mod in _imports(path):
            if not mod.startswith("arrowroot") or _under(mod, own) or mod == "arrowroot.flight_server":
                continue
            if mod.startswith("arrowroot.flight_server.__version__"):
                continue
            if not any(_under(mod, a) for a in ALLOWED[folder]):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_third_party(folder):
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in _files(folder) for m in _imports(p)
           for f in FORBIDDEN[folder] if _under(m, f)]
    assert not bad, "\n".join(bad)


def test_only_the_front_ends_face_the_network():
    bad = []
    for path in _files("flight_server"):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel.startswith(f + "/") for f in FLIGHT_USERS):
            continue
        if any(_under(m, "pyarrow.flight") for m in _imports(path)):
            bad.append(f"{rel} imports pyarrow.flight")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    modules = {_module(p): p for d in ("protos", "catalog", "flight_server", "clients") for p in _files(d)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for mod in _imports(path):
            while mod and mod not in modules:
                mod = mod.rpartition(".")[0]
            if mod and mod != name and not name.startswith(mod + "."):  # a package's own __init__
                deps.add(mod)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_doors_are_siblings():
    """No Flight door imports another; the web door imports none of them."""
    bad = []
    for path in _files("flight_server/server"):
        name = path.stem
        for mod in _imports(path):
            other = mod.removeprefix(P + "server.").split(".")[0] if _under(mod, P + "server") else None
            if other and other != name and name in DOORS and other in DOORS + ROOTS:
                bad.append(f"{path.relative_to(ROOT)} imports the door {other}")
    for path in _files("flight_server/web"):
        bad += [f"{path.relative_to(ROOT)} imports {m}" for m in _imports(path) if _under(m, P + "server")]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_type_checking_and_named_imports(tmp_path, monkeypatch):
    """The cycle test counts imports a simple runtime scan misses (proof that it would fail)."""
    probe = ROOT / "flight_server" / "core" / "_probe_for_test.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from arrowroot.flight_server.server.flight import ArrowrootServer\n"
                     "X = 'arrowroot.flight_server.sql.engine:SqlEngine'\n")
    try:
        found = _imports(probe)
    finally:
        probe.unlink()
    assert "arrowroot.flight_server.server.flight" in found
    assert "arrowroot.flight_server.sql.engine" in found
