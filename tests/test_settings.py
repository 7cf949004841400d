"""One source of settings: flag > environment > DIR/arrowroot.toml [server] > the Settings default,
the same for every command, and the README's table generated from Settings."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from arrowroot.clients import Client, TimedOut
from arrowroot.flight_server.cli.main import main
from arrowroot.flight_server.cli.options import TABLE_BEGIN, TABLE_END, flags_by_setting, readme_block
from arrowroot.flight_server.core import settings as config
from arrowroot.flight_server.core.settings import Settings, load

from cli_process import Running, free_port, run_cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _toml(root: Path, text: str) -> Path:
    (root / "arrowroot.toml").write_text(text)
    return root


# ---------------------------------------------------------------- in process: the merge itself


def test_precedence_for_every_kind_of_setting(tmp_path):
    _toml(tmp_path, '[server]\nport = 9001\nsql_timeout = 10\ncompression = "lz4"\nshow_internal = true\n'
                    'catalog = "cat/c.duckdb"\ncache_mb = 64\n')
    env = {"ARROWROOT_PORT": "9002", "ARROWROOT_SQL_TIMEOUT": "20", "ARROWROOT_SHOW_INTERNAL": "no"}
    s = load(tmp_path, {"port": 9003, "sql_timeout": None}, environ=env)
    assert s.port == 9003                                   # flag > env > toml
    assert s.sql_timeout == 20.0                            # env > toml (the flag was not given)
    assert s.show_internal is False                         # env > toml, for booleans too
    assert s.compression == "lz4" and s.cache_mb == 64.0    # toml > default; an integer is a fine float
    assert s.catalog == tmp_path / "cat" / "c.duckdb"       # relative to the served directory
    assert s.batch_rows == config.default("batch_rows")     # default
    assert load(tmp_path, environ={}).port == 9001


@pytest.mark.parametrize("text,message", [
    ("[server]\nprot = 1\n", "no setting 'prot'; did you mean 'port'?"),
    ("[server]\nport = \"x\"\n", "port = 'x': an integer expected"),
    ("[server]\nshow_internal = 1\n", "show_internal = 1: true or false expected"),
    ("[server]\ncompression = \"brotli\"\n", "compression = 'brotli': lz4, zstd or none"),
    ("[server\n", "arrowroot.toml"),
])
def test_bad_toml_names_the_key(tmp_path, text, message):
    _toml(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path, environ={})


def test_bad_environment_names_the_variable(tmp_path):
    with pytest.raises(ValueError, match=re.escape("ARROWROOT_PORT='x': not a valid int")):
        load(tmp_path, environ={"ARROWROOT_PORT": "x"})
    with pytest.raises(ValueError, match=re.escape("$ARROWROOT_PORT: port = 70000: a port between 0 and 65535")):
        load(tmp_path, environ={"ARROWROOT_PORT": "70000"})


def test_no_module_keeps_a_default_of_its_own():
    """The planner's limits, tasks, the SQL engine, the signer, caches and workspace limits take
    the Settings value they are given; nothing else spells 8815, 64 MiB or 300 s."""
    import dataclasses

    from arrowroot.flight_server.core.task import ReadTask
    from arrowroot.flight_server.plan.planner import Limits
    from arrowroot.flight_server.workspace.store import Limits as WorkspaceLimits

    for cls in (Limits, WorkspaceLimits):
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)), cls
    task_fields = {f.name: f for f in dataclasses.fields(ReadTask)}
    for name in ("batch_rows", "batch_bytes", "chunk_rows"):
        assert task_fields[name].default is dataclasses.MISSING
    assert Limits.of(Settings(root=Path("."))) == Limits(64 << 20, 16 << 20, 4 << 20, 131_072)
    source = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "flight_server").rglob("*.py")
                       if p.name != "settings.py")
    assert "8815" not in re.sub(r"#.*|\"\"\".*?\"\"\"", "", source, flags=re.S), "a copy of the default port"


def test_readme_settings_table_is_generated_from_settings():
    text = README.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text
    block = text[text.index(TABLE_BEGIN): text.index(TABLE_END) + len(TABLE_END)]
    assert block == readme_block(main), "README's settings table is stale: paste `arrowroot settings --markdown`"
    for name in config.FIELDS:
        assert f"`{config.env_name(name)}`" in block
    # every flag that fills a setting is listed, with its commands
    flags = flags_by_setting(main)
    assert flags["port"] == {"--port": ["serve"]} and flags["node_port"] == {"--port": ["node"]}
    assert {"serve", "index", "users add", "grant", "keys list"} <= set(flags["catalog"]["--catalog"])


def test_every_documented_variable_is_a_setting_or_a_client_variable():
    client_side = {"ARROWROOT_URL", "ARROWROOT_TOKEN", "ARROWROOT_USER", "ARROWROOT_PASSWORD", "ARROWROOT_TLS_CA",
                   "ARROWROOT_TICKET_KEY", "ARROWROOT_DEBUG", "ARROWROOT_DATA", "ARROWROOT_BIND"}
    client_side |= {"ARROWROOT_SCREENS"}   # the browser tests keep their screenshots there
    named = set(re.findall(r"ARROWROOT_[A-Z_]+[A-Z]", README.read_text()))
    unknown = named - client_side - {config.env_name(n) for n in config.FIELDS}
    assert not unknown, f"README documents variables nothing reads: {sorted(unknown)}"


# ---------------------------------------------------------------- real commands


@pytest.mark.slow
def test_serve_port_and_sql_timeout_from_env_toml_and_flag(tmp_path):
    """`ARROWROOT_PORT=… arrowroot serve DIR` serves on that port; the toml below it, a flag above it."""
    data = tmp_path / "data"
    data.mkdir()
    toml_port, env_port, flag_port = free_port(), free_port(), free_port()
    _toml(data, f"[server]\nport = {toml_port}\nindex_on_start = false\n")
    def serve(n: int, *flags: str, env: dict | None = None) -> Running:
        return Running("serve", str(data), "--catalog", str(tmp_path / f"c{n}.duckdb"), *flags, env=env)

    a = serve(1)
    b = serve(2, env={"ARROWROOT_PORT": str(env_port), "ARROWROOT_SQL_TIMEOUT": "1", "ARROWROOT_INDEX_ON_START": "true"})
    c = serve(3, "--port", str(flag_port), env={"ARROWROOT_PORT": str(env_port)})
    try:
        assert a.port == toml_port and "indexing" not in a.line, a.line       # toml > default
        assert b.port == env_port and "indexing" in b.line, b.line            # env > toml
        assert c.port == flag_port, c.line                                    # flag > env
        with Client(f"grpc://127.0.0.1:{env_port}") as client:
            t0 = time.perf_counter()
            with pytest.raises(TimedOut):
                client.sql("SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b")
            assert time.perf_counter() - t0 < 30
    finally:
        for r in (a, b, c):
            r.stop()


@pytest.mark.slow
def test_index_on_start_off_serves_the_catalog_as_it_is(tmp_path, sample_dir):
    data = tmp_path / "data"
    (data / "hep").mkdir(parents=True)
    (data / "hep" / "events.root").write_bytes((sample_dir / "hep" / "events.root").read_bytes())
    with Running("serve", str(data), "--port", "0", env={"ARROWROOT_INDEX_ON_START": "0"}) as s:
        assert "(0 datasets)" in s.line, s.line
        time.sleep(1.0)
        with Client(f"grpc://127.0.0.1:{s.port}") as c:
            assert c.action("health")["indexing"] is False and c.datasets().num_rows == 0
    with Running("serve", str(data), "--port", "0") as s:  # the default indexes in the background
        assert "indexing ..." in s.line
        with Client(f"grpc://127.0.0.1:{s.port}") as c:
            deadline = time.monotonic() + 60
            while c.datasets().num_rows == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "hep/events.root:events" in c.datasets()["name"].to_pylist()


@pytest.mark.slow
def test_node_port_from_env_toml_and_flag(tmp_path):
    toml_port, env_port, flag_port = free_port(), free_port(), free_port()
    _toml(tmp_path, f"[server]\nnode_port = {toml_port}\n")
    key = {"ARROWROOT_TICKET_KEY": "a shared secret of enough length"}
    nodes = [Running("node", str(tmp_path), env=key),
             Running("node", str(tmp_path), env={**key, "ARROWROOT_NODE_PORT": str(env_port)}),
             Running("node", str(tmp_path), "--port", str(flag_port),
                     env={**key, "ARROWROOT_NODE_PORT": str(env_port), "ARROWROOT_NODE_ID": "n7"})]
    try:
        assert [n.port for n in nodes] == [toml_port, env_port, flag_port], [n.line for n in nodes]
        assert nodes[2].line.endswith(" as n7")
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.slow
def test_index_and_admin_commands_find_the_catalog_the_same_way(tmp_path):
    (tmp_path / "sub").mkdir()
    _toml(tmp_path, '[server]\ncatalog = "from-toml.duckdb"\n')
    r = run_cli("index", str(tmp_path))
    assert r.returncode == 0 and (tmp_path / "from-toml.duckdb").exists(), r.stderr
    env_cat, flag_cat = tmp_path / "from-env.duckdb", tmp_path / "from-flag.duckdb"
    r = run_cli("index", str(tmp_path), env={"ARROWROOT_CATALOG": str(env_cat)})
    assert r.returncode == 0 and env_cat.exists(), r.stderr
    r = run_cli("users", "add", str(tmp_path), "alice", "--password-stdin", "--catalog", str(flag_cat),
                input="a long password\n", env={"ARROWROOT_CATALOG": str(env_cat)})
    assert r.returncode == 0 and flag_cat.exists(), r.stderr
    listed = {name: run_cli("users", "list", str(tmp_path), env=env).stdout
              for name, env in {"toml": {}, "env": {"ARROWROOT_CATALOG": str(env_cat)}}.items()}
    assert "alice" not in listed["toml"] and "alice" not in listed["env"]
    assert "alice" in run_cli("users", "list", str(tmp_path), "--catalog", str(flag_cat)).stdout


@pytest.mark.slow
def test_settings_command_says_where_each_value_comes_from(tmp_path):
    _toml(tmp_path, "[server]\nport = 9100\ncache_mb = 1.5\n")
    r = run_cli("settings", str(tmp_path), "--json", env={"ARROWROOT_CACHE_MB": "2"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["port"] == {"value": 9100, "from": f"{tmp_path.resolve()}/arrowroot.toml [server]"}
    assert got["cache_mb"] == {"value": 2.0, "from": "$ARROWROOT_CACHE_MB"}
    assert got["sql_timeout"] == {"value": 300.0, "from": "default"}
    r = run_cli("settings", str(tmp_path), env={"ARROWROOT_PORT": "nope"})
    assert r.returncode == 2 and r.stderr.strip() == "arrowroot settings: ARROWROOT_PORT='nope': not a valid int"
