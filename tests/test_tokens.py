"""Token plumbing without outside services: scopes → dataset-name prefixes, the ``[auth]``
configuration's checks, and the client's token discovery order (tests/test_sso.py runs the real
OIDC provider and JupyterHub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arrowroot.clients.bearer import find_token
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.service import sso
from arrowroot.flight_server.service.access import AuthConfigError
from arrowroot.flight_server.service.claims import group_names, may_read, read_prefixes, scope_list
from arrowroot.flight_server.server.flight import ArrowrootServer


@pytest.mark.parametrize("scopes, prefixes", [
    (["openid", "profile"], None),                                # an identity, not a capability
    (["storage.read:/l200"], ("l200",)),
    (["storage.read:/"], ("",)),
    (["read:/hep/", "storage.read:/lab"], ("hep", "lab")),
    (["storage.create:/l200", "storage.read:/l200/p03"], ("l200/p03",)),
    (["storage.read:/l200/../secret"], ()),                       # malformed: grants nothing
    (["storage.read:l200"], ()),                                  # not an absolute path
    (["storage.modify:/l200"], None),                             # writes say nothing about reads
])
def test_read_scopes(scopes: list[str], prefixes: tuple | None) -> None:
    assert read_prefixes(scopes) == prefixes


def test_prefixes_cover_folders_files_and_objects() -> None:
    assert may_read(["hep"], "hep/events.root:events")
    assert may_read(["hep/events.root"], "hep/events.root:events")
    assert may_read(["l200/p03"], "l200/p03")
    assert not may_read(["hep"], "hepatitis/x.h5:data")           # a prefix of a word is not a folder
    assert not may_read(["hep/events.root"], "hep/events.root2:events")
    assert not may_read([], "hep/events.root:events")
    assert may_read([""], "anything/at/all")


def test_claim_shapes() -> None:
    assert scope_list("storage.read:/a openid") == ["storage.read:/a", "openid"]
    assert scope_list(["storage.read:/a", 3]) == ["storage.read:/a"]
    assert group_names(["/l200/analysis", "ok", "", "bad group", 7, "x" * 300]) == {"/l200/analysis", "ok"}
    assert group_names("a b") == {"a", "b"}


@pytest.mark.parametrize("table, message", [
    ({"oidc": {"audience": "a"}}, "issuer URL is required"),
    ({"oidc": {"issuer": "http://sso.example.org", "audience": "a"}}, "plain http:// is allowed only on loopback"),
    ({"oidc": {"issuer": "https://sso.example.org"}}, "audience: required"),
    ({"oidc": {"issuer": "https://sso.example.org", "audience": "a", "algorithms": ["HS256"]}}, "never none or HS"),
    ({"oidc": {"issuer": "https://sso.example.org", "audience": "a", "algorithms": ["none"]}}, "never none or HS"),
    ({"oidc": {"issuer": "https://sso.example.org", "audience": "a", "color": 1}}, "unknown keys"),
    ({"oidc": [{"issuer": "https://a.org", "audience": "x"}, {"issuer": "https://a.org", "audience": "y"}]},
     "same issuer twice"),
    ({"jupyterhub": {"cache_ttl": 10}}, "api_url"),
    ({"jupyterhub": {"api_url": "http://127.0.0.1:8081/hub/api", "cache_ttl": 7200}}, "0 to 3600"),
    ({"web": {"login": "oidc", "client_id": "w"}}, "needs an [auth.oidc] issuer"),
    ({"web": {"login": "saml"}}, "one of password, oidc, jupyterhub"),
    ({"wlcg": {}}, "unknown keys in [auth]"),
])
def test_bad_auth_config_is_refused(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        sso.from_table(table, environ={})


def test_good_auth_config() -> None:
    ext = sso.from_table({
        "oidc": [{"issuer": "https://sso.example.org/realms/l200", "audience": ["arrowroot", "https://wlcg.cern.ch/jwt/v1/any"],
                  "user_claim": "preferred_username"},
                 {"issuer": "https://cilogon.org", "audience": "arrowroot", "user_claim": "eppn", "user_prefix": "cil."}],
        "jupyterhub": {"allow_http": True},           # the hub's internal network
    }, environ={"JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_API_TOKEN": "t"})
    assert ext is not None and ext.oidc is not None and ext.hub is not None
    assert set(ext.oidc.issuers) == {"https://sso.example.org/realms/l200", "https://cilogon.org"}
    assert ext.hub.config.scope == "access:services!service=arrowroot"
    assert ext.hub.config.api_token == "t"
    assert sso.from_table(None) is None


def test_server_refuses_to_start_with_a_bad_auth_section(tmp_path: Path) -> None:
    (tmp_path / "arrowroot.toml").write_text('[auth.oidc]\nissuer = "https://sso.example.org"\n')
    with pytest.raises(AuthConfigError, match="audience"):
        ArrowrootServer(Settings(root=tmp_path, port=0, catalog=tmp_path / "c.duckdb"))


def test_token_discovery_order(tmp_path: Path) -> None:
    uid = 4242
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / f"bt_u{uid}").write_text("  from-runtime-dir \n")
    named = tmp_path / "named.jwt"
    named.write_text("from-file\n")
    env = {"XDG_RUNTIME_DIR": str(runtime), "JUPYTERHUB_API_TOKEN": "from-hub"}
    assert find_token(env, uid) == ("from-runtime-dir", f"$XDG_RUNTIME_DIR/bt_u{uid}")
    assert find_token({**env, "BEARER_TOKEN_FILE": str(named)}, uid) == ("from-file", "$BEARER_TOKEN_FILE")
    assert find_token({**env, "BEARER_TOKEN": " direct ", "BEARER_TOKEN_FILE": str(named)}, uid) == \
        ("direct", "$BEARER_TOKEN")
    # an empty or missing file is skipped; the hub's token is the last resort
    (runtime / f"bt_u{uid}").write_text("\n")
    assert find_token({**env, "BEARER_TOKEN_FILE": str(tmp_path / "absent")}, uid) == \
        ("from-hub", "$JUPYTERHUB_API_TOKEN")
    if not os.path.exists(f"/tmp/bt_u{uid}"):
        assert find_token({}, uid) is None
