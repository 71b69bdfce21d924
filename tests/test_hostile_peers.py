"""Hostile and broken peers over real loopback sockets.

Each misbehaving peer must end the pynano handshake or read with a negative
status within the configured timeouts; SSL_closeConnection must then free
the connection instance, and the same pynano server must go on to serve a
real client. The clients here are raw sockets, hand-made records, and
CPython's ssl module driven through a MemoryBIO so that every byte is
under the test's control.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from tls_peers import (  # noqa: E402
    CONTENT_APPLICATION_DATA,
    CONTENT_HANDSHAKE,
    Background,
    MemoryBioClient,
    alert,
    capture_client_hello,
    capture_server_flight,
    client_hello_message,
    negotiate_pair,
    new_store,
    record,
    records,
    require_mutual_auth,
    reset_close,
    set_timeouts,
    ssl_client_context,
    ssl_server_context,
    table_in_use,
    tcp_pair,
)
from pynano import certs, nanossl  # noqa: E402

RECV_TIMEOUT_MS = 2000
HANDSHAKE_TIMEOUT_MS = 5000
ALERT_HANDSHAKE_FAILURE = 40
ALERT_USER_CANCELED = 90


def _lingering_close(sock: socket.socket, timeout: float = 0.5) -> None:
    """Send a FIN, drain what the peer still sends, then close.

    Closing a socket with unread data sends an RST, and a peer that gets
    the RST may lose the alert that was sent just before it. A TLS 1.3
    client whose certificate is rejected has sent its Finished (and maybe
    data) that the server never reads, so the server drains them first.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


@dataclass
class ServerOutcome:
    """What the pynano server saw for one accepted connection."""

    status: int
    peer_alert: int
    elapsed: float
    in_use_after_close: int
    close_status: int


class PynanoServer:
    """A pynano server on a 127.0.0.1 listener, one connection at a time.

    serve() accepts one connection in a thread, negotiates with the given
    timeouts and, when the handshake succeeds, echoes one message.
    """

    def __init__(self, store: nanossl.CertStore) -> None:
        self.store = store
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(10.0)
        self.address = self.listener.getsockname()
        self.in_use_before = table_in_use()

    def serve(self, recv_ms: int = RECV_TIMEOUT_MS, handshake_ms: int = HANDSHAKE_TIMEOUT_MS,
              setup: Optional[Callable[[int], None]] = None) -> Background:
        def run() -> ServerOutcome:
            sock, _ = self.listener.accept()
            started = time.monotonic()
            ci = nanossl.SSL_acceptConnection(sock, self.store)
            assert ci > 0, nanossl.DISPLAY_ERROR(ci)
            try:
                set_timeouts(ci, recv_ms, handshake_ms)
                require_mutual_auth(ci)
                if setup is not None:
                    setup(ci)
                status = nanossl.SSL_negotiateConnection(ci)
                elapsed = time.monotonic() - started
                if status == nanossl.OK:
                    buffer = bytearray(1024)
                    status, count = nanossl.SSL_recv(ci, buffer, recv_ms)
                    if status == nanossl.OK:
                        status = min(nanossl.SSL_send(ci, bytes(buffer[:count])), nanossl.OK)
                _alert_status, peer_alert = nanossl.PYNANO_getPeerAlert(ci)
            finally:
                close_status = nanossl.SSL_closeConnection(ci)
                in_use = table_in_use()
                _lingering_close(sock)
            return ServerOutcome(status, peer_alert, elapsed, in_use, close_status)

        return Background(run)

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=10.0)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server(pki) -> Iterator[PynanoServer]:
    store = new_store(pki.server, [pki.ca.cert_pem])
    pynano_server = PynanoServer(store)
    yield pynano_server
    pynano_server.close()
    nanossl.CERT_STORE_releaseStore(store)


