"""Interop of pynano.TLSContext with the ssl module and the openssl commands.

Each case runs one connection over 127.0.0.1, for TLS 1.2 and TLS 1.3, with
and without a client certificate, and checks what the other end saw.
openssl subprocesses have timeouts and are killed in ``finally``.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import pynano
from pynano.certs import PemPair

from .conftest import Background, accept, connect

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
PROCESS_TIMEOUT = 20.0

VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
CLIENT_SUBJECT = ((("commonName", "pynano test client"),),)


def pynano_client(pki: Any, version: str, with_cert: bool) -> pynano.TLSContext:
    context = pynano.TLSContext()
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.minimum_version = context.maximum_version = VERSIONS[version]
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def pynano_server(pki: Any, version: Optional[str] = None,
                  verify_mode: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> pynano.TLSContext:
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.verify_mode = verify_mode
    if version is not None:
        context.minimum_version = context.maximum_version = VERSIONS[version]
    return context


def stdlib_server(pki: Any, version: str, verify_mode: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.verify_mode = verify_mode
    context.minimum_version = context.maximum_version = VERSIONS[version]
    return context


def stdlib_client(pki: Any, version: str, with_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.minimum_version = context.maximum_version = VERSIONS[version]
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def session_of(tls: Any) -> Dict[str, Any]:
    """Return what one end of a connection saw: version, cipher, peer certificate."""
    return {"version": tls.version(), "cipher": tls.cipher()[0], "peer": tls.getpeercert()}


def serve_one(listener: socket.socket, wrap: Callable[[socket.socket], Any]) -> Background:
    """Accept one connection, echo one message, and return the server's view."""

    def run() -> Dict[str, Any]:
        with wrap(accept(listener)) as tls:
            seen = session_of(tls)
            tls.sendall(tls.recv(100))
            return seen

    return Background(run)


def talk(tls: Any) -> Dict[str, Any]:
    tls.sendall(b"ping")
    assert tls.recv(100) == b"ping"
    return session_of(tls)


# ---- the ssl module as the peer --------------------------------------------------


@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_pynano_client_ssl_server(pki: Any, listener: socket.socket, version: str, with_cert: bool) -> None:
    server_ctx = stdlib_server(pki, version)
    server = serve_one(listener, lambda sock: server_ctx.wrap_socket(sock, server_side=True))
    client_ctx = pynano_client(pki, version, with_cert)
    with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        ours = talk(tls)
    theirs = server.result()
    assert ours["version"] == theirs["version"] == version
    assert ours["cipher"] == theirs["cipher"]
    assert ours["peer"]["subject"] == ((("commonName", "localhost"),),)
    assert theirs["peer"] == (pynano.tls.decode_certificate(pki.client.cert_der()) if with_cert else None)


@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_ssl_client_pynano_server(pki: Any, listener: socket.socket, version: str, with_cert: bool) -> None:
    server_ctx = pynano_server(pki, version)
    server = serve_one(listener, lambda sock: server_ctx.wrap_socket(sock, server_side=True))
    client_ctx = stdlib_client(pki, version, with_cert)
    with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        theirs = talk(tls)
    ours = server.result()
    assert ours["version"] == theirs["version"] == version
    assert ours["cipher"] == theirs["cipher"]
    if with_cert:
        assert ours["peer"]["subject"] == CLIENT_SUBJECT
    else:
        assert ours["peer"] is None


def test_getpeercert_matches_ssl_module(pki: Any, listener: socket.socket) -> None:
    server_ctx = pynano_server(pki)
    views: List[Any] = []
    for client_ctx in (stdlib_client(pki, "TLSv1.3", False), pynano_client(pki, "TLSv1.3", False)):
        server = serve_one(listener, lambda sock: server_ctx.wrap_socket(sock, server_side=True))
        with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
            views.append(talk(tls)["peer"])
        server.result()
    stdlib_view, pynano_view = views
    assert pynano_view == stdlib_view


@pytest.mark.parametrize("case", ["expired", "untrusted", "wrong_host"])
def test_verify_code_matches_ssl_module(case: str, pki: Any, listener: socket.socket,
                                        bad_server_certs: Dict[str, PemPair], tmp_path: Path) -> None:
    cert, key = tmp_path / "bad.pem", tmp_path / "bad.key"
    cert.write_bytes(bad_server_certs[case].cert_pem)
    key.write_bytes(bad_server_certs[case].key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))

    errors: List[ssl.SSLCertVerificationError] = []
    for client_ctx in (stdlib_client(pki, "TLSv1.3", False), pynano_client(pki, "TLSv1.3", False)):
        server = Background(lambda: _handshake_quietly(server_ctx, accept(listener)))
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            client_ctx.wrap_socket(connect(listener), server_hostname="localhost")
        errors.append(caught.value)
        server.result()
    stdlib_error, pynano_error = errors
    assert isinstance(pynano_error, pynano.CertificateVerifyError)
    assert pynano_error.verify_code == stdlib_error.verify_code
    assert pynano_error.verify_message == stdlib_error.verify_message


