"""Session resumption through TLSContext and TLSSocket, with the ssl module as the peer.

Each test runs two or more connections over 127.0.0.1 and checks, on both
ends, whether the later ones resumed the session of the first.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any, Dict, List, Optional

import pytest

import pynano
from pynano import nanossl

from .conftest import Background, Pki, accept, connect

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
VERSION_IDS = ["tls12", "tls13"]
CLIENT_CERT = [False, True]
CLIENT_CERT_IDS = ["no_client_cert", "client_cert"]


def common_name(peer: Any) -> Optional[str]:
    """Return the commonName of a getpeercert() dictionary, or None without one."""
    if not peer:
        return None
    return dict(item for rdn in peer["subject"] for item in rdn)["commonName"]


# ---- contexts ---------------------------------------------------------------------


def pynano_client_context(pki: Pki, version: ssl.TLSVersion, with_cert: bool = False) -> pynano.TLSContext:
    context = pynano.create_default_context(cafile=pki.path("ca.pem"))
    context.minimum_version = context.maximum_version = version
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def pynano_server_context(pki: Pki, version: ssl.TLSVersion, require_cert: bool = False) -> pynano.TLSContext:
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.minimum_version = context.maximum_version = version
    if require_cert:
        context.verify_mode = pynano.CERT_REQUIRED
    return context


def ssl_client_context(pki: Pki, version: ssl.TLSVersion, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    context.minimum_version = context.maximum_version = version
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def ssl_server_context(pki: Pki, version: ssl.TLSVersion, require_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.minimum_version = context.maximum_version = version
    if require_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.path("ca.pem"))
    return context


# ---- one connection ------------------------------------------------------------------


def serve_once(listener: socket.socket, context: Any) -> Background:
    """Accept one connection with a pynano or ssl server context and echo one message.

    The result reports what the server end saw.
    """

    def run() -> Dict[str, Any]:
        with context.wrap_socket(accept(listener), server_side=True) as tls:
            tls.sendall(tls.recv(64))
            return {"reused": tls.session_reused, "cipher": tls.cipher()[0],
                    "peer": common_name(tls.getpeercert())}

    return Background(run)


def client_round(listener: socket.socket, context: Any, session: Any = None) -> Dict[str, Any]:
    """Connect with a pynano or ssl client context, echo one message, and report what the client saw.

    The session is taken after the echo, so that TLS 1.3 tickets have been read.
    """
    with context.wrap_socket(connect(listener), server_hostname="localhost", session=session) as tls:
        tls.sendall(b"ping")
        assert tls.recv(64) == b"ping"
        return {"reused": tls.session_reused, "cipher": tls.cipher()[0], "session": tls.session,
                "peer": common_name(tls.getpeercert())}


def resume_twice(listener: socket.socket, client: Any, server: Any,
                 session: Any = None) -> List[Dict[str, Any]]:
    """Run a first connection, then a second one that offers the first's session.

    Returns [first client, first server, second client, second server]
    reports. A given session replaces the first connection's for the second.
    """
    first_server = serve_once(listener, server)
    first = client_round(listener, client)
    first_seen = first_server.result()
    second_server = serve_once(listener, server)
    second = client_round(listener, client, session if session is not None else first["session"])
    return [first, first_seen, second, second_server.result()]


# ---- resumption with ssl as the peer -------------------------------------------------


@pytest.mark.parametrize("with_cert", CLIENT_CERT, ids=CLIENT_CERT_IDS)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_pynano_client_resumes_with_ssl_server(pki: Pki, listener: socket.socket,
                                               version: ssl.TLSVersion, with_cert: bool) -> None:
    client = pynano_client_context(pki, version, with_cert)
    server = ssl_server_context(pki, version, require_cert=with_cert)

    first, first_seen, second, second_seen = resume_twice(listener, client, server)

    assert isinstance(first["session"], pynano.TLSSession)
    assert first["session"].has_ticket is True
    assert first["reused"] is False
    assert first_seen["reused"] is False
    assert second["reused"] is True
    assert second_seen["reused"] is True
    assert second["cipher"] == first["cipher"]
    assert second_seen["cipher"] == first_seen["cipher"]
    expected_client = "pynano test client" if with_cert else None
    assert first_seen["peer"] == expected_client
    assert second_seen["peer"] == expected_client
    assert second["peer"] == first["peer"] == "localhost"


@pytest.mark.parametrize("with_cert", CLIENT_CERT, ids=CLIENT_CERT_IDS)
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_ssl_client_resumes_with_pynano_server(pki: Pki, listener: socket.socket,
                                               version: ssl.TLSVersion, with_cert: bool) -> None:
    client = ssl_client_context(pki, version, with_cert)
    server = pynano_server_context(pki, version, require_cert=with_cert)

    first, first_seen, second, second_seen = resume_twice(listener, client, server)

    assert first["reused"] is False
    assert first_seen["reused"] is False
    assert second["reused"] is True
    assert second_seen["reused"] is True
    assert second["cipher"] == first["cipher"]
    assert second_seen["cipher"] == first_seen["cipher"]
    expected_client = "pynano test client" if with_cert else None
    assert first_seen["peer"] == expected_client
    assert second_seen["peer"] == expected_client


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_resumed_session_resumes_again(pki: Pki, listener: socket.socket, version: ssl.TLSVersion) -> None:
    client = pynano_client_context(pki, version)
    server = ssl_server_context(pki, version)
    session = None
    reused = []
    for _ in range(3):
        server_end = serve_once(listener, server)
        report = client_round(listener, client, session)
        server_end.result()
        session = report["session"]
        reused.append(report["reused"])

    assert reused == [False, True, True]


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_pynano_on_both_ends_resumes(pki: Pki, listener: socket.socket, version: ssl.TLSVersion) -> None:
    client = pynano_client_context(pki, version, with_cert=True)
    server = pynano_server_context(pki, version, require_cert=True)

    _, _, second, second_seen = resume_twice(listener, client, server)

    assert second["reused"] is True
    assert second_seen["reused"] is True
    assert second_seen["peer"] == "pynano test client"


# ---- what stops resumption -----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_rotated_ticket_keys_give_full_handshake(pki: Pki, listener: socket.socket,
                                                 version: ssl.TLSVersion) -> None:
    client = ssl_client_context(pki, version)
    server = pynano_server_context(pki, version)
    first_server = serve_once(listener, server)
    first = client_round(listener, client)
    first_server.result()

    server.rotate_session_ticket_keys()
    second_server = serve_once(listener, server)
    second = client_round(listener, client, first["session"])
    third_server = serve_once(listener, server)
    third = client_round(listener, client, second["session"])

    assert second["reused"] is False
    assert second_server.result()["reused"] is False
    assert third["reused"] is True
    assert third_server.result()["reused"] is True


def damaged_blobs(blob: bytes) -> Dict[str, bytes]:
    middle = len(blob) // 2
    return {
        "flipped_bit": blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1:],
        "truncated": blob[:-10],
        "other_format_version": blob[:4] + b"\x09" + blob[5:],
        "garbage": b"\x00" * 7,
        "empty": b"",
    }


@pytest.mark.parametrize("damage", ["flipped_bit", "truncated", "other_format_version", "garbage", "empty"])
@pytest.mark.parametrize("version", VERSIONS, ids=VERSION_IDS)
def test_damaged_session_gives_full_handshake(pki: Pki, listener: socket.socket,
                                              version: ssl.TLSVersion, damage: str) -> None:
    client = pynano_client_context(pki, version)
    server = ssl_server_context(pki, version)
    first_server = serve_once(listener, server)
    session = client_round(listener, client)["session"]
    first_server.result()
    session._blob = damaged_blobs(session._blob)[damage]

    second_server = serve_once(listener, server)
    second = client_round(listener, client, session)

    assert second["reused"] is False
    assert second_server.result()["reused"] is False


def test_session_before_ticket_cannot_resume(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    client = pynano_client_context(pki, version)
    server = ssl_server_context(pki, version)
    server_end = serve_once(listener, server)
    with client.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        early = tls.session
        tls.sendall(b"ping")
        tls.recv(64)
        late = tls.session
    server_end.result()

    early_server = serve_once(listener, server)
    early_report = client_round(listener, client, early)
    early_server.result()
    late_server = serve_once(listener, server)
    late_report = client_round(listener, client, late)
    late_server.result()

    assert early is not None
    assert early.has_ticket is False
    assert late is not None
    assert late.has_ticket is True
    assert late != early
    assert early_report["reused"] is False
    assert late_report["reused"] is True


def test_rebuilt_server_store_stops_resumption(pki: Pki, listener: socket.socket,
                                               caplog: pytest.LogCaptureFixture) -> None:
    version = ssl.TLSVersion.TLSv1_3
    client = ssl_client_context(pki, version)
    server = pynano_server_context(pki, version)
    first_server = serve_once(listener, server)
    first = client_round(listener, client)
    first_server.result()

    with caplog.at_level(logging.INFO, logger="pynano"):
        server.load_verify_locations(cadata=pki.client.cert_pem.decode())
    second_server = serve_once(listener, server)
    second = client_round(listener, client, first["session"])

    assert "no longer resume" in caplog.text
    assert second["reused"] is False
    assert second_server.result()["reused"] is False


@pytest.mark.parametrize("order", ["before_loading", "after_loading"])
def test_session_lifetime_expires(pki: Pki, listener: socket.socket, order: str) -> None:
    version = ssl.TLSVersion.TLSv1_3
    client = ssl_client_context(pki, version)
    server = pynano.TLSContext(server_side=True)
    if order == "before_loading":
        server.set_session_lifetimes(1, 1)
    server.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    if order == "after_loading":
        server.set_session_lifetimes(1, 1)
    first_server = serve_once(listener, server)
    first = client_round(listener, client)
    first_server.result()

    time.sleep(1.2)
    second_server = serve_once(listener, server)
    second = client_round(listener, client, first["session"])

    assert second["reused"] is False
    assert second_server.result()["reused"] is False


def test_unverified_session_not_offered(pki: Pki, listener: socket.socket,
                                        caplog: pytest.LogCaptureFixture) -> None:
    version = ssl.TLSVersion.TLSv1_3
    client = pynano_client_context(pki, version)
    client.check_hostname = False
    client.verify_mode = pynano.CERT_NONE
    server = ssl_server_context(pki, version)
    first_server = serve_once(listener, server)
    session = client_round(listener, client)["session"]
    first_server.result()

    client.verify_mode = pynano.CERT_REQUIRED
    with caplog.at_level(logging.INFO, logger="pynano"):
        second_server = serve_once(listener, server)
        second = client_round(listener, client, session)

    assert "not verified" in caplog.text
    assert second["reused"] is False
    assert second_server.result()["reused"] is False


def test_callback_accepted_session_not_offered(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_2
    client = pynano.TLSContext()
    client.minimum_version = client.maximum_version = version
    calls: List[str] = []

    def accept_untrusted(info: pynano.VerifyInfo) -> bool:
        calls.append(info.status_name)
        return True

    client.set_verify_callback(accept_untrusted)
    server = ssl_server_context(pki, version)

    first, _, second, second_seen = resume_twice(listener, client, server)

    assert first["reused"] is False
    assert second["reused"] is False
    assert second_seen["reused"] is False
    assert len(calls) == 2


def test_unchecked_host_name_session_not_offered(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    client = pynano_client_context(pki, version)
    client.check_hostname = False
    server = ssl_server_context(pki, version)
    first_server = serve_once(listener, server)
    session = client_round(listener, client)["session"]
    first_server.result()

    client.check_hostname = True
    second_server = serve_once(listener, server)
    second = client_round(listener, client, session)

    assert second["reused"] is False
    assert second_server.result()["reused"] is False


# ---- the session API -------------------------------------------------------------------


def test_session_attributes(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    server_end = serve_once(listener, ssl_server_context(pki, version))
    before = int(time.time())
    report = client_round(listener, pynano_client_context(pki, version))
    server_end.result()
    session = report["session"]

    assert isinstance(session.id, bytes)
    assert len(session.id) == 32
    assert before - 1 <= session.time <= time.time() + 1
    assert session.timeout > 0
    assert session == session
    assert hash(session) == hash(session.id)
    assert "TLSSession" in repr(session)


def test_session_readable_after_close(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    server_end = serve_once(listener, ssl_server_context(pki, version))
    tls = pynano_client_context(pki, version).wrap_socket(connect(listener), server_hostname="localhost")
    tls.sendall(b"ping")
    tls.recv(64)
    session = tls.session
    tls.close()
    server_end.result()

    assert session is not None
    assert tls.session is session


def test_server_socket_session_is_none(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3

    def run() -> Any:
        with pynano_server_context(pki, version).wrap_socket(accept(listener), server_side=True) as tls:
            tls.sendall(tls.recv(64))
            return tls.session

    server_end = Background(run)
    client_round(listener, ssl_client_context(pki, version))

    assert server_end.result() is None


def test_session_setter_before_handshake(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_2
    client = pynano_client_context(pki, version)
    server = ssl_server_context(pki, version)
    first_server = serve_once(listener, server)
    session = client_round(listener, client)["session"]
    first_server.result()

    second_server = serve_once(listener, server)
    tls = client.wrap_socket(connect(listener), server_hostname="localhost", do_handshake_on_connect=False)
    with tls:
        tls.session = session
        tls.do_handshake()
        with pytest.raises(ValueError, match="after the handshake"):
            tls.session = session
        tls.sendall(b"ping")
        tls.recv(64)
        reused = tls.session_reused

    assert reused is True
    assert second_server.result()["reused"] is True


def test_session_from_other_context_rejected(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    server_end = serve_once(listener, ssl_server_context(pki, version))
    session = client_round(listener, pynano_client_context(pki, version))["session"]
    server_end.result()

    with socket.socket() as sock, pytest.raises(ValueError, match="different TLSContext"):
        pynano_client_context(pki, version).wrap_socket(sock, server_hostname="localhost", session=session)


def test_server_wrap_rejects_session(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    server_end = serve_once(listener, ssl_server_context(pki, version))
    session = client_round(listener, pynano_client_context(pki, version))["session"]
    server_end.result()

    with socket.socket() as sock, pytest.raises(ValueError, match="client mode"):
        pynano_server_context(pki, version).wrap_socket(sock, server_side=True, session=session)


def test_session_reused_false_before_handshake(pki: Pki) -> None:
    with socket.socket() as sock:
        tls = pynano_client_context(pki, ssl.TLSVersion.TLSv1_3).wrap_socket(sock, server_hostname="localhost")
        assert tls.session_reused is False
        assert tls.session is None


@pytest.mark.parametrize("lifetimes", [(0, 60), (60, 0), (604801, 60), (60, 604801)])
def test_session_lifetimes_range_checked(lifetimes: Any) -> None:
    with pytest.raises(ValueError, match="out of range"):
        pynano.TLSContext(server_side=True).set_session_lifetimes(*lifetimes)


def test_session_lifetimes_type_checked() -> None:
    with pytest.raises(TypeError, match="ticket_seconds"):
        pynano.TLSContext(server_side=True).set_session_lifetimes("60", 60)  # type: ignore[arg-type]


def test_server_session_methods_reject_client_context() -> None:
    context = pynano.TLSContext()
    with pytest.raises(ValueError, match="server contexts"):
        context.rotate_session_ticket_keys()
    with pytest.raises(ValueError, match="server contexts"):
        context.set_session_lifetimes(60, 60)


def test_session_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="TLSSocket.session"):
        pynano.TLSSession()


def test_unchanged_context_keeps_its_store(pki: Pki, listener: socket.socket) -> None:
    version = ssl.TLSVersion.TLSv1_3
    server = pynano_server_context(pki, version)
    stores = []
    for _ in range(2):
        server_end = serve_once(listener, server)
        client_round(listener, ssl_client_context(pki, version))
        server_end.result()
        stores.append(server._store)

    assert stores[0] is not None
    assert stores[0] is stores[1]
    assert nanossl.PYNANO_CERT_STORE_getCounts(stores[0])[1:] == (1, 1)
