"""SSL_setInvalidCertCallback and certificate verification against real peers.

A pynano client meets servers whose certificates fail validation (expired,
not yet valid, untrusted, wrong host), and a pynano server that requires a
client certificate meets a client that sends none. The peers are the ssl
module (whose error text names the alert it received) and pynano itself.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# tests/ is imported as a package when it has an __init__.py and as a plain
# directory otherwise, so conftest is imported in both forms.
try:
    from .conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store
except ImportError:
    from conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store  # type: ignore[no-redef]
from pynano import certs, nanossl
from pynano.nanossl import OK

REQUEST = b"ping"
REPLY = b"pong"
RECV_TIMEOUT_MS = 5000
# A rejection status that none of the cases below maps to, so the tests can
# tell the callback's verdict from the status pynano would pick itself.
CALLBACK_REJECTION = nanossl.ERR_CERT_CHAIN_NOT_VERIFIED

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3
VERSIONS = [pytest.param(TLS12, id="tls12"), pytest.param(TLS13, id="tls13")]
MINOR_VERSION = {TLS12: nanossl.TLS12_MINORVERSION, TLS13: nanossl.TLS13_MINORVERSION}


@dataclass(frozen=True)
class FailureCase:
    """One reason for a peer certificate to fail, and what it should produce."""

    name: str                 # a bad_server_certs key, or "missing_client_cert"
    status: int               # status passed to the callback, and returned without one
    alert_text: str           # alert name in the ssl peer's error message
    subject: str              # subject PYNANO_getVerifyDetails reports ("" for none)
    depth: int


FAILURE_CASES = [
    FailureCase("expired", nanossl.ERR_CERT_EXPIRED, "CERTIFICATE_EXPIRED", "CN=localhost", 0),
    FailureCase("future", nanossl.ERR_CERT_START_TIME_VALID_IN_FUTURE, "CERTIFICATE_EXPIRED", "CN=localhost", 0),
    FailureCase("untrusted", nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR, "UNKNOWN_CA", "CN=localhost", 0),
    FailureCase("wrong_host", nanossl.ERR_CERT_BAD_COMMON_NAME, "BAD_CERTIFICATE", "CN=elsewhere.example", 0),
    FailureCase("missing_client_cert", nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE, "CERTIFICATE_REQUIRED", "", -1),
]
FAILURE_PARAMS = [pytest.param(case, id=case.name) for case in FAILURE_CASES]


class CallbackRecorder:
    """An invalid-certificate callback that records its calls and returns a verdict."""

    def __init__(self, verdict: Any = OK, error: Optional[BaseException] = None) -> None:
        self.verdict = verdict
        self.error = error
        self.calls: List[Tuple[int, int]] = []
        self.details: List[Tuple[int, Optional[nanossl.VerifyDetails]]] = []

    def __call__(self, ci: int, status: int) -> Any:
        self.calls.append((ci, status))
        self.details.append(nanossl.PYNANO_getVerifyDetails(ci))
        if self.error is not None:
            raise self.error
        return self.verdict


@dataclass
class PynanoOutcome:
    """What the pynano end saw."""

    instance: int = 0
    handshake_status: int = OK
    recv_status: int = OK
    received: bytes = b""
    peer_alert: int = -1
    callback_error: Optional[BaseException] = None
    callback_error_after_close: Optional[BaseException] = None


@dataclass
class PeerOutcome:
    """What the ssl peer saw: an error, or the bytes it received."""

    error: Optional[BaseException] = None
    received: bytes = b""


@dataclass
class Setup:
    """Per-connection settings for the pynano end."""

    callback: Optional[CallbackRecorder] = None
    flags: int = 0
    version: Optional[int] = None                        # SSL_SET_VERSION value
    ioctls: List[Tuple[int, int]] = field(default_factory=list)


def drain_until_closed(sock: socket.socket) -> None:
    """Read until the peer closes, so our alert is read before our FIN."""
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def configure(ci: int, setup: Setup) -> None:
    if setup.flags:
        status, flags = nanossl.SSL_getSessionFlags(ci)
        assert status == OK
        assert nanossl.SSL_setSessionFlags(ci, flags | setup.flags) == OK
    if setup.version is not None:
        assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, setup.version) == OK
    for setting, value in setup.ioctls:
        assert nanossl.SSL_ioctl(ci, setting, value) == OK
    if setup.callback is not None:
        assert nanossl.SSL_setInvalidCertCallback(ci, setup.callback) == OK


def finish_outcome(ci: int, outcome: PynanoOutcome) -> None:
    _status, outcome.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
    outcome.callback_error = nanossl.get_callback_error(ci)


def pynano_client(port: int, store: nanossl.CertStore, setup: Setup,
                  peer_handshake_done: Optional[threading.Event] = None) -> PynanoOutcome:
    """Connect, send REQUEST and read the reply.

    After a failed handshake the socket stays open until the peer's
    handshake has ended, so the peer reads our alert before our FIN.
    """
    outcome = PynanoOutcome()
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        outcome.instance = ci
        try:
            configure(ci, setup)
            outcome.handshake_status = nanossl.SSL_negotiateConnection(ci)
            if outcome.handshake_status != OK:
                finish_outcome(ci, outcome)
                if peer_handshake_done is not None:
                    assert peer_handshake_done.wait(SOCKET_TIMEOUT), "the peer handshake did not end"
                return outcome
            assert nanossl.SSL_send(ci, REQUEST) == len(REQUEST)
            buffer = bytearray(64)
            outcome.recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            outcome.received = bytes(buffer[:count])
            finish_outcome(ci, outcome)
            return outcome
        finally:
            nanossl.SSL_closeConnection(ci)
            outcome.callback_error_after_close = nanossl.get_callback_error(ci)
    finally:
        sock.close()


def pynano_server(listener: socket.socket, store: nanossl.CertStore, setup: Setup,
                  handshake_done: Optional[threading.Event] = None) -> PynanoOutcome:
    """Accept one client, read REQUEST and send REPLY. Set handshake_done after the handshake."""
    outcome = PynanoOutcome()
    conn = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(conn, store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        outcome.instance = ci
        try:
            configure(ci, setup)
            try:
                outcome.handshake_status = nanossl.SSL_negotiateConnection(ci)
            finally:
                if handshake_done is not None:
                    handshake_done.set()
            if outcome.handshake_status != OK:
                finish_outcome(ci, outcome)
                drain_until_closed(conn)
                return outcome
            buffer = bytearray(64)
            outcome.recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            outcome.received = bytes(buffer[:count])
            if outcome.recv_status == OK:
                assert nanossl.SSL_send(ci, REPLY) == len(REPLY)
            finish_outcome(ci, outcome)
            return outcome
        finally:
            nanossl.SSL_closeConnection(ci)
            outcome.callback_error_after_close = nanossl.get_callback_error(ci)
    finally:
        conn.close()


def ssl_server(listener: socket.socket, cert_file: Path, key_file: Path, version: Optional[ssl.TLSVersion],
               handshake_done: threading.Event) -> PeerOutcome:
    """Serve one client with the ssl module: read REQUEST, send REPLY."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    context.load_cert_chain(str(cert_file), str(key_file))
    conn = accept(listener)
    duplicate = conn.dup()      # readable after wrap_socket() closes conn on failure
    try:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as error:
            handshake_done.set()
            drain_until_closed(duplicate)
            return PeerOutcome(error=error)
        handshake_done.set()
        with tls:
            received = tls.recv(64)
            tls.sendall(REPLY)
            return PeerOutcome(received=received)
    finally:
        duplicate.close()
        conn.close()


