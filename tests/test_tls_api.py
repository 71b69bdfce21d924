"""Tests for pynano.TLSContext and pynano.TLSSocket with pynano on both ends.

Every connection runs over 127.0.0.1 with socket timeouts; server ends run
in a Background thread that the test joins.
"""

from __future__ import annotations

import gc
import os
import pickle
import socket
import ssl
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pynano
from .conftest import Background, accept, connect
from pynano import nanossl
from pynano.certs import PemPair
from pynano.tls import decode_certificate

# Maximum time in seconds that a server end of a test waits for the client.
THREAD_WAIT = 20.0


def write_pair(directory: Path, name: str, pair: PemPair) -> Dict[str, str]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return {"cert": str(cert), "key": str(key)}


def client_context(pki: Any, with_cert: bool = False) -> pynano.TLSContext:
    context = pynano.TLSContext()
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    if with_cert:
        context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    return context


def server_context(pki: Any, verify_mode: ssl.VerifyMode = ssl.CERT_NONE) -> pynano.TLSContext:
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    context.load_verify_locations(cafile=pki.path("ca.pem"))
    context.verify_mode = verify_mode
    return context


def serve(listener: socket.socket, context: pynano.TLSContext,
          action: Callable[[pynano.TLSSocket], Any]) -> Background:
    """Accept one connection, wrap it with context, and return action's result."""

    def run() -> Any:
        with context.wrap_socket(accept(listener), server_side=True) as tls:
            return action(tls)

    return Background(run)


def serve_tolerant(listener: socket.socket, context: pynano.TLSContext) -> Background:
    """Accept one connection and return the exception its handshake raised, if any."""

    def run() -> Optional[BaseException]:
        connection = accept(listener)
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(10)
        except OSError as error:
            return error
        return None

    return Background(run)


def echo_once(tls: pynano.TLSSocket) -> bytes:
    data = tls.recv(1024)
    tls.sendall(data)
    return data


# ---- context settings ----------------------------------------------------------


def test_client_context_defaults() -> None:
    context = pynano.TLSContext()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3


def test_server_context_defaults() -> None:
    context = pynano.TLSContext(server_side=True)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_cert_none_with_check_hostname_rejected() -> None:
    context = pynano.TLSContext()
    with pytest.raises(ValueError, match="check_hostname"):
        context.verify_mode = pynano.CERT_NONE


def test_check_hostname_turns_on_verification() -> None:
    context = pynano.TLSContext(server_side=True)
    context.check_hostname = True
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("version", [ssl.TLSVersion.SSLv3, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
@pytest.mark.parametrize("setting", ["minimum_version", "maximum_version"])
def test_old_versions_rejected(setting: str, version: ssl.TLSVersion) -> None:
    with pytest.raises(ValueError, match=version.name):
        setattr(pynano.TLSContext(), setting, version)


def test_version_aliases_map_to_supported() -> None:
    context = pynano.TLSContext()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3


def test_inverted_version_range_rejected_at_wrap(pki: Any) -> None:
    context = client_context(pki)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.socket() as sock, pytest.raises(ValueError, match="above maximum_version"):
        context.wrap_socket(sock, server_hostname="localhost")


@pytest.mark.parametrize("spec, expected", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", [0xC02B]),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", [0xC02C]),
    ("0x1301:TLS_AES_256_GCM_SHA384", [0x1301, 0x1302]),
    ([0x1303, "ECDHE-ECDSA-CHACHA20-POLY1305"], [0x1303, 0xCCA9]),
])
def test_set_ciphers_accepts_names_and_ids(spec: Any, expected: List[int]) -> None:
    context = pynano.TLSContext()
    context.set_ciphers(spec)
    assert [entry["id"] for entry in context.get_ciphers()] == expected


def test_set_ciphers_names_unknown_suite() -> None:
    with pytest.raises(ValueError, match="RC4-MD5"):
        pynano.TLSContext().set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:RC4-MD5")


@pytest.mark.parametrize("protocols, error", [([""], ValueError), (["x" * 256], ValueError),
                                              ("h2", TypeError)])
def test_set_alpn_protocols_rejects_invalid(protocols: Any, error: type) -> None:
    with pytest.raises(error):
        pynano.TLSContext().set_alpn_protocols(protocols)


