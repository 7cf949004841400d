"""docker/: what can be checked without a Docker engine.

The Dockerfiles are parsed into instructions and compared with the README, pyproject.toml,
.dockerignore and docker/compose.yaml (PyYAML); then the image's own commands run here: the
CMD (with /data and the catalog volume mapped to temporary folders) serves a directory
without writing into it, the HEALTHCHECK command exits 0 against it and 1 against a closed
port, and SIGTERM (docker stop) ends the server cleanly.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.network]

yaml = pytest.importorskip("yaml", reason="pip install pyyaml")

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
SERVER_PORT = "8815"


# ------------------------------------------------------------------ parsing


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue                                # a comment inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) argument list; shell form is not used in these images."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def instructions(df: list[tuple[str, str]], name: str) -> list[str]:
    return [args for word, args in df if word == name]


def one(df: list[tuple[str, str]], name: str) -> str:
    found = instructions(df, name)
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def env_of(df: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for args in instructions(df, "ENV"):
        for part in shlex.split(args):
            key, _, value = part.partition("=")
            env[key] = value
    return env


def healthcheck(df: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    options, _, cmd = one(df, "HEALTHCHECK").partition(" CMD ")
    opts = dict(o.lstrip("-").split("=", 1) for o in options.split())
    return opts, exec_form(cmd)


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert m, text
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]


def pip_targets(command: str) -> list[str]:
    """The requirement arguments of each ``pip install`` in a shell command (options dropped)."""
    targets = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                targets += [w for w in words[i + 2:] if not w.startswith("-")]
    return targets


def copies(df: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    out = []
    for args in instructions(df, "COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def dockerignored(rel: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (pattern.startswith("**/")
                                                    and fnmatch.fnmatch(prefix.split("/")[-1], pattern[3:])):
                return True
    return False


@pytest.fixture(scope="module")
def server_df():
    return parse_dockerfile(DOCKER / "Dockerfile")


@pytest.fixture(scope="module")
def jupyter_df():
    return parse_dockerfile(DOCKER / "jupyter.Dockerfile")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def readme_install_target() -> str:
    """What the README's quick start installs (``pip install -e . && ...`` → ``.``)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has no quick-start shell block"
    targets = pip_targets(block[1])
    assert targets, block[1]
    return targets[0]


def server_service(compose: dict) -> tuple[str, dict]:
    (name,) = [k for k, v in compose["services"].items() if v.get("build", {}).get("dockerfile") == "docker/Dockerfile"]
    return name, compose["services"][name]


def jupyter_service(compose: dict) -> tuple[str, dict]:
    (name,) = [k for k, v in compose["services"].items()
               if v.get("build", {}).get("dockerfile") == "docker/jupyter.Dockerfile" and "profiles" not in v]
    return name, compose["services"][name]


def container_port(mapping: str) -> str:
    """The container side of a short-syntax port ("${X:-127.0.0.1}:8815:8815" → "8815")."""
    return re.sub(r"\$\{[^}]*\}", "host", mapping).rsplit(":", 1)[-1].split("/")[0]


# ------------------------------------------------------------------ the images


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "jupyter.Dockerfile"])
def test_image_installs_the_package_as_the_readme_does(dockerfile, pyproject):
    df = parse_dockerfile(DOCKER / dockerfile)
    assert re.fullmatch(r"python:3\.\d+-slim", one(df, "FROM")), "a slim Python base"
    want = re.sub(r"\[.*\]$", "", readme_install_target())   # the README installs ".[server]"
    assert want in (".", "-e .")
    # the install runs in the WORKDIR the package files were copied into
    workdir = None
    copied: set[str] = set()
    installs = []
    for word, args in df:
        if word == "WORKDIR":
            workdir = args
        elif word == "COPY" and workdir:
            srcs, dest = copies([(word, args)])[0]
            if dest.rstrip("/") in (".", workdir.rstrip("/")) or dest.startswith("./"):
                copied |= set(srcs)
        elif word == "RUN":
            for target in pip_targets(args):
                base = re.sub(r"\[.*\]$", "", target)
                if base == want:
                    installs.append((workdir, target))
    assert installs, f"{dockerfile}: no `pip install {want}` step"
    assert installs[0][0] == "/src"
    needed = {"pyproject.toml", pyproject["project"]["readme"], *pyproject["tool"]["setuptools"]["package-dir"].values()}
    assert needed <= copied, f"{dockerfile}: not copied before the install: {needed - copied}"
    extras = set(re.findall(r"\[(.*)\]", installs[0][1])[0].split(",")) if "[" in installs[0][1] else set()
    assert extras <= set(pyproject["project"]["optional-dependencies"]), extras
    for src in copied:
        assert (REPO / src).exists(), src
        assert not dockerignored(src), f".dockerignore excludes {src}, which {dockerfile} copies"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "jupyter.Dockerfile"])
