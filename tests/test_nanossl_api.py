"""pynano.nanossl API contract: bad instances, wrong states, bad input,
status names and values, version settings, timeouts and connection end.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Tuple

import pytest

# tests/ is imported as a package when it has an __init__.py and as a plain
# directory otherwise, so conftest is imported in both forms.
try:
    from .conftest import SOCKET_TIMEOUT, Background, accept, make_store
except ImportError:
    from conftest import SOCKET_TIMEOUT, Background, accept, make_store  # type: ignore[no-redef]
from pynano import nanossl
from pynano.nanossl import OK

RECV_TIMEOUT_MS = 5000
SHORT_TIMEOUT_MS = 300
# Upper bound for a call that should return after SHORT_TIMEOUT_MS. It is
# generous so that a loaded machine does not fail the test.
SHORT_TIMEOUT_BOUND = 5 * SHORT_TIMEOUT_MS / 1000


@dataclass
class Pair:
    """A negotiated pynano server and client over a socket pair."""

    server: int
    client: int
    server_sock: socket.socket
    client_sock: socket.socket


@pytest.fixture
def trust_store(pki) -> Iterator[nanossl.CertStore]:
    store = make_store(None, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


@pytest.fixture
def socket_pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    first, second = socket.socketpair()
    first.settimeout(SOCKET_TIMEOUT)
    second.settimeout(SOCKET_TIMEOUT)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def fresh_server(server_store, socket_pair) -> Iterator[int]:
    """Return a server instance that has not negotiated."""
    ci = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    assert ci > 0, nanossl.DISPLAY_ERROR(ci)
    yield ci
    nanossl.SSL_closeConnection(ci)


@pytest.fixture
def fresh_client(trust_store, socket_pair) -> Iterator[int]:
    """Return a client instance that has not negotiated."""
    ci = nanossl.SSL_connect(socket_pair[1], 0, None, None, "localhost", trust_store)
    assert ci > 0, nanossl.DISPLAY_ERROR(ci)
    yield ci
    nanossl.SSL_closeConnection(ci)


@pytest.fixture
def closed_instance(server_store, socket_pair) -> int:
    ci = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    assert ci > 0
    assert nanossl.SSL_closeConnection(ci) == OK
    return ci


def negotiate_pair(server_ci: int, client_ci: int) -> Tuple[int, int]:
    """Run both handshakes at once and return (server status, client status)."""
    server = Background(lambda: nanossl.SSL_negotiateConnection(server_ci))
    client_status = nanossl.SSL_negotiateConnection(client_ci)
    return server.result(), client_status


def make_open_pair(server_store: nanossl.CertStore, trust_store: nanossl.CertStore,
                   socket_pair: Tuple[socket.socket, socket.socket], version: int = 0) -> Pair:
    """Negotiate a pynano server and client. Version 0 keeps the default range, TLS 1.2 to 1.3."""
    server_ci = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    client_ci = nanossl.SSL_connect(socket_pair[1], 0, None, None, "localhost", trust_store)
    assert server_ci > 0, nanossl.DISPLAY_ERROR(server_ci)
    assert client_ci > 0, nanossl.DISPLAY_ERROR(client_ci)
    if version:
        assert nanossl.SSL_ioctl(client_ci, nanossl.SSL_SET_VERSION, version) == OK
    statuses = negotiate_pair(server_ci, client_ci)
    assert statuses == (OK, OK), [nanossl.DISPLAY_ERROR(status) for status in statuses]
    return Pair(server_ci, client_ci, socket_pair[0], socket_pair[1])


@pytest.fixture
def open_pair(server_store, trust_store, socket_pair) -> Iterator[Pair]:
    pair = make_open_pair(server_store, trust_store, socket_pair)
    yield pair
    nanossl.SSL_closeConnection(pair.client)
    nanossl.SSL_closeConnection(pair.server)


def recv_text(ci: int, size: int = 1024, timeout_ms: int = RECV_TIMEOUT_MS) -> Tuple[int, bytes]:
    buffer = bytearray(size)
    status, count = nanossl.SSL_recv(ci, buffer, timeout_ms)
    return status, bytes(buffer[:count])


def status_of(result: Any) -> int:
    """Return the status from a call that returns a status or a (status, ...) tuple."""
    return result[0] if isinstance(result, tuple) else result


# ---- bad instances -----------------------------------------------------


INSTANCE_CALLS = [
    pytest.param(lambda ci: nanossl.SSL_negotiateConnection(ci), id="negotiateConnection"),
    pytest.param(lambda ci: nanossl.SSL_send(ci, b"data"), id="send"),
    pytest.param(lambda ci: nanossl.SSL_recv(ci, bytearray(16), 10), id="recv"),
    pytest.param(lambda ci: nanossl.SSL_recvPending(ci), id="recvPending"),
    pytest.param(lambda ci: nanossl.SSL_closeConnection(ci), id="closeConnection"),
    pytest.param(lambda ci: nanossl.SSL_getSessionFlags(ci), id="getSessionFlags"),
    pytest.param(lambda ci: nanossl.SSL_setSessionFlags(ci, 0), id="setSessionFlags"),
    pytest.param(lambda ci: nanossl.SSL_setInvalidCertCallback(ci, lambda *args: OK), id="setInvalidCertCallback"),
    pytest.param(lambda ci: nanossl.SSL_enableCiphers(ci, [0xC02B]), id="enableCiphers"),
    pytest.param(lambda ci: nanossl.SSL_getCipherInfo(ci), id="getCipherInfo"),
    pytest.param(lambda ci: nanossl.SSL_getSSLTLSVersion(ci), id="getSSLTLSVersion"),
    pytest.param(lambda ci: nanossl.SSL_getConnectionState(ci), id="getConnectionState"),
    pytest.param(lambda ci: nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, 3), id="ioctl"),
    pytest.param(lambda ci: nanossl.SSL_setServerNameIndication(ci, "localhost"), id="setServerNameIndication"),
    pytest.param(lambda ci: nanossl.SSL_sendAlert(ci, 40, nanossl.SSLALERTLEVEL_FATAL), id="sendAlert"),
    pytest.param(lambda ci: nanossl.SSL_lookupAlert(ci, nanossl.ERR_CERT_EXPIRED), id="lookupAlert"),
    pytest.param(lambda ci: nanossl.PYNANO_getPeerCertificate(ci), id="getPeerCertificate"),
    pytest.param(lambda ci: nanossl.PYNANO_getVerifyDetails(ci), id="getVerifyDetails"),
    pytest.param(lambda ci: nanossl.PYNANO_getPeerAlert(ci), id="getPeerAlert"),
    pytest.param(lambda ci: nanossl.PYNANO_getLastMbedtlsError(ci), id="getLastMbedtlsError"),
]


@pytest.mark.parametrize("call", INSTANCE_CALLS)
@pytest.mark.parametrize("instance", [0, -1, 999999])
def test_bad_instance_number(call: Callable[[int], Any], instance):
    assert status_of(call(instance)) == nanossl.ERR_SSL_BAD_ID


@pytest.mark.parametrize("call", INSTANCE_CALLS)
def test_closed_instance(call: Callable[[int], Any], closed_instance):
    assert status_of(call(closed_instance)) == nanossl.ERR_SSL_BAD_ID


def test_double_close(server_store, socket_pair):
    ci = nanossl.SSL_acceptConnection(socket_pair[0], server_store)

    first = nanossl.SSL_closeConnection(ci)
    second = nanossl.SSL_closeConnection(ci)

    assert first == OK
    assert second == nanossl.ERR_SSL_BAD_ID


def test_closed_id_not_reused(server_store, socket_pair):
    # A new connection may reuse the table slot but gets a new instance number.
    old = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    assert nanossl.SSL_closeConnection(old) == OK
    new = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    try:
        assert new > 0
        assert new != old
        assert nanossl.SSL_getSessionFlags(old)[0] == nanossl.ERR_SSL_BAD_ID
        assert nanossl.SSL_getSessionFlags(new)[0] == OK
    finally:
        nanossl.SSL_closeConnection(new)


# ---- wrong state -------------------------------------------------------


@pytest.mark.parametrize("call", [
    pytest.param(lambda ci: nanossl.SSL_send(ci, b"data"), id="send"),
    pytest.param(lambda ci: nanossl.SSL_recv(ci, bytearray(16), 10), id="recv"),
    pytest.param(lambda ci: nanossl.SSL_recvPending(ci), id="recvPending"),
    pytest.param(lambda ci: nanossl.SSL_getCipherInfo(ci), id="getCipherInfo"),
    pytest.param(lambda ci: nanossl.SSL_getSSLTLSVersion(ci), id="getSSLTLSVersion"),
    pytest.param(lambda ci: nanossl.PYNANO_getPeerCertificate(ci), id="getPeerCertificate"),
    pytest.param(lambda ci: nanossl.SSL_sendAlert(ci, 40, nanossl.SSLALERTLEVEL_FATAL), id="sendAlert"),
])
def test_call_before_negotiate(call, fresh_server):
    assert status_of(call(fresh_server)) == nanossl.ERR_SSL_NOT_OPEN


def test_state_before_negotiate(fresh_server):
    assert nanossl.SSL_getConnectionState(fresh_server) == (OK, nanossl.SSL_CONNECTION_NEGOTIATE)


def test_state_after_negotiate(open_pair):
    assert nanossl.SSL_getConnectionState(open_pair.server) == (OK, nanossl.SSL_CONNECTION_OPEN)
    assert nanossl.SSL_getConnectionState(open_pair.client) == (OK, nanossl.SSL_CONNECTION_OPEN)


SETTERS = [
    pytest.param(lambda ci: nanossl.SSL_setSessionFlags(ci, nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH),
                 id="setSessionFlags"),
    pytest.param(lambda ci: nanossl.SSL_setInvalidCertCallback(ci, lambda *args: OK), id="setInvalidCertCallback"),
    pytest.param(lambda ci: nanossl.SSL_enableCiphers(ci, [0x1301]), id="enableCiphers"),
    pytest.param(lambda ci: nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, nanossl.TLS12_MINORVERSION),
                 id="ioctl-version"),
    pytest.param(lambda ci: nanossl.SSL_setServerNameIndication(ci, "localhost"), id="setServerNameIndication"),
]


@pytest.mark.parametrize("setter", SETTERS)
def test_setter_after_negotiate(setter, open_pair):
    assert setter(open_pair.client) == nanossl.ERR_SSL_BAD_STATE


@pytest.mark.parametrize("setting", [nanossl.SSL_SET_RECV_TIMEOUT, nanossl.PYNANO_SSL_SET_SEND_TIMEOUT,
                                     nanossl.PYNANO_SSL_SET_HANDSHAKE_TIMEOUT])
def test_timeouts_change_after_negotiate(setting, open_pair):
    assert nanossl.SSL_ioctl(open_pair.client, setting, 100) == OK


def test_negotiate_twice(open_pair):
    assert nanossl.SSL_negotiateConnection(open_pair.client) == nanossl.ERR_SSL_BAD_STATE
    assert nanossl.SSL_negotiateConnection(open_pair.server) == nanossl.ERR_SSL_BAD_STATE


def test_negotiate_after_failure(socket_pair, pki):
    # A server store without an identity makes the handshake fail at once.
    identity_less = make_store(None, [pki.ca.cert_pem])
    try:
        ci = nanossl.SSL_acceptConnection(socket_pair[0], identity_less)
        try:
            first = nanossl.SSL_negotiateConnection(ci)
            second = nanossl.SSL_negotiateConnection(ci)
            send_status = nanossl.SSL_send(ci, b"data")
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        nanossl.CERT_STORE_releaseStore(identity_less)

    assert first == nanossl.ERR_SSL_CONFIG
    assert second == nanossl.ERR_SSL_BAD_STATE
    assert send_status == nanossl.ERR_SSL_NOT_OPEN


def test_server_name_on_server(fresh_server):
    assert nanossl.SSL_setServerNameIndication(fresh_server, "localhost") == nanossl.ERR_SSL_CONFIG


def test_session_flags_round_trip(fresh_server):
    flags = nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH | nanossl.SSL_FLAG_ENABLE_SEND_EMPTY_FRAME

    assert nanossl.SSL_setSessionFlags(fresh_server, flags) == OK
    assert nanossl.SSL_getSessionFlags(fresh_server) == (OK, flags)


# ---- certificate store input -------------------------------------------


def truncated_der(pki) -> bytes:
    der = pki.ca.cert_der()
    return der[: len(der) // 2]


@pytest.mark.parametrize("make_data", [
    pytest.param(lambda pki: b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
                 id="garbage-pem"),
    pytest.param(lambda pki: pki.ca.cert_pem.replace(b"-----END CERTIFICATE-----", b""), id="unterminated-pem"),
    pytest.param(truncated_der, id="truncated-der"),
    pytest.param(lambda pki: os.urandom(16) + b"\x00" * 64, id="random-bytes"),
    pytest.param(lambda pki: pki.ca.key_pem, id="key-instead-of-cert"),
])
def test_trust_point_invalid_struct(make_data, pki):
    status, store = nanossl.CERT_STORE_createStore()
    assert status == OK
    try:
        result = nanossl.CERT_STORE_addTrustPoint(store, make_data(pki))
        trust_points = repr(store)
    finally:
        nanossl.CERT_STORE_releaseStore(store)

    assert result == nanossl.ERR_CERT_INVALID_STRUCT
    assert "trust_points=0" in trust_points


def test_trust_point_der_accepted(pki):
    status, store = nanossl.CERT_STORE_createStore()
    try:
        assert nanossl.CERT_STORE_addTrustPoint(store, pki.ca.cert_der()) == OK
    finally:
        nanossl.CERT_STORE_releaseStore(store)


def test_trust_point_empty_buffer():
    status, store = nanossl.CERT_STORE_createStore()
    try:
        assert nanossl.CERT_STORE_addTrustPoint(store, b"") == nanossl.ERR_BAD_LENGTH
    finally:
        nanossl.CERT_STORE_releaseStore(store)


@pytest.mark.parametrize("make_key", [
    pytest.param(lambda pki: pki.client.key_pem, id="other-key"),
    pytest.param(lambda pki: pki.ca.key_pem, id="issuer-key"),
    pytest.param(lambda pki: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="garbage-key"),
    pytest.param(lambda pki: pki.server.cert_pem, id="certificate-as-key"),
])
def test_identity_bad_key(make_key, pki):
    status, store = nanossl.CERT_STORE_createStore()
    try:
        result = nanossl.CERT_STORE_addIdentity(store, pki.server.cert_pem, make_key(pki))
        description = repr(store)
    finally:
        nanossl.CERT_STORE_releaseStore(store)

    assert result == nanossl.ERR_BAD_KEY
    assert "identities=0" in description


def test_store_frozen_after_use(pki, socket_pair):
    store = make_store(pki.server, [])
    try:
        ci = nanossl.SSL_acceptConnection(socket_pair[0], store)
        assert ci > 0
        nanossl.SSL_closeConnection(ci)
        status = nanossl.CERT_STORE_addTrustPoint(store, pki.ca.cert_pem)
    finally:
        nanossl.CERT_STORE_releaseStore(store)

    assert status == nanossl.ERR_SSL_BAD_STATE


def test_released_store_rejected(pki, socket_pair):
    store = make_store(pki.server, [])
    nanossl.CERT_STORE_releaseStore(store)

    with pytest.raises(ValueError, match="released"):
        nanossl.SSL_acceptConnection(socket_pair[0], store)


# ---- sockets that are not sockets --------------------------------------


@pytest.fixture
def pipe_fd() -> Iterator[int]:
    read_end, write_end = os.pipe()
    yield read_end
    os.close(read_end)
    os.close(write_end)


@pytest.fixture
def file_fd(tmp_path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "not-a-socket", os.O_RDWR | os.O_CREAT, 0o600)
    yield descriptor
    os.close(descriptor)


@pytest.fixture
def closed_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    return sock


@pytest.mark.parametrize("fixture_name", ["pipe_fd", "file_fd", "closed_socket"])
def test_accept_non_socket(fixture_name, request, server_store):
    target = request.getfixturevalue(fixture_name)

    assert nanossl.SSL_acceptConnection(target, server_store) == nanossl.ERR_INVALID_ARG


@pytest.mark.parametrize("fixture_name", ["pipe_fd", "file_fd", "closed_socket"])
def test_connect_non_socket(fixture_name, request, trust_store):
    target = request.getfixturevalue(fixture_name)

    assert nanossl.SSL_connect(target, 0, None, None, "localhost", trust_store) == nanossl.ERR_INVALID_ARG


@pytest.mark.parametrize("descriptor", [-1, 2**31 - 1])
def test_accept_invalid_descriptor(descriptor, server_store):
    assert nanossl.SSL_acceptConnection(descriptor, server_store) == nanossl.ERR_INVALID_ARG


# ---- Python argument types ---------------------------------------------


@pytest.mark.parametrize("call, name", [
    pytest.param(lambda ci, store: nanossl.SSL_negotiateConnection("1"), "connectionInstance", id="instance-str"),
    pytest.param(lambda ci, store: nanossl.SSL_negotiateConnection(1.0), "connectionInstance",
                 id="instance-float"),
    pytest.param(lambda ci, store: nanossl.SSL_negotiateConnection(None), "connectionInstance",
                 id="instance-none"),
    pytest.param(lambda ci, store: nanossl.SSL_negotiateConnection(True), "connectionInstance",
                 id="instance-bool"),
    pytest.param(lambda ci, store: nanossl.SSL_send(ci, "text"), "pBuffer", id="send-str"),
    pytest.param(lambda ci, store: nanossl.SSL_send(ci, None), "pBuffer", id="send-none"),
    pytest.param(lambda ci, store: nanossl.SSL_recv(ci, b"read-only"), "pRetBuffer", id="recv-bytes"),
    pytest.param(lambda ci, store: nanossl.SSL_recv(ci, bytearray(4), 1.5), "timeout", id="recv-timeout-float"),
    pytest.param(lambda ci, store: nanossl.SSL_setSessionFlags(ci, "1"), "flagsSSL", id="flags-str"),
    pytest.param(lambda ci, store: nanossl.SSL_setInvalidCertCallback(ci, 5), "callback", id="callback-int"),
    pytest.param(lambda ci, store: nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, "3"), "value", id="ioctl-str"),
    pytest.param(lambda ci, store: nanossl.SSL_acceptConnection("socket", store), "socket", id="accept-str"),
    pytest.param(lambda ci, store: nanossl.SSL_acceptConnection(3, "store"), "certificate store",
                 id="accept-store-str"),
    pytest.param(lambda ci, store: nanossl.SSL_connect(3, 0, None, None, 5, store), "dnsName",
                 id="connect-name-int"),
    pytest.param(lambda ci, store: nanossl.CERT_STORE_addTrustPoint(store, "PEM text"), "der",
                 id="trust-point-str"),
    pytest.param(lambda ci, store: nanossl.CERT_STORE_addIdentity(store, b"cert", None), "keyBlob",
                 id="identity-key-none"),
    pytest.param(lambda ci, store: nanossl.CERT_STORE_addTrustPoint("store", b"der"), "store",
                 id="trust-point-store-str"),
    pytest.param(lambda ci, store: nanossl.DISPLAY_ERROR("ERR_SSL_BAD_ID"), "status", id="display-error-str"),
])
def test_wrong_type_names_argument(call, name, fresh_server, trust_store):
    with pytest.raises(TypeError, match=name):
        call(fresh_server, trust_store)


@pytest.mark.parametrize("call, name", [
    pytest.param(lambda ci: nanossl.SSL_negotiateConnection(2**31), "connectionInstance", id="instance"),
    pytest.param(lambda ci: nanossl.SSL_recv(ci, bytearray(4), -1), "timeout", id="timeout"),
    pytest.param(lambda ci: nanossl.SSL_setSessionFlags(ci, -1), "flagsSSL", id="flags"),
    pytest.param(lambda ci: nanossl.SSL_ioctl(ci, nanossl.SSL_SET_RECV_TIMEOUT, 2**32), "value", id="ioctl"),
    pytest.param(lambda ci: nanossl.SSL_enableCiphers(ci, [-1]), "cipher suite id", id="suite"),
])
def test_out_of_range_names_argument(call, name, fresh_server):
    with pytest.raises(ValueError, match=name):
        call(fresh_server)


# ---- status names and documented values --------------------------------


# Values from the NanoSSL headers. Ported C code depends on them.
DOCUMENTED_STATUSES = {
    "OK": 0,
    "ERR_TCP_SOCKET_CLOSED": -5901,
    "ERR_TCP_READ_ERROR": -5902,
    "ERR_TCP_READ_TIMEOUT": -5904,
    "ERR_TCP_WRITE_ERROR": -5905,
    "ERR_NULL_POINTER": -6001,
    "ERR_BAD_LENGTH": -6003,
    "ERR_INVALID_ARG": -6010,
    "ERR_MEM_ALLOC_FAIL": -6101,
    "ERR_BAD_KEY": -7401,
    "ERR_SSL_INIT_CONNECTION": -7502,
    "ERR_SSL_BAD_ID": -7503,
    "ERR_SSL_DISABLED": -7504,
    "ERR_SSL_CONFIG": -7505,
    "ERR_SSL_BAD_STATE": -7510,
    "ERR_SSL_NOT_OPEN": -7511,
    "ERR_SSL_NO_CIPHER_MATCH": -7512,
    "ERR_SSL_MUTUAL_AUTHENTICATION_NOT_REQUESTED": -7514,
    "ERR_SSL_INVALID_SIGNATURE": -7519,
    "ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE": -7527,
    "ERR_SSL_PROTOCOL_VERSION": -7536,
    "ERR_SSL_FATAL_ALERT": -7538,
    "ERR_SSL_UNSUPPORTED_ALGORITHM": -7547,
    "ERR_CERT_INVALID_STRUCT": -7603,
    "ERR_CERT_EXPIRED": -7606,
    "ERR_CERT_BAD_COMMON_NAME": -7607,
    "ERR_CERT_INVALID_SIGNATURE": -7609,
    "ERR_CERT_CHAIN_NOT_VERIFIED": -7614,
    "ERR_CERT_INVALID_KEYUSAGE": -7624,
    "ERR_CERT_START_TIME_VALID_IN_FUTURE": -7625,
    "ERR_CERT_CHAIN_NO_TRUST_ANCHOR": -7629,
}

DOCUMENTED_CONSTANTS = {
    "SSL_FLAG_REQUIRE_MUTUAL_AUTH": 0x1,
    "SSL_FLAG_NO_MUTUAL_AUTH_REQUEST": 0x2,
    "SSL_FLAG_NO_MUTUAL_AUTH_REPLY": 0x2,
    "SSL_FLAG_ENABLE_SEND_EMPTY_FRAME": 0x4,
    "SSL_FLAG_ENABLE_SEND_BUFFER": 0x8,
    "SSL_FLAG_ENABLE_RECV_BUFFER": 0x10,
    "SSL_FLAG_ENABLE_POST_HANDSHAKE_AUTH": 0x20,
    "SSL_FLAG_ALLOW_INSECURE_REHANDSHAKE": 0x80,
    "SSL3_MAJORVERSION": 3,
    "TLS10_MINORVERSION": 1,
    "TLS11_MINORVERSION": 2,
    "TLS12_MINORVERSION": 3,
    "TLS13_MINORVERSION": 4,
    "SSL_CONNECTION_NEGOTIATE": 2,
    "SSL_CONNECTION_OPEN": 3,
    "SSL_CONNECTION_RENEGOTIATE": 4,
    "SSL_SET_VERSION": 1,
    "SSL_SET_MINIMUM_VERSION": 2,
    "SSL_SET_RECV_TIMEOUT": 4,
    "SSL_ALERT_CLOSE_NOTIFY": 0,
    "SSL_ALERT_HANDSHAKE_FAILURE": 40,
    "SSL_ALERT_BAD_CERTIFICATE": 42,
    "SSL_ALERT_CERTIFICATE_EXPIRED": 45,
    "SSL_ALERT_UNKNOWN_CA": 48,
    "SSL_ALERT_CERTIFICATE_REQUIRED": 116,
}


@pytest.mark.parametrize("name, value", DOCUMENTED_STATUSES.items())
def test_status_value(name, value):
    assert getattr(nanossl, name) == value


@pytest.mark.parametrize("name, value", DOCUMENTED_STATUSES.items())
def test_display_error_name(name, value):
    assert nanossl.DISPLAY_ERROR(value) == name


@pytest.mark.parametrize("name, value", DOCUMENTED_CONSTANTS.items())
def test_constant_value(name, value):
    assert getattr(nanossl, name) == value


@pytest.mark.parametrize("status", [-1, -99999, -(2**31)])
def test_display_error_unknown(status):
    assert nanossl.DISPLAY_ERROR(status) == "ERR_UNKNOWN"


@pytest.mark.parametrize("status, alert, level", [
    pytest.param(nanossl.ERR_CERT_EXPIRED, 45, nanossl.SSLALERTLEVEL_FATAL, id="expired"),
    pytest.param(nanossl.ERR_CERT_START_TIME_VALID_IN_FUTURE, 45, nanossl.SSLALERTLEVEL_FATAL, id="future"),
    pytest.param(nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR, 48, nanossl.SSLALERTLEVEL_FATAL, id="untrusted"),
    pytest.param(nanossl.ERR_CERT_BAD_COMMON_NAME, 42, nanossl.SSLALERTLEVEL_FATAL, id="wrong-host"),
    pytest.param(nanossl.ERR_SSL_PROTOCOL_VERSION, 70, nanossl.SSLALERTLEVEL_FATAL, id="version"),
    pytest.param(nanossl.ERR_TCP_SOCKET_CLOSED, 0, nanossl.SSLALERTLEVEL_WARNING, id="closed"),
])
def test_lookup_alert(status, alert, level, fresh_server):
    assert nanossl.SSL_lookupAlert(fresh_server, status) == (OK, alert, level)


def test_lookup_alert_missing_cert_tls13(fresh_server):
    # Before a handshake the TLS 1.3 alert applies, as 1.3 is the default maximum.
    status, alert, _level = nanossl.SSL_lookupAlert(fresh_server, nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE)

    assert status == OK
    assert alert == nanossl.SSL_ALERT_CERTIFICATE_REQUIRED


def test_lookup_alert_missing_cert_tls12(server_store, trust_store, socket_pair):
    pair = make_open_pair(server_store, trust_store, socket_pair, nanossl.TLS12_MINORVERSION)
    try:
        status, alert, _level = nanossl.SSL_lookupAlert(pair.client, nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE)
    finally:
        nanossl.SSL_closeConnection(pair.client)
        nanossl.SSL_closeConnection(pair.server)

    assert status == OK
    assert alert == nanossl.SSL_ALERT_HANDSHAKE_FAILURE


def test_lookup_alert_for_ok(fresh_server):
    assert nanossl.SSL_lookupAlert(fresh_server, OK)[0] == nanossl.ERR_INVALID_ARG


# ---- version settings, with the ssl module as the peer -----------------


def ssl_client_context(pki, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
                       maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = minimum
    context.maximum_version = maximum
    context.load_verify_locations(pki.path("ca.pem"))
    return context


def serve_with_ioctl(listener: socket.socket, store: nanossl.CertStore, setting: int, value: int) -> dict:
    """Accept one client after SSL_ioctl(setting, value) and echo one message."""
    seen: dict = {}
    conn = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(conn, store)
        try:
            seen["ioctl"] = nanossl.SSL_ioctl(ci, setting, value)
            seen["handshake"] = nanossl.SSL_negotiateConnection(ci)
            if seen["handshake"] != OK:
                return seen
            seen["version"] = nanossl.SSL_getSSLTLSVersion(ci)[1]
            status, data = recv_text(ci)
            nanossl.SSL_send(ci, data)
            return seen
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        conn.close()


@pytest.mark.parametrize("minor, name", [
    pytest.param(nanossl.TLS12_MINORVERSION, "TLSv1.2", id="tls12"),
    pytest.param(nanossl.TLS13_MINORVERSION, "TLSv1.3", id="tls13"),
])
def test_server_set_version(minor, name, pki, server_store, listener):
    server = Background(lambda: serve_with_ioctl(listener, server_store, nanossl.SSL_SET_VERSION, minor))

    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with ssl_client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            peer_version = tls.version()
            tls.sendall(b"hello")
            echoed = tls.recv(64)
    seen = server.result()

    assert seen["ioctl"] == OK
    assert seen["handshake"] == OK
    assert seen["version"] == minor
    assert peer_version == name
    assert echoed == b"hello"


def ssl_serve_version(listener: socket.socket, pki, handshake_done: threading.Event) -> str:
    """Serve one client with the ssl module and return the negotiated version."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    conn = accept(listener)
    try:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        finally:
            handshake_done.set()
        with tls:
            tls.sendall(tls.recv(64))
            return tls.version()
    finally:
        conn.close()