def test_wrap_rejects_mismatched_side(pki: Any) -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="server_side"):
        client_context(pki).wrap_socket(sock, server_side=True)


def test_wrap_rejects_non_session(pki: Any) -> None:
    with socket.socket() as sock, pytest.raises(TypeError, match="TLSSession"):
        client_context(pki).wrap_socket(sock, server_hostname="localhost", session=object())


def test_wrap_requires_server_hostname(pki: Any) -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="server_hostname"):
        client_context(pki).wrap_socket(sock)


def test_server_wrap_requires_certificate() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="load_cert_chain"):
        pynano.TLSContext(server_side=True).wrap_socket(sock)


def test_wrap_rejects_non_blocking_socket(pki: Any) -> None:
    with socket.socket() as sock:
        sock.setblocking(False)
        with pytest.raises(ValueError, match="non-blocking"):
            client_context(pki).wrap_socket(sock, server_hostname="localhost")


# ---- certificate loading --------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_key(tmp_path_factory: pytest.TempPathFactory, pki: Any) -> str:
    key = serialization.load_pem_private_key(pki.server.key_pem, password=None)
    path = tmp_path_factory.mktemp("encrypted") / "server-encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"s3cret")))
    return str(path)


@pytest.mark.parametrize("password", ["s3cret", b"s3cret", bytearray(b"s3cret"), lambda: "s3cret",
                                      lambda: b"s3cret"])
def test_load_cert_chain_with_password(pki: Any, encrypted_key: str, password: Any) -> None:
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), encrypted_key, password=password)


def test_load_cert_chain_wrong_password(pki: Any, encrypted_key: str) -> None:
    context = pynano.TLSContext(server_side=True)
    with pytest.raises(pynano.TLSError, match="password") as caught:
        context.load_cert_chain(pki.path("server.pem"), encrypted_key, password="wrong")
    assert caught.value.name == "ERR_BAD_KEY"


def test_password_callable_skipped_for_plain_key(pki: Any) -> None:
    calls: List[int] = []
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"),
                            password=lambda: calls.append(1) or "unused")
    assert calls == []


def test_load_cert_chain_key_mismatch(pki: Any) -> None:
    with pytest.raises(pynano.TLSError) as caught:
        pynano.TLSContext().load_cert_chain(pki.path("server.pem"), pki.path("client.key"))
    assert caught.value.status == nanossl.ERR_BAD_KEY


def test_load_cert_chain_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pynano.TLSContext().load_cert_chain(str(tmp_path / "absent.pem"))


def test_load_verify_locations_needs_an_argument() -> None:
    with pytest.raises(TypeError):
        pynano.TLSContext().load_verify_locations()


def test_cadata_pem_and_der(pki: Any, stranger: PemPair) -> None:
    context = pynano.TLSContext()
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
    context.load_verify_locations(cadata=pki.ca.cert_der() + stranger.cert_der())
    assert context.cert_store_stats()["x509_ca"] == 3
    assert len(context.get_ca_certs(binary_form=True)) == 3


def test_cadata_rejects_truncated_der(pki: Any) -> None:
    with pytest.raises(ValueError, match="truncated"):
        pynano.TLSContext().load_verify_locations(cadata=pki.ca.cert_der()[:-5])


def test_cafile_names_bad_certificate(tmp_path: Path, pki: Any) -> None:
    bad = pki.ca.cert_pem.replace(b"MII", b"XII", 1)
    path = tmp_path / "bundle.pem"
    path.write_bytes(pki.ca.cert_pem + bad)
    with pytest.raises(pynano.TLSError, match="certificate 2 of 2") as caught:
        pynano.TLSContext().load_verify_locations(cafile=str(path))
    assert caught.value.name == "ERR_CERT_INVALID_STRUCT"


def test_capath_loads_folder(tmp_path: Path, pki: Any, stranger: PemPair) -> None:
    (tmp_path / "a.pem").write_bytes(pki.ca.cert_pem)
    (tmp_path / "b.pem").write_bytes(stranger.cert_pem)
    (tmp_path / "notes.txt").write_text("not a certificate")
    context = pynano.TLSContext()
    context.load_verify_locations(capath=str(tmp_path))
    assert context.cert_store_stats()["x509_ca"] == 2


