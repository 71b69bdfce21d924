"""The Python stacks under test, behind one small connection interface.

Each stack makes server and client connections on connected TCP sockets,
with mutual authentication over the ECDSA P-256 PKI in a folder written by
``pynano.certs.write_pki``, and with the TLS version and cipher suite of
the workload forced on both sides. The worker drives every stack through
the same loops, so the loops cost the same on each.

In the resume workloads a server runs with ``resume=True``: session
tickets on, one per handshake, and a TLS 1.2 session cache. The client
passes the session of its previous connection back to ``client_handshake``.
That session is an object of the client's own stack.
"""

from __future__ import annotations

import importlib
import os
import socket
import ssl
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .workloads import (
    SUITE_NAMES,
    TLS12,
    TLS13,
    TLS_AES_128_GCM_SHA256,
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
)

SERVER_NAME = "localhost"
# Upper bound on one handshake or one read; a stuck peer fails the cell.
IO_TIMEOUT_MS = 30_000
VERSION_NAMES = {TLS12: "TLSv1.2", TLS13: "TLSv1.3"}


class StackError(RuntimeError):
    """A handshake, read or write failed on the stack under test."""


class Connection:
    """An established TLS connection of one stack."""

    def send(self, data: bytes) -> None:
        """Send all of data as application data."""
        raise NotImplementedError

    def recv_into(self, buffer: bytearray) -> int:
        """Read application data into buffer; return the count, 0 at close."""
        raise NotImplementedError

    def describe(self) -> Dict[str, str]:
        """Return the negotiated version and cipher suite, and stack facts."""
        raise NotImplementedError

    def close(self) -> None:
        """Send close_notify where the stack does, free it, close the socket."""
        raise NotImplementedError

    def session(self) -> Any:
        """Return the newest resumable session of a client connection, or None.

        A TLS 1.3 server sends its tickets after the handshake, so call this
        after the first read.
        """
        raise NotImplementedError

    def session_reused(self) -> bool:
        """Return whether the handshake resumed a session."""
        raise NotImplementedError


class StackAdapter:
    """Makes connections of one stack for a given TLS version and suite."""

    def details(self) -> Dict[str, str]:
        """Return facts about the implementation for the report."""
        return {}

    def server_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False) -> Connection:
        """Run a server handshake on an accepted socket, with session tickets when resume is set."""
        raise NotImplementedError

    def client_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False, session: Any = None) -> Connection:
        """Run a client handshake on a connected socket.

        With resume, the connection keeps the sessions the server sends, and
        offers session, taken from an earlier connection, when it is not None.
        """
        raise NotImplementedError


def _pki_file(pki: Path, name: str) -> Path:
    path = pki / name
    if not path.is_file():
        raise FileNotFoundError(f"PKI file {path} not found; write one with `pynano certs DIR`")
    return path


# ---- pynano through pynano.nanossl -----------------------------------------


class NanoSSLConnection(Connection):
    """A connection instance of pynano.nanossl and its socket."""

    def __init__(self, nanossl: Any, instance: int, sock: socket.socket,
                 saved: Optional[List[bytes]] = None) -> None:
        self._nanossl = nanossl
        self._instance = instance
        self._sock = sock
        # Sessions from the save-ticket callback of a resume client, the newest last.
        self._saved = saved

    def send(self, data: bytes) -> None:
        status = self._nanossl.SSL_send(self._instance, data)
        if status < 0:
            raise StackError(f"SSL_send failed with {self._nanossl.DISPLAY_ERROR(status)}")

    def recv_into(self, buffer: bytearray) -> int:
        nanossl = self._nanossl
        status, received = nanossl.SSL_recv(self._instance, buffer, IO_TIMEOUT_MS)
        if status == nanossl.ERR_TCP_SOCKET_CLOSED:
            return 0
        if status < nanossl.OK:
            raise StackError(f"SSL_recv failed with {nanossl.DISPLAY_ERROR(status)}")
        return received

    def describe(self) -> Dict[str, str]:
        nanossl = self._nanossl
        _status, minor = nanossl.SSL_getSSLTLSVersion(self._instance)
        _status, cipher_id, _curves = nanossl.SSL_getCipherInfo(self._instance)
        return {"version": VERSION_NAMES.get(minor, str(minor)),
                "cipher": SUITE_NAMES.get(cipher_id, f"0x{cipher_id:04X}")}

    def close(self) -> None:
        self._nanossl.SSL_closeConnection(self._instance)
        self._sock.close()

    def session(self) -> Any:
        return self._saved[-1] if self._saved else None

    def session_reused(self) -> bool:
        _status, reused = self._nanossl.PYNANO_getSessionReused(self._instance)
        return reused


