"""Session resumption with the standard ssl module as the peer, both ways."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Dict, List, Optional, Tuple

import pytest
from cryptography import x509

from pynano import nanossl

from .conftest import Background, Pki, accept, connect, make_store

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
VERSION_IDS = ["tls12", "tls13"]


def subject_of(der: Optional[bytes]) -> Optional[str]:
    return None if der is None else x509.load_der_x509_certificate(der).subject.rfc4514_string()


# ---- pynano server, ssl client -------------------------------------------


def ssl_client_context(pki: Pki, version: ssl.TLSVersion, with_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.path("ca.pem"))
    context.minimum_version = version
    context.maximum_version = version
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def serve_once(listener: socket.socket, store: nanossl.CertStore, flags: int = 0,
               num_tickets: Optional[int] = None) -> Dict[str, object]:
    """Accept one client with pynano, echo one message, report what pynano saw."""
    sock = accept(listener)
    ci = nanossl.SSL_acceptConnection(sock, store)
    try:
        nanossl.SSL_setSessionFlags(ci, flags)
        if num_tickets is not None:
            assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_NUM_TICKETS, num_tickets) == nanossl.OK
        status = nanossl.SSL_negotiateConnection(ci)
        report: Dict[str, object] = {"status": status}
        if status != nanossl.OK:
            return report
        report["reused"] = nanossl.PYNANO_getSessionReused(ci)[1]
        report["subject"] = subject_of(nanossl.PYNANO_getPeerCertificate(ci)[1])
        report["cipher"] = nanossl.SSL_getCipherInfo(ci)[1]
        buffer = bytearray(64)
        status, received = nanossl.SSL_recv(ci, buffer, 5000)
        nanossl.SSL_send(ci, bytes(buffer[:received]))
        return report
    finally:
        nanossl.SSL_closeConnection(ci)
        sock.close()


def ssl_client_round(listener: socket.socket, context: ssl.SSLContext,
                     session: Optional[ssl.SSLSession]) -> Tuple[bool, ssl.SSLSession, str]:
    with connect(listener) as sock:
        with context.wrap_socket(sock, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"ping")
            assert tls.recv(64) == b"ping"
            return tls.session_reused, tls.session, tls.cipher()[0]


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("with_cert", [False, True], ids=["no_client_cert", "client_cert"])
def test_ssl_client_resumes_with_pynano_server(pki: Pki, listener: socket.socket, server_store,
                                               version: ssl.TLSVersion, with_cert: bool) -> None:
    context = ssl_client_context(pki, version, with_cert)
    flags = nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH if with_cert else 0

    first_server = Background(lambda: serve_once(listener, server_store, flags))
    reused_first, session, cipher_first = ssl_client_round(listener, context, None)
    first = first_server.result()
    second_server = Background(lambda: serve_once(listener, server_store, flags))
    reused_second, _, cipher_second = ssl_client_round(listener, context, session)
    second = second_server.result()

    assert first["status"] == nanossl.OK
    assert reused_first is False
    assert first["reused"] is False
    assert second["status"] == nanossl.OK
    assert reused_second is True
    assert second["reused"] is True
    assert cipher_second == cipher_first
    assert second["cipher"] == first["cipher"]
    expected_subject = "CN=pynano test client" if with_cert else None
    assert first["subject"] == expected_subject
    assert second["subject"] == expected_subject


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_rotated_ticket_keys_force_full_handshake(pki: Pki, listener: socket.socket, server_store,
                                                  version: ssl.TLSVersion) -> None:
    context = ssl_client_context(pki, version, with_cert=False)

    first = Background(lambda: serve_once(listener, server_store))
    _, session, _ = ssl_client_round(listener, context, None)
    first.result()
    assert session.has_ticket
    assert nanossl.PYNANO_CERT_STORE_rotateTicketKeys(server_store) == nanossl.OK
    second = Background(lambda: serve_once(listener, server_store))
    reused, _, _ = ssl_client_round(listener, context, session)

    assert reused is False
    assert second.result()["reused"] is False


def test_zero_tickets_sends_none(pki: Pki, listener: socket.socket, server_store) -> None:
    context = ssl_client_context(pki, ssl.TLSVersion.TLSv1_3, with_cert=False)

    server = Background(lambda: serve_once(listener, server_store, num_tickets=0))
    _, session, _ = ssl_client_round(listener, context, None)
    server.result()

    assert not session.has_ticket


def test_ticket_from_other_store_not_resumed(pki: Pki, listener: socket.socket, server_store) -> None:
    other_store = make_store(pki.server, [pki.ca.cert_pem])
    context = ssl_client_context(pki, ssl.TLSVersion.TLSv1_3, with_cert=False)
    try:
        first = Background(lambda: serve_once(listener, other_store))
        _, session, _ = ssl_client_round(listener, context, None)
        first.result()
        second = Background(lambda: serve_once(listener, server_store))
        reused, _, _ = ssl_client_round(listener, context, session)

        assert reused is False
        assert second.result()["reused"] is False
    finally:
        nanossl.CERT_STORE_releaseStore(other_store)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_resumption_cannot_skip_client_cert(pki: Pki, listener: socket.socket, server_store,
                                            version: ssl.TLSVersion) -> None:
    """A session made without a client certificate must not satisfy a server that requires one."""
    context = ssl_client_context(pki, version, with_cert=False)

    first = Background(lambda: serve_once(listener, server_store))
    _, session, _ = ssl_client_round(listener, context, None)
    first.result()
    second = Background(lambda: serve_once(listener, server_store, nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ssl_client_round(listener, context, session)

    assert second.result()["status"] == nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE


# ---- pynano client, ssl server -------------------------------------------


def ssl_server_context(pki: Pki, version: ssl.TLSVersion, require_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.minimum_version = version
    context.maximum_version = version
    if require_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.path("ca.pem"))
    return context


def ssl_serve_once(listener: socket.socket, context: ssl.SSLContext) -> Dict[str, object]:
    sock = accept(listener)
    with context.wrap_socket(sock, server_side=True) as tls:
        data = tls.recv(64)
        tls.sendall(data)
        peer = tls.getpeercert()
        return {"reused": tls.session_reused, "cipher": tls.cipher()[0], "has_peer": bool(peer)}


class TicketJar:
    """Client-side ticket storage keyed by server name, as an application keeps it."""

    def __init__(self) -> None:
        self.tickets: Dict[bytes, bytes] = {}
        self.saves: List[int] = []

    def save(self, ci: int, server_info: bytes, ticket: bytes) -> None:
        self.saves.append(len(ticket))
        self.tickets[server_info] = ticket

    def retrieve(self, ci: int, server_info: bytes) -> Optional[bytes]:
        return self.tickets.get(server_info)


def pynano_client_round(listener: socket.socket, store: nanossl.CertStore, jar: Optional[TicketJar] = None,
                        session_id: bytes = b"", master: bytes = b"") -> Dict[str, object]:
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, len(session_id), session_id or None, master or None,
                                 "localhost", store)
        assert ci > 0
        try:
            if jar is not None:
                assert nanossl.SSL_setClientSaveTicketCallback(ci, jar.save) == nanossl.OK
                assert nanossl.SSL_setClientRetrieveTicketCallback(ci, jar.retrieve) == nanossl.OK
            status = nanossl.SSL_negotiateConnection(ci)
            assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
            assert nanossl.SSL_send(ci, b"ping") == 4
            buffer = bytearray(64)
            status, received = nanossl.SSL_recv(ci, buffer, 5000)
            assert bytes(buffer[:received]) == b"ping"
            report: Dict[str, object] = {"reused": nanossl.PYNANO_getSessionReused(ci)[1]}
            if nanossl.SSL_getSSLTLSVersion(ci)[1] == nanossl.TLS12_MINORVERSION:
                report["info"] = nanossl.SSL_getClientSessionInfo(ci)
            return report
        finally:
            nanossl.SSL_closeConnection(ci)


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("require_cert", [False, True], ids=["no_client_cert", "client_cert"])
def test_pynano_client_resumes_with_tickets(pki: Pki, listener: socket.socket, client_store,
                                            version: ssl.TLSVersion, require_cert: bool) -> None:
    context = ssl_server_context(pki, version, require_cert)
    jar = TicketJar()

    first_server = Background(lambda: ssl_serve_once(listener, context))
    first = pynano_client_round(listener, client_store, jar)
    first_seen = first_server.result()
    second_server = Background(lambda: ssl_serve_once(listener, context))
    second = pynano_client_round(listener, client_store, jar)
    second_seen = second_server.result()

    assert jar.saves, "the save-ticket callback was never called"
    assert first["reused"] is False
    assert first_seen["reused"] is False
    assert second["reused"] is True
    assert second_seen["reused"] is True
    assert second_seen["cipher"] == first_seen["cipher"]


def test_session_info_resumes_tls12(pki: Pki, listener: socket.socket, client_store) -> None:
    context = ssl_server_context(pki, ssl.TLSVersion.TLSv1_2, require_cert=False)

    first_server = Background(lambda: ssl_serve_once(listener, context))
    first = pynano_client_round(listener, client_store)
    first_server.result()
    status, session_id, master = first["info"]  # type: ignore[misc]
    second_server = Background(lambda: ssl_serve_once(listener, context))
    second = pynano_client_round(listener, client_store, session_id=session_id, master=master)

    assert status == nanossl.OK
    assert 1 <= len(session_id) <= nanossl.SSL_MAXSESSIONIDSIZE
    assert len(master) == nanossl.SSL_MASTERSECRETSIZE
    assert second["reused"] is True
    assert second_server.result()["reused"] is True


def test_unknown_session_info_gives_full_handshake(pki: Pki, listener: socket.socket, client_store) -> None:
    context = ssl_server_context(pki, ssl.TLSVersion.TLSv1_2, require_cert=False)

    server = Background(lambda: ssl_serve_once(listener, context))
    report = pynano_client_round(listener, client_store, session_id=b"\x01" * 32, master=b"\x02" * 48)

    assert report["reused"] is False
    assert server.result()["reused"] is False


def test_session_info_needs_tls12(pki: Pki, listener: socket.socket, client_store) -> None:
    context = ssl_server_context(pki, ssl.TLSVersion.TLSv1_3, require_cert=False)
    server = Background(lambda: ssl_serve_once(listener, context))
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK

        status, session_id, master = nanossl.SSL_getClientSessionInfo(ci)

        nanossl.SSL_send(ci, b"ping")
        nanossl.SSL_recv(ci, bytearray(8), 5000)
        nanossl.SSL_closeConnection(ci)
    server.result()
    assert status == nanossl.ERR_SSL_BAD_STATE
    assert session_id == b""


def damaged_blobs(blob: bytes) -> Dict[str, bytes]:
    middle = len(blob) // 2
    return {
        "tampered": blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1:],
        "truncated": blob[: len(blob) - 10],
        "foreign": b"PYNS\x01" + bytes(range(256)) * 3,
        "other_version": blob[:4] + b"\x09" + blob[5:],
        "garbage": b"\x00" * 7,
    }


@pytest.mark.parametrize("damage", ["tampered", "truncated", "foreign", "other_version", "garbage"])
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_damaged_ticket_gives_full_handshake(pki: Pki, listener: socket.socket, client_store,
                                             version: ssl.TLSVersion, damage: str) -> None:
    context = ssl_server_context(pki, version, require_cert=False)
    jar = TicketJar()
    first_server = Background(lambda: ssl_serve_once(listener, context))
    pynano_client_round(listener, client_store, jar)
    first_server.result()
    assert jar.tickets
    for name in jar.tickets:
        jar.tickets[name] = damaged_blobs(jar.tickets[name])[damage]

    second_server = Background(lambda: ssl_serve_once(listener, context))
    second = pynano_client_round(listener, client_store, jar)

    assert second["reused"] is False
    assert second_server.result()["reused"] is False


def test_retrieve_callback_raising_gives_full_handshake(pki: Pki, listener: socket.socket,
                                                        client_store) -> None:
    context = ssl_server_context(pki, ssl.TLSVersion.TLSv1_3, require_cert=False)

    def broken_retrieve(ci: int, server_info: bytes) -> bytes:
        raise RuntimeError("ticket database offline")

    server = Background(lambda: ssl_serve_once(listener, context))
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
        nanossl.SSL_setClientRetrieveTicketCallback(ci, broken_retrieve)
        status = nanossl.SSL_negotiateConnection(ci)
        nanossl.SSL_send(ci, b"ping")
        nanossl.SSL_recv(ci, bytearray(8), 5000)
        error = nanossl.get_callback_error(ci)
        nanossl.SSL_closeConnection(ci)

    assert status == nanossl.OK
    assert isinstance(error, RuntimeError)
    assert server.result()["reused"] is False


# ---- pynano on both sides ----------------------------------------------------


@pytest.mark.parametrize("version", [nanossl.TLS12_MINORVERSION, nanossl.TLS13_MINORVERSION],
                         ids=VERSION_IDS)
def test_pynano_pair_resumes_mutual_auth(pki: Pki, listener: socket.socket, server_store,
                                         client_store, version: int) -> None:
    jar = TicketJar()
    reports = []
    for _ in range(2):
        server = Background(lambda: serve_once(listener, server_store, nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH))
        with connect(listener) as sock:
            ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
            nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, version)
            nanossl.SSL_setClientSaveTicketCallback(ci, jar.save)
            nanossl.SSL_setClientRetrieveTicketCallback(ci, jar.retrieve)
            assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
            nanossl.SSL_send(ci, b"ping")
            nanossl.SSL_recv(ci, bytearray(8), 5000)
            client_reused = nanossl.PYNANO_getSessionReused(ci)[1]
            server_subject = subject_of(nanossl.PYNANO_getPeerCertificate(ci)[1])
            nanossl.SSL_closeConnection(ci)
        reports.append((client_reused, server.result(), server_subject))

    (first_reused, first_server, _), (second_reused, second_server, second_subject) = reports
    assert first_reused is False
    assert second_reused is True
    assert second_server["reused"] is True
    assert second_server["subject"] == "CN=pynano test client"
    assert second_server["cipher"] == first_server["cipher"]
    assert second_subject == "CN=localhost"


def test_expired_session_gives_full_handshake(pki: Pki, listener: socket.socket, server_store,
                                              client_store) -> None:
    assert nanossl.PYNANO_CERT_STORE_setSessionLifetimes(server_store, 1, 1) == nanossl.OK
    jar = TicketJar()
    reused = []
    for pause in (0.0, 1.2):
        time.sleep(pause)
        server = Background(lambda: serve_once(listener, server_store))
        reused.append(pynano_client_round(listener, client_store, jar)["reused"])
        server.result()

    assert jar.saves
    assert reused == [False, False]


def test_blob_for_other_server_not_offered(pki: Pki, listener: socket.socket, server_store,
                                           client_store) -> None:
    jar = TicketJar()
    server = Background(lambda: serve_once(listener, server_store))
    pynano_client_round(listener, client_store, jar)
    server.result()
    blob = jar.tickets[b"localhost"]

    server = Background(lambda: serve_once(listener, server_store))
    with connect(listener) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "127.0.0.1", client_store)
        nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_CHECK_HOSTNAME, 0)
        assert nanossl.PYNANO_setSessionBlob(ci, blob) == nanossl.OK
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        nanossl.SSL_send(ci, b"ping")
        nanossl.SSL_recv(ci, bytearray(8), 5000)
        reused = nanossl.PYNANO_getSessionReused(ci)[1]
        nanossl.SSL_closeConnection(ci)

    assert reused is False
    assert server.result()["reused"] is False


@pytest.mark.parametrize("bad_lifetimes", [(0, 60), (60, 0), (604801, 60)])
def test_session_lifetimes_validated(server_store, bad_lifetimes: Tuple[int, int]) -> None:
    assert nanossl.PYNANO_CERT_STORE_setSessionLifetimes(server_store, *bad_lifetimes) == nanossl.ERR_INVALID_ARG


def test_flushed_cache_forces_full_handshake(pki: Pki, listener: socket.socket, server_store,
                                             client_store) -> None:
    """A TLS 1.2 session resumed by session ID stops resuming once the cache is flushed."""
    context_rounds = []
    session_id, master = b"", b""
    for flush in (False, False, True):
        if flush:
            assert nanossl.PYNANO_CERT_STORE_flushSessionCache(server_store) == nanossl.OK
        server = Background(lambda: serve_once(listener, server_store, num_tickets=0))
        with connect(listener) as sock:
            ci = nanossl.SSL_connect(sock, len(session_id), session_id or None, master or None,
                                     "localhost", client_store)
            nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, nanossl.TLS12_MINORVERSION)
            assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
            nanossl.SSL_send(ci, b"ping")
            nanossl.SSL_recv(ci, bytearray(8), 5000)
            if not session_id:
                _, session_id, master = nanossl.SSL_getClientSessionInfo(ci)
            context_rounds.append(nanossl.PYNANO_getSessionReused(ci)[1])
            nanossl.SSL_closeConnection(ci)
        server.result()

    assert context_rounds == [False, True, False]


def test_unverified_session_not_offered_to_verifier(pki: Pki, listener: socket.socket,
                                                    server_store, client_store) -> None:
    jar = TicketJar()
    reused = []
    for verify_mode in (nanossl.PYNANO_VERIFY_NONE, nanossl.PYNANO_VERIFY_REQUIRED):
        server = Background(lambda: serve_once(listener, server_store))
        with connect(listener) as sock:
            ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", client_store)
            nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_VERIFY_MODE, verify_mode)
            nanossl.SSL_setClientSaveTicketCallback(ci, jar.save)
            nanossl.SSL_setClientRetrieveTicketCallback(ci, jar.retrieve)
            assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
            nanossl.SSL_send(ci, b"ping")
            nanossl.SSL_recv(ci, bytearray(8), 5000)
            reused.append(nanossl.PYNANO_getSessionReused(ci)[1])
            nanossl.SSL_closeConnection(ci)
        server.result()

    assert jar.saves
    assert reused == [False, False]
