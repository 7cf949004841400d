"""Honest packaging: the light install (`pip install -e .`) is the client and the client commands
on pyarrow, numpy, protobuf, click and rich alone; the server's libraries are the `server` extra.

Offline, a fresh virtual environment cannot download anything, so the light install is checked
the other way round: a Python process in which every installed distribution outside the core
dependencies (and what they require) cannot be imported reads from a running server through
`arrowroot.clients` and the `arrowroot` client commands.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SERVER_LIBRARIES = {"duckdb", "uproot", "awkward", "h5py", "hdf5plugin", "matplotlib", "starlette", "uvicorn", "jinja2"}
DS = "hep/events.root:events"

BLOCKER = """
import importlib.abc, json, os, sys
_BLOCKED = frozenset(json.loads(os.environ["ARROWROOT_TEST_BLOCKED"]))
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NotInstalled())
"""


def _name(requirement: str) -> str:
    return md.metadata(Requirement(requirement).name)["Name"].lower()


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need at run time (their requirements without extras), recursively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        for req in md.requires(dist) or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                try:
                    todo.append(_name(req))
                except md.PackageNotFoundError:
                    pass   # an optional platform package that is not installed
    return seen


def blocked_modules() -> set[str]:
    """Top-level modules of every installed distribution the light install does not bring."""
    allowed = _closure({_name(r) for r in PYPROJECT["project"]["dependencies"]}) | {"arrowroot"}
    out = set()
    for module, dists in md.packages_distributions().items():
        if module not in sys.stdlib_module_names and not {d.lower() for d in dists} & allowed:
            out.add(module)
    return out


@pytest.fixture(scope="module")
def light_env():
    blocked = blocked_modules()
    assert SERVER_LIBRARIES <= blocked and "pandas" in blocked and "pyarrow" not in blocked
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ARROWROOT_")},
            "ARROWROOT_TEST_BLOCKED": json.dumps(sorted(blocked))}


def light(code: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code, *args], capture_output=True, text=True, env=env,
                          timeout=180)


def light_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return light("from arrowroot.flight_server.cli import main\nmain(prog_name='arrowroot')", env, *args)


def test_core_dependencies_hold_no_server_library():
    core = {Requirement(r).name.lower() for r in PYPROJECT["project"]["dependencies"]}
    server = {Requirement(r).name.lower() for r in PYPROJECT["project"]["optional-dependencies"]["server"]}
    assert not core & SERVER_LIBRARIES and SERVER_LIBRARIES <= server
    assert "arrowroot[server]" in PYPROJECT["project"]["optional-dependencies"]["test"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"   # tomllib, BaseException.add_note
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"


@pytest.mark.slow
def test_the_client_reads_without_the_server_libraries(light_env, sample_server):
    code = f"""
import sys
from arrowroot.clients import Client
with Client({sample_server.location!r}) as c:
    t = c.read({DS!r}, ["nMuon", "Muon_pt"], entries=(10, 20))
    n = c.read({DS!r}, ["nMuon"], entries=(10, 20), library="np")["nMuon"]
    try:
        c.read({DS!r}, ["nMuon"], library="pd")
    except ImportError as exc:
        pandas = str(exc)
