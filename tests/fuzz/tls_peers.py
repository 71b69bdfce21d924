"""Loopback TLS peers shared by the robustness tests and the fuzz harnesses.

The tests put this folder on sys.path and import it as ``tls_peers``, as
the harnesses in this folder do; conftest takes ``Background`` from here. Everything here talks over socketpairs or 127.0.0.1 only,
and every socket operation has a timeout.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from pynano import certs, nanossl

SOCKET_TIMEOUT = 10.0
JOIN_TIMEOUT = 30.0
RECV_TIMEOUT_MS = 5000

Setup = Callable[[int], None]


def new_store(identity: Optional[certs.PemPair] = None,
              trust: Sequence[bytes] = ()) -> nanossl.CertStore:
    """Create a certificate store with an optional identity and trust points."""
    status, store = nanossl.CERT_STORE_createStore()
    assert status == nanossl.OK
    assert store is not None
    if identity is not None:
        status = nanossl.CERT_STORE_addIdentity(store, identity.cert_pem, identity.key_pem)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
    for cert in trust:
        status = nanossl.CERT_STORE_addTrustPoint(store, cert)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
    return store


def table_in_use() -> int:
    """Return the number of connection table slots in use."""
    status, in_use, _capacity = nanossl.PYNANO_getTableUsage()
    assert status == nanossl.OK
    return in_use


def require_mutual_auth(ci: int) -> None:
    """Set SSL_FLAG_REQUIRE_MUTUAL_AUTH on a server connection."""
    status, flags = nanossl.SSL_getSessionFlags(ci)
    assert status == nanossl.OK
    assert nanossl.SSL_setSessionFlags(ci, flags | nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH) == nanossl.OK


def set_timeouts(ci: int, recv_ms: int = RECV_TIMEOUT_MS, handshake_ms: int = 0) -> None:
    """Bound the handshake reads (and the whole handshake when handshake_ms > 0)."""
    assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_RECV_TIMEOUT, recv_ms) == nanossl.OK
    if handshake_ms:
        status = nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_HANDSHAKE_TIMEOUT, handshake_ms)
        assert status == nanossl.OK


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    """Return a connected (server side, client side) TCP pair on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)
        server, _ = listener.accept()
    server.settimeout(SOCKET_TIMEOUT)
    return server, client


def reset_close(sock: socket.socket) -> None:
    """Close a TCP socket with an RST instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Background:
    """Run a callable in a daemon thread and hand back its result or exception."""

    def __init__(self, target: Callable[[], object]) -> None:
        self._target = target
        self._result: object = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._target()
        except BaseException as error:  # noqa: BLE001  (re-raised in result())
            self._error = error

    def result(self, timeout: float = JOIN_TIMEOUT) -> object:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"background call did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class Pair:
    """A negotiated pynano-to-pynano connection and its sockets."""

    server_ci: int
    client_ci: int
    server_status: int
    client_status: int
    sockets: List[socket.socket] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.server_status == nanossl.OK and self.client_status == nanossl.OK

    def close(self) -> None:
        """Close both connection instances, then both sockets."""
        for ci in (self.client_ci, self.server_ci):
            if ci > 0:
                nanossl.SSL_closeConnection(ci)
        for sock in self.sockets:
            sock.close()


def negotiate_pair(server_store: nanossl.CertStore, client_store: Optional[nanossl.CertStore],
                   server_setup: Optional[Setup] = None, client_setup: Optional[Setup] = None,
                   server_name: str = "localhost") -> Pair:
    """Run a pynano server (in a thread) against a pynano client over TCP."""
    server_sock, client_sock = tcp_pair()

    def serve() -> Tuple[int, int]:
        ci = nanossl.SSL_acceptConnection(server_sock, server_store)
        if ci < 0:
            return ci, ci
        set_timeouts(ci)
        if server_setup is not None:
            server_setup(ci)
        return ci, nanossl.SSL_negotiateConnection(ci)

    server = Background(serve)
    client_ci = nanossl.SSL_connect(client_sock, 0, None, None, server_name, client_store)
    client_status = client_ci
    if client_ci > 0:
        set_timeouts(client_ci)
        if client_setup is not None:
            client_setup(client_ci)
        client_status = nanossl.SSL_negotiateConnection(client_ci)
        if client_status < 0:
            # A failed client may leave the server waiting for a flight
            # that never comes; the shutdown ends that wait at once.
            client_sock.shutdown(socket.SHUT_RDWR)
    server_ci, server_status = server.result()  # type: ignore[misc]
    return Pair(server_ci, client_ci, server_status, client_status, [server_sock, client_sock])


# ---- flights captured from CPython's ssl module ------------------------


class PemFiles:
    """A PEM certificate and key written to a private temporary directory."""

    def __init__(self, pair: certs.PemPair) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="pynano-robustness-")
        self.cert = os.path.join(self._directory.name, "cert.pem")
        self.key = os.path.join(self._directory.name, "key.pem")
        with open(self.cert, "wb") as handle:
            handle.write(pair.cert_pem)
        with open(self.key, "wb") as handle:
            handle.write(pair.key_pem)

    def cleanup(self) -> None:
        self._directory.cleanup()


def ssl_client_context(ca_pem: bytes, identity: Optional[certs.PemPair] = None,
                       maximum_version: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """Return a CPython ssl client context trusting ca_pem."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode())
    if identity is not None:
        files = PemFiles(identity)
        try:
            context.load_cert_chain(files.cert, files.key)
        finally:
            files.cleanup()
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