def test_client_set_version_tls12(pki, trust_store, listener):
    handshake_done = threading.Event()
    server = Background(lambda: ssl_serve_version(listener, pki, handshake_done))
    sock = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", trust_store)
        try:
            ioctl_status = nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, nanossl.TLS12_MINORVERSION)
            handshake = nanossl.SSL_negotiateConnection(ci)
            version = nanossl.SSL_getSSLTLSVersion(ci)
            nanossl.SSL_send(ci, b"hello")
            echoed = recv_text(ci)
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()
    peer_version = server.result()

    assert ioctl_status == OK
    assert handshake == OK
    assert version == (OK, nanossl.TLS12_MINORVERSION)
    assert echoed == (OK, b"hello")
    assert peer_version == "TLSv1.2"


@pytest.mark.parametrize("setting", [nanossl.SSL_SET_VERSION, nanossl.SSL_SET_MINIMUM_VERSION])
@pytest.mark.parametrize("minor", [0, nanossl.TLS10_MINORVERSION, nanossl.TLS11_MINORVERSION])
def test_old_version_rejected(setting, minor, fresh_client):
    assert nanossl.SSL_ioctl(fresh_client, setting, minor) == nanossl.ERR_SSL_PROTOCOL_VERSION


@pytest.mark.parametrize("minor", [5, 0x0303, 2**32 - 1])
def test_unknown_version_invalid(minor, fresh_client):
    assert nanossl.SSL_ioctl(fresh_client, nanossl.SSL_SET_VERSION, minor) == nanossl.ERR_INVALID_ARG