class NanoSSLStack(StackAdapter):
    """pynano through the NanoSSL mirror, as ported NanoSSL code calls it."""

    def __init__(self, pki: Path) -> None:
        from pynano import nanossl

        self._nanossl = nanossl
        status = nanossl.SSL_init(4096, 4096)
        if status < nanossl.OK:
            raise StackError(f"SSL_init failed with {nanossl.DISPLAY_ERROR(status)}")
        ca = _pki_file(pki, "ca.pem").read_bytes()
        self._server_store = self._make_store(pki, "server", ca)
        self._client_store = self._make_store(pki, "client", ca)

    def _make_store(self, pki: Path, role: str, ca: bytes) -> Any:
        nanossl = self._nanossl
        status, store = nanossl.CERT_STORE_createStore()
        if status < nanossl.OK or store is None:
            raise StackError(f"CERT_STORE_createStore failed with {nanossl.DISPLAY_ERROR(status)}")
        status = nanossl.CERT_STORE_addIdentity(store, _pki_file(pki, f"{role}.pem").read_bytes(),
                                                _pki_file(pki, f"{role}.key").read_bytes())
        if status == nanossl.OK:
            status = nanossl.CERT_STORE_addTrustPoint(store, ca)
        if status < nanossl.OK:
            nanossl.CERT_STORE_releaseStore(store)
            raise StackError(f"loading the {role} identity failed with {nanossl.DISPLAY_ERROR(status)}")
        return store

    def details(self) -> Dict[str, str]:
        from pynano import build_info

        info = build_info()
        return {"mbedtls": info["mbedtls_version"], "aesni": "yes" if info["aesni_in_use"] else "no"}

    def _negotiate(self, instance: int, sock: socket.socket, suite: int, side: str,
                   saved: Optional[List[bytes]] = None) -> Connection:
        nanossl = self._nanossl
        status = nanossl.SSL_enableCiphers(instance, [suite])
        if status == nanossl.OK:
            status = nanossl.SSL_ioctl(instance, nanossl.PYNANO_SSL_SET_HANDSHAKE_TIMEOUT, IO_TIMEOUT_MS)
        if status == nanossl.OK:
            status = nanossl.SSL_negotiateConnection(instance)
        if status < nanossl.OK:
            nanossl.SSL_closeConnection(instance)
            sock.close()
            raise StackError(f"{side} handshake failed with {nanossl.DISPLAY_ERROR(status)}")
        return NanoSSLConnection(nanossl, instance, sock, saved)

    def server_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False) -> Connection:
        # Resumption needs nothing here: tickets and the TLS 1.2 session cache
        # belong to the server store, which every server connection shares.
        nanossl = self._nanossl
        instance = nanossl.SSL_acceptConnection(sock, self._server_store)
        if instance < nanossl.OK:
            sock.close()
            raise StackError(f"SSL_acceptConnection failed with {nanossl.DISPLAY_ERROR(instance)}")
        _status, flags = nanossl.SSL_getSessionFlags(instance)
        nanossl.SSL_setSessionFlags(instance, flags | nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH)
        return self._negotiate(instance, sock, suite, "server")

    def client_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False, session: Any = None) -> Connection:
        nanossl = self._nanossl
        instance = nanossl.SSL_connect(sock, 0, None, None, SERVER_NAME, self._client_store)
        if instance < nanossl.OK:
            sock.close()
            raise StackError(f"SSL_connect failed with {nanossl.DISPLAY_ERROR(instance)}")
        if not resume:
            return self._negotiate(instance, sock, suite, "client")
        saved: List[bytes] = []
        status = nanossl.SSL_setClientSaveTicketCallback(
            instance, lambda _ci, _server_info, ticket: saved.append(ticket))
        if status == nanossl.OK and session is not None:
            status = nanossl.SSL_setClientRetrieveTicketCallback(
                instance, lambda _ci, _server_info: session)
        if status < nanossl.OK:
            nanossl.SSL_closeConnection(instance)
            sock.close()
            raise StackError(f"setting the ticket callbacks failed with {nanossl.DISPLAY_ERROR(status)}")
        return self._negotiate(instance, sock, suite, "client", saved)