print(t["nMuon"].to_pylist(), n.tolist(), t["Muon_pt"].to_pylist()[0], pandas, sep="|")
print(sorted(m for m in sys.modules if m.partition(".")[0] in {sorted(SERVER_LIBRARIES)!r}))
"""
    r = light(code, light_env)
    assert r.returncode == 0, r.stderr
    with sample_server.client() as c:
        want = c.read(DS, ["nMuon", "Muon_pt"], entries=(10, 20))
    first, second = r.stdout.splitlines()
    n_muon, as_numpy, pt, pandas = first.split("|")
    assert n_muon == str(want["nMuon"].to_pylist()) == as_numpy
    assert pt == str(want["Muon_pt"].to_pylist()[0])
    assert "pip install pandas" in pandas
    assert second == "[]"


@pytest.mark.slow
def test_the_client_commands_work_without_the_server_libraries(light_env, serve, tmp_path):
    from arrowroot.flight_server.cli.demo import write_sample_files

    server = serve(write_sample_files(tmp_path / "data", entries=1000))
    loc = ["-l", server.location]
    r = light_cli(light_env, "ls", *loc)
    assert r.returncode == 0 and f"{DS}\t1000 entries" in r.stdout, r.stderr
    r = light_cli(light_env, "schema", DS, *loc)
    assert r.returncode == 0 and "nMuon: int32" in r.stdout, r.stderr
    r = light_cli(light_env, "get", DS, str(tmp_path / "x.parquet"), "-c", "nMuon", "-e", "0:100", *loc)
    assert r.returncode == 0 and pq.read_table(tmp_path / "x.parquet").num_rows == 100, r.stderr
    r = light_cli(light_env, "sql", f'SELECT count(*) AS n FROM "{DS}"', *loc)
    assert r.returncode == 0 and "1000" in r.stdout, r.stderr
    r = light_cli(light_env, "put", str(tmp_path / "x.parquet"), "home/local/x", *loc)
    assert r.returncode == 0 and "100 rows" in r.stdout, r.stderr
    r = light_cli(light_env, "skim", "home/local/two", DS, "-w", "nMuon >= 2", *loc)
    assert r.returncode == 0, r.stderr
    r = light_cli(light_env, "action", "rescan", *loc)
    assert r.returncode == 0 and r.stdout.startswith("rescan: "), r.stderr
    r = light_cli(light_env, "get", DS, str(tmp_path / "x.h5"), "-c", "nMuon", *loc)   # h5py: the exports extra
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'needs h5py' in r.stderr and 'pip install -e ".[exports]"' in r.stderr and not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_server_commands_name_the_install_they_need(light_env, tmp_path):
    for args in (["serve", str(tmp_path), "--port", "0"], ["index", str(tmp_path)], ["users", "list", str(tmp_path)],
                 ["demo"]):
        r = light_cli(light_env, *args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert 'the server install: pip install -e ".[server]"' in r.stderr and len(r.stderr.splitlines()) == 1


def _install_distribution(dist: str, site: Path) -> None:
    """Put an installed distribution into another environment's site-packages (symbolic links to its
    top-level files and its metadata), as pip would have unpacked it, without a download."""
    d = md.distribution(dist)
    base = Path(d.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in d.files or [] if not str(f).startswith("..")}
    for top in tops:
        if top != "__pycache__" and not (site / top).exists() and (base / top).exists():
            (site / top).symlink_to(base / top)


@pytest.mark.slow
def test_the_light_install_in_a_fresh_venv(sample_server, tmp_path):
    """`pip install .` into a new virtual environment that holds only the core dependencies (and the
    build backend): pip's resolver finds everything it needs there, and the client and the client
    commands read from a server while the server's libraries are not installed at all."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for dist in _closure({_name(r) for r in PYPROJECT["project"]["dependencies"]}) | {"setuptools"}:
        _install_distribution(dist, site)
    src = tmp_path / "src"   # a copy: building must not touch the working tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "tests",
                                                             "bench", "docs", "examples", "build", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index",
                        "--no-build-isolation", str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr   # the core dependencies resolve from what is there, offline
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARROWROOT_", "PYTHON"))}
    code = f"""
import importlib.util
from arrowroot.clients import Client
with Client({sample_server.location!r}) as c:
    print(c.read({DS!r}, ["nMuon"], entries=(0, 5))["nMuon"].to_pylist())
print(sorted(m for m in {sorted(SERVER_LIBRARIES | {"pandas"})!r} if importlib.util.find_spec(m)))
"""
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    with sample_server.client() as c:
        want = c.read(DS, ["nMuon"], entries=(0, 5))["nMuon"].to_pylist()
    assert r.stdout.splitlines() == [str(want), "[]"]
    arrowroot = venv / "bin" / "arrowroot"
    r = subprocess.run([str(arrowroot), "ls", "-l", sample_server.location], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and f"{DS}\t" in r.stdout, r.stderr
    r = subprocess.run([str(arrowroot), "serve", str(tmp_path), "--port", "0"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 1 and 'pip install -e ".[server]"' in r.stderr and "Traceback" not in r.stderr, r.stderr