def test_unknown_ioctl_setting(fresh_client):
    assert nanossl.SSL_ioctl(fresh_client, 9999, 1) == nanossl.ERR_INVALID_ARG


def test_minimum_tls13_against_tls12_peer(pki, server_store, listener):
    server = Background(lambda: serve_with_ioctl(listener, server_store, nanossl.SSL_SET_MINIMUM_VERSION,
                                                 nanossl.TLS13_MINORVERSION))
    context = ssl_client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)

    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError) as raised:
            context.wrap_socket(raw, server_hostname="localhost")
    seen = server.result()

    assert "PROTOCOL_VERSION" in str(raised.value)
    assert seen["ioctl"] == OK
    assert seen["handshake"] == nanossl.ERR_SSL_PROTOCOL_VERSION


# ---- timeouts ----------------------------------------------------------


def test_recv_timeout(open_pair):
    started = time.monotonic()
    status, data = recv_text(open_pair.client, timeout_ms=SHORT_TIMEOUT_MS)
    elapsed = time.monotonic() - started

    assert status == nanossl.ERR_TCP_READ_TIMEOUT
    assert data == b""
    assert elapsed < SHORT_TIMEOUT_BOUND


def test_connection_usable_after_timeout(open_pair):
    first = recv_text(open_pair.client, timeout_ms=SHORT_TIMEOUT_MS)

    sent = nanossl.SSL_send(open_pair.server, b"late data")
    second = recv_text(open_pair.client)
    nanossl.SSL_send(open_pair.client, b"reply")
    third = recv_text(open_pair.server)

    assert first[0] == nanossl.ERR_TCP_READ_TIMEOUT
    assert sent == len(b"late data")
    assert second == (OK, b"late data")
    assert third == (OK, b"reply")


