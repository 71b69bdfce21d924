"""Interop of pynano.nanossl with independent TLS peers: the ssl module and openssl.

Each test checks what both ends saw: the peer's negotiated version, cipher
suite, peer certificate and received bytes, and pynano's view of the same
connection. Every socket is on 127.0.0.1 with a timeout, and every openssl
process is killed in a finally block.
"""

from __future__ import annotations

import queue
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

# tests/ is imported as a package when it has an __init__.py and as a plain
# directory otherwise, so conftest is imported in both forms.
try:
    from .conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store
except ImportError:
    from conftest import SOCKET_TIMEOUT, Background, Pki, accept, make_store  # type: ignore[no-redef]
from pynano import nanossl
from pynano.nanossl import OK

REQUEST = b"ping\n"
REPLY = b"pong\n"
RECV_TIMEOUT_MS = 5000
OPENSSL_TIMEOUT = 15.0    # seconds for one openssl process to finish
OPENSSL_PORT_ATTEMPTS = 3

# OpenSSL's names for the suites that an ECDSA server can negotiate. The table
# is written out here, not taken from pynano.ciphers, so a wrong id or name in
# pynano cannot make both sides of an assert agree.
OPENSSL_SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}


@dataclass(frozen=True)
class TlsVersion:
    """One TLS version as each of the three stacks names it."""

    minor: int                    # NanoSSL minor version number
    ssl_version: ssl.TLSVersion
    name: str                     # ssl.SSLSocket.version() and openssl output
    openssl_flag: str


TLS12 = TlsVersion(nanossl.TLS12_MINORVERSION, ssl.TLSVersion.TLSv1_2, "TLSv1.2", "-tls1_2")
TLS13 = TlsVersion(nanossl.TLS13_MINORVERSION, ssl.TLSVersion.TLSv1_3, "TLSv1.3", "-tls1_3")
VERSIONS = [pytest.param(TLS12, id="tls12"), pytest.param(TLS13, id="tls13")]


@dataclass
class PynanoView:
    """What the pynano end of one connection saw."""

    handshake_status: int = OK
    version: int = 0
    cipher_id: int = 0
    peer_certificate_status: int = OK
    peer_certificate: Optional[bytes] = None
    received: bytes = b""
    recv_status: int = OK
    peer_alert: int = -1


def common_name(der: bytes) -> str:
    """Return the subject common name of a DER certificate."""
    subject = x509.load_der_x509_certificate(der).subject
    return subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def ssl_subject_common_name(peer_certificate: dict) -> str:
    """Return the common name from ssl.SSLSocket.getpeercert()."""
    for relative_name in peer_certificate["subject"]:
        for key, value in relative_name:
            if key == "commonName":
                return value
    raise AssertionError(f"no commonName in {peer_certificate['subject']!r}")


def drain_until_closed(sock: socket.socket) -> None:
    """Read until the peer closes, so an alert we sent is read before our FIN.

    Closing a socket with unread input makes Linux send RST, and the peer's
    next read can then fail with ECONNRESET before it returns the alert.
    """
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def collect_view(ci: int, view: PynanoView) -> None:
    """Fill in the negotiated version, suite and peer certificate."""
    status, view.version = nanossl.SSL_getSSLTLSVersion(ci)
    assert status == OK, nanossl.DISPLAY_ERROR(status)
    status, view.cipher_id, _curves = nanossl.SSL_getCipherInfo(ci)
    assert status == OK, nanossl.DISPLAY_ERROR(status)
    view.peer_certificate_status, view.peer_certificate = nanossl.PYNANO_getPeerCertificate(ci, 0)


def set_flags(ci: int, extra_flags: int) -> None:
    status, flags = nanossl.SSL_getSessionFlags(ci)
    assert status == OK
    assert nanossl.SSL_setSessionFlags(ci, flags | extra_flags) == OK