def test_load_default_certs_counts() -> None:
    if not Path(ssl.get_default_verify_paths().cafile or pynano.tls.SYSTEM_CA_BUNDLE).is_file():
        pytest.skip("no system CA bundle on this machine")
    context = pynano.TLSContext()
    loaded = context.load_default_certs()
    assert loaded > 10
    assert context.cert_store_stats()["x509_ca"] == loaded


def test_get_ca_certs_decodes(pki: Any) -> None:
    [entry] = client_context(pki).get_ca_certs()
    assert entry["subject"] == ((("commonName", "pynano test CA"),),)


# ---- connections ------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_roundtrip_reports_session(pki: Any, listener: socket.socket, version: ssl.TLSVersion) -> None:
    server = serve(listener, server_context(pki), echo_once)
    context = client_context(pki)
    context.minimum_version = context.maximum_version = version
    with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        tls.sendall(b"ping")
        assert tls.recv(10) == b"ping"
        expected = "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
        assert tls.version() == expected
        name, protocol, bits = tls.cipher()
        assert protocol == expected
        assert bits in (128, 256)
        assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        assert tls.shared_ciphers() is None
        assert tls.server_hostname == "localhost"
    assert server.result() == b"ping"


def test_connection_instance_mixes_with_nanossl(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), echo_once)
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        ci = tls.connection_instance
        assert nanossl.SSL_getSSLTLSVersion(ci) == (nanossl.OK, nanossl.TLS13_MINORVERSION)
        assert nanossl.SSL_send(ci, b"raw") == 3
        assert tls.recv(10) == b"raw"
    server.result()


def test_do_handshake_deferred(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), echo_once)
    tls = client_context(pki).wrap_socket(connect(listener), server_hostname="localhost",
                                          do_handshake_on_connect=False)
    with tls:
        assert tls.version() is None
        status = nanossl.SSL_ioctl(tls.connection_instance, nanossl.SSL_SET_VERSION,
                                   nanossl.TLS12_MINORVERSION)
        assert status == nanossl.OK
        tls.do_handshake()
        assert tls.version() == "TLSv1.2"
        tls.sendall(b"x")
        assert tls.recv(1) == b"x"
    server.result()


def test_connect_after_wrap(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), echo_once)
    sock = socket.socket()
    sock.settimeout(10)
    with client_context(pki).wrap_socket(sock, server_hostname="localhost") as tls:
        assert tls.connection_instance is None
        tls.connect(listener.getsockname())
        tls.sendall(b"late")
        assert tls.recv(10) == b"late"
    server.result()


def test_alpn_negotiated(pki: Any, listener: socket.socket) -> None:
    context = server_context(pki)
    context.set_alpn_protocols(["h2", "http/1.1"])
    server = serve(listener, context, lambda tls: tls.selected_alpn_protocol())
    client = client_context(pki)
    client.set_alpn_protocols(["http/1.1"])
    with client.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
    assert server.result() == "http/1.1"


def test_cipher_restriction_applies(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: tls.cipher())
    context = client_context(pki)
    context.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.cipher() == ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2", 256)
    assert server.result()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"


def test_no_shared_cipher_fails(pki: Any, listener: socket.socket) -> None:
    server_ctx = server_context(pki)
    server_ctx.set_ciphers("TLS_AES_128_GCM_SHA256")
    server = serve_tolerant(listener, server_ctx)
    context = client_context(pki)
    context.set_ciphers("TLS_AES_256_GCM_SHA384")
    with pytest.raises(pynano.TLSError) as caught:
        context.wrap_socket(connect(listener), server_hostname="localhost")
    assert "connection" in str(caught.value)
    assert isinstance(server.result(), pynano.TLSError)


def test_clean_close_reads_empty(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: tls.sendall(b"bye"))
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.recv(10) == b"bye"
        server.result()
        assert tls.recv(10) == b""
        assert tls.recv(10) == b""
        with pytest.raises(pynano.TLSZeroReturnError):
            tls.sendall(b"too late")


def _serve_ragged(listener: socket.socket, pki: Any) -> Background:
    """Serve one connection that sends b'bye' and closes TCP without close_notify."""
    context = server_context(pki)

    def run_ragged() -> None:
        connection = accept(listener)
        tls = context.wrap_socket(connection, server_side=True)
        tls.sendall(b"bye")
        connection.shutdown(socket.SHUT_RDWR)
        tls.close()

    return Background(run_ragged)


