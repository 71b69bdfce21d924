"""Fuzz target: bytes as the client's side of a handshake with a pynano server.

The input is written into one end of a socketpair, followed by EOF, and a
pynano server negotiates on the other end. Every input must end in a known
negative status within the timeouts, with the connection's table slot freed.

Run with atheris for a bounded time (see .ci/fuzz.sh)::

    python tests/fuzz/fuzz_server.py -max_total_time=20 CORPUS_DIR tests/fuzz/seeds/server
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import atheris

    # Instrument pynano's Python layer; the C layer runs but is only
    # instrumented in a clang -fsanitize=fuzzer-no-link build.
    with atheris.instrument_imports(include=["pynano"]):
        import pynano.nanossl  # noqa: F401

import socket

import tls_peers

from pynano import certs, nanossl

MAX_INPUT = 128 * 1024   # stays below a socketpair's send buffer
RECV_TIMEOUT_MS = 1000
HANDSHAKE_TIMEOUT_MS = 3000

_store = None


def _server_store() -> nanossl.CertStore:
    global _store
    if _store is None:
        assert nanossl.SSL_init(256, 256) == nanossl.OK
        pki = certs.make_test_pki()
        _store = tls_peers.new_store(pki.server, [pki.ca.cert_pem])
    return _store


def test_one_input(data: bytes) -> None:
    """Feed data to a pynano server and check the outcome is a clean failure."""
    store = _server_store()
    data = data[:MAX_INPUT]
    before = tls_peers.table_in_use()
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        ci = nanossl.SSL_acceptConnection(ours, store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        tls_peers.set_timeouts(ci, recv_ms=RECV_TIMEOUT_MS, handshake_ms=HANDSHAKE_TIMEOUT_MS)
        status = nanossl.SSL_negotiateConnection(ci)
        # No input can finish a handshake without the client's keys, and
        # the EOF after it means the server never has to wait for more.
        assert status < nanossl.OK, "handshake succeeded on fuzz input"
        assert status != nanossl.ERR_TCP_READ_TIMEOUT, "server waited although the peer sent EOF"
        assert nanossl.DISPLAY_ERROR(status) != "ERR_UNKNOWN", status
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
