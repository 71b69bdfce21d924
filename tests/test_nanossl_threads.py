"""Concurrency: handshakes and calls on one connection must not block other
connections, so neither the GIL nor a global lock may be held while a call
waits on its socket or runs a callback.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Iterator, List, Optional, Tuple

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
# Bound for any single wait on another thread, so a deadlock fails the test
# after this long instead of hanging the run.
WAIT_SECONDS = 10.0


@pytest.fixture
def trust_store(pki) -> Iterator[nanossl.CertStore]:
    store = make_store(None, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


def pynano_echo_server(listener: socket.socket, store: nanossl.CertStore,
                       handshake_ended: Optional[threading.Event] = None) -> int:
    """Accept one client, echo one message and return the handshake status.

    handshake_ended, when given, is set once SSL_negotiateConnection returns.
    """
    conn = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(conn, store)
        try:
            status = nanossl.SSL_negotiateConnection(ci)
            if handshake_ended is not None:
                handshake_ended.set()
            if status == OK:
                buffer = bytearray(256)
                recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
                assert recv_status == OK, nanossl.DISPLAY_ERROR(recv_status)
                nanossl.SSL_send(ci, bytes(buffer[:count]))
            return status
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        conn.close()


def ssl_echo_over(pki, raw: socket.socket, message: bytes) -> bytes:
    """Run an ssl module client on a connected socket and return the echo."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.path("ca.pem"))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(message)
        return tls.recv(256)