def test_ragged_eof_suppressed_by_default(pki: Any, listener: socket.socket) -> None:
    server = _serve_ragged(listener, pki)
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.recv(10) == b"bye"
        server.result()
        assert tls.recv(10) == b""


def test_ragged_eof_raises_when_not_suppressed(pki: Any, listener: socket.socket) -> None:
    server = _serve_ragged(listener, pki)
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost",
                                         suppress_ragged_eofs=False) as tls:
        assert tls.recv(10) == b"bye"
        server.result()
        with pytest.raises(pynano.TLSEOFError) as caught:
            tls.recv(10)
        assert isinstance(caught.value, ssl.SSLEOFError)


def test_read_timeout_then_data(pki: Any, listener: socket.socket) -> None:
    go = threading.Event()

    def late_send(tls: pynano.TLSSocket) -> None:
        go.wait(10)
        tls.sendall(b"late")

    server = serve(listener, server_context(pki), late_send)
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        tls.settimeout(0.3)
        started = time.monotonic()
        with pytest.raises(pynano.TLSTimeoutError) as caught:
            tls.recv(10)
        assert 0.25 < time.monotonic() - started < 3
        assert isinstance(caught.value, socket.timeout)
        assert isinstance(caught.value, ssl.SSLError)
        go.set()
        tls.settimeout(5)
        assert tls.recv(10) == b"late"
    server.result()


def test_handshake_timeout(pki: Any, listener: socket.socket) -> None:
    sock = connect(listener)
    silent = accept(listener)
    sock.settimeout(0.4)
    started = time.monotonic()
    with silent, pytest.raises(pynano.TLSTimeoutError, match="timed out"):
        client_context(pki).wrap_socket(sock, server_hostname="localhost")
    assert time.monotonic() - started < 3
    assert sock.fileno() == -1


def test_settimeout_zero_rejected(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), echo_once)
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        with pytest.raises(ValueError, match="non-blocking"):
            tls.settimeout(0.0)
        with pytest.raises(ValueError, match="non-blocking"):
            tls.setblocking(False)
        tls.sendall(b"1")
        tls.recv(1)
    server.result()


def test_pending_counts_buffered_bytes(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: tls.sendall(b"x" * 3000))
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.pending() == 0
        assert tls.recv(100) == b"x" * 100
        assert tls.pending() == 2900
        assert tls.recv(5000) == b"x" * 2900
        assert tls.pending() == 0
    server.result()
    assert tls.pending() == 0


def test_send_timeout_raises(pki: Any, listener: socket.socket) -> None:
    release = threading.Event()
    server = serve(listener, server_context(pki), lambda tls: release.wait(THREAD_WAIT))
    sock = connect(listener)
    sock.settimeout(0.5)
    tls = client_context(pki).wrap_socket(sock, server_hostname="localhost")
    try:
        started = time.monotonic()
        with pytest.raises(pynano.TLSTimeoutError, match="write operation timed out") as caught:
            tls.sendall(bytes(64 * 1024 * 1024))
        elapsed = time.monotonic() - started
        with pytest.raises(pynano.TLSError, match="earlier failure"):
            tls.sendall(b"more")
    finally:
        release.set()
        tls.close()
    server.result()
    assert 0.5 <= elapsed < 10
    assert isinstance(caught.value, socket.timeout)
    assert caught.value.status == nanossl.ERR_TCP_WRITE_ERROR


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_garbage_collected_socket_sends_nothing(pki: Any, listener: socket.socket) -> None:
    context = server_context(pki)

    def read_after_ready() -> Any:
        with context.wrap_socket(accept(listener), server_side=True, suppress_ragged_eofs=False) as tls:
            tls.sendall(b"ready")
            try:
                return tls.recv(10)
            except pynano.TLSEOFError as error:
                return error

    server = Background(read_after_ready)
    tls = client_context(pki).wrap_socket(connect(listener), server_hostname="localhost")
    assert tls.recv(10) == b"ready"
    ci = tls.connection_instance
    del tls
    gc.collect()

    assert nanossl.SSL_getConnectionState(ci)[0] == nanossl.ERR_SSL_BAD_ID
    assert isinstance(server.result(), pynano.TLSEOFError)