# ---- the standard ssl module -------------------------------------------------


class SocketConnection(Connection):
    """An ssl.SSLSocket, or any object shaped like one."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv_into(self, buffer: bytearray) -> int:
        return self._sock.recv_into(buffer)

    def describe(self) -> Dict[str, str]:
        cipher = self._sock.cipher()
        return {"version": str(self._sock.version()), "cipher": str(cipher[0] if cipher else None)}

    def close(self) -> None:
        self._sock.close()

    def session(self) -> Any:
        return self._sock.session

    def session_reused(self) -> bool:
        return bool(self._sock.session_reused)


def ssl_context(pki: Path, server_side: bool, version: int, suite: int,
                resume: bool = False) -> ssl.SSLContext:
    """Return an ssl.SSLContext with mutual authentication and one suite.

    For TLS 1.2 the suite is set here. Python's ssl module cannot choose
    TLS 1.3 suites, so the runner starts the ssl workers with OPENSSL_CONF
    naming TLS_AES_128_GCM_SHA256 (see ``openssl_config``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    role = "server" if server_side else "client"
    context.load_cert_chain(_pki_file(pki, f"{role}.pem"), _pki_file(pki, f"{role}.key"))
    context.load_verify_locations(cafile=str(_pki_file(pki, "ca.pem")))
    context.verify_mode = ssl.CERT_REQUIRED
    tls_version = ssl.TLSVersion.TLSv1_3 if version == TLS13 else ssl.TLSVersion.TLSv1_2
    context.minimum_version = tls_version
    context.maximum_version = tls_version
    if version == TLS12:
        context.set_ciphers(SUITE_NAMES[suite])
    if server_side:
        # OpenSSL sends two TLS 1.3 tickets per full handshake by default.
        # The handshake workloads use none, so they send none. The resume
        # workloads use one, as many as pynano (Mbed TLS) sends by default.
        context.num_tickets = 1 if resume else 0
    return context


def openssl_config() -> str:
    """Return an OpenSSL config that limits TLS 1.3 to TLS_AES_128_GCM_SHA256."""
    return ("openssl_conf = pynano_bench\n"
            "[pynano_bench]\nssl_conf = pynano_bench_ssl\n"
            "[pynano_bench_ssl]\nsystem_default = pynano_bench_defaults\n"
            f"[pynano_bench_defaults]\nCiphersuites = {SUITE_NAMES[TLS_AES_128_GCM_SHA256]}\n")


class SslStack(StackAdapter):
    """The standard ssl module over the system's OpenSSL."""

    def __init__(self, pki: Path) -> None:
        self._pki = pki
        self._contexts: Dict[Tuple[bool, int, int, bool], ssl.SSLContext] = {}

    def details(self) -> Dict[str, str]:
        return {"openssl": ssl.OPENSSL_VERSION}

    def _context(self, server_side: bool, version: int, suite: int, resume: bool) -> ssl.SSLContext:
        key = (server_side, version, suite, resume and server_side)
        if key not in self._contexts:
            self._contexts[key] = ssl_context(self._pki, server_side, version, suite, resume)
        return self._contexts[key]

    def server_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False) -> Connection:
        context = self._context(True, version, suite, resume)
        return SocketConnection(context.wrap_socket(sock, server_side=True))

    def client_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False, session: Any = None) -> Connection:
        context = self._context(False, version, suite, resume)
        return SocketConnection(context.wrap_socket(sock, server_hostname=SERVER_NAME, session=session))