def test_handshake_recv_timeout(server_store, socket_pair):
    # The client end never sends a ClientHello.
    ci = nanossl.SSL_acceptConnection(socket_pair[0], server_store)
    try:
        assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_RECV_TIMEOUT, SHORT_TIMEOUT_MS) == OK
        started = time.monotonic()
        status = nanossl.SSL_negotiateConnection(ci)
        elapsed = time.monotonic() - started
    finally:
        nanossl.SSL_closeConnection(ci)

    assert status == nanossl.ERR_TCP_READ_TIMEOUT
    assert elapsed < SHORT_TIMEOUT_BOUND


# ---- data and connection end -------------------------------------------


def test_send_large_buffer(open_pair):
    payload = os.urandom(1024 * 1024)
    sender = Background(lambda: nanossl.SSL_send(open_pair.server, payload))

    received = bytearray()
    while len(received) < len(payload):
        status, chunk = recv_text(open_pair.client, size=65536)
        assert status == OK, nanossl.DISPLAY_ERROR(status)
        received += chunk

    assert sender.result() == len(payload)
    assert bytes(received) == payload


def test_recv_pending_after_partial_read(open_pair):
    nanossl.SSL_send(open_pair.server, b"0123456789")

    first = recv_text(open_pair.client, size=4)
    pending = nanossl.SSL_recvPending(open_pair.client)
    rest = recv_text(open_pair.client, size=64)
    pending_after = nanossl.SSL_recvPending(open_pair.client)

    assert first == (OK, b"0123")
    assert pending == (OK, 1)
    assert rest == (OK, b"456789")
    assert pending_after == (OK, 0)