def test_close_after_socket_closed_elsewhere(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: tls.sendall(b"ready"))
    raw = connect(listener)
    tls = client_context(pki).wrap_socket(raw, server_hostname="localhost")
    assert tls.recv(10) == b"ready"
    ci = tls.connection_instance
    number = raw.fileno()
    other, watcher = socket.socketpair()
    raw.close()
    # Give the old descriptor number to another socket, as a busy process would.
    os.dup2(other.fileno(), number)
    try:
        tls.close()
        watcher.setblocking(False)
        with pytest.raises(BlockingIOError):
            watcher.recv(100)
    finally:
        os.close(number)
        other.close()
        watcher.close()
    server.result()
    assert nanossl.SSL_getConnectionState(ci)[0] == nanossl.ERR_SSL_BAD_ID


def test_makefile_outlives_close(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: tls.sendall(b"line one\nline two\n"))
    tls = client_context(pki).wrap_socket(connect(listener), server_hostname="localhost")
    reader = tls.makefile("rb")
    tls.close()
    assert reader.readline() == b"line one\n"
    assert reader.readline() == b"line two\n"
    reader.close()
    assert tls.fileno() == -1
    server.result()


def test_unwrap_returns_socket(pki: Any, listener: socket.socket) -> None:
    def unwrap_and_echo(tls: pynano.TLSSocket) -> bytes:
        tls.recv(10)
        with tls.unwrap() as raw:
            data = raw.recv(100)
            raw.sendall(b"plain reply")
        return data

    server = serve(listener, server_context(pki), unwrap_and_echo)
    tls = client_context(pki).wrap_socket(connect(listener), server_hostname="localhost")
    tls.sendall(b"switch")
    raw = tls.unwrap()
    assert isinstance(raw, socket.socket)
    raw.sendall(b"plain request")
    received = b""
    while b"plain reply" not in received:
        chunk = raw.recv(100)
        assert chunk, "connection closed before the plain reply"
        received += chunk
    raw.close()
    assert server.result().endswith(b"plain request")


def test_io_after_close_raises(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: None)
    tls = client_context(pki).wrap_socket(connect(listener), server_hostname="localhost")
    tls.close()
    with pytest.raises(OSError):
        tls.recv(1)
    server.result()


def test_context_rebuilds_store_after_use(pki: Any, listener: socket.socket) -> None:
    context = pynano.TLSContext()
    context.check_hostname = False
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
    first = serve(listener, server_context(pki), lambda tls: None)
    context.wrap_socket(connect(listener)).close()
    first.result()

    context.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
    second = serve(listener, server_context(pki, ssl.CERT_REQUIRED), echo_once)
    with context.wrap_socket(connect(listener)) as tls:
        tls.sendall(b"mtls")
        assert tls.recv(10) == b"mtls"
    second.result()


def test_server_sees_client_certificate(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki, ssl.CERT_REQUIRED), lambda tls: tls.getpeercert())
    with client_context(pki, with_cert=True).wrap_socket(connect(listener),
                                                          server_hostname="localhost"):
        pass
    assert server.result()["subject"] == ((("commonName", "pynano test client"),),)


def test_server_optional_without_client_certificate(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki, ssl.CERT_OPTIONAL), lambda tls: tls.getpeercert())
    with client_context(pki).wrap_socket(connect(listener), server_hostname="localhost"):
        pass
    assert server.result() is None


def test_server_requires_client_certificate(pki: Any, listener: socket.socket) -> None:
    server = serve_tolerant(listener, server_context(pki, ssl.CERT_REQUIRED))
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(pynano.TLSError) as client_error:
        context.wrap_socket(connect(listener), server_hostname="localhost")
    error = server.result()
    assert isinstance(error, pynano.CertificateVerifyError)
    assert error.name == "ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE"
    assert error.verify_message == "peer did not return a certificate"
    assert error.verify_info.depth == -1
    assert client_error.value.alert == nanossl.SSL_ALERT_HANDSHAKE_FAILURE