def _handshake_quietly(context: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        context.wrap_socket(sock, server_side=True).close()
    except (ssl.SSLError, OSError):
        sock.close()


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_ssl_server_requiring_cert_rejects_pynano(pki: Any, listener: socket.socket, version: str) -> None:
    server_ctx = stdlib_server(pki, version, ssl.CERT_REQUIRED)
    server = Background(lambda: _handshake_quietly(server_ctx, accept(listener)))
    client_ctx = pynano_client(pki, version, with_cert=False)
    with pytest.raises(pynano.TLSError) as caught:
        # TLS 1.3 clients finish their handshake first and see the alert on read.
        with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
            tls.recv(10)
    server.result()
    expected = "certificate_required" if version == "TLSv1.3" else "handshake_failure"
    assert expected in str(caught.value)


def test_alpn_with_ssl_server(pki: Any, listener: socket.socket) -> None:
    server_ctx = stdlib_server(pki, "TLSv1.3")
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    server = serve_one(listener, lambda sock: server_ctx.wrap_socket(sock, server_side=True))
    client_ctx = pynano_client(pki, "TLSv1.3", False)
    client_ctx.set_alpn_protocols(["http/1.1", "h2"])
    with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        talk(tls)
        assert tls.selected_alpn_protocol() == "h2"
    server.result()


@pytest.mark.parametrize("suite", ["ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
def test_set_ciphers_seen_by_ssl_server(pki: Any, listener: socket.socket, suite: str) -> None:
    version = "TLSv1.3" if suite.startswith("TLS_") else "TLSv1.2"
    server_ctx = stdlib_server(pki, version)
    server = serve_one(listener, lambda sock: server_ctx.wrap_socket(sock, server_side=True))
    client_ctx = pynano_client(pki, version, False)
    client_ctx.set_ciphers(suite)
    with client_ctx.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        talk(tls)
    assert server.result()["cipher"] == suite


# ---- the openssl commands as the peer ----------------------------------------------


def _wait_for_line(process: subprocess.Popen, pattern: str, timeout: float) -> "re.Match[str]":
    """Read process output until a line matches pattern; raise on timeout or exit."""
    assert process.stdout is not None
    # Raw reads on the descriptor: a buffered reader could hold the wanted
    # line while select() reports nothing more to read.
    descriptor = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(descriptor, 4096)
        if not chunk:
            break
        output += chunk
        match = re.search(pattern, output.decode(errors="replace"))
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output: {output!r}")


@contextmanager
def openssl_server(*options: str) -> Iterator[Tuple[subprocess.Popen, int]]:
    """Run `openssl s_server` for one connection on a free 127.0.0.1 port."""
    assert OPENSSL is not None
    process = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", *options],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        port = int(_wait_for_line(process, r"ACCEPT 127\.0\.0\.1:(\d+)\n", PROCESS_TIMEOUT).group(1))
        yield process, port
    finally:
        process.kill()
        process.wait(PROCESS_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def _read_all(tls: pynano.TLSSocket) -> bytes:
    chunks: List[bytes] = []
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@needs_openssl
@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_pynano_client_openssl_server(pki: Any, version: str, with_cert: bool) -> None:
    version_flag = "-tls1_3" if version == "TLSv1.3" else "-tls1_2"
    with openssl_server("-cert", pki.path("server.pem"), "-key", pki.path("server.key"),
                        "-CAfile", pki.path("ca.pem"), "-verify", "1", version_flag, "-www") as (_, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=PROCESS_TIMEOUT)
        with pynano_client(pki, version, with_cert).wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page = _read_all(tls).decode()
            cipher = tls.cipher()[0]
    assert f"New, {version}, Cipher is {cipher}" in page
    if with_cert:
        assert "Client certificate" in page
        assert "Subject: CN=pynano test client" in page
    else:
        assert "no client certificate available" in page


@needs_openssl
@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_openssl_client_pynano_server(pki: Any, listener: socket.socket, version: str,
                                      with_cert: bool) -> None:
    context = pynano_server(pki, version)

    def answer() -> Dict[str, Any]:
        with context.wrap_socket(accept(listener), server_side=True) as tls:
            seen = session_of(tls)
            request = tls.recv(100)
            tls.sendall(b"pong " + request)
            return seen

    server = Background(answer)
    command = [OPENSSL, "s_client", "-connect", "%s:%d" % listener.getsockname(),
               "-CAfile", pki.path("ca.pem"), "-servername", "localhost", "-verify_return_error", "-ign_eof",
               "-tls1_3" if version == "TLSv1.3" else "-tls1_2"]
    if with_cert:
        command += ["-cert", pki.path("client.pem"), "-key", pki.path("client.key")]
    result = subprocess.run(command, input=b"ping\n", capture_output=True, timeout=PROCESS_TIMEOUT)
    seen = server.result()
    output = result.stdout.decode()

    assert "pong ping" in output
    assert f"New, {version}, Cipher is {seen['cipher']}" in output
    assert "Verify return code: 0 (ok)" in output
    assert seen["version"] == version
    if with_cert:
        assert seen["peer"]["subject"] == CLIENT_SUBJECT
    else:
        assert seen["peer"] is None


@needs_openssl
def test_openssl_client_rejected_without_cert(pki: Any, listener: socket.socket) -> None:
    context = pynano_server(pki, "TLSv1.2", ssl.CERT_REQUIRED)

    def answer() -> Optional[BaseException]:
        try:
            context.wrap_socket(accept(listener), server_side=True).close()
        except pynano.TLSError as error:
            return error
        return None

    server = Background(answer)
    command = [OPENSSL, "s_client", "-connect", "%s:%d" % listener.getsockname(),
               "-CAfile", pki.path("ca.pem"), "-servername", "localhost", "-tls1_2"]
    result = subprocess.run(command, input=b"", capture_output=True, timeout=PROCESS_TIMEOUT)
    error = server.result()
    assert isinstance(error, pynano.CertificateVerifyError)
    assert "peer did not return a certificate" in str(error)
    assert result.returncode != 0
    assert "alert handshake failure" in (result.stdout + result.stderr).decode()
