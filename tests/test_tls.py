"""TLS and mutual TLS with a throw-away CA made in the test (``cryptography``), real server on
port 0, real pyarrow clients; plus the clear-text warning."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as fl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from arrowroot.catalog import identities
from arrowroot.catalog.store import Catalog
from arrowroot.clients import Client
from arrowroot.flight_server.server.auth import AuthConfigError
from arrowroot.flight_server.core.settings import Settings
from arrowroot.flight_server.cli.demo import write_sample_files
from arrowroot.flight_server.server.flight import ArrowrootServer

EVENTS = "hep/events.root:events"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None, *,
          ca: bool = False, server: bool = False, client: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate from the CA, and a
    client certificate from a second, untrusted CA."""

    def __init__(self, where: Path):
        pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("arrowroot test CA", ca_key, ca=True)
        ca_id = (ca.subject, ca_key)
        server_key = ec.generate_private_key(ec.SECP256R1())
        client_key = ec.generate_private_key(ec.SECP256R1())
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        rogue_ca = _cert("rogue CA", rogue_key, ca=True)
        rogue_client_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = pem(ca)
        self.server_cert = pem(_cert("localhost", server_key, ca_id, server=True))
        self.server_key = _pem_key(server_key)
        self.client_cert = pem(_cert("alice", client_key, ca_id, client=True))
        self.client_key = _pem_key(client_key)
        self.rogue_cert = pem(_cert("mallory", rogue_client_key, (rogue_ca.subject, rogue_key), client=True))
        self.rogue_key = _pem_key(rogue_client_key)
        self.files = {}
        for name in ("ca", "server_cert", "server_key"):
            path = where / f"{name}.pem"
            path.write_bytes(getattr(self, name))
            self.files[name] = path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_files(tmp_path_factory.mktemp("tlsdata"), entries=2000)


def _serve(root: Path, catalog: Catalog | None = None, **settings: object) -> ArrowrootServer:
    server = ArrowrootServer(Settings(root=root, port=0, **settings), catalog=catalog)
    server.indexer.run()
    threading.Thread(target=server.serve, daemon=True).start()
    return server


@pytest.fixture
def tls_server(data_dir: Path, pki: Pki, tmp_path: Path) -> Iterator[ArrowrootServer]:
    s = _serve(data_dir, Catalog(tmp_path / "c.duckdb"), tls_cert=pki.files["server_cert"],
               tls_key=pki.files["server_key"])
    yield s
    s.shutdown()


@pytest.fixture
def mtls_server(data_dir: Path, pki: Pki, tmp_path: Path) -> Iterator[ArrowrootServer]:
    s = _serve(data_dir, Catalog(tmp_path / "c.duckdb"), tls_cert=pki.files["server_cert"],
               tls_key=pki.files["server_key"], tls_client_ca=pki.files["ca"])
    yield s
    s.shutdown()


def _names(c: fl.FlightClient) -> set[str]:
    return {i.descriptor.path[0].decode() for i in c.list_flights()}


def test_tls_serves_grpc_tls_with_a_trusted_ca(tls_server: ArrowrootServer, pki: Pki) -> None:
    assert tls_server.settings.location.startswith("grpc+tls://")
    with fl.FlightClient(f"grpc+tls://localhost:{tls_server.port}", tls_root_certs=pki.ca) as c:
        assert EVENTS in _names(c)
        info = c.get_flight_info(fl.FlightDescriptor.for_path(EVENTS))
        assert c.do_get(info.endpoints[0].ticket).read_all().num_rows == 2000


def test_tls_refuses_clients_that_do_not_trust_the_server(tls_server: ArrowrootServer) -> None:
    with fl.FlightClient(f"grpc+tls://localhost:{tls_server.port}") as c, pytest.raises(fl.FlightUnavailableError):
        _names(c)
    with fl.FlightClient(f"grpc://localhost:{tls_server.port}") as c, pytest.raises(fl.FlightUnavailableError):
        _names(c)     # clear text against a TLS port


def test_mtls_accepts_a_client_certificate_from_the_ca(mtls_server: ArrowrootServer, pki: Pki) -> None:
    with Client(f"grpc+tls://localhost:{mtls_server.port}", tls_root_certs=pki.ca,
                cert_chain=pki.client_cert, private_key=pki.client_key) as c:
        assert c.read(EVENTS, ["nMuon"], entries=(0, 5)).num_rows == 5


@pytest.mark.parametrize("who", ["rogue", "none"])
def test_mtls_refuses_other_clients(mtls_server: ArrowrootServer, pki: Pki, who: str) -> None:
    kwargs = {"cert_chain": pki.rogue_cert, "private_key": pki.rogue_key} if who == "rogue" else {}
    with fl.FlightClient(f"grpc+tls://localhost:{mtls_server.port}", tls_root_certs=pki.ca, **kwargs) as c:
        with pytest.raises(fl.FlightUnavailableError):
            _names(c)
    # and the server keeps serving the good client
    with fl.FlightClient(f"grpc+tls://localhost:{mtls_server.port}", tls_root_certs=pki.ca,
                         cert_chain=pki.client_cert, private_key=pki.client_key) as c:
        assert EVENTS in _names(c)


def test_password_login_over_tls(data_dir: Path, pki: Pki, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "alice", "pw-over-tls", ["cms"])
    identities.grant(cat, "hep/*", "group:cms")
    server = _serve(data_dir, cat, tls_cert=pki.files["server_cert"], tls_key=pki.files["server_key"])
    try:
        with Client(f"grpc+tls://localhost:{server.port}", tls_root_certs=pki.ca,
                    username="alice", password="pw-over-tls") as c:
            assert c.datasets()["name"].to_pylist() == [EVENTS]
    finally:
        server.shutdown()


def test_bad_tls_configuration_is_refused(data_dir: Path, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="both --tls-cert and --tls-key"):
        ArrowrootServer(Settings(root=data_dir, port=0, tls_cert=pki.files["server_cert"]),
                        catalog=Catalog(tmp_path / "a.duckdb"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(AuthConfigError, match="not a PEM file"):
        ArrowrootServer(Settings(root=data_dir, port=0, tls_cert=junk, tls_key=pki.files["server_key"]),
                        catalog=Catalog(tmp_path / "b.duckdb"))


def test_clear_text_warning_only_for_auth_on_a_public_address(data_dir: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cat = Catalog(tmp_path / "c.duckdb")
    identities.add_user(cat, "alice", "pw")
    caplog.set_level(logging.WARNING, logger="arrowroot.auth")
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        caplog.clear()
        server = ArrowrootServer(Settings(root=data_dir, host=host, port=0), catalog=cat)
        server.shutdown()
        assert any("TLS is off" in r.getMessage() for r in caplog.records) is warned