def test_recv_empty_buffer(open_pair):
    assert nanossl.SSL_recv(open_pair.client, bytearray(0), 10)[0] == nanossl.ERR_BAD_LENGTH


def test_peer_close_notify(open_pair):
    assert nanossl.SSL_closeConnection(open_pair.server) == OK

    first = recv_text(open_pair.client)
    second = recv_text(open_pair.client)

    assert first == (nanossl.ERR_TCP_SOCKET_CLOSED, b"")
    assert second == (nanossl.ERR_TCP_SOCKET_CLOSED, b"")


def test_peer_tcp_close(open_pair):
    # The peer's TCP connection ends without a close_notify.
    open_pair.server_sock.shutdown(socket.SHUT_RDWR)

    status, data = recv_text(open_pair.client)

    assert status == nanossl.ERR_TCP_SOCKET_CLOSED
    assert data == b""


def test_data_before_close_notify(open_pair):
    nanossl.SSL_send(open_pair.server, b"last words")
    nanossl.SSL_closeConnection(open_pair.server)

    assert recv_text(open_pair.client) == (OK, b"last words")
    assert recv_text(open_pair.client)[0] == nanossl.ERR_TCP_SOCKET_CLOSED


def ssl_server_then_unwrap(listener: socket.socket, pki, version: ssl.TLSVersion, unwrap_timeout: float) -> str:
    """Send one message, then close with close_notify and wait for the client's close_notify."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = version
    context.maximum_version = version
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    conn = accept(listener)
    try:
        tls = context.wrap_socket(conn, server_side=True)
        tls.sendall(b"goodbye")
        tls.settimeout(unwrap_timeout)
        try:
            tls.unwrap().close()
            return "closed"
        except (TimeoutError, ssl.SSLError, OSError) as error:
            tls.close()
            return f"unwrap failed: {error!r}"
    finally:
        conn.close()


@pytest.mark.parametrize("version", [pytest.param(ssl.TLSVersion.TLSv1_2, id="tls12"),
                                     pytest.param(ssl.TLSVersion.TLSv1_3, id="tls13")])
def test_close_answers_close_notify(version, pki, trust_store, listener):
    # RFC 5246 7.2.1 and RFC 8446 6.1: a party that receives close_notify
    # sends its own before closing its write side.
    server = Background(lambda: ssl_server_then_unwrap(listener, pki, version, unwrap_timeout=2.0))
    sock = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", trust_store)
        try:
            assert nanossl.SSL_negotiateConnection(ci) == OK
            data = recv_text(ci)
            end = recv_text(ci)
        finally:
            close_status = nanossl.SSL_closeConnection(ci)
        server_outcome = server.result()
    finally:
        sock.close()

    assert data == (OK, b"goodbye")
    assert end[0] == nanossl.ERR_TCP_SOCKET_CLOSED
    assert close_status == OK
    assert server_outcome == "closed"


def ssl_server_with_tickets(listener: socket.socket, pki, send_data: threading.Event) -> int:
    """Serve TLS 1.3 with two NewSessionTickets, then send data once send_data is set."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.num_tickets = 2
    conn = accept(listener)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            assert send_data.wait(SOCKET_TIMEOUT)
            tls.sendall(b"after tickets")
            return context.num_tickets
    finally:
        conn.close()


