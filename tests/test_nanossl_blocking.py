"""Blocking calls: the GIL is released, and Ctrl-C interrupts a blocking SSL_recv."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from pynano import nanossl

from .conftest import Background, Pki, accept, connect

# A pynano server waits in SSL_recv(timeout=0) for a client that never
# writes; a timer sends SIGINT to the process. The script prints how long
# the interrupt took to surface, or "no interrupt".
INTERRUPT_SCRIPT = textwrap.dedent("""\
    import os, signal, socket, ssl, sys, threading, time
    from pynano import certs, nanossl

    pki = certs.make_test_pki()
    nanossl.SSL_init(2, 2)
    status, store = nanossl.CERT_STORE_createStore()
    nanossl.CERT_STORE_addIdentity(store, pki.server.cert_pem, pki.server.key_pem)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client_done = threading.Event()

    def silent_client():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            with context.wrap_socket(sock, server_hostname="localhost"):
                client_done.wait(10)

    threading.Thread(target=silent_client, daemon=True).start()
    sock, _ = listener.accept()
    ci = nanossl.SSL_acceptConnection(sock, store)
    assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
    sent_at = []
    def interrupt():
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
    threading.Timer(0.5, interrupt).start()
    try:
        nanossl.SSL_recv(ci, bytearray(16), 0)
        print("no interrupt")
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - sent_at[0]:.3f}")
    finally:
        client_done.set()
        nanossl.SSL_closeConnection(ci)
    """)


def test_ctrl_c_interrupts_blocking_recv() -> None:
    result = subprocess.run([sys.executable, "-c", INTERRUPT_SCRIPT], capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:2] == ["interrupted", "after"], result.stdout
    assert float(words[2]) < 1.0


def test_blocking_recv_releases_gil(pki: Pki, listener, server_store) -> None:
    """Python threads keep running while another thread waits in SSL_recv."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.path("ca.pem"))
    release = threading.Event()

    def quiet_client() -> None:
        with connect(listener) as sock, context.wrap_socket(sock, server_hostname="localhost") as tls:
            release.wait(10)
            tls.sendall(b"done")

    def count_for(seconds: float) -> int:
        ticks = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ticks += 1
        return ticks

    baseline = count_for(0.5)
    client = Background(quiet_client)
    sock = accept(listener)
    ci = nanossl.SSL_acceptConnection(sock, server_store)
    try:
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        reader = Background(lambda: nanossl.SSL_recv(ci, bytearray(16), 10000))

        ticks = count_for(0.5)
        release.set()
        status, received = reader.result()
        client.result()
    finally:
        nanossl.SSL_closeConnection(ci)
        sock.close()

    assert status == nanossl.OK
    assert received == 4
    # If C held the GIL, this thread would run only in the gaps between the
    # reader's 250 ms waits. Because C releases it, the thread keeps about
    # its own pace.
    assert ticks > baseline // 2


def test_cipher_list_reports_selection(listener) -> None:
    client = connect(listener)
    server = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(server, None)
        status, defaults = nanossl.SSL_getCipherList(ci)
        assert status == nanossl.OK
        assert 0x1301 in defaults
        assert 0xC02B in defaults

        assert nanossl.SSL_enableCiphers(ci, [0xCCA9, 0x1303, 0xFFFF]) == nanossl.OK
        assert nanossl.SSL_getCipherList(ci) == (nanossl.OK, [0xCCA9, 0x1303])
        assert nanossl.SSL_closeConnection(ci) == nanossl.OK
        assert nanossl.SSL_getCipherList(ci) == (nanossl.ERR_SSL_BAD_ID, [])
    finally:
        server.close()
        client.close()


def ssl_server_context(pki: Pki):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    return context


def test_send_timeout_bounds_stalled_peer(pki: Pki, listener, client_store) -> None:
    context = ssl_server_context(pki)
    release = threading.Event()

    def stalled_server() -> None:
        sock = accept(listener)
        with context.wrap_socket(sock, server_side=True):
            release.wait(20)

    server = Background(stalled_server)
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
        assert nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_SEND_TIMEOUT, 300) == nanossl.OK
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        started = time.monotonic()
        status = nanossl.SSL_send(ci, bytes(64 << 20))
        elapsed = time.monotonic() - started
        release.set()
        nanossl.SSL_closeConnection(ci)
    server.result()

    assert status == nanossl.ERR_TCP_WRITE_ERROR
    assert elapsed < 5.0


def test_release_frees_without_close_notify(pki: Pki, listener, client_store) -> None:
    import ssl

    context = ssl_server_context(pki)

    def server_reads_once() -> str:
        sock = accept(listener)
        with context.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False) as tls:
            try:
                tls.recv(16)
                return "data"
            except ssl.SSLZeroReturnError:
                return "close_notify"
            except ssl.SSLEOFError:
                return "eof"

    server = Background(server_reads_once)
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        in_use_before = nanossl.PYNANO_getTableUsage()[1]

        assert nanossl.PYNANO_releaseConnection(ci) == nanossl.OK

        in_use_after = nanossl.PYNANO_getTableUsage()[1]
        assert nanossl.SSL_send(ci, b"x") == nanossl.ERR_SSL_BAD_ID
    assert server.result() == "eof"
    assert in_use_after == in_use_before - 1


def test_pending_bytes_counts_unread_data(pki: Pki, listener, client_store) -> None:
    context = ssl_server_context(pki)

    def server_sends() -> None:
        sock = accept(listener)
        with context.wrap_socket(sock, server_side=True) as tls:
            tls.sendall(bytes(100))
            tls.recv(1)

    server = Background(server_sends)
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        status, received = nanossl.SSL_recv(ci, bytearray(10), 5000)
        pending = nanossl.PYNANO_getPendingBytes(ci)
        nanossl.SSL_send(ci, b"k")
        nanossl.SSL_closeConnection(ci)
    server.result()

    assert (status, received) == (nanossl.OK, 10)
    assert pending == (nanossl.OK, 90)


def test_net_errors_have_text() -> None:
    assert "reset by peer" in nanossl.PYNANO_mbedtlsErrorString(-0x50)
    assert "Sending" in nanossl.PYNANO_mbedtlsErrorString(-0x4E)