def _expect_clean_failure(server: PynanoServer, outcome: ServerOutcome, expected: Optional[int] = None) -> None:
    assert outcome.status < nanossl.OK, "handshake with a hostile peer succeeded"
    if expected is not None:
        assert outcome.status == expected, nanossl.DISPLAY_ERROR(outcome.status)
    assert outcome.close_status == nanossl.OK
    assert outcome.in_use_after_close == server.in_use_before


def _serve_real_client(server: PynanoServer, pki) -> None:
    """Check that the server still completes a mutual-auth handshake and echoes."""
    result = server.serve()
    context = ssl_client_context(pki.ca.cert_pem, pki.client)
    with context.wrap_socket(server.connect(), server_hostname="localhost") as tls:
        tls.sendall(b"ping after a hostile peer")
        assert tls.recv(1024) == b"ping after a hostile peer"
    outcome = result.result()
    assert outcome.status == nanossl.OK, nanossl.DISPLAY_ERROR(outcome.status)
    assert outcome.in_use_after_close == server.in_use_before


def _drain(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until EOF, RST or timeout; return what arrived."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (ConnectionResetError, socket.timeout):
        pass
    return b"".join(chunks)


def _send_then_fin(sock: socket.socket, data: bytes) -> None:
    """Send data and a FIN; the server may already have closed the connection."""
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _read_some(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    return sock.recv(65536)


# ---- garbage, truncation and malformed records ------------------------


def _hostile_sends(pki) -> dict:
    hello = capture_client_hello(pki.ca.cert_pem)
    return {
        "random bytes": random.Random(11).randbytes(2048),
        "HTTP request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "SSLv2-style hello": bytes.fromhex("802b0103010012000000100000390000380000350000"),
        "record length 0xFFFF": record(CONTENT_HANDSHAKE, bytes(64))[:3] + b"\xff\xff" + bytes(64),
        "record length 18433": record(CONTENT_HANDSHAKE, bytes(64))[:3] + (18433).to_bytes(2, "big"),
        "empty handshake record": record(CONTENT_HANDSHAKE, b""),
        "unknown content type 0x63": record(0x63, hello[5:]),
        "application data first": record(CONTENT_APPLICATION_DATA, os.urandom(64)),
        "record version 2.0": hello[:1] + b"\x02\x00" + hello[3:],
        "handshake type 0x63": record(CONTENT_HANDSHAKE, b"\x63" + hello[6:]),
        "ClientHello length beyond record": hello[:6] + b"\x00\xff\xff" + hello[9:],
        "ClientHello length short": hello[:6] + b"\x00\x00\x10" + hello[9:],
    }


HOSTILE_SEND_LABELS = [
    "random bytes", "HTTP request", "SSLv2-style hello", "record length 0xFFFF", "record length 18433",
    "empty handshake record", "unknown content type 0x63", "application data first", "record version 2.0",
    "handshake type 0x63", "ClientHello length beyond record", "ClientHello length short",
]


@pytest.mark.parametrize("label", HOSTILE_SEND_LABELS)
def test_malformed_first_flight(server, pki, label):
    data = _hostile_sends(pki)[label]
    result = server.serve()
    with server.connect() as sock:
        _send_then_fin(sock, data)
        _drain(sock)
    outcome = result.result()
    _expect_clean_failure(server, outcome)
    assert outcome.status != nanossl.ERR_TCP_READ_TIMEOUT
    _serve_real_client(server, pki)


def test_truncated_client_hello_then_close(server, pki):
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve()
    with server.connect() as sock:
        _send_then_fin(sock, hello[: len(hello) // 2])
        _drain(sock)
    _expect_clean_failure(server, result.result(), nanossl.ERR_TCP_SOCKET_CLOSED)
    _serve_real_client(server, pki)


def test_truncated_client_hello_then_silence(server, pki):
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve(recv_ms=500)
    with server.connect() as sock:
        sock.sendall(hello[: len(hello) // 2])
        outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_READ_TIMEOUT)
    assert 0.4 < outcome.elapsed < 3.0
    _serve_real_client(server, pki)


def test_client_hello_in_several_records(server, pki):
    # 12 KiB of padding spread over 1 KiB records: valid TLS, and Mbed TLS
    # 3.6 reassembles fragmented handshake messages, so the server responds.
    message = client_hello_message(padding=12 * 1024)
    result = server.serve()
    with server.connect() as sock:
        sock.sendall(records(CONTENT_HANDSHAKE, message, fragment=1024))
        answer = _read_some(sock)
        assert answer[:1] == bytes([CONTENT_HANDSHAKE]), answer[:16]
    _expect_clean_failure(server, result.result())
    _serve_real_client(server, pki)


@pytest.mark.parametrize("padding", [40 * 1024, 70 * 1024])
def test_huge_client_hello(server, pki, padding):
    # Larger than Mbed TLS's 16 KiB input buffer: rejected, never buffered.
    message = client_hello_message(padding=padding)
    assert len(message) > padding
    result = server.serve()
    with server.connect() as sock:
        try:
            sock.sendall(records(CONTENT_HANDSHAKE, message))
        except (BrokenPipeError, ConnectionResetError):
            pass                   # the server may close before all is sent
        answer = _drain(sock)
    outcome = result.result()
    _expect_clean_failure(server, outcome)
    assert outcome.status != nanossl.ERR_TCP_READ_TIMEOUT
    assert answer[:1] in (b"", bytes([21])), "the server should answer with an alert or nothing"
    _serve_real_client(server, pki)


# ---- alerts, FIN and RST in the middle of the handshake ---------------


def test_fatal_alert_mid_handshake_tls12(server, pki):
    hello = capture_client_hello(pki.ca.cert_pem, ssl.TLSVersion.TLSv1_2)
    result = server.serve()
    with server.connect() as sock:
        sock.sendall(hello)
        assert _read_some(sock)[:1] == bytes([CONTENT_HANDSHAKE])
        sock.sendall(alert(ALERT_HANDSHAKE_FAILURE))
        outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_SSL_FATAL_ALERT)
    assert outcome.peer_alert == ALERT_HANDSHAKE_FAILURE
    _serve_real_client(server, pki)


def test_warning_alert_mid_handshake_then_close(server, pki):
    hello = capture_client_hello(pki.ca.cert_pem, ssl.TLSVersion.TLSv1_2)
    result = server.serve()
    with server.connect() as sock:
        sock.sendall(hello)
        _read_some(sock)
        _send_then_fin(sock, alert(ALERT_USER_CANCELED, level=1))
        _drain(sock)
    _expect_clean_failure(server, result.result())
    _serve_real_client(server, pki)


def test_plaintext_alert_mid_handshake_tls13(server, pki):
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve()
    with server.connect() as sock:
        sock.sendall(hello)
        _read_some(sock)
        _send_then_fin(sock, alert(ALERT_HANDSHAKE_FAILURE))
        _drain(sock)
    _expect_clean_failure(server, result.result())
    _serve_real_client(server, pki)


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("when", ["after ClientHello", "inside ClientHello record"])
def test_peer_leaves_mid_handshake(server, pki, how, when):
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve()
    sock = server.connect()
    if when == "after ClientHello":
        sock.sendall(hello)
        _read_some(sock)
    else:
        sock.sendall(hello[:50])
        time.sleep(0.1)
    if how == "rst":
        reset_close(sock)
    else:
        sock.close()
    _expect_clean_failure(server, result.result(), nanossl.ERR_TCP_SOCKET_CLOSED)
    _serve_real_client(server, pki)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_peer_leaves_mid_record_after_handshake(server, pki, how):
    result = server.serve()
    sock = server.connect()
    client = MemoryBioClient(sock, ssl_client_context(pki.ca.cert_pem, pki.client))
    client.handshake()
    data = client.encrypt(b"x" * 4000)
    sock.sendall(data[: len(data) // 2])
    time.sleep(0.1)
    if how == "rst":
        reset_close(sock)
    else:
        sock.close()
    outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_SOCKET_CLOSED)
    _serve_real_client(server, pki)


def test_garbage_record_after_handshake(server, pki):
    result = server.serve()
    with server.connect() as sock:
        client = MemoryBioClient(sock, ssl_client_context(pki.ca.cert_pem, pki.client))
        client.handshake()
        sock.sendall(record(CONTENT_APPLICATION_DATA, os.urandom(100)))
        _drain(sock)
    outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_SSL_FATAL_ALERT)
    _serve_real_client(server, pki)


# ---- a peer certificate with an unknown critical extension ---------------


@pytest.fixture(scope="module")
def critical_certs(pki) -> dict:
    return {
        "server": certs.make_leaf(pki.ca, "localhost", dns_names=["localhost"], server=True,
                                  critical_unknown_extension=True),
        "client": certs.make_leaf(pki.ca, "pynano test client", server=False,
                                  critical_unknown_extension=True),
    }


TLS_VERSIONS = {"TLS 1.2": ssl.TLSVersion.TLSv1_2, "TLS 1.3": ssl.TLSVersion.TLSv1_3}


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_server_certificate_with_unknown_critical_extension(pki, critical_certs, client_store, version):
    # Mbed TLS fails the certificate while parsing it, before verification,
    # so even an accept-everything callback is never asked.
    context = ssl_server_context(critical_certs["server"], TLS_VERSIONS[version])
    server_sock, client_sock = tcp_pair()

    def ssl_server() -> str:
        try:
            with context.wrap_socket(server_sock, server_side=True):
                return "handshake completed"
        except (ssl.SSLError, OSError) as error:
            return str(error)

    peer = Background(ssl_server)
    calls = []
    ci = nanossl.SSL_connect(client_sock, 0, None, None, "localhost", client_store)
    set_timeouts(ci, RECV_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS)
    nanossl.SSL_setInvalidCertCallback(ci, lambda ci, status: calls.append(status) or nanossl.OK)
    try:
        status = nanossl.SSL_negotiateConnection(ci)
        assert status == nanossl.ERR_CERT_INVALID_STRUCT, nanossl.DISPLAY_ERROR(status)
        assert calls == []
    finally:
        nanossl.SSL_closeConnection(ci)
        client_sock.close()
        peer_view = peer.result()
        server_sock.close()
    assert "BAD_CERTIFICATE" in peer_view.upper().replace(" ", "_"), peer_view


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_client_certificate_with_unknown_critical_extension(server, pki, critical_certs, version):
    calls = []

    def accept_everything(ci: int) -> None:
        nanossl.SSL_setInvalidCertCallback(ci, lambda ci, status: calls.append(status) or nanossl.OK)

    result = server.serve(setup=accept_everything)
    context = ssl_client_context(pki.ca.cert_pem, critical_certs["client"], TLS_VERSIONS[version])
    peer_view = "handshake completed"
    try:
        with context.wrap_socket(server.connect(), server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            tls.recv(16)
    except (ssl.SSLError, OSError) as error:
        peer_view = str(error)
    outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_CERT_INVALID_STRUCT)
    assert calls == []
    # The client must learn why: a bad_certificate alert it can read.
    assert "BAD_CERTIFICATE" in peer_view.upper().replace(" ", "_"), peer_view
    _serve_real_client(server, pki)


# ---- slow and silent peers ---------------------------------------------


def test_silent_peer_recv_timeout(server, pki):
    result = server.serve(recv_ms=500, handshake_ms=0)
    with server.connect():
        outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_READ_TIMEOUT)
    assert 0.4 < outcome.elapsed < 2.0
    _serve_real_client(server, pki)


def test_silent_peer_handshake_timeout(server, pki):
    result = server.serve(recv_ms=0, handshake_ms=600)
    with server.connect():
        outcome = result.result()
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_READ_TIMEOUT)
    assert 0.5 < outcome.elapsed < 2.0
    _serve_real_client(server, pki)


def _trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    for index in range(len(data)):
        if stop.wait(interval):
            return
        try:
            sock.send(data[index:index + 1])
        except OSError:
            return


def test_slow_peer_hits_handshake_timeout(server, pki):
    # One byte every 250 ms keeps each read under the 1 s read timeout, so
    # only the 1.5 s handshake deadline can end it.
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve(recv_ms=1000, handshake_ms=1500)
    stop = threading.Event()
    with server.connect() as sock:
        sender = threading.Thread(target=_trickle, args=(sock, hello, 0.25, stop), daemon=True)
        sender.start()
        outcome = result.result()
        stop.set()
        sender.join(5)
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_READ_TIMEOUT)
    assert 1.4 < outcome.elapsed < 3.0
    _serve_real_client(server, pki)


def test_slow_peer_hits_recv_timeout(server, pki):
    # One byte a second against a 400 ms read timeout and no deadline.
    hello = capture_client_hello(pki.ca.cert_pem)
    result = server.serve(recv_ms=400, handshake_ms=0)
    stop = threading.Event()
    with server.connect() as sock:
        sender = threading.Thread(target=_trickle, args=(sock, hello, 1.0, stop), daemon=True)
        sender.start()
        outcome = result.result()
        stop.set()
        sender.join(5)
    _expect_clean_failure(server, outcome, nanossl.ERR_TCP_READ_TIMEOUT)
    assert outcome.elapsed < 3.0
    _serve_real_client(server, pki)


def test_recv_timeout_after_handshake(server_store, client_store):
    pair = negotiate_pair(server_store, client_store)
    try:
        assert pair.ok
        started = time.monotonic()
        status, count = nanossl.SSL_recv(pair.server_ci, bytearray(64), 300)
        elapsed = time.monotonic() - started
        assert (status, count) == (nanossl.ERR_TCP_READ_TIMEOUT, 0)
        assert 0.25 < elapsed < 2.0
        # A timeout leaves the connection usable.
        assert nanossl.SSL_send(pair.client_ci, b"late") == 4
        buffer = bytearray(64)
        assert nanossl.SSL_recv(pair.server_ci, buffer, 5000) == (nanossl.OK, 4)
        assert bytes(buffer[:4]) == b"late"
    finally:
        pair.close()


def test_peer_that_stops_reading_hits_send_timeout(server_store, client_store):
    pair = negotiate_pair(server_store, client_store)
    try:
        assert pair.ok
        assert nanossl.SSL_ioctl(pair.server_ci, nanossl.PYNANO_SSL_SET_SEND_TIMEOUT, 500) == nanossl.OK
        # The client never calls SSL_recv, so the socket buffers fill up.
        started = time.monotonic()
        status = nanossl.SSL_send(pair.server_ci, bytes(64 * 1024 * 1024))
        elapsed = time.monotonic() - started
        assert status == nanossl.ERR_TCP_WRITE_ERROR, nanossl.DISPLAY_ERROR(status)
        assert elapsed < 5.0
        assert nanossl.SSL_send(pair.server_ci, b"x") < nanossl.OK
    finally:
        pair.close()


# ---- hostile servers against a pynano client ---------------------------


def _client_against(behaviour: Callable[[socket.socket], None], store: nanossl.CertStore,
                    recv_ms: int = RECV_TIMEOUT_MS, handshake_ms: int = HANDSHAKE_TIMEOUT_MS) -> tuple:
    """Run a pynano client against a raw server thread; return (status, in use after close)."""
    before = table_in_use()
    server_sock, client_sock = tcp_pair()
    peer = Background(lambda: behaviour(server_sock))
    try:
        ci = nanossl.SSL_connect(client_sock, 0, None, None, "localhost", store)
        assert ci > 0
        set_timeouts(ci, recv_ms, handshake_ms)
        status = nanossl.SSL_negotiateConnection(ci)
        assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    finally:
        client_sock.close()
        peer.result()
        server_sock.close()
    assert table_in_use() == before
    return status


def _after_hello(action: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    def behaviour(sock: socket.socket) -> None:
        sock.settimeout(10.0)
        sock.recv(65536)
        try:
            action(sock)
        except OSError:
            pass              # the client may already have given up and closed
    return behaviour


def _server_flight(pki, version=None) -> bytes:
    hello = capture_client_hello(pki.ca.cert_pem, version)
    return capture_server_flight(hello, pki.server, version)


@pytest.mark.parametrize("label", [
    "random bytes", "truncated ServerHello", "fatal alert", "FIN", "RST", "record length 0xFFFF",
    "replayed TLS 1.2 flight", "replayed TLS 1.3 flight",
])
def test_hostile_server(pki, client_store, label):
    flight12 = _server_flight(pki, ssl.TLSVersion.TLSv1_2)
    flight13 = _server_flight(pki)
    actions = {
        "random bytes": lambda s: s.sendall(random.Random(12).randbytes(4096)),
        "truncated ServerHello": lambda s: (s.sendall(flight12[:40]), s.shutdown(socket.SHUT_WR)),
        "fatal alert": lambda s: s.sendall(alert(ALERT_HANDSHAKE_FAILURE)),
        "FIN": lambda s: s.shutdown(socket.SHUT_RDWR),
        "RST": reset_close,
        "record length 0xFFFF": lambda s: s.sendall(b"\x16\x03\x03\xff\xff" + bytes(100)),
        "replayed TLS 1.2 flight": lambda s: (s.sendall(flight12), s.shutdown(socket.SHUT_WR)),
        "replayed TLS 1.3 flight": lambda s: (s.sendall(flight13), s.shutdown(socket.SHUT_WR)),
    }
    status = _client_against(_after_hello(actions[label]), client_store)
    assert status < nanossl.OK
    assert status != nanossl.ERR_TCP_READ_TIMEOUT
    if label == "fatal alert":
        assert status == nanossl.ERR_SSL_FATAL_ALERT
    if label in ("FIN", "RST"):
        assert status == nanossl.ERR_TCP_SOCKET_CLOSED


def test_silent_server_times_out(client_store):
    def silent(sock: socket.socket) -> None:
        sock.settimeout(5.0)
        sock.recv(65536)
        time.sleep(1.0)

    started = time.monotonic()
    status = _client_against(silent, client_store, recv_ms=300, handshake_ms=0)
    assert status == nanossl.ERR_TCP_READ_TIMEOUT
    assert time.monotonic() - started < 3.0


# ---- the socket closed by Python behind pynano's back ------------------


def test_socket_closed_before_handshake(pki, server_store):
    before = table_in_use()
    server_sock, client_sock = tcp_pair()
    ci = nanossl.SSL_acceptConnection(server_sock, server_store)
    set_timeouts(ci, 1000, 2000)
    server_sock.close()
    status = nanossl.SSL_negotiateConnection(ci)
    assert status in (nanossl.ERR_TCP_READ_ERROR, nanossl.ERR_TCP_WRITE_ERROR), nanossl.DISPLAY_ERROR(status)
    assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    client_sock.close()
    assert table_in_use() == before


def test_socket_closed_after_handshake(server_store, client_store):
    before = table_in_use()
    pair = negotiate_pair(server_store, client_store)
    assert pair.ok
    server_sock = pair.sockets[0]
    server_sock.close()
    try:
        assert nanossl.SSL_send(pair.server_ci, b"x") == nanossl.ERR_TCP_WRITE_ERROR
        status, count = nanossl.SSL_recv(pair.server_ci, bytearray(16), 200)
        assert status < nanossl.OK
        assert count == 0
    finally:
        pair.close()
    assert table_in_use() == before


def test_socket_closed_during_blocking_recv(server_store, client_store):
    # The C wait polls in 250 ms slices, so closing the descriptor under a
    # recv with no timeout ends it with an error instead of a hang.
    before = table_in_use()
    pair = negotiate_pair(server_store, client_store)
    assert pair.ok
    receiver = Background(lambda: nanossl.SSL_recv(pair.server_ci, bytearray(16), 0))
    time.sleep(0.3)
    pair.sockets[0].close()
    try:
        status, count = receiver.result(timeout=5.0)
        assert status < nanossl.OK, nanossl.DISPLAY_ERROR(status)
        assert count == 0
    finally:
        pair.close()
    assert table_in_use() == before


# ---- the connection table: shut down and full --------------------------


def test_calls_after_shutdown_stack(pki, server_store, client_store):
    pair = negotiate_pair(server_store, client_store)
    assert pair.ok
    idle_sock, idle_peer = socket.socketpair()
    idle_ci = nanossl.SSL_acceptConnection(idle_sock, server_store)
    assert idle_ci > 0
    try:
        assert nanossl.SSL_shutdownStack() == nanossl.OK
        assert nanossl.PYNANO_getTableUsage() == (nanossl.OK, 0, 0)
        n = nanossl
        for ci in (pair.server_ci, pair.client_ci, idle_ci):
            assert n.SSL_send(ci, b"x") == n.ERR_SSL_BAD_ID
            assert n.SSL_recv(ci, bytearray(4), 10) == (n.ERR_SSL_BAD_ID, 0)
            assert n.SSL_negotiateConnection(ci) == n.ERR_SSL_BAD_ID
            assert n.SSL_getSessionFlags(ci)[0] == n.ERR_SSL_BAD_ID
            assert n.SSL_ioctl(ci, n.SSL_SET_RECV_TIMEOUT, 1) == n.ERR_SSL_BAD_ID
            assert n.SSL_closeConnection(ci) == n.ERR_SSL_BAD_ID
        assert n.SSL_acceptConnection(idle_sock, server_store) == n.ERR_SSL_BAD_STATE
        assert n.SSL_connect(idle_sock, 0, None, None, "localhost", client_store) == n.ERR_SSL_BAD_STATE
        assert n.SSL_shutdownStack() == n.OK
        # The application owns the sockets: they stay open.
        assert pair.sockets[0].fileno() >= 0
        pair.sockets[1].setblocking(False)
        with pytest.raises(BlockingIOError):
            pair.sockets[1].recv(1)
    finally:
        assert nanossl.SSL_init(256, 256) == nanossl.OK
        for sock in pair.sockets + [idle_sock, idle_peer]:
            sock.close()
    again = negotiate_pair(server_store, client_store)
    try:
        assert again.ok
    finally:
        again.close()
    assert table_in_use() == 0


def test_full_table_rejects_new_connections(server_store, client_store):
    before = table_in_use()
    _status, _in_use, capacity = nanossl.PYNANO_getTableUsage()
    ours, theirs = socket.socketpair()
    instances: List[int] = []
    try:
        # One socket can back many idle instances: only the table is tested.
        for _ in range(capacity - before):
            ci = nanossl.SSL_acceptConnection(ours, server_store)
            assert ci > 0, nanossl.DISPLAY_ERROR(ci)
            instances.append(ci)
        assert table_in_use() == capacity
        assert nanossl.SSL_acceptConnection(ours, server_store) == nanossl.ERR_SSL_INIT_CONNECTION
        assert nanossl.SSL_connect(ours, 0, None, None, "localhost", client_store) == \
            nanossl.ERR_SSL_INIT_CONNECTION
        assert nanossl.SSL_init(1, 1) == nanossl.ERR_SSL_BAD_STATE

        assert nanossl.SSL_closeConnection(instances.pop()) == nanossl.OK
        ci = nanossl.SSL_acceptConnection(ours, server_store)
        assert ci > 0
        instances.append(ci)
    finally:
        for ci in instances:
            assert nanossl.SSL_closeConnection(ci) == nanossl.OK
        ours.close()
        theirs.close()
    assert table_in_use() == before