def test_session_ticket_not_an_error(pki, trust_store, listener):
    send_data = threading.Event()
    server = Background(lambda: ssl_server_with_tickets(listener, pki, send_data))
    sock = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", trust_store)
        try:
            handshake = nanossl.SSL_negotiateConnection(ci)
            # Only the tickets have arrived, so this read must time out.
            before_data = recv_text(ci, timeout_ms=SHORT_TIMEOUT_MS)
            send_data.set()
            data = recv_text(ci)
        finally:
            nanossl.SSL_closeConnection(ci)
        tickets = server.result()
    finally:
        sock.close()

    assert tickets == 2
    assert handshake == OK
    assert before_data == (nanossl.ERR_TCP_READ_TIMEOUT, b"")
    assert data == (OK, b"after tickets")


def test_record_split_across_timeouts(pki, server_store, listener):
    # One TLS record arrives in three pieces 350 ms apart. The first SSL_recv
    # times out with part of the record read, and the next one completes it.
    def serve() -> list:
        conn = accept(listener)
        try:
            ci = nanossl.SSL_acceptConnection(conn, server_store)
            try:
                results = [nanossl.SSL_negotiateConnection(ci)]
                results.append(recv_text(ci, timeout_ms=200))
                results.append(recv_text(ci))
                return results
            finally:
                nanossl.SSL_closeConnection(ci)
        finally:
            conn.close()

    server = Background(serve)
    context = ssl_client_context(pki)
    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as sock:
        incoming = ssl.MemoryBIO()
        outgoing = ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        sock.sendall(outgoing.read())
        tls.write(b"hello")
        record = outgoing.read()
        sock.sendall(record[:3])
        time.sleep(0.35)
        sock.sendall(record[3:12])
        time.sleep(0.35)
        sock.sendall(record[12:])
        handshake, partial, complete = server.result()

    assert handshake == OK
    assert partial == (nanossl.ERR_TCP_READ_TIMEOUT, b"")
    assert complete == (OK, b"hello")


