"""Mutual-authentication TLS server and client, ported from NanoSSL C style.

Each function keeps the shape of its C counterpart. SSL_init runs once and
each side has its own certificate store. SSL_acceptConnection or SSL_connect
take a TCP socket, and session flags and callbacks are set before
SSL_negotiateConnection. A request and a response go over SSL_send and
SSL_recv, then SSL_closeConnection ends the connection. Statuses are checked
with ``if OK > status:`` as in C.

Run it as a program for a server and a client in one process::

    python examples/ssl_example.py --cert server.pem --key server.key \\
        --ca ca.pem --client-cert client.pem --client-key client.key

or import it: ``pynano demo`` runs its four cases with throwaway certificates.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from pynano.nanossl import (
    CERT_STORE_addIdentity,
    CERT_STORE_addTrustPoint,
    CERT_STORE_createStore,
    CERT_STORE_releaseStore,
    DISPLAY_ERROR,
    OK,
    PYNANO_getPeerAlert,
    PYNANO_getPeerCertificate,
    SSL_FLAG_NO_MUTUAL_AUTH_REPLY,
    SSL_FLAG_REQUIRE_MUTUAL_AUTH,
    SSL_acceptConnection,
    SSL_closeConnection,
    SSL_connect,
    SSL_enableCiphers,
    SSL_getCipherInfo,
    SSL_getSessionFlags,
    SSL_getSSLTLSVersion,
    SSL_init,
    SSL_negotiateConnection,
    SSL_recv,
    SSL_send,
    SSL_setInvalidCertCallback,
    SSL_setSessionFlags,
    CertStore,
)

logger = logging.getLogger("pynano.example")

MAX_SERVER_CONNECTIONS = 4
MAX_CLIENT_CONNECTIONS = 4
RECV_TIMEOUT_MS = 5000
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nHello, NanoSSL"


@dataclass
class SideResult:
    """Outcome of one side of a connection: status, negotiated suite, data."""

    status: int = OK
    version: int = 0                  # TLS minor version: 3 = TLS 1.2, 4 = TLS 1.3
    cipher_id: int = 0
    peer_certificate: Optional[bytes] = None   # DER
    peer_alert: int = -1
    received: bytes = b""
    callback_calls: List[int] = field(default_factory=list)


def SSL_EXAMPLE_createStore(identity_cert: Optional[bytes], identity_key: Optional[bytes],
                            trust_points: Sequence[bytes]) -> CertStore:
    """Create a certificate store with an optional identity and trust points."""
    status, store = CERT_STORE_createStore()
    if OK > status or store is None:
        raise RuntimeError(f"CERT_STORE_createStore failed: {DISPLAY_ERROR(status)}")

    if identity_cert is not None and identity_key is not None:
        status = CERT_STORE_addIdentity(store, identity_cert, identity_key)
        if OK > status:
            CERT_STORE_releaseStore(store)
            raise RuntimeError(f"CERT_STORE_addIdentity failed: {DISPLAY_ERROR(status)}")

    for trust_point in trust_points:
        status = CERT_STORE_addTrustPoint(store, trust_point)
        if OK > status:
            CERT_STORE_releaseStore(store)
            raise RuntimeError(f"CERT_STORE_addTrustPoint failed: {DISPLAY_ERROR(status)}")
    return store


def _collect_connection_info(connectionInstance: int, result: SideResult) -> None:
    status, result.version = SSL_getSSLTLSVersion(connectionInstance)
    status, result.cipher_id, _curves = SSL_getCipherInfo(connectionInstance)
    status, result.peer_certificate = PYNANO_getPeerCertificate(connectionInstance, 0)


def SSL_EXAMPLE_serveOne(listenSocket: socket.socket, pCertStore: CertStore, requireMutualAuth: bool,
                         invalidCertCallback=None) -> SideResult:
    """Accept one client, run the handshake, respond to one request and close."""
    result = SideResult()
    clientSocket, _address = listenSocket.accept()
    clientSocket.settimeout(RECV_TIMEOUT_MS / 1000)

    connectionInstance = SSL_acceptConnection(clientSocket, pCertStore)
    if OK > connectionInstance:
        result.status = connectionInstance
        clientSocket.close()
        return result

    try:
        if requireMutualAuth:
            status, flags = SSL_getSessionFlags(connectionInstance)
            SSL_setSessionFlags(connectionInstance, flags | SSL_FLAG_REQUIRE_MUTUAL_AUTH)
        if invalidCertCallback is not None:
            SSL_setInvalidCertCallback(connectionInstance, invalidCertCallback)

        status = SSL_negotiateConnection(connectionInstance)
        if OK > status:
            logger.info("server: instance %d handshake failed: %s", connectionInstance, DISPLAY_ERROR(status))
            result.status = status
            return result
        _collect_connection_info(connectionInstance, result)

        request = bytearray(4096)
        status, received = SSL_recv(connectionInstance, request, RECV_TIMEOUT_MS)
        if OK > status:
            result.status = status
            return result
        result.received = bytes(request[:received])

        sent = SSL_send(connectionInstance, RESPONSE)
        if OK > sent:
            result.status = sent
        return result
    finally:
        SSL_closeConnection(connectionInstance)
        clientSocket.close()


def SSL_EXAMPLE_runClient(port: int, pCertStore: CertStore, serverName: str,
                          cipherSuites: Optional[Sequence[int]] = None, sendCertificate: bool = True,
                          host: str = "127.0.0.1") -> SideResult:
    """Connect, run the handshake, send one request and read the response."""
    result = SideResult()
    clientSocket = socket.create_connection((host, port), timeout=RECV_TIMEOUT_MS / 1000)

    connectionInstance = SSL_connect(clientSocket, 0, None, None, serverName, pCertStore)
    if OK > connectionInstance:
        result.status = connectionInstance
        clientSocket.close()
        return result

    try:
        if cipherSuites:
            status = SSL_enableCiphers(connectionInstance, list(cipherSuites))
            if OK > status:
                result.status = status
                return result
        if not sendCertificate:
            status, flags = SSL_getSessionFlags(connectionInstance)
            SSL_setSessionFlags(connectionInstance, flags | SSL_FLAG_NO_MUTUAL_AUTH_REPLY)

        status = SSL_negotiateConnection(connectionInstance)
        if OK > status:
            result.status = status
            return result
        _collect_connection_info(connectionInstance, result)

        sent = SSL_send(connectionInstance, REQUEST)
        if OK > sent:
            result.status = sent
            return result

        # In TLS 1.3 the server checks the client certificate after the
        # client's handshake has finished, so a rejection shows up here.
        response = bytearray(4096)
        status, received = SSL_recv(connectionInstance, response, RECV_TIMEOUT_MS)
        if OK > status:
            result.status = status
            status, result.peer_alert = PYNANO_getPeerAlert(connectionInstance)
            return result
        result.received = bytes(response[:received])
        return result
    finally:
        SSL_closeConnection(connectionInstance)
        clientSocket.close()


def SSL_EXAMPLE_run(serverStore: CertStore, clientStore: CertStore, serverName: str = "localhost",
                    requireMutualAuth: bool = True, invalidCertCallback=None,
                    cipherSuites: Optional[Sequence[int]] = None,
                    sendCertificate: bool = True) -> "tuple[SideResult, SideResult]":
    """Run a server thread and a client on loopback; return both results."""
    status = SSL_init(MAX_SERVER_CONNECTIONS, MAX_CLIENT_CONNECTIONS)
    if OK > status:
        raise RuntimeError(f"SSL_init failed: {DISPLAY_ERROR(status)}")

    listenSocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listenSocket.bind(("127.0.0.1", 0))
        listenSocket.listen(1)
        listenSocket.settimeout(RECV_TIMEOUT_MS / 1000)
        port = listenSocket.getsockname()[1]

        server_result: List[SideResult] = []
        server = threading.Thread(
            target=lambda: server_result.append(
                SSL_EXAMPLE_serveOne(listenSocket, serverStore, requireMutualAuth, invalidCertCallback)),
            name="ssl-example-server", daemon=True)
        server.start()
        client_result = SSL_EXAMPLE_runClient(port, clientStore, serverName, cipherSuites, sendCertificate)
        server.join(timeout=2 * RECV_TIMEOUT_MS / 1000)
        if server.is_alive() or not server_result:
            raise RuntimeError("the example server did not finish within its timeout")
        return server_result[0], client_result
    finally:
        listenSocket.close()


def main(argv: Optional[List[str]] = None) -> int:
    """Run one mutual-authentication exchange with the given files."""
    parser = argparse.ArgumentParser(description="NanoSSL-style mutual-auth server and client on loopback")
    parser.add_argument("--cert", required=True, help="server certificate (PEM or DER)")
    parser.add_argument("--key", required=True, help="server private key (PEM or DER)")
    parser.add_argument("--ca", required=True, help="CA certificate both sides trust")
    parser.add_argument("--client-cert", help="client certificate; omit to connect without one")
    parser.add_argument("--client-key", help="client private key")
    parser.add_argument("--server-name", default="localhost", help="name the client expects (default localhost)")
    args = parser.parse_args(argv)

    def read(path: Optional[str]) -> Optional[bytes]:
        if path is None:
            return None
        with open(path, "rb") as stream:
            return stream.read()

    ca = read(args.ca)
    serverStore = SSL_EXAMPLE_createStore(read(args.cert), read(args.key), [ca])
    clientStore = SSL_EXAMPLE_createStore(read(args.client_cert), read(args.client_key), [ca])
    server_result, client_result = SSL_EXAMPLE_run(serverStore, clientStore, args.server_name)
    print(f"server: {DISPLAY_ERROR(server_result.status)}, received {server_result.received!r}")
    print(f"client: {DISPLAY_ERROR(client_result.status)}, received {client_result.received!r}")
    CERT_STORE_releaseStore(serverStore)
    CERT_STORE_releaseStore(clientStore)
    return 0 if server_result.status == OK and client_result.status == OK else 1


if __name__ == "__main__":
    sys.exit(main())