def test_image_runs_as_a_non_root_user(dockerfile):
    df = parse_dockerfile(DOCKER / dockerfile)
    users = instructions(df, "USER")
    assert users and users[-1] not in ("root", "0"), users
    assert any(re.search(rf"useradd [^&;]*\s{re.escape(users[-1])}(\s|$)", a) for a in instructions(df, "RUN"))
    # the user is set before the command, and nothing after it needs root
    words = [w for w, _ in df]
    assert words.index("USER") < words.index("CMD")
    assert "RUN" not in words[words.index("USER"):]


def test_server_image(server_df):
    cmd = exec_form(one(server_df, "CMD"))
    assert cmd[:3] == ["arrowroot", "serve", "/data"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert port == SERVER_PORT and one(server_df, "EXPOSE") == port
    # the catalog lives on a volume the user owns, never next to the (read-only) data
    catalog = env_of(server_df)["ARROWROOT_CATALOG"]
    (volume,) = exec_form(one(server_df, "VOLUME"))
    assert Path(catalog).parent == Path(volume) and not catalog.startswith("/data")
    assert any(f"chown arrowroot:arrowroot {volume}" in a for a in instructions(server_df, "RUN"))
    opts, check = healthcheck(server_df)
    assert check == ["arrowroot", "action", "health", "-l", f"grpc://127.0.0.1:{port}"]
    assert seconds(opts["timeout"]) <= seconds(opts["interval"])
    assert {"interval", "timeout", "start-period", "retries"} <= set(opts)


def test_jupyter_image(jupyter_df):
    assert one(jupyter_df, "EXPOSE") == "8888"
    cmd = exec_form(one(jupyter_df, "CMD"))
    assert cmd[:2] == ["jupyter", "lab"] and "--port=8888" in cmd and "--ip=0.0.0.0" in cmd
    assert env_of(jupyter_df)["ARROWROOT_URL"] == f"grpc://arrowroot:{SERVER_PORT}"
    run = " ".join(instructions(jupyter_df, "RUN"))
    assert {"jupyterlab", "jupytext", "matplotlib"} <= set(pip_targets(run))
    (examples,) = [dest for srcs, dest in copies(jupyter_df) if srcs == ["examples"]]
    # the build converts exactly the notebooks (NN_*.py), not the helper scripts
    glob = re.search(r"jupytext --to ipynb (\S+)", run)[1]
    notebooks = sorted(p.name for p in (REPO / "examples").glob(glob))
    assert notebooks and all(re.match(r"\d\d_", n) for n in notebooks)
    assert "sample_data.py" not in notebooks and (REPO / "examples" / "sample_data.py").exists()
    assert examples.startswith(cmd[-1].split("=", 1)[1]), "the examples are under JupyterLab's root"


def test_no_step_runs_in_a_removed_workdir():
    for dockerfile in ("Dockerfile", "jupyter.Dockerfile"):
        workdir, removed = "/", False
        for word, args in parse_dockerfile(DOCKER / dockerfile):
            if word == "WORKDIR":
                workdir, removed = args, False
            elif word in ("RUN", "COPY"):
                assert not removed, f"{dockerfile}: {word} {args[:40]} runs in {workdir}, removed before"
                removed = bool(re.search(rf"rm -rf {re.escape(workdir)}(\s|$)", args))


@pytest.mark.timeout(180)
def test_the_copied_files_build_the_package(server_df, tmp_path):
    """What the image's install sees — the COPY sources, less .dockerignore — builds a wheel
    with the console script and the package data (no network: no isolation, no dependencies)."""
    pytest.importorskip("setuptools")
    ctx = tmp_path / "src"
    ctx.mkdir()
    for srcs, _ in copies(server_df):
        for src in srcs:
            path = REPO / src
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(REPO).as_posix()
                if not dockerignored(rel):
                    (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, ctx / rel)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(ctx)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    import zipfile

    (wheel,) = (tmp_path / "dist").glob("arrowroot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "arrowroot/flight_server/cli/main.py" in names and "arrowroot/catalog/schema.sql" in names
    assert any(n.startswith("arrowroot/protos/") and n.endswith("_pb2.py") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "arrowroot = arrowroot.flight_server.cli:main" in entry_points


# ------------------------------------------------------------------ compose


def test_compose_services(compose, server_df, jupyter_df):
    name, server = server_service(compose)
    _, jupyter = jupyter_service(compose)
    for service in compose["services"].values():
        if "build" not in service:  # data nodes run the server's image
            assert service["image"] == server["image"]
            continue
        assert (DOCKER / service["build"]["context"]).resolve() == REPO
        assert (REPO / service["build"]["dockerfile"]).is_file()
    # the server: the image's command, data read-only at the served directory, catalog on a volume
    assert server["command"] == exec_form(one(server_df, "CMD"))
    assert server["environment"]["ARROWROOT_CATALOG"] == env_of(server_df)["ARROWROOT_CATALOG"]
    mounts = {v.split(":")[-2] if v.endswith(":ro") else v.split(":")[-1]: v for v in server["volumes"]}
    assert mounts["/data"].endswith(":/data:ro"), "the data must be mounted read-only"
    (volume,) = exec_form(one(server_df, "VOLUME"))
    catalog_volume = mounts[volume].split(":")[0]
    assert catalog_volume in compose["volumes"], "the catalog volume must be declared"
    # the Flight port, then the web view's (ARROWROOT_HTTP_PORT)
    assert [container_port(p) for p in server["ports"]] == [one(server_df, "EXPOSE"),
                                                            server["environment"]["ARROWROOT_HTTP_PORT"]]
    # the gRPC health service for orchestrators' probes (not published: asked inside the network)
    assert server["environment"]["ARROWROOT_HEALTH_PORT"].isdigit()
    # the same health check as the image's
    _, check = healthcheck(server_df)
    assert server["healthcheck"]["test"] == ["CMD", *check]
    opts, _ = healthcheck(server_df)
    for key in ("interval", "timeout", "retries"):
        assert str(server["healthcheck"][key]) == opts[key]
    assert server["healthcheck"]["start_period"] == opts["start-period"]
    # JupyterLab talks to the server by its service name and waits until it is healthy
    assert jupyter["environment"]["ARROWROOT_URL"] == f"grpc://{name}:{SERVER_PORT}"
    assert jupyter["depends_on"][name]["condition"] == "service_healthy"
    assert [container_port(p) for p in jupyter["ports"]] == [one(jupyter_df, "EXPOSE")]
    assert not any("/data" in v for v in jupyter["volumes"]), "the data stays on the server"


def test_compose_data_nodes_join_the_server_with_its_key_and_data(compose):
    name, server = server_service(compose)
    node = compose["services"]["node"]
    assert node["profiles"] == ["cluster"] and node["deploy"]["replicas"] >= 2
    cmd = node["command"]
    assert cmd[:3] == ["arrowroot", "node", "/data"]
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--join") + 1] == f"grpc://{name}:{SERVER_PORT}"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert node["healthcheck"]["test"] == ["CMD", "arrowroot", "action", "health", "-l", f"grpc://127.0.0.1:{port}"]
    assert "ARROWROOT_TICKET_KEY" in node["environment"] and "ARROWROOT_TICKET_KEY" in server["environment"]
    data = next(v for v in server["volumes"] if v.endswith(":/data:ro"))
    assert node["volumes"] == [data], "nodes read the same files, read-only, and hold no catalog"
    assert node["depends_on"][name]["condition"] == "service_healthy"
    assert "ports" not in node
    # each node exports its own metrics and health (scraped and probed inside the network)
    assert cmd[cmd.index("--metrics-port") + 1] and cmd[cmd.index("--health-port") + 1]


def test_compose_jupyterhub_wires_the_hub_to_arrowroot(compose, monkeypatch, tmp_path):
    """Profile "hub", the KCDC layout: the hub's config (run by traitlets, as JupyterHub loads it) and
    arrowroot's [auth] file (parsed by service/sso.py) name each other consistently."""
    from traitlets.config.loader import PyFileConfigLoader

    from arrowroot.flight_server.service import sso

    name, server = server_service(compose)
    _, jupyter = jupyter_service(compose)
    hub = compose["services"]["jupyterhub"]
    assert hub["profiles"] == ["hub"]
    # one shared secret: the hub registers the service with it, arrowroot presents it
    assert hub["environment"]["ARROWROOT_HUB_TOKEN"] == server["environment"]["JUPYTERHUB_API_TOKEN"]
    # arrowroot's [auth] file is mounted read-only where the documented ARROWROOT_AUTH_CONFIG points
    (mount,) = [v for v in server["volumes"] if "hub-auth.toml" in v]
    source, target, mode = mount.split(":")
    assert mode == "ro" and target in (DOCKER / "compose.yaml").read_text().split("ARROWROOT_AUTH_CONFIG=")[1]
    ext = sso.load(tmp_path, DOCKER / source, environ={"JUPYTERHUB_API_TOKEN": "x" * 32})
    assert ext is not None and ext.hub is not None and ext.web.login == "jupyterhub"
    # the hub's own configuration, with the environment compose gives it
    for key, value in hub["environment"].items():
        monkeypatch.setenv(key, re.sub(r"\$\{[^:}]+:-([^}]*)\}", r"\1", str(value)))
    monkeypatch.setenv("HUB_USERS", "alice,bob")
    monkeypatch.setenv("HUB_PASSWORD", "demo-password")
    monkeypatch.setenv("ARROWROOT_HUB_TOKEN", "x" * 32)
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(DOCKER)).load_config()
    (service,) = c.JupyterHub.services
    assert service["name"] == ext.hub.config.service_name == "arrowroot"
    assert ext.hub.config.api_url == f"http://jupyterhub:{c.JupyterHub.get('hub_port', 8081)}/hub/api"
    assert c.JupyterHub.hub_connect_ip == "jupyterhub" and "jupyterhub" in compose["services"]
    http_port = server["environment"]["ARROWROOT_HTTP_PORT"]
    assert service["oauth_redirect_uri"] == f"http://127.0.0.1:{http_port}/auth/callback"
    hub_port = container_port(hub["ports"][0])
    assert c.JupyterHub.bind_url.endswith(f":{hub_port}") and ext.hub.config.public_url.endswith(f":{hub_port}")
    # notebooks: the JupyterLab image (with jupyterhub-singleuser), on this compose network, told where
    # arrowroot is, with a token that may call the service and read the user's groups
    assert c.DockerSpawner.image == jupyter["image"]
    assert c.DockerSpawner.network_name == f"{compose['name']}_default"
    assert c.Spawner.environment["ARROWROOT_URL"] == f"grpc://{name}:{SERVER_PORT}"
    assert {"access:services!service=arrowroot", "read:users:groups!user"} <= set(c.Spawner.server_token_scopes)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "access:services!service=arrowroot" in roles["user"]["scopes"]
    assert "read:users:groups" in roles["arrowroot-service"]["scopes"]
    run = " ".join(instructions(parse_dockerfile(DOCKER / "jupyter.Dockerfile"), "RUN"))
    assert any(t.startswith("jupyterhub") for t in pip_targets(run)), "the notebook image needs jupyterhub-singleuser"
    hub_df = parse_dockerfile(DOCKER / "jupyterhub.Dockerfile")
    hub_run = " ".join(instructions(hub_df, "RUN"))
    assert "configurable-http-proxy" in hub_run and any(t.startswith("jupyterhub") for t in pip_targets(hub_run))
    cmd = exec_form(one(hub_df, "CMD"))
    (copied,) = [dest for srcs, dest in copies(hub_df) if srcs == ["docker/jupyterhub_config.py"]]
    assert cmd == ["jupyterhub", "-f", copied] and one(hub_df, "EXPOSE") == hub_port


def test_compose_named_volumes_are_declared(compose):
    used = set()
    for service in compose["services"].values():
        for v in service.get("volumes", []):
            source = v.split(":")[0]
            if not source.startswith(("/", ".", "$", "~")):
                used.add(source)
    assert used == set(compose["volumes"])


def test_compose_sample_data_service_writes_what_the_notebooks_read(compose):
    demo = compose["services"]["sample-data"]
    assert demo["profiles"] == ["demo"]
    server = server_service(compose)[1]
    data_source = next(v for v in server["volumes"] if v.endswith(":/data:ro")).split(":/data")[0]
    assert f"{data_source}:/data" in demo["volumes"], "the demo writes where the server reads"
    assert demo["command"][1].startswith("/home/jovyan/examples/") and demo["command"][2] == "/data"


def test_compose_config_with_docker_if_available():
    """`docker compose config` validates the file against the compose schema (no engine needed)."""
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker compose plugin is not installed")
    r = subprocess.run([docker, "compose", "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ the commands, run here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_health(check: list[str], location: str, timeout: float) -> subprocess.CompletedProcess:
    argv = [a.replace(f"grpc://127.0.0.1:{SERVER_PORT}", location) for a in check]
    exe = shutil.which(argv[0]) or pytest.skip("the arrowroot console script is not on PATH")
    return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout)


def test_healthcheck_command_against_a_server(server_df, sample_server):
    opts, check = healthcheck(server_df)
    r = run_health(check, sample_server.location, seconds(opts["timeout"]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "ok"


def test_healthcheck_command_against_a_closed_port(server_df):
    opts, check = healthcheck(server_df)
    r = run_health(check, f"grpc://127.0.0.1:{free_port()}", seconds(opts["timeout"]))
    assert r.returncode == 1
    assert "arrowroot action health" in r.stderr


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.timeout(120)
def test_image_command_serves_read_only_data(server_df, sample_dir, tmp_path):
    """The image's CMD and ENV, with /data and the catalog volume mapped here: it serves, the
    health check passes, nothing is written into the data directory, SIGTERM stops it."""
    data = tmp_path / "data"
    shutil.copytree(sample_dir, data, ignore=shutil.ignore_patterns(".arrowroot"))
    before = snapshot(data)
    env = env_of(server_df)
    (volume,) = exec_form(one(server_df, "VOLUME"))
    catalog = tmp_path / "volume" / Path(env["ARROWROOT_CATALOG"]).relative_to(volume)
    catalog.parent.mkdir(parents=True)
    port = free_port()
    cmd = [str(data) if a == "/data" else str(port) if a == SERVER_PORT else a
           for a in exec_form(one(server_df, "CMD"))]
    exe = shutil.which(cmd[0]) or pytest.skip("the arrowroot console script is not on PATH")
    proc = subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **{k: v for k, v in env.items() if not k.startswith("PIP_")},
                                 "ARROWROOT_CATALOG": str(catalog)})
    try:
        line = proc.stdout.readline()
        assert f"serving grpc://0.0.0.0:{port}" in line, line + proc.stderr.read()
        opts, check = healthcheck(server_df)
        deadline = time.monotonic() + 60
        while True:                                   # indexing runs in the background
            r = run_health(check, f"grpc://127.0.0.1:{port}", seconds(opts["timeout"]))
            assert r.returncode == 0, r.stderr
            answer = json.loads(r.stdout)
            if not answer["indexing"] and answer["datasets"] > 0:
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
        assert catalog.exists(), "the catalog goes where ARROWROOT_CATALOG says"
        assert snapshot(data) == before, "the server wrote into the data directory"
    finally:
        proc.send_signal(signal.SIGTERM)              # what `docker stop` sends
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "stopped" in err
