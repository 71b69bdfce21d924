"""TLS contexts and sockets shaped like the standard ``ssl`` module's.

``TLSContext`` and ``TLSSocket`` sit on ``pynano.nanossl``: every setting
becomes a NanoSSL call on the connection instance (session flags,
``SSL_ioctl``, ``SSL_enableCiphers``), so a ``TLSSocket`` can be mixed with
``pynano.nanossl`` calls through its ``connection_instance``.

Configuration model: a context keeps its settings in Python. ``wrap_socket``
copies them into the new connection, so a connection never changes after it
is created. Changing a setting after the first ``wrap_socket`` is allowed and
rebuilds the configuration: connections created later use the new value, and
the ones already created keep the old one. The certificate store is rebuilt
the same way, because the C layer freezes a store once a connection uses it.
A server's ticket keys and session cache belong to its store, so sessions
made before a rebuild no longer resume. Repeated ``wrap_socket`` calls on an
unchanged context share one store.

Sockets must be blocking or have a timeout. Non-blocking sockets (timeout
0.0) raise ValueError, because the NanoSSL calls wait until they finish.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import ciphers as _ciphers
from . import nanossl
from ._certfiles import (
    Password,
    StrPath,
    _der_certificates,
    _Identity,
    _password_bytes,
    _pem_certificates,
    _read_file,
    _TrustPoint,
)
from ._peercert import decode_certificate
from ._session import TLSSession, _check_session, _offer_session, _session_saver
from ._tls_errors import _SocketErrors, _status_error
from ._tls_settings import (
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    TLSVersion,
    VerifyMode,
    _apply_settings,
    _check,
    _check_blocking,
    _is_connected,
    _is_listening,
    _Settings,
    _timeout_ms,
    _tls_version,
    _verify_mode,
)
from ._verify import VerifyCallback, VerifyInfo, _callback_adapter
from .exceptions import TLSEOFError, TLSError, TLSTimeoutError

__all__ = [
    "CERT_NONE",
    "CERT_OPTIONAL",
    "CERT_REQUIRED",
    "Purpose",
    "TLSContext",
    "TLSSession",
    "TLSSocket",
    "TLSVersion",
    "VerifyInfo",
    "VerifyMode",
    "create_default_context",
    "decode_certificate",
]

logger = logging.getLogger("pynano")

Purpose = ssl.Purpose

# Connection table size per side when this module has to call SSL_init
# itself; call pynano.nanossl.SSL_init before the first connection for
# another size.
DEFAULT_CONNECTIONS_PER_SIDE = 256
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_VERSION_NAMES = {nanossl.TLS12_MINORVERSION: "TLSv1.2", nanossl.TLS13_MINORVERSION: "TLSv1.3"}
# SSL_send takes at most 2**31 - 1 bytes; send() passes at most this much.
_MAX_SEND = 1 << 30
# Mbed TLS 3.6 error code for a received close_notify (mbedtls/ssl.h).
_MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY = -0x7880
# Maximum ticket lifetime and session cache timeout in seconds (7 days) that
# PYNANO_CERT_STORE_setSessionLifetimes accepts.
_MAX_SESSION_LIFETIME = 604800

_stack_lock = threading.Lock()


def _ensure_stack() -> None:
    """Call SSL_init unless the application already sized the connection table."""
    with _stack_lock:
        status, _, capacity = nanossl.PYNANO_getTableUsage()
        if status == nanossl.OK and capacity > 0:
            return
        status = nanossl.SSL_init(DEFAULT_CONNECTIONS_PER_SIDE, DEFAULT_CONNECTIONS_PER_SIDE)
        if status != nanossl.OK:
            raise TLSError(f"SSL_init failed with {nanossl.DISPLAY_ERROR(status)}; the TLS stack "
                           "cannot start", status=status, name=nanossl.DISPLAY_ERROR(status))
        logger.debug("connection table created with %d slots per side", DEFAULT_CONNECTIONS_PER_SIDE)


# ---- context -----------------------------------------------------------------


class TLSContext:
    """Settings and certificates shared by TLS connections, like ``ssl.SSLContext``.

    A client context (the default) starts with CERT_REQUIRED and
    check_hostname on; a server context starts with CERT_NONE. Both allow
    TLS 1.2 and TLS 1.3 and every cipher suite of the build. The settings are
    copied into each connection by ``wrap_socket``; see the module docstring
    for what a change after the first connection does.
    """

    def __init__(self, server_side: bool = False) -> None:
        self._server_side = bool(server_side)
        self._verify_mode = CERT_NONE if self._server_side else CERT_REQUIRED
        self._check_hostname = not self._server_side
        self._minimum_version = TLSVersion.TLSv1_2
        self._maximum_version = TLSVersion.TLSv1_3
        self._cipher_ids: Optional[Tuple[int, ...]] = None
        self._alpn_protocols: Optional[Tuple[str, ...]] = None
        self._verify_callback: Optional[VerifyCallback] = None
        self._trust_points: List[_TrustPoint] = []
        self._identities: List[_Identity] = []
        self._store: Optional[nanossl.CertStore] = None
        self._store_release: Optional[weakref.finalize[..., Any]] = None
        self._store_in_use = False
        self._session_lifetimes: Optional[Tuple[int, int]] = None
        self._connections_made = 0
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        return (f"<TLSContext {side} verify_mode={self._verify_mode.name} "
                f"check_hostname={self._check_hostname} trust_points={self._trust_count()} "
                f"identities={len(self._identities)}>")

    # -- simple settings

    @property
    def server_side(self) -> bool:
        """Whether the context makes server connections."""
        return self._server_side

    @property
    def verify_mode(self) -> VerifyMode:
        """Peer certificate policy: CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED."""
        return self._verify_mode

    @verify_mode.setter
    def verify_mode(self, value: Any) -> None:
        mode = _verify_mode(value)
        if mode == CERT_NONE and self._check_hostname:
            raise ValueError("Cannot set verify_mode to CERT_NONE when check_hostname is enabled; "
                             "set check_hostname = False first")
        self._changed("verify_mode", mode.name)
        self._verify_mode = mode

    @property
    def check_hostname(self) -> bool:
        """Whether a client checks the server certificate against server_hostname."""
        return self._check_hostname

    @check_hostname.setter
    def check_hostname(self, value: Any) -> None:
        enabled = bool(value)
        if enabled and self._verify_mode == CERT_NONE:
            # As in the ssl module: a host name check implies verification.
            self._verify_mode = CERT_REQUIRED
        self._changed("check_hostname", enabled)
        self._check_hostname = enabled

    @property
    def minimum_version(self) -> TLSVersion:
        """Lowest TLS version allowed: TLSVersion.TLSv1_2 or TLSv1_3."""
        return self._minimum_version

    @minimum_version.setter
    def minimum_version(self, value: Any) -> None:
        version = _tls_version(value, "minimum_version")
        self._changed("minimum_version", version.name)
        self._minimum_version = version

    @property
    def maximum_version(self) -> TLSVersion:
        """Highest TLS version allowed: TLSVersion.TLSv1_2 or TLSv1_3."""
        return self._maximum_version

    @maximum_version.setter
    def maximum_version(self, value: Any) -> None:
        version = _tls_version(value, "maximum_version")
        self._changed("maximum_version", version.name)
        self._maximum_version = version

    @property
    def post_handshake_auth(self) -> None:
        """Always None: TLS 1.3 post-handshake authentication is not supported."""
        return None

    def set_ciphers(self, spec: Union[str, int, Sequence[Union[str, int]]]) -> None:
        """Allow only these cipher suites, for TLS 1.2 and TLS 1.3 alike.

        spec takes OpenSSL names, IANA names and ids ("0xC02B" or ints),
        separated by ':' or ','. OpenSSL cipher-string keywords such as
        ``HIGH`` or ``!aNULL`` are not understood. Raises ValueError naming
        the first suite that this build does not support.
        """
        ids = tuple(_ciphers.resolve(spec))
        self._changed("cipher suites", spec)
        self._cipher_ids = ids

    def get_ciphers(self) -> List[Dict[str, Any]]:
        """Return the enabled cipher suites as dictionaries like ssl's get_ciphers()."""
        suites = _ciphers.enabled_suites()
        if self._cipher_ids is not None:
            by_id = {suite.id: suite for suite in suites}
            suites = [by_id[suite_id] for suite_id in self._cipher_ids]
        return [{"id": suite.id, "name": suite.openssl_name, "protocol": suite.tls_version,
                 "description": suite.name, "strength_bits": suite.bits, "alg_bits": suite.bits}
                for suite in suites]

    def set_alpn_protocols(self, protocols: Sequence[str]) -> None:
        """Offer (client) or accept (server) these ALPN protocols, in order of preference."""
        if isinstance(protocols, (str, bytes)):
            raise TypeError("protocols must be a sequence of str, such as ['h2', 'http/1.1']")
        names = tuple(protocols)
        for name in names:
            if not isinstance(name, str) or not name or "\0" in name or len(name.encode()) > 255:
                raise ValueError(f"ALPN protocol {name!r} must be a non-empty str of at most "
                                 "255 bytes without NUL")
        self._changed("ALPN protocols", names)
        self._alpn_protocols = names or None

    def set_verify_callback(self, callback: Optional[VerifyCallback]) -> None:
        """Let callback decide about peer certificates that fail verification.

        The handshake calls it with a VerifyInfo. It returns True to accept
        the certificate or False to reject it. Any other value, or an
        exception, rejects the certificate, and the exception becomes the
        ``__cause__`` of the CertificateVerifyError. The callback is not
        called for certificates that pass, nor when verify_mode is
        CERT_NONE. None removes it.
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        self._changed("verify callback", callback)
        self._verify_callback = callback

    def _changed(self, setting: str, value: Any) -> None:
        if self._connections_made:
            logger.debug("context %#x: %s set to %r after %d connections; later connections use it",
                         id(self), setting, value, self._connections_made)

    # -- certificates

    def load_cert_chain(self, certfile: StrPath, keyfile: Optional[StrPath] = None,
                        password: Optional[Password] = None) -> None:
        """Load this side's certificate chain (leaf first) and private key.

        keyfile defaults to certfile. password unlocks an encrypted key; it
        may be a str, bytes, or a callable returning one, which is called
        only when the key is encrypted. The password or callable stays in
        memory with the context, so that the certificate store can be rebuilt.
        """
        chain = _read_file(certfile)
        key = _read_file(keyfile) if keyfile is not None else chain
        source = os.fspath(certfile)
        if not _pem_certificates(chain) and chain.lstrip().startswith(b"-----"):
            raise TLSError(f"{source} contains no PEM certificate; pass the certificate chain "
                           "file as certfile", status=nanossl.ERR_CERT_INVALID_STRUCT,
                           name="ERR_CERT_INVALID_STRUCT")
        identity = _Identity(chain, key, password, source)
        with self._lock:
            status = self._add_identity(self._store_for_change(), identity)
            if status != nanossl.OK:
                raise self._identity_error(identity, status)
            self._identities.append(identity)

    def load_verify_locations(self, cafile: Optional[StrPath] = None, capath: Optional[StrPath] = None,
                              cadata: Optional[Union[str, bytes, bytearray, memoryview]] = None) -> None:
        """Trust the CA certificates in cafile, capath and cadata.

        cafile is a PEM file, and every certificate in it must parse. capath
        is a folder whose PEM files are loaded, skipping the certificates
        that Mbed TLS cannot parse. cadata is PEM text as a str, or one or
        more DER certificates as bytes.
        """
        if cafile is None and capath is None and cadata is None:
            raise TypeError("cafile, capath and cadata cannot be all omitted")
        with self._lock:
            if cafile is not None:
                self._add_trust(_read_file(cafile), os.fspath(cafile))
            if capath is not None:
                self._load_ca_folder(os.fspath(capath))
            if cadata is not None:
                self._load_cadata(cadata)

    def load_default_certs(self, purpose: Purpose = Purpose.SERVER_AUTH) -> int:
        """Trust the system CA bundle and return how many certificates were loaded.

        The bundle is the file of ssl.get_default_verify_paths() (which
        honours SSL_CERT_FILE), else /etc/ssl/certs/ca-certificates.crt,
        else the files of its capath folder. Certificates that Mbed TLS
        cannot parse are skipped and counted in the log.
        """
        _check_purpose(purpose)
        paths = ssl.get_default_verify_paths()
        with self._lock:
            for candidate in (paths.cafile, SYSTEM_CA_BUNDLE):
                if candidate and os.path.isfile(candidate):
                    return self._load_bundle(_read_file(candidate), candidate)
            if paths.capath and os.path.isdir(paths.capath):
                return self._load_ca_folder(paths.capath)
        logger.warning("no system CA bundle found (looked for %s, %s and %s); no CA loaded",
                       paths.cafile, SYSTEM_CA_BUNDLE, paths.capath)
        return 0

    def cert_store_stats(self) -> Dict[str, int]:
        """Return the certificate counts as ssl's cert_store_stats() does.

        Every trusted certificate counts as a CA certificate.
        """
        count = self._trust_count()
        return {"x509": count, "crl": 0, "x509_ca": count}

    def get_ca_certs(self, binary_form: bool = False) -> List[Any]:
        """Return the trusted CA certificates as dictionaries, or as DER with binary_form."""
        result: List[Any] = []
        for trust_point in self._trust_points:
            for der in self._trust_point_ders(trust_point):
                result.append(der if binary_form else decode_certificate(der))
        return result

    @staticmethod
    def _trust_point_ders(trust_point: _TrustPoint) -> List[bytes]:
        if _pem_certificates(trust_point.data):
            return [x509.load_pem_x509_certificate(block).public_bytes(Encoding.DER)
                    for block in _pem_certificates(trust_point.data)]
        return [trust_point.data]

    def _trust_count(self) -> int:
        with self._lock:
            if self._store is None:
                return 0
            _, trust_points, _ = nanossl.PYNANO_CERT_STORE_getCounts(self._store)
        return trust_points

    def _add_trust(self, data: bytes, source: str) -> None:
        status = nanossl.CERT_STORE_addTrustPoint(self._store_for_change(), data)
        if status != nanossl.OK:
            raise self._trust_error(data, source, status)
        self._trust_points.append(_TrustPoint(data, source))

    def _load_bundle(self, data: bytes, source: str) -> int:
        """Add each certificate of a PEM bundle on its own, skipping those that fail."""
        blocks = _pem_certificates(data)
        loaded = self._add_each(blocks, source, set())
        logger.info("loaded %d of %d CA certificates from %s; skipped %d that Mbed TLS cannot parse",
                    loaded, len(blocks), source, len(blocks) - loaded)
        return loaded

    def _add_each(self, blocks: List[bytes], source: str, seen: Set[bytes]) -> int:
        """Add PEM certificates one by one, skipping failures and those in seen."""
        store = self._store_for_change()
        loaded = 0
        for block in blocks:
            if block in seen:
                continue
            seen.add(block)
            if nanossl.CERT_STORE_addTrustPoint(store, block) == nanossl.OK:
                self._trust_points.append(_TrustPoint(block, source))
                loaded += 1
        return loaded

    def _load_ca_folder(self, folder: str) -> int:
        if not os.path.isdir(folder):
            raise FileNotFoundError(errno.ENOENT, "capath is not a folder", folder)
        # Folders such as /etc/ssl/certs link each file under several names,
        # so identical certificates are loaded once.
        seen: Set[bytes] = set()
        found = loaded = 0
        for entry in sorted(os.scandir(folder), key=lambda item: item.name):
            if not entry.is_file():
                continue
            try:
                blocks = _pem_certificates(_read_file(entry.path))
            except OSError as error:
                logger.info("skipped %s in capath: %s", entry.path, error)
                continue
            found += len(set(blocks) - seen)
            loaded += self._add_each(blocks, entry.path, seen)
        logger.info("loaded %d of %d distinct CA certificates from %s; skipped %d that Mbed TLS "
                    "cannot parse", loaded, found, folder, found - loaded)
        return loaded

    def _load_cadata(self, cadata: Union[str, bytes, bytearray, memoryview]) -> None:
        if isinstance(cadata, str):
            data = cadata.encode("ascii")
            if not _pem_certificates(data):
                raise ValueError("cadata str contains no PEM certificate")
            self._add_trust(data, "cadata")
            return
        try:
            data = bytes(memoryview(cadata))
        except TypeError:
            raise TypeError(f"cadata should be a str (PEM) or bytes-like (DER), "
                            f"got {type(cadata).__name__}") from None
        if not data:
            raise ValueError("cadata is empty")
        for der in _der_certificates(data):
            self._add_trust(der, "cadata")

    def _trust_error(self, data: bytes, source: str, status: int) -> TLSError:
        blocks = _pem_certificates(data)
        position = ""
        if len(blocks) > 1:
            # The C call is all or nothing; find the first block that fails alone.
            status_check, probe = nanossl.CERT_STORE_createStore()
            if status_check == nanossl.OK and probe is not None:
                for index, block in enumerate(blocks):
                    if nanossl.CERT_STORE_addTrustPoint(probe, block) != nanossl.OK:
                        position = f" (certificate {index + 1} of {len(blocks)})"
                        break
                nanossl.CERT_STORE_releaseStore(probe)
        return _status_error(f"cannot load CA certificates from {source}{position}: Mbed TLS "
                             "cannot parse it; check that the file is a PEM or DER X.509 "
                             "certificate", status)

    def _identity_error(self, identity: _Identity, status: int) -> TLSError:
        if status == nanossl.ERR_BAD_KEY:
            reason = ("the private key could not be loaded: the password is wrong or missing, "
                      "the key does not match the certificate, or it is an RSA key under 2048 bits")
        elif status == nanossl.ERR_SSL_CONFIG:
            reason = "the context already holds the maximum number of identities"
        else:
            reason = "the certificate chain could not be parsed; check that it is PEM or DER"
        return _status_error(f"cannot load the certificate chain from {identity.source}: {reason}",
                             status)

    @staticmethod
    def _add_identity(store: nanossl.CertStore, identity: _Identity) -> int:
        password = None
        if identity.password is not None:
            password = _password_bytes(identity.password, identity.key)
        return nanossl.PYNANO_CERT_STORE_addIdentityWithPassword(
            store, [identity.certificates], identity.key, password)

    def _store_for_change(self) -> nanossl.CertStore:
        """Return a store that still accepts additions, rebuilding a frozen one."""
        if self._store is not None and not self._store_in_use:
            return self._store
        store = self._new_store()
        try:
            self._replay_material(store)
        except BaseException:
            nanossl.CERT_STORE_releaseStore(store)
            raise
        if self._store is not None:
            self._log_rebuild()
        self._replace_store(store)
        return store

    def _replay_material(self, store: nanossl.CertStore) -> None:
        """Add every trust point and identity loaded so far to a new store."""
        for trust_point in self._trust_points:
            status = nanossl.CERT_STORE_addTrustPoint(store, trust_point.data)
            if status != nanossl.OK:
                raise _status_error(f"rebuilding the certificate store failed on {trust_point.source}",
                                    status)
        for identity in self._identities:
            status = self._add_identity(store, identity)
            if status != nanossl.OK:
                raise self._identity_error(identity, status)

    def _log_rebuild(self) -> None:
        if self._server_side:
            # Ticket keys and the session cache belong to the store.
            logger.info("context %#x: certificate store rebuilt after first use; sessions of "
                        "earlier connections no longer resume", id(self))
        else:
            logger.debug("context %#x: certificate store rebuilt after first use", id(self))

    def _store_for_connection(self) -> nanossl.CertStore:
        store = self._store if self._store is not None else self._store_for_change()
        self._store_in_use = True
        return store

    def _new_store(self) -> nanossl.CertStore:
        status, store = nanossl.CERT_STORE_createStore()
        if status != nanossl.OK or store is None:
            raise _status_error("CERT_STORE_createStore failed", status)
        if self._session_lifetimes is not None:
            status = nanossl.PYNANO_CERT_STORE_setSessionLifetimes(store, *self._session_lifetimes)
            if status != nanossl.OK:
                nanossl.CERT_STORE_releaseStore(store)
                raise _status_error("PYNANO_CERT_STORE_setSessionLifetimes failed", status)
        return store

    def _replace_store(self, store: nanossl.CertStore) -> None:
        # Connections that use the old store keep it until they close.
        if self._store_release is not None:
            self._store_release()
        self._store = store
        self._store_in_use = False
        self._store_release = weakref.finalize(self, nanossl.CERT_STORE_releaseStore, store)

    # -- sessions

    def rotate_session_ticket_keys(self) -> None:
        """Retire the session ticket keys of this server context.

        Tickets issued so far then give full handshakes, and new tickets use
        a new key. The key also changes by itself once per ticket lifetime.
        The TLS 1.2 session-ID cache is emptied too, so no earlier session
        resumes by either route.
        """
        self._require_server("rotate_session_ticket_keys()")
        with self._lock:
            if self._store is None:
                return
            status = nanossl.PYNANO_CERT_STORE_rotateTicketKeys(self._store)
            if status == nanossl.OK:
                status = nanossl.PYNANO_CERT_STORE_flushSessionCache(self._store)
        if status != nanossl.OK:
            raise _status_error("PYNANO_CERT_STORE_rotateTicketKeys failed", status)
        logger.info("context %#x: session ticket keys rotated; earlier tickets give full handshakes",
                    id(self))

    def set_session_lifetimes(self, ticket_seconds: int, cache_seconds: int) -> None:
        """Set how long the sessions of this server context can resume, in seconds.

        ticket_seconds is the lifetime of session tickets and also the period
        of the automatic ticket key change. cache_seconds is how long the
        TLS 1.2 session cache keeps a session. Both default to 7200 and take
        at most 604800 (7 days, the TLS 1.3 maximum). They stay in force when
        the certificate store is rebuilt.
        """
        self._require_server("set_session_lifetimes()")
        _check_lifetime("ticket_seconds", ticket_seconds)
        _check_lifetime("cache_seconds", cache_seconds)
        with self._lock:
            self._session_lifetimes = (ticket_seconds, cache_seconds)
            if self._store is None:
                return
            status = nanossl.PYNANO_CERT_STORE_setSessionLifetimes(self._store, ticket_seconds,
                                                                   cache_seconds)
        if status != nanossl.OK:
            raise _status_error("PYNANO_CERT_STORE_setSessionLifetimes failed", status)

    def _require_server(self, method: str) -> None:
        if not self._server_side:
            raise ValueError(f"{method} applies to server contexts only; a client keeps its "
                             "sessions in TLSSession objects")

    # -- connections

    def wrap_socket(self, sock: socket.socket, server_side: Optional[bool] = None,
                    server_hostname: Optional[str] = None, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True,
                    session: Optional[TLSSession] = None) -> "TLSSocket":
        """Return a TLSSocket over sock, running the handshake now if sock is connected.

        server_side defaults to the context's side and must match it.
        server_hostname (clients only) is sent as SNI and is the name the
        certificate is checked against. With suppress_ragged_eofs, a peer
        that closes without close_notify reads as b"" as with ssl; otherwise
        it raises TLSEOFError. session (clients only) is a TLSSession from
        an earlier connection of this context, offered for resumption. When
        the server does not resume it, the handshake is a full one.
        NOTE: an IP address as server_hostname is checked against the
        certificate's IP entries but is also sent as SNI, which the ssl
        module does not do.
        """
        settings = self._settings_for(server_side, server_hostname, session)
        return TLSSocket._create(sock, self, settings, server_hostname, do_handshake_on_connect,
                                 suppress_ragged_eofs, session)

    def _settings_for(self, server_side: Optional[bool], server_hostname: Optional[str],
                      session: Any) -> _Settings:
        if server_side is not None and bool(server_side) != self._server_side:
            needed = "TLSContext(server_side=True)" if server_side else "TLSContext()"
            raise ValueError(f"server_side={bool(server_side)} does not match this "
                             f"{'server' if self._server_side else 'client'} context; use a {needed}")
        if self._server_side and session is not None:
            raise ValueError("session can only be specified in client mode; a server resumes "
                             "sessions by itself")
        if session is not None:
            _check_session(session, self)
        if self._server_side and server_hostname is not None:
            raise ValueError("server_hostname can only be specified in client mode")
        if self._server_side and not self._identities:
            raise ValueError("this server context has no certificate; call load_cert_chain() first")
        if not self._server_side and self._check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname; pass the name the "
                             "certificate must match, or set check_hostname = False")
        if self._minimum_version > self._maximum_version:
            raise ValueError(f"minimum_version {self._minimum_version.name} is above "
                             f"maximum_version {self._maximum_version.name}")
        return _Settings(
            server_side=self._server_side,
            verify_mode=self._verify_mode,
            check_hostname=self._check_hostname,
            minimum_version=self._minimum_version,
            maximum_version=self._maximum_version,
            cipher_ids=self._cipher_ids,
            alpn_protocols=self._alpn_protocols,
            verify_callback=self._verify_callback,
        )

    def _open_connection(self, sock: socket.socket, settings: _Settings,
                         server_hostname: Optional[str]) -> int:
        """Create the NanoSSL connection instance for sock; returns it or raises."""
        _ensure_stack()
        with self._lock:
            store = self._store_for_connection()
            if settings.server_side:
                ci = nanossl.SSL_acceptConnection(sock, store)
            else:
                ci = nanossl.SSL_connect(sock, 0, None, None, server_hostname, store)
            self._connections_made += 1
        if ci < 0:
            raise _status_error(_connection_failure_text(ci), ci)
        return ci


def _check_lifetime(name: str, seconds: Any) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise TypeError(f"{name} must be an int number of seconds, got {type(seconds).__name__}")
    if not 1 <= seconds <= _MAX_SESSION_LIFETIME:
        raise ValueError(f"{name}={seconds} is out of range; expected 1..{_MAX_SESSION_LIFETIME} "
                         "seconds")


def _check_purpose(purpose: Any) -> None:
    if purpose not in (Purpose.SERVER_AUTH, Purpose.CLIENT_AUTH):
        raise TypeError(f"purpose must be ssl.Purpose.SERVER_AUTH or CLIENT_AUTH, got {purpose!r}")


def _connection_failure_text(status: int) -> str:
    if status == nanossl.ERR_SSL_INIT_CONNECTION:
        return ("the NanoSSL connection table is full; close finished connections, or call "
                "pynano.nanossl.SSL_init with larger sizes before the first connection")
    return "creating the NanoSSL connection failed"


def create_default_context(purpose: Purpose = Purpose.SERVER_AUTH, *, cafile: Optional[StrPath] = None,
                           capath: Optional[StrPath] = None,
                           cadata: Optional[Union[str, bytes]] = None) -> TLSContext:
    """Return a context with ssl.create_default_context()'s defaults.

    Purpose.SERVER_AUTH gives a client context (CERT_REQUIRED, host name
    check); Purpose.CLIENT_AUTH gives a server context. The given CA
    locations are trusted, else the system CA bundle.
    """
    _check_purpose(purpose)
    context = TLSContext(server_side=purpose == Purpose.CLIENT_AUTH)
    if cafile is not None or capath is not None or cadata is not None:
        context.load_verify_locations(cafile, capath, cadata)
    else:
        context.load_default_certs(purpose)
    return context


# ---- socket ------------------------------------------------------------------


class TLSSocket(_SocketErrors):
    """A TLS connection over a Python socket, used like ``ssl.SSLSocket``.

    Create it with ``TLSContext.wrap_socket``. It keeps the socket it wraps,
    and the NanoSSL connection instance (``connection_instance``) reads and
    writes on that socket's file descriptor. So do not use or close the
    wrapped socket directly while the TLSSocket is open. A handshake, read or
    send that runs past the wrapped socket's timeout raises TLSTimeoutError.
    After a send timeout the connection cannot be used any more, because a
    record may be half written. A read holds the connection lock for up to
    250 ms at a time, so a send from another thread can wait that long.

    close() sends close_notify. A TLSSocket that is garbage-collected
    unclosed, or closed after its wrapped socket was closed elsewhere, frees
    its connection without sending anything.
    """

    def __init__(self) -> None:
        raise TypeError("TLSSocket has no public constructor; use TLSContext.wrap_socket()")

    @classmethod
    def _create(cls, sock: socket.socket, context: TLSContext, settings: _Settings,
                server_hostname: Optional[str], do_handshake_on_connect: bool,
                suppress_ragged_eofs: bool, session: Optional[TLSSession] = None) -> "TLSSocket":
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, got {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets (SOCK_STREAM) are supported")
        _check_blocking(sock.gettimeout())
        self = cls.__new__(cls)
        self._init_state(sock, context, settings, server_hostname, do_handshake_on_connect,
                         suppress_ragged_eofs)
        self._offered_session = session
        if _is_listening(sock):
            if not settings.server_side:
                raise ValueError("a client context cannot wrap a listening socket")
            return self
        if _is_connected(sock):
            self._start(do_handshake_on_connect)
        return self

    def _init_state(self, sock: socket.socket, context: TLSContext, settings: _Settings,
                    server_hostname: Optional[str], do_handshake_on_connect: bool,
                    suppress_ragged_eofs: bool) -> None:
        self._sock = sock
        self._context = context
        self._settings = settings
        self._server_hostname = server_hostname
        self._do_handshake_on_connect = do_handshake_on_connect
        self._suppress_ragged_eofs = suppress_ragged_eofs
        self._instance: Optional[int] = None
        self._release: Optional[weakref.finalize[..., Any]] = None
        self._peer = ""
        self._handshake_started = False
        self._handshake_done = False
        self._failure: Optional[BaseException] = None
        # "close_notify" or "eof" once the peer has ended the connection.
        self._end: Optional[str] = None
        self._tls_ended = False
        self._unwrapped = False
        self._closed = False
        self._io_refs = 0
        self._accepted_verify_info: Optional[VerifyInfo] = None
        self._last_verify_info: Optional[VerifyInfo] = None
        self._callback_verdict: Optional[bool] = None
        self._version: Optional[str] = None
        self._cipher: Optional[Tuple[str, str, int]] = None
        self._alpn: Optional[str] = None
        self._peer_der: Optional[bytes] = None
        self._peer_dict: Optional[Dict[str, Any]] = None
        self._offered_session: Optional[TLSSession] = None
        self._session: Optional[TLSSession] = None
        self._session_reused = False
        # Send timeout in seconds that the C layer enforces, or None for no timeout.
        self._send_timeout: Optional[float] = None

    # -- creation and handshake

    def _start(self, handshake: bool) -> None:
        """Create the connection instance on the connected socket, then shake hands."""
        try:
            self._peer = self._peer_label()
            ci = self._context._open_connection(self._sock, self._settings, self._server_hostname)
            self._instance = ci
            self._release = weakref.finalize(self, _release_connection, ci, self._sock)
            # At exit the process frees the connection table anyway.
            self._release.atexit = False
            _apply_settings(ci, self._settings)
            self._install_verify_callback(ci)
            if not self._settings.server_side:
                self._prepare_session(ci)
            if handshake:
                self.do_handshake()
        except (OSError, ValueError):
            # As ssl.SSLSocket does, a failed creation closes the socket.
            self.close()
            raise

    def _peer_label(self) -> str:
        try:
            host, port = self._sock.getpeername()[:2]
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        except (OSError, ValueError):
            address = "an unconnected peer"
        if self._server_hostname:
            return f"{self._server_hostname} ({address})"
        return address

    def _install_verify_callback(self, ci: int) -> None:
        callback = self._settings.verify_callback
        if callback is None:
            return
        status = nanossl.SSL_setInvalidCertCallback(ci, _callback_adapter(weakref.ref(self), callback))
        _check(ci, status, "SSL_setInvalidCertCallback")

    def _prepare_session(self, ci: int) -> None:
        """Keep each session the server sends, and offer the session given to wrap_socket."""
        status = nanossl.SSL_setClientSaveTicketCallback(ci, _session_saver(weakref.ref(self)))
        _check(ci, status, "SSL_setClientSaveTicketCallback")
        if self._offered_session is not None:
            _offer_session(ci, self._offered_session, self._settings)

    def _keep_session(self, blob: bytes) -> None:
        """Store the session blob that the C layer hands to the save-ticket callback.

        A TLS 1.2 client gets one when the handshake completes, and a TLS 1.3
        client one for each NewSessionTicket, so both can resume.
        """
        self._session = TLSSession._create(blob, self._context, self._settings,
                                           self._callback_verdict is True, has_ticket=True)

    def do_handshake(self, block: bool = False) -> None:
        """Run the TLS handshake; a no-op once it has completed."""
        ci = self._require_instance()
        if self._handshake_done:
            return
        if self._failure is not None:
            raise self._reuse_error()
        if not self._handshake_started:
            self._handshake_started = True
            timeout = self._sock.gettimeout()
            _check(ci, nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_HANDSHAKE_TIMEOUT,
                                         _timeout_ms(timeout)), "handshake timeout")
            _check(ci, nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_SEND_TIMEOUT, _timeout_ms(timeout)),
                   "send timeout")
            self._send_timeout = timeout
        status = nanossl.SSL_negotiateConnection(ci)
        if status != nanossl.OK:
            self._failure = self._handshake_error(ci, status)
            raise self._failure
        self._handshake_done = True
        self._record_session(ci)
        logger.debug("instance %d: handshake with %s complete: %s %s", ci, self._peer,
                     self._version, self._cipher[0] if self._cipher else "?")

    def _record_session(self, ci: int) -> None:
        """Keep what the connection negotiated, so it stays readable after close."""
        status, minor = nanossl.SSL_getSSLTLSVersion(ci)
        self._version = _VERSION_NAMES.get(minor) if status == nanossl.OK else None
        status, cipher_id, _ = nanossl.SSL_getCipherInfo(ci)
        suite = _ciphers.suite_by_id(cipher_id) if status == nanossl.OK else None
        if suite is not None:
            self._cipher = (suite.openssl_name, suite.tls_version, suite.bits)
        status, protocol = nanossl.PYNANO_getAlpnProtocol(ci)
        self._alpn = protocol if status == nanossl.OK else None
        status, der = nanossl.PYNANO_getPeerCertificate(ci, 0)
        self._peer_der = der if status == nanossl.OK else None
        status, reused = nanossl.PYNANO_getSessionReused(ci)
        self._session_reused = status == nanossl.OK and reused
        if self._callback_verdict:
            self._accepted_verify_info = self._last_verify_info

    def _require_instance(self) -> int:
        # close() is deferred while makefile() files are open, so test the
        # descriptor rather than self._closed.
        if self._unwrapped or self._sock.fileno() == -1:
            raise OSError(errno.EBADF, "the TLSSocket is closed")
        if self._tls_ended:
            raise OSError(errno.ESHUTDOWN, "the TLS connection was shut down with shutdown()")
        if self._instance is None:
            raise OSError(errno.ENOTCONN, "the TLSSocket is not connected; connect() it first")
        return self._instance

    def _open_instance(self) -> int:
        """Return the connection instance after a completed handshake."""
        ci = self._require_instance()
        if not self._handshake_done:
            self.do_handshake()
        return ci

    # -- reading

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """Receive up to buflen bytes; b"" once the peer has closed the connection."""
        self._check_flags(flags, "recv")
        buffer = bytearray(buflen)
        count = self._read_into(memoryview(buffer))
        return bytes(buffer[:count])

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into buffer (up to nbytes, or its size); 0 once the peer has closed."""
        self._check_flags(flags, "recv_into")
        view = memoryview(buffer).cast("B")
        if nbytes < 0 or nbytes > len(view):
            raise ValueError(f"nbytes={nbytes} is out of range for a buffer of {len(view)} bytes")
        return self._read_into(view[:nbytes or len(view)])

    def read(self, len: int = 1024, buffer: Any = None) -> Union[bytes, int]:
        """Read like ssl.SSLSocket.read: into buffer if given (returns a count), else bytes."""
        if buffer is not None:
            return self.recv_into(buffer, len)
        return self.recv(len)

    def pending(self) -> int:
        """Return the number of decrypted bytes that recv() returns without reading the socket."""
        if self._instance is None or not self._handshake_done or self._end or self._tls_ended:
            return 0
        status, count = nanossl.PYNANO_getPendingBytes(self._instance)
        return count if status == nanossl.OK else 0

    def _read_into(self, view: memoryview) -> int:
        ci = self._open_instance()
        if len(view) == 0:
            return 0
        if self._end is not None:
            return self._after_end(ci)
        if self._failure is not None:
            raise self._reuse_error()
        status, count = nanossl.SSL_recv(ci, view, _timeout_ms(self._sock.gettimeout()))
        if status == nanossl.OK:
            return count
        if status == nanossl.ERR_TCP_SOCKET_CLOSED:
            return self._on_peer_end(ci)
        error = self._io_error(ci, status, "read")
        if not isinstance(error, TLSTimeoutError):
            self._failure = error
            logger.info("instance %d: read failed with %s", ci, nanossl.DISPLAY_ERROR(status))
        raise error

    def _on_peer_end(self, ci: int) -> int:
        _, code = nanossl.PYNANO_getLastMbedtlsError(ci)
        self._end = "close_notify" if code == _MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY else "eof"
        logger.debug("instance %d: peer closed the connection (%s)", ci, self._end)
        return self._after_end(ci)

    def _after_end(self, ci: int) -> int:
        if self._end == "eof" and not self._suppress_ragged_eofs:
            raise TLSEOFError(f"{self._where('read')} failed: the connection ended without "
                              "close_notify, so the data may be truncated",
                              status=nanossl.ERR_TCP_SOCKET_CLOSED, name="ERR_TCP_SOCKET_CLOSED",
                              connection_instance=ci)
        return 0

    @staticmethod
    def _check_flags(flags: int, method: str) -> None:
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to {method}() on TLSSocket")

    # -- writing

    def send(self, data: Any, flags: int = 0) -> int:
        """Send data and return the number of bytes sent (all of it up to 1 GiB)."""
        self._check_flags(flags, "send")
        view = memoryview(data).cast("B")
        chunk = view[:_MAX_SEND]
        ci = self._open_instance()
        if self._failure is not None:
            raise self._reuse_error()
        started = time.monotonic()
        result = nanossl.SSL_send(ci, chunk)
        if result < 0:
            error = self._write_error(ci, result, time.monotonic() - started)
            self._failure = error
            logger.info("instance %d: write failed with %s", ci, nanossl.DISPLAY_ERROR(result))
            raise error
        return result

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of data."""
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            sent += self.send(view[sent:], flags)

    def write(self, data: Any) -> int:
        """Send data like ssl.SSLSocket.write and return the number of bytes sent."""
        return self.send(data)

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, *, encoding: Optional[str] = None,
                 errors: Optional[str] = None, newline: Optional[str] = None) -> Any:
        """Return a file object over the TLS connection, as socket.makefile() does.

        The TLSSocket stays open until the last file from makefile() is
        closed, even after close(), which is what http.client relies on.
        """
        # socket.socket.makefile uses only _io_refs, recv_into, send and
        # _decref_socketios of its first argument, which TLSSocket provides.
        return socket.socket.makefile(self, mode, buffering, encoding=encoding,  # type: ignore[call-overload]
                                      errors=errors, newline=newline)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    # -- information

    @property
    def connection_instance(self) -> Optional[int]:
        """The NanoSSL connection instance, or None before the socket is connected."""
        return self._instance

    @property
    def context(self) -> TLSContext:
        """The TLSContext this socket was made from."""
        return self._context

    @property
    def server_hostname(self) -> Optional[str]:
        """The name sent as SNI and checked against the certificate, or None."""
        return self._server_hostname

    @property
    def server_side(self) -> bool:
        """Whether this is the server end."""
        return self._settings.server_side

    @property
    def session(self) -> Optional[TLSSession]:
        """The newest session of this client connection, for resumption; None on a server.

        A TLS 1.3 server sends its tickets after the handshake, and recv()
        reads them. So read the first response before taking the session,
        because until then it has ``has_ticket`` False and cannot resume.
        A session that the server sent stays readable after close(). A
        server socket returns None, because a server keeps its sessions in
        the context's certificate store.
        """
        if self._session is not None or self._settings.server_side or not self._handshake_done:
            return self._session
        if self._instance is None or self._tls_ended or self._sock.fileno() == -1:
            return None
        status, blob = nanossl.PYNANO_getSessionBlob(self._instance)
        if status != nanossl.OK or blob is None:
            return None
        return TLSSession._create(blob, self._context, self._settings, self._callback_verdict is True,
                                  has_ticket=self._version == "TLSv1.2")

    @session.setter
    def session(self, session: TLSSession) -> None:
        if self._settings.server_side:
            raise ValueError("session can only be specified in client mode; a server resumes "
                             "sessions by itself")
        if self._handshake_started:
            raise ValueError("cannot set session after the handshake started; set it before "
                             "do_handshake(), or pass it to wrap_socket()")
        self._offered_session = _check_session(session, self._context)
        if self._instance is not None:
            _offer_session(self._instance, self._offered_session, self._settings)

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed a session (False before the handshake)."""
        return self._session_reused

    @property
    def verify_info(self) -> Optional[VerifyInfo]:
        """The verification failure that the verify callback accepted, or None."""
        return self._accepted_verify_info

    def version(self) -> Optional[str]:
        """Return 'TLSv1.2' or 'TLSv1.3', or None before the handshake."""
        return self._version

    def cipher(self) -> Optional[Tuple[str, str, int]]:
        """Return (OpenSSL suite name, protocol version, secret bits), or None before the handshake."""
        return self._cipher

    def shared_ciphers(self) -> None:
        """Return None.

        NOTE: Mbed TLS does not keep the peer's list of cipher suites after
        the handshake, so the suites both sides share cannot be listed.
        """
        return None

    def compression(self) -> None:
        """Return None: TLS compression is never used."""
        return None

    def selected_alpn_protocol(self) -> Optional[str]:
        """Return the negotiated ALPN protocol, or None."""
        return self._alpn

    def get_channel_binding(self, cb_type: str = "tls-unique") -> None:
        """Return None: channel binding data is not available from NanoSSL."""
        return None

    def getpeercert(self, binary_form: bool = False) -> Optional[Union[Dict[str, Any], bytes]]:
        """Return the peer's certificate as ssl's getpeercert() does.

        None when the peer sent none; with binary_form the DER bytes;
        otherwise a dictionary, which is empty when the certificate was not
        verified (verify_mode CERT_NONE). A certificate that the verify
        callback accepted counts as verified, because the callback decided.
        """
        if not self._handshake_done:
            raise ValueError("handshake not done yet; call do_handshake() first")
        if self._peer_der is None:
            return None
        if binary_form:
            return self._peer_der
        if self._settings.verify_mode == CERT_NONE:
            return {}
        if self._peer_dict is None:
            self._peer_dict = decode_certificate(self._peer_der)
        return self._peer_dict

    # -- socket interface

    def fileno(self) -> int:
        """Return the wrapped socket's file descriptor."""
        return self._sock.fileno()

    @property
    def family(self) -> int:
        """The wrapped socket's address family."""
        return self._sock.family

    @property
    def type(self) -> int:
        """The wrapped socket's type (SOCK_STREAM)."""
        return self._sock.type

    @property
    def proto(self) -> int:
        """The wrapped socket's protocol number."""
        return self._sock.proto

    def getpeername(self) -> Any:
        """Return the remote address of the wrapped socket."""
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        """Return the local address of the wrapped socket."""
        return self._sock.getsockname()

    def setsockopt(self, *args: Any) -> None:
        """Set an option on the wrapped socket."""
        self._sock.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        """Read an option of the wrapped socket."""
        return self._sock.getsockopt(*args)

    def bind(self, address: Any) -> None:
        """Bind the wrapped socket."""
        self._sock.bind(address)

    def listen(self, backlog: int = socket.SOMAXCONN) -> None:
        """Listen on the wrapped socket; accept() then returns TLSSockets."""
        self._sock.listen(backlog)

    def gettimeout(self) -> Optional[float]:
        """Return the timeout in seconds for handshakes and reads, or None."""
        return self._sock.gettimeout()

    def settimeout(self, value: Optional[float]) -> None:
        """Set the timeout in seconds for the handshake, reads and sends; None waits forever."""
        _check_blocking(value)
        self._sock.settimeout(value)
        if self._handshake_started and self._instance is not None and value != self._send_timeout:
            status = nanossl.SSL_ioctl(self._instance, nanossl.PYNANO_SSL_SET_SEND_TIMEOUT,
                                       _timeout_ms(value))
            if status == nanossl.OK:
                self._send_timeout = value

    def setblocking(self, flag: bool) -> None:
        """Make the socket blocking; False raises ValueError (not supported)."""
        if not flag:
            _check_blocking(0.0)
        self._sock.settimeout(None)

    def getblocking(self) -> bool:
        """Return True: a TLSSocket is never non-blocking."""
        return True

    def connect(self, address: Any) -> None:
        """Connect the wrapped socket and, by default, run the handshake."""
        self._check_can_connect()
        self._sock.connect(address)
        self._start(self._do_handshake_on_connect)

    def connect_ex(self, address: Any) -> int:
        """Connect like connect(), returning an errno instead of raising for the TCP step."""
        self._check_can_connect()
        result = self._sock.connect_ex(address)
        if result == 0:
            self._start(self._do_handshake_on_connect)
        return result

    def _check_can_connect(self) -> None:
        if self._settings.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._instance is not None:
            raise ValueError("attempt to connect an already connected TLSSocket")

    def accept(self) -> Tuple["TLSSocket", Any]:
        """Accept a connection on a wrapped listening socket and wrap it for TLS."""
        if not self._settings.server_side or self._instance is not None:
            raise ValueError("accept() needs a listening socket wrapped with a server context")
        connection, address = self._sock.accept()
        wrapped = self._context.wrap_socket(connection, server_side=True,
                                            do_handshake_on_connect=self._do_handshake_on_connect,
                                            suppress_ragged_eofs=self._suppress_ragged_eofs)
        return wrapped, address

    def unwrap(self) -> socket.socket:
        """Send close_notify, end the TLS connection and return the wrapped socket.

        The peer's own close_notify, if it sends one, is left unread on the
        returned socket, because the NanoSSL connection is freed here.
        """
        self._require_instance()
        self._end_tls()
        self._unwrapped = True
        self._closed = True
        return self._sock

    def shutdown(self, how: int) -> None:
        """Send close_notify, end the TLS connection, then shut down the socket.

        Reads and writes raise OSError afterwards, whatever how is.
        """
        self._end_tls()
        self._sock.shutdown(how)

    def close(self) -> None:
        """Send close_notify, free the connection instance and close the socket.

        Files from makefile() keep the connection open until they are closed.
        """
        if self._unwrapped:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._end_tls()
            self._sock.close()

    def _end_tls(self) -> None:
        self._tls_ended = True
        ci = self._instance
        if ci is None or self._release is None or self._release.detach() is None:
            return
        if self._sock.fileno() == -1:
            # The descriptor number may already belong to another file.
            nanossl.PYNANO_releaseConnection(ci)
            logger.debug("instance %d: released without close_notify, because its socket was "
                         "closed elsewhere", ci)
            return
        nanossl.SSL_closeConnection(ci)
        logger.debug("instance %d: closed", ci)

    def __enter__(self) -> "TLSSocket":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self._version or "no handshake")
        return f"<TLSSocket instance={self._instance} peer={self._peer or '?'} {state}>"


def _release_connection(ci: int, sock: socket.socket) -> None:
    """Free the connection of a TLSSocket that was garbage-collected unclosed, without I/O.

    sock is passed only to keep its descriptor open until then.
    """
    nanossl.PYNANO_releaseConnection(ci)
    logger.debug("instance %d: released without close_notify, because its TLSSocket was "
                 "garbage-collected unclosed", ci)
