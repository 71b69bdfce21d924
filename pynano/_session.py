"""Client TLS sessions for resumption, in the form of ``ssl.SSLSession``.

A session wraps the opaque blob of ``nanossl.PYNANO_getSessionBlob``. The C
layer MACs the blob with a per-process key and binds it to the server name,
so a blob resumes only in the process that made it, and only for that name.
A damaged, foreign or expired blob makes the handshake a full one.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from . import nanossl
from ._tls_settings import CERT_NONE, _Settings

if TYPE_CHECKING:
    from .tls import TLSContext, TLSSocket

logger = logging.getLogger("pynano")

# Header of blob format version 1, as csrc/nanossl_session.c writes it:
# "PYNS", version, created (Unix s), lifetime (s), then the lengths of the
# server name, the server certificate and the Mbed TLS session, big-endian.
_BLOB_HEADER = struct.Struct(">4sBQIIIIB")
_BLOB_MAGIC = b"PYNS"
_BLOB_VERSION = 2
_BLOB_MAC_SIZE = 32


class TLSSession:
    """A client session that a later connection to the same server can resume.

    Take one from ``TLSSocket.session`` and pass it to
    ``TLSContext.wrap_socket(session=...)`` of the same context, or set it
    as ``TLSSocket.session`` before the handshake. Attributes, as in
    ``ssl.SSLSession``:

    * ``id``: 32 bytes that identify the session. It is a SHA-256 digest
      of the saved session rather than the TLS session ID, because TLS 1.3
      resumes without one. Sessions compare equal when their ids do.
    * ``time``: when the session was saved, in seconds since the epoch.
    * ``timeout``: seconds after ``time`` until pynano stops offering it.
      This is the server's ticket lifetime, or 7200 when the server gave
      none.
    * ``has_ticket``: for TLS 1.3, whether a NewSessionTicket arrived, so
      that the session can resume.

    NOTE: for TLS 1.2, ``has_ticket`` is always True, because the blob does
    not show whether the server gave a ticket or only a session ID.
    ``ticket_lifetime_hint`` of ``ssl.SSLSession`` is not provided.
    """

    _blob: bytes
    _context: "weakref.ref[TLSContext]"
    _verified: bool
    _hostname_checked: bool
    id: bytes
    time: int
    timeout: int
    has_ticket: bool

    def __init__(self) -> None:
        raise TypeError("TLSSession has no public constructor; read TLSSocket.session")

    @classmethod
    def _create(cls, blob: bytes, context: "TLSContext", settings: _Settings,
                callback_accepted: bool, has_ticket: bool) -> "TLSSession":
        self = cls.__new__(cls)
        self._blob = blob
        self._context = weakref.ref(context)
        # What the full handshake behind this session checked, so that a
        # resumption does not skip a certificate check of the new connection.
        self._verified = settings.verify_mode != CERT_NONE and not callback_accepted
        self._hostname_checked = self._verified and settings.check_hostname
        self.has_ticket = has_ticket
        self.id, self.time, self.timeout = _blob_facts(blob)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TLSSession):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (f"<TLSSession id={self.id[:8].hex()}... time={self.time} timeout={self.timeout} "
                f"has_ticket={self.has_ticket}>")


def _blob_facts(blob: bytes) -> Tuple[bytes, int, int]:
    """Return (id, time, timeout) from the header of a version 2 blob.

    A blob of another version gets the digest of the whole blob as its id,
    and 0 for time and timeout.
    """
    if len(blob) >= _BLOB_HEADER.size + _BLOB_MAC_SIZE:
        magic, version, created, lifetime, name_size, cert_size, session_size, _server_check = \
            _BLOB_HEADER.unpack_from(blob)
        start = _BLOB_HEADER.size + name_size + cert_size
        if magic == _BLOB_MAGIC and version == _BLOB_VERSION and \
                start + session_size + _BLOB_MAC_SIZE == len(blob):
            return hashlib.sha256(blob[start:start + session_size]).digest(), created, lifetime
    return hashlib.sha256(blob).digest(), 0, 0


def _check_session(session: Any, context: "TLSContext") -> TLSSession:
    """Return session if a client connection of context may offer it, else raise."""
    if not isinstance(session, TLSSession):
        raise TypeError(f"session must be a TLSSession from TLSSocket.session, "
                        f"got {type(session).__name__}")
    if session._context() is not context:
        raise ValueError("the session refers to a different TLSContext; resume it with the "
                         "context whose connection made it")
    return session


def _reason_not_to_offer(session: TLSSession, settings: _Settings) -> Optional[str]:
    """Return why session must not be offered under settings, or None when it may be.

    A resumed handshake skips the server certificate check, so a session
    is offered only when its full handshake checked at least as much.
    """
    if settings.verify_mode == CERT_NONE:
        return None
    if not session._verified:
        return "its server certificate was not verified, or only the verify callback accepted it"
    if settings.check_hostname and not session._hostname_checked:
        return "its server certificate was not checked against the host name"
    return None


def _offer_session(ci: int, session: TLSSession, settings: _Settings) -> None:
    """Offer session on the client connection ci, or log why the handshake will be full."""
    reason = _reason_not_to_offer(session, settings)
    if reason is not None:
        logger.info("instance %d: session not offered because %s; full handshake", ci, reason)
        return
    status = nanossl.PYNANO_setSessionBlob(ci, session._blob)
    if status != nanossl.OK:
        logger.info("instance %d: PYNANO_setSessionBlob failed with %s; full handshake", ci,
                    nanossl.DISPLAY_ERROR(status))


def _session_saver(socket_ref: "weakref.ref[TLSSocket]") -> Callable[[int, bytes, bytes], None]:
    """Return the save-ticket callback that keeps the newest session in the socket."""

    def on_session(ci: int, server_info: bytes, blob: bytes) -> None:
        tls = socket_ref()
        if tls is not None:
            tls._keep_session(blob)

    return on_session
