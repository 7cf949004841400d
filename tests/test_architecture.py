"""The one-way flow, checked on the source: who may import whom (see ARCHITECTURE in README)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder → imports it must never make (prefix match on the absolute module name)
FORBIDDEN = {
    "protos": ["arrowroot.catalog", "arrowroot.flight_server", "arrowroot.clients", "pyarrow", "duckdb"],
    "catalog": ["arrowroot.flight_server", "arrowroot.clients", "arrowroot.protos", "pyarrow", "uproot", "h5py"],
    "flight_server/sources": ["arrowroot.catalog", "arrowroot.protos", "arrowroot.clients", "pyarrow.flight",
                              "duckdb", "arrowroot.flight_server.server.flight", "arrowroot.flight_server.server.codec"],
    "clients": ["arrowroot.catalog", "arrowroot.flight_server", "duckdb", "uproot", "h5py"],
}
# only these server modules may touch protos / pyarrow.flight
PROTOS_USERS = {"codec.py", "sql_service.py", "auth.py"}
FLIGHT_USERS = {"service.py", "sql_service.py", "auth.py", "cli.py", "cli_admin.py", "demo.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = "arrowroot." + ".".join(path.relative_to(ROOT).parent.parts)
    out = []
    for node in ast.walk(tree):
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
    return out


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_forbidden_imports(folder):
    bad = []
    for path in _files(folder):
        if path.name.endswith("_pb2.py"):
            continue
        for mod in _imports(path):
            for prefix in FORBIDDEN[folder]:
                if mod == prefix or mod.startswith(prefix + "."):
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_server_modules_touching_protos_and_flight():
    bad = []
    for path in (ROOT / "flight_server").glob("*.py"):
        mods = _imports(path)
        if path.name not in PROTOS_USERS and any(m.startswith("arrowroot.protos") for m in mods):
            bad.append(f"{path.name} imports protos (only {sorted(PROTOS_USERS)} may)")
        if path.name not in FLIGHT_USERS and any(m.startswith("pyarrow.flight") for m in mods):
            bad.append(f"{path.name} imports pyarrow.flight (only {sorted(FLIGHT_USERS)} may)")
    assert not bad, "\n".join(bad)