def ssl_echo_client(pki, port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
        return ssl_echo_over(pki, raw, message)


def ssl_echo_server(listener: socket.socket, cert_file: str, key_file: str) -> str:
    """Serve one client with the ssl module and echo one message."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    conn = accept(listener)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(256))
            return tls.version()
    finally:
        conn.close()


def pynano_echo_client(port: int, store: nanossl.CertStore, message: bytes, callback=None) -> Tuple[int, bytes]:
    """Connect, send message and return (handshake status, echoed bytes)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", store)
        try:
            if callback is not None:
                assert nanossl.SSL_setInvalidCertCallback(ci, callback) == OK
            status = nanossl.SSL_negotiateConnection(ci)
            if status != OK:
                return status, b""
            nanossl.SSL_send(ci, message)
            buffer = bytearray(256)
            recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            assert recv_status == OK, nanossl.DISPLAY_ERROR(recv_status)
            return status, bytes(buffer[:count])
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()


def new_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def test_waiting_handshake_blocks_no_other(pki, server_store):
    # Server A waits in SSL_negotiateConnection for a ClientHello that is held
    # back until connection B has finished a whole exchange. A handshake that
    # held the GIL or a global lock while waiting would stall B until timeout.
    listener_a = new_listener()
    listener_b = new_listener()
    a_ended = threading.Event()
    try:
        server_a = Background(lambda: pynano_echo_server(listener_a, server_store, a_ended))
        with socket.create_connection(listener_a.getsockname(), timeout=SOCKET_TIMEOUT) as held_back:
            server_b = Background(lambda: pynano_echo_server(listener_b, server_store))
            echoed_b = ssl_echo_client(pki, listener_b.getsockname()[1], b"connection B")
            status_b = server_b.result(WAIT_SECONDS)
            a_ended_before_its_client = a_ended.is_set()
            echoed_a = ssl_echo_over(pki, held_back, b"connection A")
        status_a = server_a.result(WAIT_SECONDS)
    finally:
        listener_a.close()
        listener_b.close()

    assert echoed_b == b"connection B"
    assert status_b == OK
    assert not a_ended_before_its_client
    assert echoed_a == b"connection A"
    assert status_a == OK


def test_callback_waits_for_other_handshake(pki, server_store, trust_store, tmp_path, bad_server_certs):
    # Connection A's invalid-certificate callback waits until connection B,
    # started from inside the callback, has completed its handshake.
    untrusted = bad_server_certs["untrusted"]
    cert_file = tmp_path / "untrusted.pem"
    key_file = tmp_path / "untrusted.key"
    cert_file.write_bytes(untrusted.cert_pem)
    key_file.write_bytes(untrusted.key_pem)
    listener_a = new_listener()
    listener_b = new_listener()
    b_done = threading.Event()
    b_results: List[Tuple[int, bytes]] = []
    waited: List[bool] = []

    def run_connection_b() -> None:
        server_b = Background(lambda: pynano_echo_server(listener_b, server_store))
        b_results.append(pynano_echo_client(listener_b.getsockname()[1], trust_store, b"connection B"))
        server_b.result(WAIT_SECONDS)
        b_done.set()

    def wait_for_b(ci: int, status: int) -> int:
        connection_b = threading.Thread(target=run_connection_b, daemon=True)
        connection_b.start()
        waited.append(b_done.wait(WAIT_SECONDS))
        connection_b.join(WAIT_SECONDS)
        return OK

    try:
        server_a = Background(lambda: ssl_echo_server(listener_a, str(cert_file), str(key_file)))
        result_a = pynano_echo_client(listener_a.getsockname()[1], trust_store, b"connection A", wait_for_b)
        server_a.result(WAIT_SECONDS)
    finally:
        listener_a.close()
        listener_b.close()

    assert waited == [True]
    assert b_results == [(OK, b"connection B")]
    assert result_a == (OK, b"connection A")


PARALLEL_PAIRS = 8


def test_parallel_handshakes(server_store, trust_store):
    # Every client waits at a barrier, so the handshakes overlap.
    barrier = threading.Barrier(PARALLEL_PAIRS, timeout=WAIT_SECONDS)
    listeners = [new_listener() for _ in range(PARALLEL_PAIRS)]

    def run_client(index: int) -> Tuple[int, bytes]:
        barrier.wait()
        message = f"client {index}".encode()
        return pynano_echo_client(listeners[index].getsockname()[1], trust_store, message)

    try:
        servers = [Background(lambda listener=listener: pynano_echo_server(listener, server_store))
                   for listener in listeners]
        clients = [Background(lambda index=index: run_client(index)) for index in range(PARALLEL_PAIRS)]
        client_results = [client.result(WAIT_SECONDS) for client in clients]
        server_results = [server.result(WAIT_SECONDS) for server in servers]
    finally:
        for listener in listeners:
            listener.close()

    assert client_results == [(OK, f"client {index}".encode()) for index in range(PARALLEL_PAIRS)]
    assert server_results == [OK] * PARALLEL_PAIRS


@pytest.fixture
def open_pair(server_store, trust_store) -> Iterator[Tuple[int, int]]:
    """Return (server, client) instances negotiated over a socket pair."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(SOCKET_TIMEOUT)
    client_sock.settimeout(SOCKET_TIMEOUT)
    server_ci = nanossl.SSL_acceptConnection(server_sock, server_store)
    client_ci = nanossl.SSL_connect(client_sock, 0, None, None, "localhost", trust_store)
    server = Background(lambda: nanossl.SSL_negotiateConnection(server_ci))
    assert nanossl.SSL_negotiateConnection(client_ci) == OK
    assert server.result(WAIT_SECONDS) == OK
    yield server_ci, client_ci
    nanossl.SSL_closeConnection(client_ci)
    nanossl.SSL_closeConnection(server_ci)
    server_sock.close()
    client_sock.close()


def test_send_while_recv_waits(open_pair):
    # One thread waits in SSL_recv without a timeout while another thread
    # sends on the same connection. The peer echoes the message back.
    server_ci, client_ci = open_pair

    def echo_once() -> int:
        buffer = bytearray(64)
        status, count = nanossl.SSL_recv(server_ci, buffer, RECV_TIMEOUT_MS)
        nanossl.SSL_send(server_ci, bytes(buffer[:count]))
        return status

    def wait_forever() -> Tuple[int, bytes]:
        buffer = bytearray(64)
        status, count = nanossl.SSL_recv(client_ci, buffer, 0)
        return status, bytes(buffer[:count])

    echo = Background(echo_once)
    reader = Background(wait_forever)
    time.sleep(0.3)         # let the reader enter SSL_recv first
    started = time.monotonic()
    sent = nanossl.SSL_send(client_ci, b"full duplex")
    send_seconds = time.monotonic() - started

    assert sent == len(b"full duplex")
    assert send_seconds < WAIT_SECONDS / 2
    assert reader.result(WAIT_SECONDS) == (OK, b"full duplex")
    assert echo.result(WAIT_SECONDS) == OK


def test_close_ends_waiting_recv(open_pair):
    _server_ci, client_ci = open_pair

    def wait_forever() -> int:
        return nanossl.SSL_recv(client_ci, bytearray(64), 0)[0]

    reader = Background(wait_forever)
    time.sleep(0.3)         # let the reader enter SSL_recv first
    close_status = nanossl.SSL_closeConnection(client_ci)
    recv_status = reader.result(WAIT_SECONDS)

    assert close_status == OK
    # The reader gets ERR_SSL_BAD_ID when its next wait starts after the
    # close, or ERR_TCP_SOCKET_CLOSED when it starts between the close_notify
    # and the removal of the instance from the table.
    assert recv_status in (nanossl.ERR_SSL_BAD_ID, nanossl.ERR_TCP_SOCKET_CLOSED)
