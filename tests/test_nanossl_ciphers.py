"""SSL_enableCiphers checked from the peer: the suite that the ssl module or
openssl negotiates with a pynano end that allows one suite, and the statuses
when the two ends share none.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence

import pytest

# tests/ is imported as a package when it has an __init__.py and as a plain
# directory otherwise, so conftest is imported in both forms.
try:
    from .conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store
except ImportError:
    from conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store  # type: ignore[no-redef]
from pynano import nanossl
from pynano.nanossl import OK

REQUEST = b"ping"
RECV_TIMEOUT_MS = 5000

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

# (IANA id, TLS version, OpenSSL name) for every suite an ECDSA server can
# use. The names are written out here so that pynano's own table is checked.
ECDSA_SUITES = [
    pytest.param(0xC02B, TLS12, "ECDHE-ECDSA-AES128-GCM-SHA256", id="C02B"),
    pytest.param(0xC02C, TLS12, "ECDHE-ECDSA-AES256-GCM-SHA384", id="C02C"),
    pytest.param(0xCCA9, TLS12, "ECDHE-ECDSA-CHACHA20-POLY1305", id="CCA9"),
    pytest.param(0x1301, TLS13, "TLS_AES_128_GCM_SHA256", id="1301"),
    pytest.param(0x1302, TLS13, "TLS_AES_256_GCM_SHA384", id="1302"),
    pytest.param(0x1303, TLS13, "TLS_CHACHA20_POLY1305_SHA256", id="1303"),
]


@dataclass
class PynanoResult:
    """The pynano end of one connection."""

    enable_status: int = OK
    handshake_status: int = OK
    cipher_id: int = 0
    peer_alert: int = -1


def drain_until_closed(sock: socket.socket) -> None:
    """Read until the peer closes, so our alert is read before our FIN."""
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def pynano_server(listener: socket.socket, store: nanossl.CertStore,
                  suites: Optional[Sequence[int]]) -> PynanoResult:
    """Accept one client, allow only suites (None: the defaults), handshake, echo once."""
    result = PynanoResult()
    conn = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(conn, store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        try:
            if suites is not None:
                result.enable_status = nanossl.SSL_enableCiphers(ci, list(suites))
            result.handshake_status = nanossl.SSL_negotiateConnection(ci)
            if result.handshake_status != OK:
                _status, result.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
                drain_until_closed(conn)
                return result
            _status, result.cipher_id, _curves = nanossl.SSL_getCipherInfo(ci)
            buffer = bytearray(64)
            status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            assert status == OK, nanossl.DISPLAY_ERROR(status)
            assert nanossl.SSL_send(ci, bytes(buffer[:count])) == count
            return result
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        conn.close()


def ssl_client(pki: Pki, port: int, version: ssl.TLSVersion, openssl_ciphers: Optional[str] = None) -> str:
    """Connect with the ssl module, echo REQUEST once and return the suite name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = version
    context.maximum_version = version
    context.load_verify_locations(pki.path("ca.pem"))
    if openssl_ciphers is not None:
        context.set_ciphers(openssl_ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(REQUEST)
            assert tls.recv(64) == REQUEST
            return tls.cipher()[0]


def ssl_server(pki: Pki, listener: socket.socket, version: ssl.TLSVersion, handshake_done: threading.Event,
               openssl_ciphers: Optional[str] = None) -> object:
    """Accept one client with the ssl module and return the suite name or the SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = version
    context.maximum_version = version
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    if openssl_ciphers is not None:
        context.set_ciphers(openssl_ciphers)
    conn = accept(listener)
    duplicate = conn.dup()      # readable after wrap_socket() closes conn on failure
    try:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except ssl.SSLError as error:
            handshake_done.set()
            drain_until_closed(duplicate)
            return error
        handshake_done.set()
        with tls:
            tls.sendall(tls.recv(64))
            return tls.cipher()[0]
    finally:
        duplicate.close()
        conn.close()


def pynano_client(port: int, store: nanossl.CertStore, suites: Sequence[int],
                  peer_handshake_done: Optional[threading.Event] = None) -> PynanoResult:
    """Connect allowing only suites, echo REQUEST once, close."""
    result = PynanoResult()
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        try:
            result.enable_status = nanossl.SSL_enableCiphers(ci, list(suites))
            result.handshake_status = nanossl.SSL_negotiateConnection(ci)
            if result.handshake_status != OK:
                _status, result.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
                if peer_handshake_done is not None:
                    assert peer_handshake_done.wait(SOCKET_TIMEOUT)
                return result
            _status, result.cipher_id, _curves = nanossl.SSL_getCipherInfo(ci)
            assert nanossl.SSL_send(ci, REQUEST) == len(REQUEST)
            buffer = bytearray(64)
            status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            assert status == OK, nanossl.DISPLAY_ERROR(status)
            assert bytes(buffer[:count]) == REQUEST
            return result
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()


@pytest.fixture
def trust_only_store(pki) -> nanossl.CertStore:
    store = make_store(None, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


# ---- one suite, seen from the peer -------------------------------------


@pytest.mark.parametrize("suite_id, version, openssl_name", ECDSA_SUITES)
def test_server_suite_seen_by_ssl(pki, server_store, listener, suite_id, version, openssl_name):
    server = Background(lambda: pynano_server(listener, server_store, [suite_id]))

    peer_suite = ssl_client(pki, listener.getsockname()[1], version)
    result = server.result()

    assert result.enable_status == OK
    assert result.handshake_status == OK
    assert peer_suite == openssl_name
    assert result.cipher_id == suite_id


@pytest.mark.parametrize("suite_id, version, openssl_name", ECDSA_SUITES)
def test_client_suite_seen_by_ssl(pki, trust_only_store, listener, suite_id, version, openssl_name):
    handshake_done = threading.Event()
    server = Background(lambda: ssl_server(pki, listener, version, handshake_done))

    result = pynano_client(listener.getsockname()[1], trust_only_store, [suite_id], handshake_done)
    peer_suite = server.result()

    assert result.enable_status == OK
    assert result.handshake_status == OK
    assert peer_suite == openssl_name
    assert result.cipher_id == suite_id


@pytest.mark.parametrize("version, first, second", [
    pytest.param(TLS12, (0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256"), (0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305"),
                 id="tls12"),
    pytest.param(TLS13, (0x1302, "TLS_AES_256_GCM_SHA384"), (0x1303, "TLS_CHACHA20_POLY1305_SHA256"), id="tls13"),
])
def test_two_connections_two_suites(pki, server_store, listener, version, first, second):
    port = listener.getsockname()[1]

    first_server = Background(lambda: pynano_server(listener, server_store, [first[0]]))
    first_peer_suite = ssl_client(pki, port, version)
    first_result = first_server.result()
    second_server = Background(lambda: pynano_server(listener, server_store, [second[0]]))
    second_peer_suite = ssl_client(pki, port, version)
    second_result = second_server.result()

    assert first_peer_suite == first[1]
    assert second_peer_suite == second[1]
    assert first_result.cipher_id == first[0]
    assert second_result.cipher_id == second[0]


def test_list_not_kept_by_next_connection(pki, server_store, listener):
    port = listener.getsockname()[1]

    restricted = Background(lambda: pynano_server(listener, server_store, [0x1303]))
    restricted_suite = ssl_client(pki, port, TLS13)
    restricted.result()
    default = Background(lambda: pynano_server(listener, server_store, None))
    default_suite = ssl_client(pki, port, TLS13)
    default_result = default.result()

    assert restricted_suite == "TLS_CHACHA20_POLY1305_SHA256"
    # OpenSSL offers TLS_AES_256_GCM_SHA384 before ChaCha20, and the default
    # list contains both, so only a kept restriction would give ChaCha20.
    assert default_suite != "TLS_CHACHA20_POLY1305_SHA256"
    assert default_result.cipher_id != 0x1303


# ---- no shared suite ---------------------------------------------------


def test_rsa_suite_against_ecdsa_server(pki, trust_only_store, listener):
    # 0xC02F is ECDHE-RSA, but the server has only an ECDSA certificate.
    handshake_done = threading.Event()
    server = Background(lambda: ssl_server(pki, listener, TLS12, handshake_done))

    result = pynano_client(listener.getsockname()[1], trust_only_store, [0xC02F], handshake_done)
    peer_error = server.result()

    assert result.enable_status == OK
    assert result.handshake_status == nanossl.ERR_SSL_NO_CIPHER_MATCH
    assert isinstance(peer_error, ssl.SSLError)
    assert "NO_SHARED_CIPHER" in str(peer_error)


def test_rsa_suite_against_pynano_server(server_store, trust_only_store, listener):
    server = Background(lambda: pynano_server(listener, server_store, None))

    result = pynano_client(listener.getsockname()[1], trust_only_store, [0xC02F])
    server_result = server.result()

    assert result.handshake_status == nanossl.ERR_SSL_NO_CIPHER_MATCH
    assert server_result.handshake_status < OK


def test_ssl_client_disjoint_suites(pki, server_store, listener):
    server = Background(lambda: pynano_server(listener, server_store, [0xC02B]))

    with pytest.raises(ssl.SSLError) as raised:
        ssl_client(pki, listener.getsockname()[1], TLS12, "ECDHE-ECDSA-AES256-GCM-SHA384")
    result = server.result()

    assert "HANDSHAKE_FAILURE" in str(raised.value)
    assert result.handshake_status == nanossl.ERR_SSL_NO_CIPHER_MATCH


def test_ssl_server_disjoint_suites(pki, trust_only_store, listener):
    handshake_done = threading.Event()
    server = Background(lambda: ssl_server(pki, listener, TLS12, handshake_done,
                                           "ECDHE-ECDSA-AES256-GCM-SHA384"))

    result = pynano_client(listener.getsockname()[1], trust_only_store, [0xC02B], handshake_done)
    peer_error = server.result()

    assert result.handshake_status == nanossl.ERR_SSL_NO_CIPHER_MATCH
    assert result.peer_alert == nanossl.SSL_ALERT_HANDSHAKE_FAILURE
    assert isinstance(peer_error, ssl.SSLError)


def test_s_client_disjoint_tls13_suites(pki, server_store, listener):
    # The ssl module cannot restrict TLS 1.3 suites, so openssl does it here.
    server = Background(lambda: pynano_server(listener, server_store, [0x1301]))
    command = [
        "openssl", "s_client",
        "-connect", f"127.0.0.1:{listener.getsockname()[1]}",
        "-servername", "localhost",
        "-tls1_3",
        "-ciphersuites", "TLS_AES_256_GCM_SHA384",
        "-CAfile", pki.path("ca.pem"),
    ]

    completed = subprocess.run(command, input=b"", capture_output=True, timeout=15)
    result = server.result()

    assert completed.returncode != 0
    assert "handshake failure" in completed.stderr.decode(errors="replace")
    assert result.handshake_status == nanossl.ERR_SSL_NO_CIPHER_MATCH


# ---- SSL_enableCiphers arguments and state -----------------------------


@pytest.fixture
def fresh_instance(server_store) -> int:
    """Return a server instance on one end of a socket pair, not negotiated."""
    near, far = socket.socketpair()
    ci = nanossl.SSL_acceptConnection(near, server_store)
    assert ci > 0, nanossl.DISPLAY_ERROR(ci)
    yield ci
    nanossl.SSL_closeConnection(ci)
    near.close()
    far.close()


@pytest.mark.parametrize("suites", [
    pytest.param([0x002F], id="rsa-aes128-cbc"),
    pytest.param([0x0005, 0x00FF, 0xFFFF], id="several"),
    pytest.param([0x0000], id="null-suite"),
    pytest.param([], id="empty"),
])
def test_unsupported_ids_only(fresh_instance, suites):
    assert nanossl.SSL_enableCiphers(fresh_instance, suites) == nanossl.ERR_SSL_NO_CIPHER_MATCH


def test_unsupported_ids_skipped(pki, server_store, listener):
    suites = [0x002F, 0xFFFF, 0xC02C, 0x0005]
    server = Background(lambda: pynano_server(listener, server_store, suites))

    peer_suite = ssl_client(pki, listener.getsockname()[1], TLS12)
    result = server.result()

    assert result.enable_status == OK
    assert peer_suite == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert result.cipher_id == 0xC02C


def test_failed_enable_keeps_restriction(pki, server_store, listener):
    # A call that fails with ERR_SSL_NO_CIPHER_MATCH must not widen what an
    # earlier successful call allowed: either 0xC02B or no handshake at all.
    outcome = {}

    def serve() -> None:
        conn = accept(listener)
        ci = nanossl.SSL_acceptConnection(conn, server_store)
        try:
            outcome["first"] = nanossl.SSL_enableCiphers(ci, [0xC02B])
            outcome["second"] = nanossl.SSL_enableCiphers(ci, [0xFFFF])
            outcome["handshake"] = nanossl.SSL_negotiateConnection(ci)
            outcome["cipher"] = nanossl.SSL_getCipherInfo(ci)[1]
            if outcome["handshake"] != OK:
                drain_until_closed(conn)
        finally:
            nanossl.SSL_closeConnection(ci)
            conn.close()

    server = Background(serve)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.path("ca.pem"))
    peer_suite = None
    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                peer_suite = tls.cipher()[0]
        except ssl.SSLError:
            pass
    server.result()

    assert outcome["first"] == OK
    assert outcome["second"] == nanossl.ERR_SSL_NO_CIPHER_MATCH
    assert peer_suite in (None, "ECDHE-ECDSA-AES128-GCM-SHA256")
    if outcome["handshake"] == OK:
        assert outcome["cipher"] == 0xC02B


def test_duplicate_ids_accepted(pki, server_store, listener):
    server = Background(lambda: pynano_server(listener, server_store, [0x1303, 0x1303, 0x1303]))

    peer_suite = ssl_client(pki, listener.getsockname()[1], TLS13)
    result = server.result()

    assert result.enable_status == OK
    assert peer_suite == "TLS_CHACHA20_POLY1305_SHA256"


def test_enable_after_negotiation(pki, server_store, listener):
    statuses: List[int] = []

    def serve() -> None:
        conn = accept(listener)
        ci = nanossl.SSL_acceptConnection(conn, server_store)
        try:
            statuses.append(nanossl.SSL_negotiateConnection(ci))
            statuses.append(nanossl.SSL_enableCiphers(ci, [0xC02B]))
            buffer = bytearray(64)
            status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            nanossl.SSL_send(ci, bytes(buffer[:count]))
        finally:
            nanossl.SSL_closeConnection(ci)
            conn.close()

    server = Background(serve)
    ssl_client(pki, listener.getsockname()[1], TLS13)
    server.result()

    assert statuses == [OK, nanossl.ERR_SSL_BAD_STATE]


@pytest.mark.parametrize("instance", [0, -1, 999999])
def test_enable_ciphers_bad_instance(instance):
    assert nanossl.SSL_enableCiphers(instance, [0xC02B]) == nanossl.ERR_SSL_BAD_ID


@pytest.mark.parametrize("suites, message", [
    pytest.param("C02B", "pCipherSuiteList", id="str"),
    pytest.param(b"\xc0\x2b", "pCipherSuiteList", id="bytes"),
    pytest.param(0xC02B, "pCipherSuiteList", id="int"),
    pytest.param(["0xC02B"], "cipher suite id", id="str-item"),
])
def test_enable_ciphers_wrong_type(fresh_instance, suites, message):
    with pytest.raises(TypeError, match=message):
        nanossl.SSL_enableCiphers(fresh_instance, suites)


def test_enable_ciphers_id_out_of_range(fresh_instance):
    with pytest.raises(ValueError, match="0x10000|65536"):
        nanossl.SSL_enableCiphers(fresh_instance, [0x10000])