# ---- tlslite-ng ------------------------------------------------------------

TLSLITE_CIPHERS = {
    TLS_AES_128_GCM_SHA256: "aes128gcm",
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "aes128gcm",
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "chacha20-poly1305",
}


class TlsliteConnection(Connection):
    """A tlslite.TLSConnection."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def send(self, data: bytes) -> None:
        self._connection.write(data)

    def recv_into(self, buffer: bytearray) -> int:
        data = self._connection.read(max=len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def describe(self) -> Dict[str, str]:
        connection = self._connection
        return {"version": connection.getVersionName(), "cipher": connection.getCipherName(),
                "cipher_implementation": connection.getCipherImplementation()}

    def close(self) -> None:
        self._connection.close()

    def session(self) -> Any:
        return self._connection.session

    def session_reused(self) -> bool:
        return bool(self._connection.resumed)


class TlsliteStack(StackAdapter):
    """tlslite-ng, limited to its pure-Python cipher implementations.

    NOTE: tlslite-ng checks the peer's CertificateVerify signature but does
    not verify the certificate chain against the CA, so each side does one
    ECDSA verification less than the other stacks.
    """

    def __init__(self, pki: Path) -> None:
        import tlslite

        self._tlslite = tlslite
        self._server = self._load(pki, "server")
        self._client = self._load(pki, "client")
        self._settings: Dict[Tuple[int, int, bool], Any] = {}
        # Session-ID cache of the server side of the TLS 1.2 resume workload.
        self._session_cache = tlslite.SessionCache()

    def _load(self, pki: Path, role: str) -> Tuple[Any, Any]:
        tlslite = self._tlslite
        cert = tlslite.X509()
        cert.parse(_pki_file(pki, f"{role}.pem").read_text())
        key = tlslite.parsePEMKey(_pki_file(pki, f"{role}.key").read_text(), private=True)
        return tlslite.X509CertChain([cert]), key

    def details(self) -> Dict[str, str]:
        from tlslite.utils import cryptomath

        return {
            "tlslite": self._tlslite.__version__,
            "cipher_implementations": "python",
            "m2crypto": "yes" if cryptomath.m2cryptoLoaded else "no",
            "pycrypto": "yes" if cryptomath.pycryptoLoaded else "no",
            "gmpy": "yes" if cryptomath.gmpyLoaded or getattr(cryptomath, "GMPY2_LOADED", False) else "no",
            "key_exchange": "x25519",
        }

    def _handshake_settings(self, version: int, suite: int, resume: bool = False) -> Any:
        key = (version, suite, resume)
        if key not in self._settings:
            settings = self._tlslite.HandshakeSettings()
            settings.cipherImplementations = ["python"]
            settings.minVersion = (3, version)
            settings.maxVersion = (3, version)
            settings.cipherNames = [TLSLITE_CIPHERS[suite]]
            settings.keyExchangeNames = ["ecdhe_ecdsa"]
            # X25519 key exchange, as pynano and OpenSSL choose by default.
            settings.keyShares = ["x25519"]
            settings.eccCurves = ["x25519", "secp256r1"]
            if resume:
                # One ticket per handshake, as pynano and the ssl server send.
                settings.ticketKeys = [bytearray(os.urandom(32))]
                settings.ticket_count = 1
            self._settings[key] = settings
        return self._settings[key]

    def server_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False) -> Connection:
        connection = self._tlslite.TLSConnection(sock)
        chain, key = self._server
        connection.handshakeServer(certChain=chain, privateKey=key, reqCert=True,
                                   sessionCache=self._session_cache if resume else None,
                                   settings=self._handshake_settings(version, suite, resume))
        return TlsliteConnection(connection)

    def client_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False, session: Any = None) -> Connection:
        connection = self._tlslite.TLSConnection(sock)
        chain, key = self._client
        connection.handshakeClientCert(chain, key, session=session,
                                       settings=self._handshake_settings(version, suite),
                                       serverName=SERVER_NAME)
        return TlsliteConnection(connection)


# ---- pynano through pynano.TLSContext -----------------------------------------


class PynanoTLSStack(StackAdapter):
    """pynano through its ssl-shaped API, pynano.TLSContext and TLSSocket."""

    def __init__(self, pki: Path) -> None:
        self._tls = importlib.import_module("pynano.tls")
        self._pki = pki
        self._contexts: Dict[Tuple[bool, int, int], Any] = {}

    def details(self) -> Dict[str, str]:
        return {"module": "pynano.tls"}

    def _context(self, server_side: bool, version: int, suite: int) -> Any:
        key = (server_side, version, suite)
        if key not in self._contexts:
            self._contexts[key] = pynano_tls_context(self._tls, self._pki, server_side, version, suite)
        return self._contexts[key]

    def server_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False) -> Connection:
        # Tickets and the TLS 1.2 session cache are on by default and belong
        # to the context's store, which every server connection shares.
        tls_socket = self._context(True, version, suite).wrap_socket(sock, server_side=True)
        return SocketConnection(tls_socket)

    def client_handshake(self, sock: socket.socket, version: int, suite: int,
                         resume: bool = False, session: Any = None) -> Connection:
        context = self._context(False, version, suite)
        return SocketConnection(context.wrap_socket(sock, server_hostname=SERVER_NAME, session=session))


def pynano_tls_context(tls: Any, pki: Path, server_side: bool, version: int, suite: int) -> Any:
    """Return a pynano TLSContext with mutual authentication, one version and one suite."""
    context = tls.TLSContext(server_side=server_side)
    role = "server" if server_side else "client"
    context.load_cert_chain(_pki_file(pki, f"{role}.pem"), _pki_file(pki, f"{role}.key"))
    context.load_verify_locations(cafile=_pki_file(pki, "ca.pem"))
    context.verify_mode = tls.CERT_REQUIRED
    tls_version = tls.TLSVersion.TLSv1_3 if version == TLS13 else tls.TLSVersion.TLSv1_2
    context.minimum_version = tls_version
    context.maximum_version = tls_version
    context.set_ciphers(SUITE_NAMES[suite])
    return context


# ---- registry ----------------------------------------------------------------

ADAPTERS: Dict[str, Callable[[Path], StackAdapter]] = {
    "pynano": NanoSSLStack,
    "pynano-tls": PynanoTLSStack,
    "ssl": SslStack,
    "tlslite": TlsliteStack,
}


def unavailable_reason(stack: str) -> Optional[str]:
    """Return why a Python stack cannot run here, or None when it can."""
    modules = {"pynano": "pynano._pynano", "pynano-tls": "pynano.tls", "ssl": "ssl", "tlslite": "tlslite"}
    try:
        importlib.import_module(modules[stack])
    except ImportError as error:
        if stack == "pynano-tls":
            return f"pynano.tls is not importable yet ({error}); skipped"
        if stack == "tlslite":
            return f"tlslite-ng is not installed ({error}); install it with `pip install 'pynano[bench]'`"
        return f"{modules[stack]} does not import: {error}"
    return None
