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
    # Held in C, the GIL would leave this thread only the gaps between the
    # reader's 250 ms waits; released, it runs at about its own pace.
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