def serve_once(listener: socket.socket, store: nanossl.CertStore, require_mutual_auth: bool) -> PynanoView:
    """Accept one client with pynano, read one request and send REPLY."""
    view = PynanoView()
    conn = accept(listener)
    try:
        ci = nanossl.SSL_acceptConnection(conn, store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        try:
            if require_mutual_auth:
                set_flags(ci, nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH)
            view.handshake_status = nanossl.SSL_negotiateConnection(ci)
            if view.handshake_status != OK:
                _status, view.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
                drain_until_closed(conn)
                return view
            collect_view(ci, view)
            buffer = bytearray(1024)
            view.recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            view.received = bytes(buffer[:count])
            sent = nanossl.SSL_send(ci, REPLY)
            assert sent == len(REPLY), nanossl.DISPLAY_ERROR(sent)
            return view
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        conn.close()


def connect_pynano(port: int, store: nanossl.CertStore,
                   peer_handshake_done: Optional[threading.Event] = None,
                   send_reply: Optional[threading.Event] = None) -> PynanoView:
    """Connect with pynano, send REQUEST and read one reply.

    When the handshake fails, the socket stays open until the peer sets
    peer_handshake_done, so the peer reads our alert before the connection
    closes. When send_reply is given, it is set once REQUEST has
    been sent.
    """
    view = PynanoView()
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        try:
            view.handshake_status = nanossl.SSL_negotiateConnection(ci)
            if view.handshake_status != OK:
                _status, view.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
                if peer_handshake_done is not None:
                    assert peer_handshake_done.wait(SOCKET_TIMEOUT), "the peer handshake did not end"
                return view
            collect_view(ci, view)
            sent = nanossl.SSL_send(ci, REQUEST)
            assert sent == len(REQUEST), nanossl.DISPLAY_ERROR(sent)
            if send_reply is not None:
                send_reply.set()
            buffer = bytearray(1024)
            view.recv_status, count = nanossl.SSL_recv(ci, buffer, RECV_TIMEOUT_MS)
            view.received = bytes(buffer[:count])
            _status, view.peer_alert = nanossl.PYNANO_getPeerAlert(ci)
            return view
        finally:
            nanossl.SSL_closeConnection(ci)
    finally:
        sock.close()


def ssl_client_context(pki: Pki, version: TlsVersion, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = version.ssl_version
    context.maximum_version = version.ssl_version
    context.load_verify_locations(pki.path("ca.pem"))
    if with_certificate:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def ssl_server_context(pki: Pki, version: TlsVersion) -> ssl.SSLContext:
    """Return a server context that requires a client certificate from pki.ca."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = version.ssl_version
    context.maximum_version = version.ssl_version
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(pki.path("ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_store_for(pki: Pki, with_certificate: bool) -> nanossl.CertStore:
    return make_store(pki.client if with_certificate else None, [pki.ca.cert_pem])


# ---- pynano server, ssl client -----------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_ssl_client_mutual_auth(pki, server_store, listener, version):
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=True))
    context = ssl_client_context(pki, version, with_certificate=True)

    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            peer_version = tls.version()
            peer_cipher = tls.cipher()[0]
            peer_subject = ssl_subject_common_name(tls.getpeercert())
            tls.sendall(REQUEST)
            peer_received = tls.recv(1024)
    view = server.result()

    assert peer_version == version.name
    assert peer_subject == "localhost"
    assert peer_received == REPLY
    assert view.handshake_status == OK
    assert view.version == version.minor
    assert OPENSSL_SUITE_NAMES.get(view.cipher_id) == peer_cipher
    assert view.peer_certificate_status == OK
    assert view.peer_certificate == pki.client.cert_der()
    assert view.received == REQUEST


@pytest.mark.parametrize("version", VERSIONS)
def test_ssl_client_without_certificate(pki, server_store, listener, version):
    # Server default: a CertificateRequest is sent but an empty reply is accepted.
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=False))
    context = ssl_client_context(pki, version, with_certificate=False)

    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            peer_version = tls.version()
            peer_cipher = tls.cipher()[0]
            tls.sendall(REQUEST)
            peer_received = tls.recv(1024)
    view = server.result()

    assert peer_version == version.name
    assert peer_received == REPLY
    assert view.handshake_status == OK
    assert view.version == version.minor
    assert OPENSSL_SUITE_NAMES.get(view.cipher_id) == peer_cipher
    assert view.peer_certificate_status == nanossl.ERR_INVALID_ARG
    assert view.peer_certificate is None
    assert view.received == REQUEST


@pytest.mark.parametrize("version, alert_name", [
    pytest.param(TLS12, "HANDSHAKE_FAILURE", id="tls12"),
    pytest.param(TLS13, "CERTIFICATE_REQUIRED", id="tls13"),
])
def test_ssl_client_rejected_without_certificate(pki, server_store, listener, version, alert_name):
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=True))
    context = ssl_client_context(pki, version, with_certificate=False)

    with socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError) as raised:
            # TLS 1.3 clients finish their handshake before the server has
            # checked the certificate, so the alert arrives on the first read.
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(1024)
    view = server.result()

    assert alert_name in str(raised.value)
    assert view.handshake_status == nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE


# ---- pynano client, ssl server -----------------------------------------


def ssl_serve_once(listener: socket.socket, context: ssl.SSLContext,
                   handshake_done: threading.Event) -> dict:
    """Accept one client with the ssl module, read REQUEST and send REPLY.

    handshake_done is set when the handshake has ended, whatever its result.
    """
    conn = accept(listener)
    # wrap_socket() takes over conn's descriptor and closes it when the
    # handshake fails. The duplicate keeps reading until the client leaves.
    duplicate = conn.dup()
    try:
        try:
            tls = context.wrap_socket(conn, server_side=True)
        finally:
            handshake_done.set()
        with tls:
            seen = {
                "version": tls.version(),
                "cipher": tls.cipher()[0],
                "peer_subject": ssl_subject_common_name(tls.getpeercert()),
                "received": tls.recv(1024),
            }
            tls.sendall(REPLY)
            return seen
    except ssl.SSLError as error:
        drain_until_closed(duplicate)
        return {"error": error}
    finally:
        duplicate.close()
        conn.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_ssl_server_requires_client_cert(pki, client_store, listener, version):
    context = ssl_server_context(pki, version)
    handshake_done = threading.Event()
    server = Background(lambda: ssl_serve_once(listener, context, handshake_done))

    view = connect_pynano(listener.getsockname()[1], client_store, handshake_done)
    seen = server.result()

    assert "error" not in seen
    assert seen["version"] == version.name
    assert seen["peer_subject"] == "pynano test client"
    assert seen["received"] == REQUEST
    assert view.handshake_status == OK
    assert view.version == version.minor
    assert OPENSSL_SUITE_NAMES.get(view.cipher_id) == seen["cipher"]
    assert view.peer_certificate == pki.server.cert_der()
    assert common_name(view.peer_certificate) == "localhost"
    assert view.recv_status == OK
    assert view.received == REPLY


@pytest.mark.parametrize("version, alert", [
    pytest.param(TLS12, nanossl.SSL_ALERT_HANDSHAKE_FAILURE, id="tls12"),
    pytest.param(TLS13, nanossl.SSL_ALERT_CERTIFICATE_REQUIRED, id="tls13"),
])
def test_ssl_server_rejects_missing_cert(pki, listener, version, alert):
    context = ssl_server_context(pki, version)
    handshake_done = threading.Event()
    server = Background(lambda: ssl_serve_once(listener, context, handshake_done))
    store = client_store_for(pki, with_certificate=False)
    try:
        view = connect_pynano(listener.getsockname()[1], store, handshake_done)
    finally:
        nanossl.CERT_STORE_releaseStore(store)
    seen = server.result()

    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(seen.get("error"))
    if version is TLS12:
        assert view.handshake_status == nanossl.ERR_SSL_FATAL_ALERT
    else:
        # The TLS 1.3 client handshake ends before the server checks the
        # certificate, so the alert fails the first SSL_recv.
        assert view.handshake_status == OK
        assert view.recv_status == nanossl.ERR_SSL_FATAL_ALERT
    assert view.peer_alert == alert


# ---- openssl s_client and s_server -------------------------------------


def run_s_client(pki: Pki, port: int, version: TlsVersion, with_certificate: bool) -> subprocess.CompletedProcess:
    """Run openssl s_client once: send REQUEST, print what the server sends."""
    command = [
        "openssl", "s_client",
        "-connect", f"127.0.0.1:{port}",
        "-servername", "localhost",
        version.openssl_flag,
        "-CAfile", pki.path("ca.pem"),
        "-verify_hostname", "localhost",
        "-verify_return_error",
        # Stay connected after stdin ends, until the server closes.
        "-ign_eof",
    ]
    if with_certificate:
        command += ["-cert", pki.path("client.pem"), "-key", pki.path("client.key")]
    # run() kills the process when the timeout expires.
    return subprocess.run(command, input=REQUEST, capture_output=True, timeout=OPENSSL_TIMEOUT)


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OpenSslServer:
    """An openssl s_server process for one connection, with its output."""

    def __init__(self, arguments: List[str]) -> None:
        self.port = 0
        self.process: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._output: List[str] = []
        self._reader: Optional[threading.Thread] = None
        for _attempt in range(OPENSSL_PORT_ATTEMPTS):
            if self._start(arguments):
                return
            self.stop()
        raise RuntimeError(f"openssl s_server did not start; output: {''.join(self._output)}")

    def _start(self, arguments: List[str]) -> bool:
        """Start s_server on a new port and return whether it accepts connections."""
        self.port = free_port()
        self._lines = queue.Queue()
        self._output = []
        command = ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-naccept", "1"] + arguments
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        while True:
            try:
                line = self._lines.get(timeout=OPENSSL_TIMEOUT)
            except queue.Empty:
                return False
            if line is None:
                return False          # exited before accepting, e.g. the port was taken
            if line.startswith("ACCEPT"):
                return True

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw_line in self.process.stdout:
            line = raw_line.decode(errors="replace")
            self._output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def send(self, data: bytes) -> None:
        """Write data to s_server's stdin, which it sends to the client."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def finish(self) -> str:
        """Wait for the process to exit and return everything it printed."""
        assert self.process is not None
        try:
            self.process.wait(timeout=OPENSSL_TIMEOUT)
        finally:
            self.stop()
        return "".join(self._output)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=OPENSSL_TIMEOUT)
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        if self._reader is not None:
            self._reader.join(OPENSSL_TIMEOUT)


@pytest.fixture
def openssl_server_factory() -> Iterator:
    """Return a function that starts s_server. Teardown kills every process it started."""
    started: List[OpenSslServer] = []

    def start(arguments: List[str]) -> OpenSslServer:
        server = OpenSslServer(arguments)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_s_client_mutual_auth(pki, server_store, listener, version):
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=True))

    result = run_s_client(pki, listener.getsockname()[1], version, with_certificate=True)
    view = server.result()
    output = result.stdout.decode(errors="replace")

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert view.handshake_status == OK
    suite_name = OPENSSL_SUITE_NAMES.get(view.cipher_id)
    assert f"New, {version.name}, Cipher is {suite_name}" in output
    assert "Verification: OK" in output
    assert "subject=CN = localhost" in output
    assert REPLY.decode() in output
    if version is TLS12:
        # TLS 1.3 prints its session block only after a NewSessionTicket.
        assert f"Protocol  : {version.name}" in output
    assert view.version == version.minor
    assert common_name(view.peer_certificate) == "pynano test client"
    assert view.received == REQUEST