def ssl_server_context(identity: certs.PemPair,
                       maximum_version: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """Return a CPython ssl server context presenting identity."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    files = PemFiles(identity)
    try:
        context.load_cert_chain(files.cert, files.key)
    finally:
        files.cleanup()
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


def capture_client_hello(ca_pem: bytes, maximum_version: Optional[ssl.TLSVersion] = None,
                         server_name: str = "localhost") -> bytes:
    """Return the first flight (the ClientHello record) of a CPython ssl client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl_client_context(ca_pem, maximum_version=maximum_version).wrap_bio(
        incoming, outgoing, server_hostname=server_name)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def capture_server_flight(client_hello: bytes, identity: certs.PemPair,
                          maximum_version: Optional[ssl.TLSVersion] = None) -> bytes:
    """Return the flight a CPython ssl server sends in response to client_hello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = ssl_server_context(identity, maximum_version).wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(client_hello)
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def pynano_client_hello(ca_pem: bytes, server_name: str = "localhost") -> bytes:
    """Return the first flight of a pynano client, read off a socketpair."""
    ours, theirs = socket.socketpair()
    store = new_store(trust=[ca_pem])
    try:
        ci = nanossl.SSL_connect(ours, 0, None, None, server_name, store)
        assert ci > 0, nanossl.DISPLAY_ERROR(ci)
        set_timeouts(ci, recv_ms=100)
        # The client sends its hello, then times out waiting for a response.
        nanossl.SSL_negotiateConnection(ci)
        nanossl.SSL_closeConnection(ci)
        theirs.settimeout(1.0)
        return theirs.recv(65536)
    finally:
        nanossl.CERT_STORE_releaseStore(store)
        ours.close()
        theirs.close()


# ---- hand-made records --------------------------------------------------

CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
MAX_FRAGMENT = 16384


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    """Return one TLS record; the length field is len(payload), unchecked."""
    return bytes([content_type]) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


def records(content_type: int, payload: bytes, fragment: int = MAX_FRAGMENT) -> bytes:
    """Split payload into records of at most fragment bytes each."""
    return b"".join(record(content_type, payload[i:i + fragment])
                    for i in range(0, len(payload), fragment))


def alert(description: int, level: int = 2) -> bytes:
    """Return a plaintext alert record."""
    return record(CONTENT_ALERT, bytes([level, description]))


def _extension(kind: int, body: bytes) -> bytes:
    return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def client_hello_message(padding: int = 0, server_name: str = "localhost") -> bytes:
    """Return a TLS 1.2 ClientHello handshake message for ECDHE-ECDSA-AES-GCM.

    padding adds a padding extension (RFC 7685) of that many zero bytes, so
    the message can be made larger than one record or than Mbed TLS's input
    buffer. With padding above 65,535 bytes the extensions block still
    declares its true length, which then overflows its 2-byte field, as a
    hostile peer's would.
    """
    suites = [0xC02B, 0xC02C, 0xCCA9]
    name = server_name.encode()
    name_list = b"\x00" + len(name).to_bytes(2, "big") + name
    extensions = b"".join([
        _extension(0, len(name_list).to_bytes(2, "big") + name_list),
        _extension(10, b"\x00\x02\x00\x17"),                 # supported_groups: secp256r1
        _extension(11, b"\x01\x00"),                         # ec_point_formats: uncompressed
        _extension(13, b"\x00\x04\x04\x03\x08\x04"),         # signature_algorithms
        _extension(23, b""),                                 # extended_master_secret
        _extension(0xFF01, b"\x00"),                         # renegotiation_info
    ])
    if padding:
        extensions += (21).to_bytes(2, "big") + (padding & 0xFFFF).to_bytes(2, "big") + bytes(padding)
    body = (b"\x03\x03" + os.urandom(32) + b"\x00"
            + (2 * len(suites)).to_bytes(2, "big") + b"".join(s.to_bytes(2, "big") for s in suites)
            + b"\x01\x00"
            + (len(extensions) & 0xFFFF).to_bytes(2, "big") + extensions)
    return b"\x01" + len(body).to_bytes(3, "big") + body


# ---- a CPython ssl client whose every byte the test controls -------------


class MemoryBioClient:
    """A CPython ssl client over a MemoryBIO, pumped over a plain socket.

    The test gets every record before it is sent, so it can cut one in half
    or reset the connection in the middle of one.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_name: str = "localhost"):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)

    def handshake(self) -> None:
        """Run the handshake to completion over the socket."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection during the handshake")
                self.incoming.write(data)
        self.flush()

    def flush(self) -> None:
        """Send whatever the ssl object has written."""
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def encrypt(self, data: bytes) -> bytes:
        """Return the records for data without sending them."""
        self.tls.write(data)
        return self.outgoing.read()

    def read(self, size: int = 65536) -> bytes:
        """Return decrypted bytes, reading the socket as needed."""
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.incoming.write(data)


# ---- a threaded pynano echo server ----------------------------------------

STRESS_MESSAGE = b"ping from a stress client"


@dataclass
class ServerTally:
    """Statuses of the connections a ThreadedServer handled."""

    statuses: List[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.statuses.append(status)


class ThreadedServer:
    """A pynano echo server: worker threads accepting on one 127.0.0.1 listener.

    Every connection requires a client certificate, echoes one message and
    is closed. All workers share one certificate store.
    """

    def __init__(self, store: nanossl.CertStore, workers: int) -> None:
        self.store = store
        self.tally = ServerTally()
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.address = self.listener.getsockname()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with sock:
                sock.settimeout(10.0)
                self.tally.add(self._serve(sock))

    def _serve(self, sock: socket.socket) -> int:
        ci = nanossl.SSL_acceptConnection(sock, self.store)
        if ci < 0:
            return ci
        try:
            set_timeouts(ci, recv_ms=10_000, handshake_ms=30_000)
            require_mutual_auth(ci)
            status = nanossl.SSL_negotiateConnection(ci)
            if status != nanossl.OK:
                return status
            buffer = bytearray(256)
            status, count = nanossl.SSL_recv(ci, buffer, 10_000)
            if status != nanossl.OK:
                return status
            sent = nanossl.SSL_send(ci, bytes(buffer[:count]))
            return min(sent, nanossl.OK)
        finally:
            nanossl.SSL_closeConnection(ci)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
        self.listener.close()


def client_exchange(address, store: nanossl.CertStore) -> int:
    """Connect, negotiate, send STRESS_MESSAGE and check the echo; return the status."""
    with socket.create_connection(address, timeout=10.0) as sock:
        ci = nanossl.SSL_connect(sock, 0, None, None, "localhost", store)
        if ci < 0:
            return ci
        try:
            set_timeouts(ci, recv_ms=10_000, handshake_ms=30_000)
            status = nanossl.SSL_negotiateConnection(ci)
            if status != nanossl.OK:
                return status
            if nanossl.SSL_send(ci, STRESS_MESSAGE) != len(STRESS_MESSAGE):
                return nanossl.ERR_TCP_WRITE_ERROR
            buffer = bytearray(256)
            status, count = nanossl.SSL_recv(ci, buffer, 10_000)
            if status != nanossl.OK:
                return status
            return nanossl.OK if bytes(buffer[:count]) == STRESS_MESSAGE else nanossl.ERR_TCP_READ_ERROR
        finally:
            nanossl.SSL_closeConnection(ci)
