"""Fuzz target: bytes as the server's side of a handshake with a pynano client.

The input waits in one end of a socketpair, followed by EOF. A pynano
client sends its ClientHello into the pair and reads the input as the
server's response. The seeds include a TLS 1.2 flight, whose Certificate message is in
the clear, so mutations reach certificate parsing and verification.

    python tests/fuzz/fuzz_client.py -max_total_time=20 CORPUS_DIR tests/fuzz/seeds/client
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports(include=["pynano"]):
        import pynano.nanossl  # noqa: F401

import socket

import tls_peers

from pynano import certs, nanossl

MAX_INPUT = 128 * 1024
RECV_TIMEOUT_MS = 1000
HANDSHAKE_TIMEOUT_MS = 3000

_store = None
_callback_calls = 0


def _client_store() -> nanossl.CertStore:
    global _store
    if _store is None:
        assert nanossl.SSL_init(256, 256) == nanossl.OK
        pki = certs.make_test_pki()
        _store = tls_peers.new_store(pki.client, [pki.ca.cert_pem])
    return _store


def _reject(connectionInstance: int, validationStatus: int) -> int:
    global _callback_calls
    _callback_calls += 1
    return validationStatus


def test_one_input(data: bytes) -> None:
    """Feed data to a pynano client and check the outcome is a clean failure."""
    store = _client_store()
    data = data[:MAX_INPUT]
    before = tls_peers.table_in_use()
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        ci = nanossl.SSL_connect(ours, 0, None, None, "localhost", store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        tls_peers.set_timeouts(ci, recv_ms=RECV_TIMEOUT_MS, handshake_ms=HANDSHAKE_TIMEOUT_MS)
        assert nanossl.SSL_setInvalidCertCallback(ci, _reject) == nanossl.OK
        status = nanossl.SSL_negotiateConnection(ci)
        assert status < nanossl.OK, "handshake succeeded on fuzz input"
        assert status != nanossl.ERR_TCP_READ_TIMEOUT, "client waited although the peer sent EOF"
        assert nanossl.DISPLAY_ERROR(status) != "ERR_UNKNOWN", status
        assert nanossl.get_callback_error(ci) is None
        assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    finally:
        ours.close()
        theirs.close()
    assert tls_peers.table_in_use() == before


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