def test_server_rejects_untrusted_client(pki: Any, listener: socket.socket, stranger: PemPair,
                                         tmp_path: Path) -> None:
    files = write_pair(tmp_path, "stranger", stranger)
    server = serve_tolerant(listener, server_context(pki, ssl.CERT_REQUIRED))
    context = client_context(pki)
    context.load_cert_chain(files["cert"], files["key"])
    # TLS 1.3 clients finish the handshake first and see the alert on read.
    with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        with pytest.raises(pynano.TLSError) as client_error:
            tls.recv(10)
    assert client_error.value.alert == nanossl.SSL_ALERT_UNKNOWN_CA
    assert "load that CA" in str(client_error.value)
    error = server.result()
    assert isinstance(error, pynano.CertificateVerifyError)
    assert error.verify_info.subject == "CN=untrusted test client"


# ---- verification errors and the verify callback ------------------------------


# Status, Mbed TLS flag name, OpenSSL verify code and subject per certificate.
BAD_CERT_CASES = {
    "expired": ("ERR_CERT_EXPIRED", "EXPIRED", 10, "CN=localhost"),
    "untrusted": ("ERR_CERT_CHAIN_NO_TRUST_ANCHOR", "NOT_TRUSTED", 20, "CN=localhost"),
    "wrong_host": ("ERR_CERT_BAD_COMMON_NAME", "CN_MISMATCH", 62, "CN=elsewhere.example"),
}
# MBEDTLS_X509_BADCERT_* values from mbedtls/x509.h of Mbed TLS 3.6.
BADCERT_BITS = {"EXPIRED": 0x01, "CN_MISMATCH": 0x04, "NOT_TRUSTED": 0x08}


def bad_server(listener: socket.socket, pair: PemPair, tmp_path: Path) -> Background:
    files = write_pair(tmp_path, "bad", pair)
    context = pynano.TLSContext(server_side=True)
    context.load_cert_chain(files["cert"], files["key"])
    return serve_tolerant(listener, context)


@pytest.mark.parametrize("case", sorted(BAD_CERT_CASES))
def test_bad_certificate_raises_verify_error(case: str, pki: Any, listener: socket.socket,
                                             bad_server_certs: Dict[str, PemPair],
                                             tmp_path: Path) -> None:
    status_name, flag, code, subject = BAD_CERT_CASES[case]
    server = bad_server(listener, bad_server_certs[case], tmp_path)
    with pytest.raises(pynano.CertificateVerifyError) as caught:
        client_context(pki).wrap_socket(connect(listener), server_hostname="localhost")
    error = caught.value
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.name == status_name
    assert error.status == getattr(nanossl, status_name)
    assert error.verify_code == code
    assert flag in error.verify_info.flag_names
    assert subject in str(error)
    assert f"connection {error.connection_instance}" in str(error)
    server.result()


@pytest.mark.parametrize("case", sorted(BAD_CERT_CASES))
def test_verify_callback_sees_fields(case: str, pki: Any, listener: socket.socket,
                                     bad_server_certs: Dict[str, PemPair], tmp_path: Path) -> None:
    status_name, flag, code, subject = BAD_CERT_CASES[case]
    seen: List[pynano.VerifyInfo] = []
    server = bad_server(listener, bad_server_certs[case], tmp_path)
    context = client_context(pki)
    context.set_verify_callback(lambda info: seen.append(info) or False)
    with pytest.raises(pynano.CertificateVerifyError, match="by the verify callback"):
        context.wrap_socket(connect(listener), server_hostname="localhost")
    server.result()

    [info] = seen
    expected_issuer = "CN=untrusted server CA" if case == "untrusted" else "CN=pynano test CA"
    assert info.status_name == status_name
    assert info.status == getattr(nanossl, status_name)
    assert flag in info.flag_names
    assert info.mbedtls_flags & BADCERT_BITS[flag]
    assert info.depth == 0
    assert info.subject == subject
    assert info.issuer == expected_issuer
    assert info.verify_code == code
    assert info.server_hostname == "localhost"
    assert info.not_before < info.not_after
    now = datetime.now(timezone.utc)
    assert (info.not_after < now) == (case == "expired")


@pytest.mark.parametrize("case", sorted(BAD_CERT_CASES))
def test_verify_callback_accepts(case: str, pki: Any, listener: socket.socket,
                                 bad_server_certs: Dict[str, PemPair], tmp_path: Path) -> None:
    files = write_pair(tmp_path, "bad", bad_server_certs[case])
    server_ctx = pynano.TLSContext(server_side=True)
    server_ctx.load_cert_chain(files["cert"], files["key"])
    server = serve(listener, server_ctx, echo_once)
    context = client_context(pki)
    context.set_verify_callback(lambda info: True)
    with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        tls.sendall(b"ok")
        assert tls.recv(10) == b"ok"
        assert tls.verify_info.status_name == BAD_CERT_CASES[case][0]
        assert tls.getpeercert()["subject"]
    server.result()


