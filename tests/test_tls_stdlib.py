"""pynano contexts inside the standard library's HTTP stack.

http.client, urllib.request and http.server take a pynano.TLSContext where
they take an ssl.SSLContext. The servers run in threads on 127.0.0.1 and
are shut down in ``finally``.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import socket
import ssl
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

import pynano
from pynano.certs import PemPair

TIMEOUT = 10.0


class EchoPathHandler(http.server.BaseHTTPRequestHandler):
    """Respond to GET with the path, the client certificate's CN and the TLS version."""

    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        subject = dict(item for rdn in peer["subject"] for item in rdn)["commonName"] if peer else "none"
        body = f"path={self.path} client={subject} tls={self.connection.version()}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def https_server(wrap: Callable[[socket.socket], Any]) -> Iterator[int]:
    """Serve EchoPathHandler over TLS on 127.0.0.1 and return the port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoPathHandler)
    httpd.socket = wrap(httpd.socket)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


def stdlib_server_wrap(pki: Any, verify_mode: ssl.VerifyMode = ssl.CERT_OPTIONAL,
                       cert: str = "server") -> Callable[[socket.socket], Any]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.verify_mode = verify_mode
    return lambda sock: context.wrap_socket(sock, server_side=True)


def pynano_server_wrap(pki: Any,
                       verify_mode: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> Callable[[socket.socket], Any]:
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.verify_mode = verify_mode
    return lambda sock: context.wrap_socket(sock, server_side=True)


def pynano_client(pki: Any, with_cert: bool = False) -> pynano.TLSContext:
    context = pynano.create_default_context(cafile=pki.path("ca.pem"))
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def stdlib_client(pki: Any, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def fetch(port: int, path: str, context: Any) -> str:
    url = f"https://localhost:{port}{path}"
    with urllib.request.urlopen(url, context=context, timeout=TIMEOUT) as response:
        assert response.status == 200
        return response.read().decode()


# ---- pynano client, stdlib server -------------------------------------------------


def test_http_client_keep_alive(pki: Any) -> None:
    with https_server(stdlib_server_wrap(pki)) as port:
        connection = http.client.HTTPSConnection("localhost", port, timeout=TIMEOUT,
                                                 context=pynano_client(pki))
        try:
            for path in ("/first", "/second"):
                connection.request("GET", path)
                response = connection.getresponse()
                assert response.status == 200
                assert response.read().decode() == f"path={path} client=none tls=TLSv1.3"
            assert isinstance(connection.sock, pynano.TLSSocket)
        finally:
            connection.close()


def test_urlopen_with_pynano_context(pki: Any) -> None:
    with https_server(stdlib_server_wrap(pki)) as port:
        assert fetch(port, "/page", pynano_client(pki)) == "path=/page client=none tls=TLSv1.3"


def test_urlopen_sends_client_certificate(pki: Any) -> None:
    with https_server(stdlib_server_wrap(pki, ssl.CERT_REQUIRED)) as port:
        body = fetch(port, "/mtls", pynano_client(pki, with_cert=True))
    assert body == "path=/mtls client=pynano test client tls=TLSv1.3"


def test_urlopen_tls12_only(pki: Any) -> None:
    context = pynano_client(pki)
    context.maximum_version = pynano.TLSVersion.TLSv1_2
    with https_server(stdlib_server_wrap(pki)) as port:
        assert fetch(port, "/old", context).endswith("tls=TLSv1.2")


def test_urlopen_rejects_wrong_host(pki: Any, bad_server_certs: Dict[str, PemPair], tmp_path: Path) -> None:
    (tmp_path / "wrong.pem").write_bytes(bad_server_certs["wrong_host"].cert_pem)
    (tmp_path / "wrong.key").write_bytes(bad_server_certs["wrong_host"].key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "wrong.pem"), str(tmp_path / "wrong.key"))
    with https_server(lambda sock: context.wrap_socket(sock, server_side=True)) as port:
        with pytest.raises(urllib.error.URLError) as caught:
            fetch(port, "/", pynano_client(pki))
    reason = caught.value.reason
    assert isinstance(reason, pynano.CertificateVerifyError)
    assert isinstance(reason, ssl.SSLCertVerificationError)
    assert reason.verify_code == 62


# ---- pynano server (wrapped http.server) -----------------------------------------


def test_urlopen_stdlib_client_pynano_server(pki: Any) -> None:
    with https_server(pynano_server_wrap(pki)) as port:
        assert fetch(port, "/reverse", stdlib_client(pki)) == "path=/reverse client=none tls=TLSv1.3"


def test_pynano_server_sees_stdlib_client_certificate(pki: Any) -> None:
    with https_server(pynano_server_wrap(pki, ssl.CERT_REQUIRED)) as port:
        body = fetch(port, "/mtls", stdlib_client(pki, with_cert=True))
    assert body == "path=/mtls client=pynano test client tls=TLSv1.3"


def test_pynano_on_both_ends(pki: Any) -> None:
    with https_server(pynano_server_wrap(pki, ssl.CERT_REQUIRED)) as port:
        body = fetch(port, "/both", pynano_client(pki, with_cert=True))
    assert body == "path=/both client=pynano test client tls=TLSv1.3"


def test_pynano_server_survives_failed_handshake(pki: Any) -> None:
    untrusting = ssl.create_default_context()
    untrusting.load_verify_locations(cadata=pynano.certs.make_ca("other CA").cert_pem.decode())
    with https_server(pynano_server_wrap(pki)) as port:
        with pytest.raises(urllib.error.URLError):
            fetch(port, "/", untrusting)
        assert fetch(port, "/after", stdlib_client(pki)).startswith("path=/after")


# ---- known gaps -----------------------------------------------------------------


@pytest.mark.xfail(strict=True, raises=AttributeError,
                   reason="asyncio needs ssl.SSLContext.wrap_bio (memory BIOs); pynano has no BIO mode")
def test_asyncio_open_connection(pki: Any, listener: socket.socket) -> None:
    async def open_with_pynano() -> None:
        _, writer = await asyncio.open_connection("localhost", listener.getsockname()[1],
                                                  ssl=pynano_client(pki))
        writer.close()

    asyncio.run(asyncio.wait_for(open_with_pynano(), TIMEOUT))