@pytest.mark.parametrize("version", VERSIONS)
def test_s_client_without_certificate(pki, server_store, listener, version):
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=False))

    result = run_s_client(pki, listener.getsockname()[1], version, with_certificate=False)
    view = server.result()
    output = result.stdout.decode(errors="replace")

    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert f"New, {version.name}, Cipher is {OPENSSL_SUITE_NAMES.get(view.cipher_id)}" in output
    assert "Verification: OK" in output
    assert REPLY.decode() in output
    assert view.handshake_status == OK
    assert view.peer_certificate is None
    assert view.received == REQUEST


@pytest.mark.parametrize("version, alert_text", [
    pytest.param(TLS12, "alert handshake failure", id="tls12"),
    pytest.param(TLS13, "alert certificate required", id="tls13"),
])
def test_s_client_rejected_without_certificate(pki, server_store, listener, version, alert_text):
    server = Background(lambda: serve_once(listener, server_store, require_mutual_auth=True))

    result = run_s_client(pki, listener.getsockname()[1], version, with_certificate=False)
    view = server.result()

    assert result.returncode != 0
    assert alert_text in result.stderr.decode(errors="replace")
    assert REPLY.decode() not in result.stdout.decode(errors="replace")
    assert view.handshake_status == nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE


def s_server_arguments(pki: Pki, version: TlsVersion) -> List[str]:
    return [
        version.openssl_flag,
        "-cert", pki.path("server.pem"),
        "-key", pki.path("server.key"),
        "-CAfile", pki.path("ca.pem"),
        "-Verify", "1",               # require a client certificate
        "-verify_return_error",
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_s_server_mutual_auth(pki, client_store, openssl_server_factory, version):
    server = openssl_server_factory(s_server_arguments(pki, version))
    request_sent = threading.Event()
    client = Background(lambda: connect_pynano(server.port, client_store, send_reply=request_sent))

    assert request_sent.wait(SOCKET_TIMEOUT), "the pynano client did not complete its handshake"
    server.send(REPLY)
    view = client.result()
    output = server.finish()

    assert view.handshake_status == OK
    assert view.version == version.minor
    assert view.recv_status == OK
    assert view.received == REPLY
    assert common_name(view.peer_certificate) == "localhost"
    assert f"CIPHER is {OPENSSL_SUITE_NAMES.get(view.cipher_id)}" in output
    assert "subject=CN = pynano test client" in output
    assert REQUEST.decode() in output


@pytest.mark.parametrize("version, alert", [
    pytest.param(TLS12, nanossl.SSL_ALERT_HANDSHAKE_FAILURE, id="tls12"),
    pytest.param(TLS13, nanossl.SSL_ALERT_CERTIFICATE_REQUIRED, id="tls13"),
])
def test_s_server_rejects_missing_cert(pki, openssl_server_factory, version, alert):
    server = openssl_server_factory(s_server_arguments(pki, version))
    store = client_store_for(pki, with_certificate=False)
    try:
        view = connect_pynano(server.port, store)
    finally:
        nanossl.CERT_STORE_releaseStore(store)
    output = server.finish()

    assert "peer did not return a certificate" in output
    if version is TLS12:
        assert view.handshake_status == nanossl.ERR_SSL_FATAL_ALERT
    else:
        assert view.handshake_status == OK
        assert view.recv_status == nanossl.ERR_SSL_FATAL_ALERT
    assert view.peer_alert == alert