def test_send_alert_reaches_peer(pki, server_store, listener):
    def serve() -> Tuple[int, int, int]:
        conn = accept(listener)
        try:
            ci = nanossl.SSL_acceptConnection(conn, server_store)
            try:
                handshake = nanossl.SSL_negotiateConnection(ci)
                alert_status = nanossl.SSL_sendAlert(ci, nanossl.SSL_ALERT_ACCESS_DENIED,
                                                     nanossl.SSLALERTLEVEL_FATAL)
                send_status = nanossl.SSL_send(ci, b"after the alert")
                return handshake, alert_status, send_status
            finally:
                nanossl.SSL_closeConnection(ci)
        finally:
            conn.close()

    server = Background(serve)
    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with ssl_client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            with pytest.raises(ssl.SSLError) as raised:
                tls.recv(64)
    handshake, alert_status, send_status = server.result()

    assert handshake == OK
    assert alert_status == OK
    assert send_status == nanossl.ERR_SSL_NOT_OPEN
    assert "ACCESS_DENIED" in str(raised.value)


@pytest.mark.parametrize("alert_id, alert_class", [
    pytest.param(256, nanossl.SSLALERTLEVEL_FATAL, id="alert-too-large"),
    pytest.param(-1, nanossl.SSLALERTLEVEL_FATAL, id="alert-negative"),
    pytest.param(40, 3, id="unknown-level"),
])
def test_send_alert_invalid(alert_id, alert_class, open_pair):
    assert nanossl.SSL_sendAlert(open_pair.client, alert_id, alert_class) == nanossl.ERR_INVALID_ARG