def test_verify_callback_not_called_for_good_certificate(pki: Any, listener: socket.socket) -> None:
    calls: List[pynano.VerifyInfo] = []
    server = serve(listener, server_context(pki), lambda tls: None)
    context = client_context(pki)
    context.set_verify_callback(lambda info: calls.append(info) or False)
    with context.wrap_socket(connect(listener), server_hostname="localhost") as tls:
        assert tls.verify_info is None
    server.result()
    assert calls == []


def test_verify_callback_exception_is_cause(pki: Any, listener: socket.socket,
                                            bad_server_certs: Dict[str, PemPair],
                                            tmp_path: Path) -> None:
    server = bad_server(listener, bad_server_certs["expired"], tmp_path)
    context = client_context(pki)

    def broken(info: pynano.VerifyInfo) -> bool:
        raise RuntimeError("callback bug")

    context.set_verify_callback(broken)
    with pytest.raises(pynano.CertificateVerifyError) as caught:
        context.wrap_socket(connect(listener), server_hostname="localhost")
    assert isinstance(caught.value.__cause__, RuntimeError)
    server.result()


def test_verify_callback_non_bool_rejects(pki: Any, listener: socket.socket,
                                          bad_server_certs: Dict[str, PemPair],
                                          tmp_path: Path) -> None:
    server = bad_server(listener, bad_server_certs["expired"], tmp_path)
    context = client_context(pki)
    context.set_verify_callback(lambda info: "yes")
    with pytest.raises(pynano.CertificateVerifyError) as caught:
        context.wrap_socket(connect(listener), server_hostname="localhost")
    assert isinstance(caught.value.__cause__, TypeError)
    server.result()


def test_check_hostname_off_accepts_other_name(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: None)
    context = client_context(pki)
    context.check_hostname = False
    with context.wrap_socket(connect(listener), server_hostname="other.example") as tls:
        assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
    server.result()


def test_cert_none_returns_empty_dict(pki: Any, listener: socket.socket) -> None:
    server = serve(listener, server_context(pki), lambda tls: None)
    context = pynano.TLSContext()
    context.check_hostname = False
    context.verify_mode = pynano.CERT_NONE
    with context.wrap_socket(connect(listener)) as tls:
        assert tls.getpeercert() == {}
        der = tls.getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(der).subject.rfc4514_string() == "CN=localhost"
    server.result()


# ---- exceptions ----------------------------------------------------------------


def test_exception_hierarchy() -> None:
    assert issubclass(pynano.TLSError, ssl.SSLError)
    assert issubclass(pynano.CertificateVerifyError, ssl.SSLCertVerificationError)
    assert issubclass(pynano.TLSZeroReturnError, ssl.SSLZeroReturnError)
    assert issubclass(pynano.TLSEOFError, ssl.SSLEOFError)
    assert issubclass(pynano.TLSTimeoutError, socket.timeout)


def test_exception_pickles() -> None:
    error = pynano.CertificateVerifyError("verify failed", status=nanossl.ERR_CERT_EXPIRED,
                                          name="ERR_CERT_EXPIRED", mbedtls_code=-0x2700,
                                          connection_instance=7, verify_code=10,
                                          verify_message="certificate has expired")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "verify failed"
    assert (copy.status, copy.name, copy.mbedtls_code) == (error.status, error.name, error.mbedtls_code)
    assert copy.verify_code == 10


def test_decode_certificate_serial_and_dates(pki: Any) -> None:
    cert = x509.load_pem_x509_certificate(pki.server.cert_pem)
    decoded = decode_certificate(pki.server.cert_der())
    assert int(decoded["serialNumber"], 16) == cert.serial_number
    assert len(decoded["serialNumber"]) % 2 == 0
    assert decoded["notAfter"].endswith(" GMT")
    assert ("IP Address", "0:0:0:0:0:0:0:1") in decoded["subjectAltName"]
