"""Tests for pynano.certs: parse its output back and use it with the ssl module."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import ssl
import stat
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CERTS_PATH = Path(__file__).resolve().parents[1] / "pynano" / "certs.py"
_HANDSHAKE_TIMEOUT = 10.0  # seconds, for each socket operation and the thread join


def _load_certs_module() -> ModuleType:
    # Loads by file path because the pynano package may have no __init__.py
    # yet. The module must be in sys.modules before it runs, because
    # dataclasses looks up the module of a class that it processes.
    name = "_pynano_certs_under_test"
    spec = importlib.util.spec_from_file_location(name, _CERTS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


certs = _load_certs_module()


@pytest.fixture(scope="module")
def pki():
    return certs.make_test_pki()


@pytest.fixture(scope="module")
def rsa_pki():
    return certs.make_test_pki("rsa")


def _cert(pair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_pem)


def _key(pair):
    return serialization.load_pem_private_key(pair.key_pem, password=None)


def _extension(cert: x509.Certificate, extension_class):
    return cert.extensions.get_extension_for_class(extension_class)


# CA


def test_ca_basic_constraints(pki):
    constraints = _extension(_cert(pki.ca), x509.BasicConstraints)

    assert constraints.value.ca is True
    assert constraints.critical is True


def test_ca_is_self_signed(pki):
    ca_cert = _cert(pki.ca)

    assert ca_cert.issuer == ca_cert.subject
    ca_cert.verify_directly_issued_by(ca_cert)


def test_ca_key_usage(pki):
    usage = _extension(_cert(pki.ca), x509.KeyUsage)

    assert usage.critical is True
    assert usage.value.key_cert_sign is True
    assert usage.value.crl_sign is True
    assert usage.value.digital_signature is False


def test_ca_common_name_argument():
    ca = certs.make_ca("demo root")

    names = _cert(ca).subject.get_attributes_for_oid(NameOID.COMMON_NAME)

    assert [name.value for name in names] == ["demo root"]


def test_ca_key_matches_cert(pki):
    public_from_key = _key(pki.ca).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_from_cert = _cert(pki.ca).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    assert public_from_key == public_from_cert


# Server and client leaves


def test_server_common_name(pki):
    names = _cert(pki.server).subject.get_attributes_for_oid(NameOID.COMMON_NAME)

    assert [name.value for name in names] == ["localhost"]


def test_server_san_names(pki):
    san = _extension(_cert(pki.server), x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)


def test_server_verifies_under_ca(pki):
    _cert(pki.server).verify_directly_issued_by(_cert(pki.ca))


def test_client_verifies_under_ca(pki):
    _cert(pki.client).verify_directly_issued_by(_cert(pki.ca))


def test_leaf_rejects_other_ca(pki):
    # Same subject name as the real CA, so only the signature check can fail.
    other_ca = certs.make_ca()

    with pytest.raises(InvalidSignature):
        _cert(pki.server).verify_directly_issued_by(_cert(other_ca))


def test_server_eku_server_auth(pki):
    usage = _extension(_cert(pki.server), x509.ExtendedKeyUsage).value

    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_eku_client_auth(pki):
    usage = _extension(_cert(pki.client), x509.ExtendedKeyUsage).value

    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_client_common_name(pki):
    names = _cert(pki.client).subject.get_attributes_for_oid(NameOID.COMMON_NAME)

    assert [name.value for name in names] == ["pynano test client"]


def test_client_has_no_san(pki):
    with pytest.raises(x509.ExtensionNotFound):
        _extension(_cert(pki.client), x509.SubjectAlternativeName)


def test_leaf_is_not_ca(pki):
    constraints = _extension(_cert(pki.server), x509.BasicConstraints)

    assert constraints.value.ca is False
    assert constraints.critical is True


def test_ec_leaf_key_usage(pki):
    usage = _extension(_cert(pki.server), x509.KeyUsage)

    assert usage.critical is True
    assert usage.value.digital_signature is True
    assert usage.value.key_encipherment is False
    assert usage.value.key_cert_sign is False


def test_rsa_leaf_key_usage(rsa_pki):
    usage = _extension(_cert(rsa_pki.server), x509.KeyUsage).value

    assert usage.digital_signature is True
    assert usage.key_encipherment is True


def test_key_identifiers_link_chain(pki):
    ca_ski = _extension(_cert(pki.ca), x509.SubjectKeyIdentifier).value
    server_aki = _extension(_cert(pki.server), x509.AuthorityKeyIdentifier).value

    assert server_aki.key_identifier == ca_ski.digest


def test_leaf_ski_matches_key(pki):
    server_cert = _cert(pki.server)
    expected = x509.SubjectKeyIdentifier.from_public_key(server_cert.public_key())

    assert _extension(server_cert, x509.SubjectKeyIdentifier).value == expected


def test_ca_aki_is_own_key(pki):
    ca_cert = _cert(pki.ca)
    ca_ski = _extension(ca_cert, x509.SubjectKeyIdentifier).value
    ca_aki = _extension(ca_cert, x509.AuthorityKeyIdentifier).value

    assert ca_aki.key_identifier == ca_ski.digest


def test_signatures_use_sha256(pki):
    for pair in (pki.ca, pki.server, pki.client):
        assert isinstance(_cert(pair).signature_hash_algorithm, hashes.SHA256)


def test_serial_numbers_differ(pki):
    serials = {_cert(pair).serial_number for pair in (pki.ca, pki.server, pki.client)}

    assert len(serials) == 3


def test_leaf_san_from_arguments(pki):
    leaf = certs.make_leaf(
        pki.ca,
        "api",
        dns_names=("api.test", "www.api.test"),
        ip_addresses=(ipaddress.ip_address("10.0.0.1"), "fe80::1"),
        server=True,
    )

    san = _extension(_cert(leaf), x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.DNSName) == ["api.test", "www.api.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("fe80::1"),
    ]


def test_leaf_invalid_ip_rejected(pki):
    with pytest.raises(ValueError, match="not-an-ip"):
        certs.make_leaf(pki.ca, "x", ip_addresses=("not-an-ip",), server=True)


def test_leaf_single_str_san_rejected(pki):
    with pytest.raises(TypeError, match="dns_names"):
        certs.make_leaf(pki.ca, "x", dns_names="localhost", server=True)


# Validity period


def test_default_validity_window(pki):
    before = datetime.now(timezone.utc)
    server_cert = _cert(pki.server)

    # The fixture signed the certificate before this test started, so allow
    # 5 minutes between its "now" and `before`.
    assert server_cert.not_valid_before_utc < before
    assert server_cert.not_valid_before_utc > before - timedelta(hours=1, minutes=5)
    assert server_cert.not_valid_after_utc > before + timedelta(days=29)
    assert server_cert.not_valid_after_utc < before + timedelta(days=31)


def test_expired_cert_keeps_not_after(pki):
    not_after = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    expired = certs.make_leaf(pki.ca, "expired", server=True, not_after=not_after)

    expired_cert = _cert(expired)
    assert expired_cert.not_valid_after_utc == not_after
    assert expired_cert.not_valid_before_utc < not_after


def test_future_not_before_kept(pki):
    not_before = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=400)

    future = certs.make_leaf(pki.ca, "future", server=True, not_before=not_before)

    future_cert = _cert(future)
    assert future_cert.not_valid_before_utc == not_before
    assert future_cert.not_valid_after_utc > not_before


def test_ca_validity_arguments():
    not_before = datetime(2030, 1, 1, tzinfo=timezone.utc)
    not_after = datetime(2031, 1, 1, tzinfo=timezone.utc)

    ca_cert = _cert(certs.make_ca(not_before=not_before, not_after=not_after))

    assert ca_cert.not_valid_before_utc == not_before
    assert ca_cert.not_valid_after_utc == not_after


def test_empty_validity_rejected(pki):
    moment = datetime(2030, 1, 1, tzinfo=timezone.utc)

    with pytest.raises(ValueError, match="not_after"):
        certs.make_leaf(pki.ca, "x", server=True, not_before=moment, not_after=moment)


def test_naive_datetime_rejected(pki):
    with pytest.raises(ValueError, match="timezone-aware"):
        certs.make_leaf(pki.ca, "x", server=True, not_after=datetime(2030, 1, 1))


# Keys


def test_ec_key_is_p256():
    key = certs.make_key("ec")

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_rsa_key_is_2048_bits():
    key = certs.make_key("rsa")

    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048


def test_rsa3072_key_size():
    key = certs.make_key("rsa3072")

    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072


def test_rsa_pki_cert_key_size(rsa_pki):
    for pair in (rsa_pki.ca, rsa_pki.server, rsa_pki.client):
        public_key = _cert(pair).public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert public_key.key_size == 2048


def test_rsa_server_verifies_under_ca(rsa_pki):
    _cert(rsa_pki.server).verify_directly_issued_by(_cert(rsa_pki.ca))


def test_bad_key_type_names_value():
    with pytest.raises(ValueError) as raised:
        certs.make_key("dsa")

    message = str(raised.value)
    assert "'dsa'" in message
    for valid in ("'ec'", "'rsa'", "'rsa3072'", "'rsa4096'"):
        assert valid in message


def test_bad_key_type_in_make_ca():
    with pytest.raises(ValueError, match="'RSA'"):
        certs.make_ca(key_type="RSA")


def test_key_bits_gives_weak_rsa(pki):
    weak = certs.make_leaf(pki.ca, "weak", server=True, key_type="rsa", key_bits=1024)

    public_key = _cert(weak).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 1024


def test_key_bits_with_ec_rejected(pki):
    with pytest.raises(ValueError, match="key_bits=1024"):
        certs.make_leaf(pki.ca, "x", server=True, key_bits=1024)


def test_key_bits_below_1024_rejected(pki):
    with pytest.raises(ValueError, match="512"):
        certs.make_leaf(pki.ca, "x", server=True, key_type="rsa", key_bits=512)


def test_key_pem_is_pkcs8_unencrypted(pki):
    assert pki.server.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(_key(pki.server), ec.EllipticCurvePrivateKey)


def test_cert_der_round_trip(pki):
    der = pki.server.cert_der()

    assert der.startswith(b"\x30")
    assert x509.load_der_x509_certificate(der) == _cert(pki.server)


# Unknown critical extension


def test_unknown_extension_is_critical(pki):
    bad = certs.make_leaf(pki.ca, "bad", server=True, critical_unknown_extension=True)

    extension = _cert(bad).extensions.get_extension_for_oid(certs.UNKNOWN_EXTENSION_OID)
    assert extension.critical is True
    assert extension.oid.dotted_string == "1.3.6.1.4.1.55555.1"


def test_unknown_extension_off_by_default(pki):
    with pytest.raises(x509.ExtensionNotFound):
        _cert(pki.server).extensions.get_extension_for_oid(certs.UNKNOWN_EXTENSION_OID)


# write_pki

_PKI_FILE_NAMES = {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"}


def test_write_pki_writes_six_files(tmp_path):
    paths = certs.write_pki(tmp_path)

    assert set(paths) == _PKI_FILE_NAMES
    assert {path.name for path in tmp_path.iterdir()} == _PKI_FILE_NAMES
    for name, path in paths.items():
        assert path == tmp_path / name
        assert path.read_bytes().startswith(b"-----BEGIN ")


def test_write_pki_files_parse(tmp_path):
    paths = certs.write_pki(tmp_path)

    ca_cert = x509.load_pem_x509_certificate(paths["ca.pem"].read_bytes())
    server_cert = x509.load_pem_x509_certificate(paths["server.pem"].read_bytes())
    client_cert = x509.load_pem_x509_certificate(paths["client.pem"].read_bytes())
    server_cert.verify_directly_issued_by(ca_cert)
    client_cert.verify_directly_issued_by(ca_cert)
    serialization.load_pem_private_key(paths["server.key"].read_bytes(), password=None)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX-only")
def test_write_pki_key_mode_0600(tmp_path):
    paths = certs.write_pki(tmp_path)

    for name in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600, name


def test_write_pki_creates_directory(tmp_path):
    target = tmp_path / "nested" / "pki"

    paths = certs.write_pki(target)

    assert target.is_dir()
    assert paths["ca.pem"].is_file()


def test_write_pki_rsa_keys(tmp_path):
    paths = certs.write_pki(tmp_path, key_type="rsa")

    key = serialization.load_pem_private_key(paths["server.key"].read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)


def test_write_pki_rejects_existing_file(tmp_path):
    existing = tmp_path / "server.key"
    existing.write_bytes(b"keep me")

    with pytest.raises(FileExistsError) as raised:
        certs.write_pki(tmp_path)

    message = str(raised.value)
    assert str(existing) in message
    assert "pass a new or empty folder" in message
    assert existing.read_bytes() == b"keep me"
    assert [path.name for path in tmp_path.iterdir()] == ["server.key"]


def test_write_pki_second_run_raises(tmp_path):
    first = certs.write_pki(tmp_path)
    ca_before = first["ca.pem"].read_bytes()

    with pytest.raises(FileExistsError):
        certs.write_pki(tmp_path)

    assert first["ca.pem"].read_bytes() == ca_before


# Interoperability with the ssl module (OpenSSL)


def _handshake(server_context, client_context, server_hostname="localhost"):
    """Run a TLS handshake over a socket pair and echo one byte.

    The server side runs in a thread. Returns (certificate the client saw,
    certificate the server saw, None) on success, or (None, None, error) with
    the client's error, else the server's.
    """
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(_HANDSHAKE_TIMEOUT)
    client_sock.settimeout(_HANDSHAKE_TIMEOUT)
    server_result = {}

    def serve():
        try:
            with server_context.wrap_socket(server_sock, server_side=True) as tls:
                server_result["peer"] = tls.getpeercert()
                tls.sendall(tls.recv(1))
        except (OSError, ssl.SSLError) as error:
            server_result["error"] = error

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        try:
            with client_context.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
                tls.sendall(b"x")
                echo = tls.recv(1)
                client_peer = tls.getpeercert()
        except (OSError, ssl.SSLError) as error:
            return None, None, error
        assert echo == b"x"
    finally:
        # wrap_socket takes over each socket, so these closes matter only if
        # wrapping failed early. The socket timeouts bound the server thread.
        client_sock.close()
        server_sock.close()
        thread.join(_HANDSHAKE_TIMEOUT)
        assert not thread.is_alive(), "server thread did not finish in time"

    if "error" in server_result:
        return None, None, server_result["error"]
    return client_peer, server_result.get("peer"), None


def _mutual_tls_contexts(paths, server_cert="server.pem", server_key="server.key"):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(paths[server_cert], paths[server_key])
    server_context.load_verify_locations(paths["ca.pem"])
    server_context.verify_mode = ssl.CERT_REQUIRED

    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(paths["ca.pem"])
    client_context.load_cert_chain(paths["client.pem"], paths["client.key"])
    return server_context, client_context


def _subject_common_name(peer_cert):
    for rdn in peer_cert["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def test_ssl_mutual_tls_handshake(tmp_path):
    paths = certs.write_pki(tmp_path)
    server_context, client_context = _mutual_tls_contexts(paths)

    client_peer, server_peer, error = _handshake(server_context, client_context)

    assert error is None
    assert _subject_common_name(client_peer) == "localhost"
    assert _subject_common_name(server_peer) == "pynano test client"


def test_ssl_rsa_handshake(tmp_path):
    paths = certs.write_pki(tmp_path, key_type="rsa")
    server_context, client_context = _mutual_tls_contexts(paths)

    client_peer, _, error = _handshake(server_context, client_context)

    assert error is None
    assert _subject_common_name(client_peer) == "localhost"


def test_ssl_rejects_expired_server(tmp_path):
    paths = certs.write_pki(tmp_path)
    ca = certs.PemPair(paths["ca.pem"].read_bytes(), paths["ca.key"].read_bytes())
    expired = certs.make_leaf(
        ca,
        "localhost",
        dns_names=("localhost",),
        server=True,
        not_after=datetime.now(timezone.utc) - timedelta(days=1),
    )
    (tmp_path / "expired.pem").write_bytes(expired.cert_pem)
    (tmp_path / "expired.key").write_bytes(expired.key_pem)
    paths["expired.pem"] = tmp_path / "expired.pem"
    paths["expired.key"] = tmp_path / "expired.key"
    server_context, client_context = _mutual_tls_contexts(paths, "expired.pem", "expired.key")

    _, _, error = _handshake(server_context, client_context)

    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "expired" in error.verify_message


def test_ssl_rejects_unknown_critical_extension(tmp_path):
    paths = certs.write_pki(tmp_path)
    ca = certs.PemPair(paths["ca.pem"].read_bytes(), paths["ca.key"].read_bytes())
    bad = certs.make_leaf(
        ca,
        "localhost",
        dns_names=("localhost",),
        server=True,
        critical_unknown_extension=True,
    )
    (tmp_path / "bad.pem").write_bytes(bad.cert_pem)
    (tmp_path / "bad.key").write_bytes(bad.key_pem)
    paths["bad.pem"] = tmp_path / "bad.pem"
    paths["bad.key"] = tmp_path / "bad.key"
    server_context, client_context = _mutual_tls_contexts(paths, "bad.pem", "bad.key")

    _, _, error = _handshake(server_context, client_context)

    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "critical extension" in error.verify_message