def ssl_client(port: int, pki: Pki, version: Optional[ssl.TLSVersion],
               identity: Optional[Tuple[Path, Path]] = None) -> PeerOutcome:
    """Connect with the ssl module, send REQUEST and read the reply."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    context.load_verify_locations(pki.path("ca.pem"))
    if identity is not None:
        context.load_cert_chain(str(identity[0]), str(identity[1]))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(REQUEST)
                return PeerOutcome(received=tls.recv(64))
    except (ssl.SSLError, OSError) as error:
        return PeerOutcome(error=error)


def write_pair(directory: Path, name: str, pair: certs.PemPair) -> Tuple[Path, Path]:
    cert_file = directory / f"{name}.pem"
    key_file = directory / f"{name}.key"
    cert_file.write_bytes(pair.cert_pem)
    key_file.write_bytes(pair.key_pem)
    return cert_file, key_file


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory, bad_server_certs, stranger) -> Dict[str, Tuple[Path, Path]]:
    """Return (certificate, key) files for every bad server certificate and the stranger."""
    directory = tmp_path_factory.mktemp("verify")
    files = {name: write_pair(directory, name, pair) for name, pair in bad_server_certs.items()}
    files["stranger"] = write_pair(directory, "stranger", stranger)
    return files


@pytest.fixture
def trust_store(pki) -> nanossl.CertStore:
    """Return a store with only the test CA as trust point."""
    store = make_store(None, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


def run_with_ssl_peer(case: FailureCase, setup: Setup, pki: Pki, listener: socket.socket,
                      pem_files: Dict[str, Tuple[Path, Path]], server_store: nanossl.CertStore,
                      trust_store: nanossl.CertStore,
                      version: Optional[ssl.TLSVersion] = None) -> Tuple[PynanoOutcome, PeerOutcome]:
    """Run case with pynano on the checking side and the ssl module on the other."""
    port = listener.getsockname()[1]
    if case.name == "missing_client_cert":
        setup.flags |= nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH
        server = Background(lambda: pynano_server(listener, server_store, setup))
        peer = ssl_client(port, pki, version)
        return server.result(), peer
    handshake_done = threading.Event()
    cert_file, key_file = pem_files[case.name]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, version, handshake_done))
    outcome = pynano_client(port, trust_store, setup, handshake_done)
    return outcome, server.result()


def run_with_pynano_peer(case: FailureCase, setup: Setup, pki: Pki, listener: socket.socket,
                         bad_server_certs: Dict[str, certs.PemPair], server_store: nanossl.CertStore,
                         trust_store: nanossl.CertStore) -> Tuple[PynanoOutcome, PynanoOutcome]:
    """Run case with pynano on both sides and return (checking side, other side)."""
    port = listener.getsockname()[1]
    handshake_done = threading.Event()
    if case.name == "missing_client_cert":
        setup.flags |= nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH
        server = Background(lambda: pynano_server(listener, server_store, setup, handshake_done))
        client = pynano_client(port, trust_store, Setup(), handshake_done)
        return server.result(), client
    store = make_store(bad_server_certs[case.name], [pki.ca.cert_pem])
    try:
        server = Background(lambda: pynano_server(listener, store, Setup(), handshake_done))
        client = pynano_client(port, trust_store, setup, handshake_done)
        return client, server.result()
    finally:
        nanossl.CERT_STORE_releaseStore(store)


# ---- accept, reject, no callback ---------------------------------------


@pytest.mark.parametrize("case", FAILURE_PARAMS)
def test_callback_accepts_with_ssl_peer(case, pki, listener, pem_files, server_store, trust_store):
    recorder = CallbackRecorder(verdict=OK)

    outcome, peer = run_with_ssl_peer(case, Setup(callback=recorder), pki, listener, pem_files,
                                      server_store, trust_store)

    assert recorder.calls == [(outcome.instance, case.status)]
    assert outcome.handshake_status == OK
    assert peer.error is None
    assert outcome.recv_status == OK
    assert {outcome.received, peer.received} == {REQUEST, REPLY}


@pytest.mark.parametrize("case", FAILURE_PARAMS)
def test_callback_accepts_with_pynano_peer(case, pki, listener, bad_server_certs, server_store, trust_store):
    recorder = CallbackRecorder(verdict=OK)

    outcome, peer = run_with_pynano_peer(case, Setup(callback=recorder), pki, listener, bad_server_certs,
                                         server_store, trust_store)

    assert recorder.calls == [(outcome.instance, case.status)]
    assert outcome.handshake_status == OK
    assert peer.handshake_status == OK
    assert outcome.recv_status == OK
    assert peer.recv_status == OK
    assert {outcome.received, peer.received} == {REQUEST, REPLY}


@pytest.mark.parametrize("case", FAILURE_PARAMS)
def test_callback_rejects_with_status(case, pki, listener, pem_files, server_store, trust_store):
    recorder = CallbackRecorder(verdict=CALLBACK_REJECTION)

    outcome, peer = run_with_ssl_peer(case, Setup(callback=recorder), pki, listener, pem_files,
                                      server_store, trust_store)

    assert recorder.calls == [(outcome.instance, case.status)]
    assert outcome.handshake_status == CALLBACK_REJECTION
    assert peer.error is not None
    assert "ALERT" in str(peer.error)
    assert peer.received == b""


@pytest.mark.parametrize("case", FAILURE_PARAMS)
def test_no_callback_mapped_status(case, pki, listener, pem_files, server_store, trust_store):
    outcome, peer = run_with_ssl_peer(case, Setup(), pki, listener, pem_files, server_store, trust_store)

    assert outcome.handshake_status == case.status
    assert case.alert_text in str(peer.error)
    assert peer.received == b""


@pytest.mark.parametrize("case", FAILURE_PARAMS)
def test_verify_details_in_callback(case, pki, listener, pem_files, server_store, trust_store):
    recorder = CallbackRecorder(verdict=OK)

    run_with_ssl_peer(case, Setup(callback=recorder), pki, listener, pem_files, server_store, trust_store)

    assert len(recorder.details) == 1
    status, details = recorder.details[0]
    assert status == OK
    assert details is not None
    assert details.status == case.status
    assert details.status_name == nanossl.DISPLAY_ERROR(case.status)
    assert details.depth == case.depth
    assert details.subject == case.subject
    assert details.mbedtls_flags != 0


# ---- callback errors and return values ---------------------------------


@pytest.mark.parametrize("case", [
    pytest.param(FAILURE_CASES[2], id="client-untrusted"),
    pytest.param(FAILURE_CASES[4], id="server-missing-cert"),
])
def test_callback_raises_rejects(case, pki, listener, pem_files, server_store, trust_store):
    error = RuntimeError("callback failed on purpose")
    recorder = CallbackRecorder(error=error)

    outcome, peer = run_with_ssl_peer(case, Setup(callback=recorder), pki, listener, pem_files,
                                      server_store, trust_store)

    assert len(recorder.calls) == 1
    assert outcome.handshake_status == case.status
    assert outcome.callback_error is error
    assert outcome.callback_error_after_close is error
    assert peer.error is not None


@pytest.mark.parametrize("verdict, accepted", [
    pytest.param(OK, True, id="zero"),
    pytest.param(1, True, id="positive"),
    pytest.param(True, True, id="true"),
    pytest.param(False, False, id="false"),
    pytest.param(None, False, id="none"),
    pytest.param("OK", False, id="str"),
])
def test_callback_return_value(verdict, accepted, pki, listener, pem_files, server_store, trust_store):
    recorder = CallbackRecorder(verdict=verdict)
    case = FAILURE_CASES[2]     # untrusted

    outcome, peer = run_with_ssl_peer(case, Setup(callback=recorder), pki, listener, pem_files,
                                      server_store, trust_store)

    assert len(recorder.calls) == 1
    if accepted:
        assert outcome.handshake_status == OK
        assert outcome.received == REPLY
    else:
        assert outcome.handshake_status == case.status
        assert peer.error is not None


def test_callback_not_called_for_valid_cert(pki, server_store, trust_store, listener):
    recorder = CallbackRecorder(verdict=CALLBACK_REJECTION)
    handshake_done = threading.Event()
    server = Background(lambda: pynano_server(listener, server_store, Setup(), handshake_done))

    outcome = pynano_client(listener.getsockname()[1], trust_store, Setup(callback=recorder), handshake_done)
    server.result()

    assert recorder.calls == []
    assert outcome.handshake_status == OK
    assert outcome.received == REPLY


def test_callback_removed_with_none(pki, listener, pem_files, server_store, trust_store):
    recorder = CallbackRecorder(verdict=OK)
    handshake_done = threading.Event()
    cert_file, key_file = pem_files["untrusted"]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, None, handshake_done))
    sock = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", trust_store)
        try:
            assert nanossl.SSL_setInvalidCertCallback(ci, recorder) == OK
            assert nanossl.SSL_setInvalidCertCallback(ci, None) == OK
            status = nanossl.SSL_negotiateConnection(ci)
            assert handshake_done.wait(SOCKET_TIMEOUT)
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()
    server.result()

    assert recorder.calls == []
    assert status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR


def test_callback_closes_own_connection(pki, listener, pem_files, trust_store):
    close_statuses: List[int] = []

    def close_and_accept(ci: int, status: int) -> int:
        close_statuses.append(nanossl.SSL_closeConnection(ci))
        return OK

    handshake_done = threading.Event()
    cert_file, key_file = pem_files["untrusted"]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, None, handshake_done))
    sock = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", trust_store)
        assert nanossl.SSL_setInvalidCertCallback(ci, close_and_accept) == OK
        status = nanossl.SSL_negotiateConnection(ci)
        assert handshake_done.wait(SOCKET_TIMEOUT)
        second_close = nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()
    peer = server.result()

    assert close_statuses == [OK]
    assert status == nanossl.ERR_SSL_BAD_ID
    assert second_close == nanossl.ERR_SSL_BAD_ID
    assert peer.error is not None


# ---- both TLS versions, both sides -------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("verdict", [pytest.param(OK, id="accept"), pytest.param(CALLBACK_REJECTION, id="reject")])
def test_client_untrusted_server(version, verdict, pki, listener, pem_files, trust_store):
    recorder = CallbackRecorder(verdict=verdict)
    handshake_done = threading.Event()
    cert_file, key_file = pem_files["untrusted"]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, version, handshake_done))

    outcome = pynano_client(listener.getsockname()[1], trust_store,
                            Setup(callback=recorder, version=MINOR_VERSION[version]), handshake_done)
    peer = server.result()

    assert recorder.calls == [(outcome.instance, nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR)]
    if verdict == OK:
        assert outcome.handshake_status == OK
        assert outcome.received == REPLY
        assert peer.received == REQUEST
    else:
        assert outcome.handshake_status == CALLBACK_REJECTION
        assert "UNKNOWN_CA" in str(peer.error)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("verdict", [pytest.param(OK, id="accept"), pytest.param(CALLBACK_REJECTION, id="reject")])
def test_server_untrusted_client(version, verdict, pki, listener, pem_files, server_store):
    recorder = CallbackRecorder(verdict=verdict)
    setup = Setup(callback=recorder, flags=nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH)
    server = Background(lambda: pynano_server(listener, server_store, setup))

    peer = ssl_client(listener.getsockname()[1], pki, version, identity=pem_files["stranger"])
    outcome = server.result()

    assert recorder.calls == [(outcome.instance, nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR)]
    _status, details = recorder.details[0]
    assert details.subject == "CN=untrusted test client"
    assert details.issuer == "CN=untrusted test CA"
    if verdict == OK:
        assert outcome.handshake_status == OK
        assert outcome.received == REQUEST
        assert peer.received == REPLY
    else:
        assert outcome.handshake_status == CALLBACK_REJECTION
        assert "UNKNOWN_CA" in str(peer.error)


# ---- alerts between two pynano ends ------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_client_alert_reaches_pynano_server(version, pki, listener, bad_server_certs, trust_store):
    store = make_store(bad_server_certs["untrusted"], [pki.ca.cert_pem])
    handshake_done = threading.Event()
    try:
        server = Background(lambda: pynano_server(listener, store, Setup(), handshake_done))
        client = pynano_client(listener.getsockname()[1], trust_store,
                               Setup(version=MINOR_VERSION[version]), handshake_done)
        outcome = server.result()
    finally:
        nanossl.CERT_STORE_releaseStore(store)

    assert client.handshake_status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    assert outcome.handshake_status == nanossl.ERR_SSL_FATAL_ALERT
    assert outcome.peer_alert == nanossl.SSL_ALERT_UNKNOWN_CA


@pytest.mark.parametrize("version", VERSIONS)
def test_server_alert_reaches_pynano_client(version, pki, listener, server_store, stranger):
    client_store = make_store(stranger, [pki.ca.cert_pem])
    handshake_done = threading.Event()
    setup = Setup(flags=nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH)
    try:
        server = Background(lambda: pynano_server(listener, server_store, setup, handshake_done))
        client = pynano_client(listener.getsockname()[1], client_store,
                               Setup(version=MINOR_VERSION[version]), handshake_done)
        outcome = server.result()
    finally:
        nanossl.CERT_STORE_releaseStore(client_store)

    assert outcome.handshake_status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    assert nanossl.ERR_SSL_FATAL_ALERT in (client.handshake_status, client.recv_status)
    assert client.peer_alert == nanossl.SSL_ALERT_UNKNOWN_CA


# ---- verification settings and chains ----------------------------------


def test_hostname_check_disabled(pki, listener, pem_files, trust_store):
    handshake_done = threading.Event()
    cert_file, key_file = pem_files["wrong_host"]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, None, handshake_done))
    setup = Setup(ioctls=[(nanossl.PYNANO_SSL_SET_CHECK_HOSTNAME, 0)])

    outcome = pynano_client(listener.getsockname()[1], trust_store, setup, handshake_done)
    server.result()

    assert outcome.handshake_status == OK
    assert outcome.received == REPLY


def test_hostname_check_keeps_trust_check(pki, listener, pem_files, trust_store):
    handshake_done = threading.Event()
    cert_file, key_file = pem_files["untrusted"]
    server = Background(lambda: ssl_server(listener, cert_file, key_file, None, handshake_done))
    setup = Setup(ioctls=[(nanossl.PYNANO_SSL_SET_CHECK_HOSTNAME, 0)])

    outcome = pynano_client(listener.getsockname()[1], trust_store, setup, handshake_done)
    server.result()

    assert outcome.handshake_status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR


def make_intermediate(issuer: certs.PemPair, common_name: str, not_before: datetime,
                      not_after: datetime) -> certs.PemPair:
    """Return an intermediate CA certificate signed by issuer."""
    issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem)
    issuer_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certs.PemPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def test_details_of_expired_intermediate(pki, listener, trust_store):
    now = datetime.now(timezone.utc)
    intermediate = make_intermediate(pki.ca, "expired intermediate CA", now - timedelta(days=60),
                                     now - timedelta(days=1))
    leaf = certs.make_leaf(intermediate, "localhost", dns_names=["localhost"], server=True)
    status, store = nanossl.CERT_STORE_createStore()
    assert status == OK
    status = nanossl.CERT_STORE_addIdentityWithCertificateChain(
        store, [leaf.cert_pem, intermediate.cert_pem], leaf.key_pem)
    assert status == OK, nanossl.DISPLAY_ERROR(status)
    recorder = CallbackRecorder(verdict=CALLBACK_REJECTION)
    handshake_done = threading.Event()
    try:
        server = Background(lambda: pynano_server(listener, store, Setup(), handshake_done))
        outcome = pynano_client(listener.getsockname()[1], trust_store, Setup(callback=recorder),
                                handshake_done)
        server.result()
    finally:
        nanossl.CERT_STORE_releaseStore(store)

    assert recorder.calls == [(outcome.instance, nanossl.ERR_CERT_EXPIRED)]
    _status, details = recorder.details[0]
    assert details.depth == 1
    assert details.subject == "CN=expired intermediate CA"
    assert details.issuer == "CN=pynano test CA"
    assert outcome.handshake_status == CALLBACK_REJECTION
