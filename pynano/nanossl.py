"""NanoSSL's synchronous API, function for function, over pynano's C engine.

Porting rules, so NanoSSL C code ports line by line:

* Same function names and argument order; statuses stay integers, so
  ``if OK > status:`` ports as is.
* A pointer-and-length pair is one Python buffer argument.
* Out-parameters come back after the status:
  ``status, flags = SSL_getSessionFlags(ci)``.
* A socket argument takes a Python socket or a file descriptor.
* Callbacks are plain Python callables with the C parameter order.

Wrong argument types raise ``TypeError`` and out-of-range values raise
``ValueError``, both naming the value; everything else is a status.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._constants import *  # noqa: F401,F403  (the NanoSSL constants are part of this API)
from ._constants import (
    ERR_INVALID_ARG,
    ERR_NULL_POINTER,
    ERR_SSL_BAD_ID,
    ERR_TCP_READ_TIMEOUT,
    OK,
    PYNANO_ERR_INTERRUPTED,
)
from ._native import ffi, lib

logger = logging.getLogger("pynano")

SocketLike = Union[socket.socket, int]
InvalidCertCallback = Callable[[int, int], Any]
SaveTicketCallback = Callable[[int, bytes, bytes], Any]
RetrieveTicketCallback = Callable[[int, bytes], Optional[bytes]]
Buffer = Union[bytes, bytearray, memoryview]

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
# SSL_recv waits in C for at most this long per call, then loops here, so a
# Ctrl-C in the main thread is handled within about this time.
RECV_SLICE_MS = 250


# ---- argument checks ---------------------------------------------------


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range; expected {low}..{high}")
    return value


def _instance(value: Any) -> int:
    # Negative and zero instances are valid C inputs that give ERR_SSL_BAD_ID,
    # so only values that do not fit in an sbyte4 are rejected here.
    return _check_int("connectionInstance", value, -(2**31), INT32_MAX)


def _fd(sock: Any) -> int:
    if isinstance(sock, socket.socket):
        return sock.fileno()          # -1 once closed, which C rejects with ERR_INVALID_ARG
    return _check_int("socket", sock, -(2**31), INT32_MAX)


def _read_buffer(name: str, data: Any, ctype: str = "char[]") -> Any:
    """Return a CFFI view of a readable contiguous buffer without copying."""
    if data is None:
        raise TypeError(f"{name} must be a bytes-like object, got None")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, got {type(data).__name__}") from None
    if not view.contiguous:
        raise ValueError(f"{name} is a non-contiguous buffer; pass bytes(view) or a contiguous slice")
    if view.nbytes > INT32_MAX:
        raise ValueError(f"{name} has {view.nbytes} bytes; at most {INT32_MAX} fit one call")
    return ffi.from_buffer(ctype, view.cast("B") if view.ndim != 1 or view.format != "B" else view)


def _write_buffer(name: str, data: Any) -> Any:
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"{name} must be a writable buffer such as a bytearray, got {type(data).__name__}") from None
    if view.readonly:
        raise TypeError(f"{name} is read-only; pass a bytearray or a writable memoryview")
    if not view.contiguous:
        raise ValueError(f"{name} is a non-contiguous buffer; pass a contiguous bytearray")
    return ffi.from_buffer(view.cast("B") if view.ndim != 1 or view.format != "B" else view,
                           require_writable=True)


# ---- per-connection Python state ---------------------------------------


@dataclass
class _ConnectionRecord:
    """Python objects a connection instance keeps alive while it is open."""

    sock: Any = None
    store: Optional["CertStore"] = None
    invalid_cert_callback: Optional[InvalidCertCallback] = None
    save_ticket_callback: Optional[SaveTicketCallback] = None
    retrieve_ticket_callback: Optional[RetrieveTicketCallback] = None
    callback_error: Optional[BaseException] = None
    extras: Dict[str, Any] = field(default_factory=dict)


_records: Dict[int, _ConnectionRecord] = {}
_records_lock = threading.Lock()
# Callback errors of closed connections, kept so they can be read after close.
_closed_errors: "OrderedDict[int, BaseException]" = OrderedDict()
_CLOSED_ERRORS_KEPT = 64


def _record(ci: int) -> Optional[_ConnectionRecord]:
    with _records_lock:
        return _records.get(ci)


def get_callback_error(connectionInstance: int) -> Optional[BaseException]:
    """Return the exception a callback of this connection raised, if any."""
    with _records_lock:
        record = _records.get(connectionInstance)
        if record is not None:
            return record.callback_error
        return _closed_errors.get(connectionInstance)


# ---- callbacks ---------------------------------------------------------


def _callback_verdict(ci: int, status: int, result: Any) -> int:
    """Turn a callback's return value into the MSTATUS C expects.

    An int is the NanoSSL verdict (>= 0 accepts). A bool is taken at face
    value, so ``return False`` rejects rather than meaning 0 (OK). Anything
    else, None included, is a programming error and rejects.
    """
    if isinstance(result, bool):
        return OK if result else status
    if isinstance(result, int):
        return max(-(2**31), min(result, INT32_MAX))
    logger.error("instance %d: invalid-certificate callback returned %r, not an int; "
                 "rejecting with %s", ci, result, DISPLAY_ERROR(status))
    return status


@ffi.def_extern(onerror=lambda *args: ERR_NULL_POINTER)
def pynano_invalid_cert_trampoline(ci: int, status: int) -> int:
    """Run the Python invalid-certificate callback of connection ci."""
    record = _record(ci)
    if record is None or record.invalid_cert_callback is None:
        return status
    try:
        result = record.invalid_cert_callback(ci, status)
    except BaseException as error:  # noqa: BLE001  (never unwind through C)
        record.callback_error = error
        logger.error("instance %d: invalid-certificate callback raised %r; handshake rejected "
                     "with %s", ci, error, DISPLAY_ERROR(status))
        return status
    return _callback_verdict(ci, status, result)


@ffi.def_extern(onerror=lambda *args: ERR_NULL_POINTER)
def pynano_save_ticket_trampoline(ci: int, server_info: Any, server_info_len: int, _user_data: Any,
                                  ticket: Any, ticket_len: int) -> int:
    """Run the Python save-ticket callback of connection ci."""
    record = _record(ci)
    if record is None or record.save_ticket_callback is None:
        return OK
    info = bytes(ffi.buffer(server_info, server_info_len))
    blob = bytes(ffi.buffer(ticket, ticket_len))
    try:
        record.save_ticket_callback(ci, info, blob)
    except BaseException as error:  # noqa: BLE001  (never unwind through C)
        record.callback_error = error
        logger.error("instance %d: save-ticket callback raised %r; the session is not saved", ci, error)
        return ERR_NULL_POINTER
    return OK


@ffi.def_extern(onerror=lambda *args: ERR_NULL_POINTER)
def pynano_retrieve_ticket_trampoline(ci: int, server_info: Any, server_info_len: int, _user_data: Any,
                                      pp_ticket: Any, p_ticket_len: Any, p_free_memory: Any) -> int:
    """Run the Python retrieve-ticket callback of connection ci.

    The returned bytes are kept on the connection record; C copies them
    before this connection's handshake goes on, so C never frees them.
    """
    record = _record(ci)
    p_free_memory[0] = 0
    if record is None or record.retrieve_ticket_callback is None:
        return OK
    info = bytes(ffi.buffer(server_info, server_info_len))
    try:
        ticket = record.retrieve_ticket_callback(ci, info)
    except BaseException as error:  # noqa: BLE001  (never unwind through C)
        record.callback_error = error
        logger.error("instance %d: retrieve-ticket callback raised %r; full handshake", ci, error)
        return ERR_NULL_POINTER
    if ticket is None:
        return OK
    if not isinstance(ticket, (bytes, bytearray, memoryview)) or len(ticket) == 0:
        logger.error("instance %d: retrieve-ticket callback returned %r, not bytes or None; "
                     "full handshake", ci, type(ticket).__name__)
        return ERR_INVALID_ARG
    # Sized by hand: ffi.new() with a bytes initializer appends a NUL byte.
    data = bytes(ticket)
    ticket_copy = ffi.new("ubyte[]", len(data))
    ffi.memmove(ticket_copy, data, len(data))
    record.extras["retrieved_ticket"] = ticket_copy
    pp_ticket[0] = ticket_copy
    p_ticket_len[0] = len(data)
    return OK


# ---- lifecycle ---------------------------------------------------------


def SSL_init(numServerConnections: int, numClientConnections: int) -> int:
    """Initialise the stack and size the connection table."""
    return lib.SSL_init(_check_int("numServerConnections", numServerConnections, 0, INT32_MAX),
                        _check_int("numClientConnections", numClientConnections, 0, INT32_MAX))


def SSL_shutdownStack() -> int:
    """Free every connection and the table; open sockets stay open."""
    status = lib.SSL_shutdownStack()
    with _records_lock:
        _records.clear()
    return status


def SSL_releaseTables() -> int:
    """Free the connection table (same as SSL_shutdownStack)."""
    return SSL_shutdownStack()


def _register(ci: int, sock: Any, store: Optional["CertStore"]) -> int:
    if ci > 0:
        with _records_lock:
            _records[ci] = _ConnectionRecord(sock=sock, store=store)
            # Instance numbers restart when SSL_init rebuilds the table.
            _closed_errors.pop(ci, None)
    return ci


def SSL_acceptConnection(tempSocket: SocketLike, pCertStore: Optional["CertStore"]) -> int:
    """Create a server connection instance on an accepted socket."""
    store = _store_pointer(pCertStore, allow_none=True)
    return _register(lib.SSL_acceptConnection(_fd(tempSocket), store), tempSocket, pCertStore)


def SSL_connect(tempSocket: SocketLike, sessionIdLen: int, sessionId: Optional[bytes],
                masterSecret: Optional[bytes], dnsName: Optional[str],
                certStore: Optional["CertStore"]) -> int:
    """Create a client connection instance; dnsName is the expected server name."""
    length = _check_int("sessionIdLen", sessionIdLen, 0, 32)
    session_id = _optional_bytes("sessionId", sessionId)
    master_secret = _optional_bytes("masterSecret", masterSecret)
    if length and (len(session_id or b"") < length or len(master_secret or b"") != 48):
        raise ValueError(f"sessionId must hold sessionIdLen={length} bytes and masterSecret 48 bytes")
    session_id = ffi.NULL if not session_id else ffi.from_buffer(session_id)
    master_secret = ffi.NULL if not master_secret else ffi.from_buffer(master_secret)
    name = ffi.NULL if dnsName is None else _c_string("dnsName", dnsName)
    store = _store_pointer(certStore, allow_none=True)
    ci = lib.SSL_connect(_fd(tempSocket), length, session_id, master_secret, name, store)
    return _register(ci, tempSocket, certStore)


def _optional_bytes(name: str, value: Any) -> Optional[bytes]:
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes or None, got {type(value).__name__} {value!r:.60}")
    return bytes(value)


def SSL_negotiateConnection(connectionInstance: int) -> int:
    """Run the handshake; returns OK or a negative status."""
    ci = _instance(connectionInstance)
    while True:
        status = lib.SSL_negotiateConnection(ci)
        # A signal interrupted the wait in C; returning to the interpreter
        # runs its handler (KeyboardInterrupt for Ctrl-C), then go on.
        if status != PYNANO_ERR_INTERRUPTED:
            break
    if status < OK:
        logger.info("instance %d: handshake failed with %s", ci, DISPLAY_ERROR(status))
    else:
        logger.debug("instance %d: handshake complete", ci)
    return status


def SSL_closeConnection(connectionInstance: int) -> int:
    """Send close_notify and free the instance."""
    ci = _instance(connectionInstance)
    status = lib.SSL_closeConnection(ci)
    _forget_record(ci)
    return status


def _forget_record(ci: int) -> None:
    """Drop a closed connection's record, keeping its callback error readable."""
    with _records_lock:
        record = _records.pop(ci, None)
        if record is not None and record.callback_error is not None:
            _closed_errors[ci] = record.callback_error
            while len(_closed_errors) > _CLOSED_ERRORS_KEPT:
                _closed_errors.popitem(last=False)


# ---- records -----------------------------------------------------------


def SSL_send(connectionInstance: int, pBuffer: Buffer) -> int:
    """Send all of pBuffer; returns the byte count or a negative status."""
    ci = _instance(connectionInstance)
    data = _read_buffer("pBuffer", pBuffer)
    return lib.SSL_send(ci, ffi.cast("sbyte *", data), len(data))


def SSL_recv(connectionInstance: int, pRetBuffer: Union[bytearray, memoryview],
             timeout: int = 0) -> Tuple[int, int]:
    """Receive into pRetBuffer; returns (status, numBytesReceived).

    timeout is in milliseconds, 0 waits forever; ERR_TCP_READ_TIMEOUT on expiry.
    """
    ci = _instance(connectionInstance)
    buffer = _write_buffer("pRetBuffer", pRetBuffer)
    timeout_ms = _check_int("timeout", timeout, 0, UINT32_MAX)
    if len(buffer) > INT32_MAX:
        raise ValueError(f"pRetBuffer has {len(buffer)} bytes; at most {INT32_MAX} fit one call")
    received = ffi.new("sbyte4 *")
    remaining = timeout_ms
    while True:
        slice_ms = RECV_SLICE_MS if remaining == 0 else min(remaining, RECV_SLICE_MS)
        status = lib.SSL_recv(ci, ffi.cast("sbyte *", buffer), len(buffer), received, slice_ms)
        if status not in (ERR_TCP_READ_TIMEOUT, PYNANO_ERR_INTERRUPTED):
            return status, received[0]
        if timeout_ms != 0 and status == ERR_TCP_READ_TIMEOUT:
            remaining -= slice_ms
            if remaining <= 0:
                return ERR_TCP_READ_TIMEOUT, 0


def SSL_recvPending(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, isPending): whether decrypted bytes are waiting."""
    pending = ffi.new("sbyte4 *")
    status = lib.SSL_recvPending(_instance(connectionInstance), pending)
    return status, pending[0]


def SSL_sendAlert(connectionInstance: int, alertId: int, alertClass: int) -> int:
    """Send an alert of the given class (SSLALERTLEVEL_*)."""
    return lib.SSL_sendAlert(_instance(connectionInstance), _check_int("alertId", alertId, -(2**31), INT32_MAX),
                             _check_int("alertClass", alertClass, -(2**31), INT32_MAX))


def SSL_lookupAlert(connectionInstance: int, lookupError: int) -> Tuple[int, int, int]:
    """Return (status, alertId, alertClass) for a status code."""
    alert_id = ffi.new("sbyte4 *")
    alert_class = ffi.new("sbyte4 *")
    status = lib.SSL_lookupAlert(_instance(connectionInstance),
                                 _check_int("lookupError", lookupError, -(2**31), INT32_MAX),
                                 alert_id, alert_class)
    return status, alert_id[0], alert_class[0]


# ---- settings ----------------------------------------------------------


def SSL_getSessionFlags(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, flags)."""
    flags = ffi.new("ubyte4 *")
    status = lib.SSL_getSessionFlags(_instance(connectionInstance), flags)
    return status, flags[0]


def SSL_setSessionFlags(connectionInstance: int, flagsSSL: int) -> int:
    """Replace the session flag word (OR with SSL_getSessionFlags first)."""
    return lib.SSL_setSessionFlags(_instance(connectionInstance),
                                   _check_int("flagsSSL", flagsSSL, 0, UINT32_MAX))


def SSL_setInvalidCertCallback(connectionInstance: int,
                               callback: Optional[InvalidCertCallback]) -> int:
    """Set the callable run when the peer certificate fails validation.

    It gets (connectionInstance, status) and returns >= 0 to accept or a
    negative status to reject; None removes it. An exception in it rejects
    the handshake, is logged, and is kept for get_callback_error().
    """
    ci = _instance(connectionInstance)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    pointer = ffi.NULL if callback is None else lib.pynano_invalid_cert_trampoline
    status = lib.SSL_setInvalidCertCallback(ci, pointer)
    if status == OK:
        record = _record(ci)
        if record is None:
            return ERR_SSL_BAD_ID
        record.invalid_cert_callback = callback
    return status


def SSL_enableCiphers(connectionInstance: int, pCipherSuiteList: Sequence[int]) -> int:
    """Allow only these IANA cipher suite ids on this connection."""
    ci = _instance(connectionInstance)
    if isinstance(pCipherSuiteList, (str, bytes)) or not hasattr(pCipherSuiteList, "__len__"):
        raise TypeError(f"pCipherSuiteList must be a sequence of ints, got {pCipherSuiteList!r}")
    ids = [_check_int("cipher suite id", value, 0, 0xFFFF) for value in pCipherSuiteList]
    array = ffi.new("ubyte2[]", ids) if ids else ffi.NULL
    return lib.SSL_enableCiphers(ci, array, len(ids))


def SSL_getCipherList(connectionInstance: int) -> Tuple[int, List[int]]:
    """Return (status, enabled cipher suite ids) of a connection."""
    ids = ffi.new("ubyte2 **")
    count = ffi.new("ubyte4 *")
    status = lib.SSL_getCipherList(_instance(connectionInstance), ids, count)
    if status != OK:
        return status, []
    return status, [ids[0][i] for i in range(count[0])]


def SSL_getCipherInfo(connectionInstance: int) -> Tuple[int, int, int]:
    """Return (status, cipherId, peerEcCurves)."""
    cipher_id = ffi.new("ubyte2 *")
    curves = ffi.new("ubyte4 *")
    status = lib.SSL_getCipherInfo(_instance(connectionInstance), cipher_id, curves)
    return status, cipher_id[0], curves[0]


def SSL_getSSLTLSVersion(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, minor version): TLS 1.2 is 3, TLS 1.3 is 4."""
    version = ffi.new("ubyte4 *")
    status = lib.SSL_getSSLTLSVersion(_instance(connectionInstance), version)
    return status, version[0]


def SSL_getConnectionState(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, SSL_CONNECTION_* state)."""
    state = ffi.new("sbyte4 *")
    status = lib.SSL_getConnectionState(_instance(connectionInstance), state)
    return status, state[0]


def SSL_ioctl(connectionInstance: int, setting: int, value: int) -> int:
    """Change a connection setting (SSL_SET_*), before the handshake."""
    number = _check_int("value", value, 0, UINT32_MAX)
    return lib.SSL_ioctl(_instance(connectionInstance), _check_int("setting", setting, 0, UINT32_MAX),
                         ffi.cast("void *", number))


def SSL_setServerNameIndication(connectionInstance: int, serverName: str) -> int:
    """Set the server name a client sends (SNI) and checks the certificate against."""
    return lib.SSL_setServerNameIndication(_instance(connectionInstance),
                                           _c_string("serverName", serverName))


def DISPLAY_ERROR(status: int) -> str:
    """Return the NanoSSL name of a status code."""
    return ffi.string(lib.DISPLAY_ERROR(_check_int("status", status, -(2**31), INT32_MAX))).decode()


def _c_string(name: str, value: Any) -> Any:
    if isinstance(value, str):
        codec = "idna" if name in ("dnsName", "serverName") and not value.isascii() else "ascii"
        try:
            value = value.encode(codec)
        except UnicodeError as error:
            raise ValueError(f"{name}={value!r} is not a valid host name ({error}); "
                             "pass an ASCII or IDNA-encodable name") from None
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    if b"\0" in value:
        raise ValueError(f"{name}={value!r} contains a NUL byte")
    return ffi.new("char[]", value)


# ---- session resumption ------------------------------------------------


def SSL_getClientSessionInfo(connectionInstance: int) -> Tuple[int, bytes, bytes]:
    """Return (status, sessionId, masterSecret) after a TLS 1.2 client handshake.

    Pass both to SSL_connect to resume. NOTE: they resume only within this
    process, because pynano keeps the rest of the session (suite, server
    certificate) beside them in memory.
    """
    id_length = ffi.new("ubyte *")
    session_id = ffi.new("ubyte[]", 32)
    master = ffi.new("ubyte[]", 48)
    status = lib.SSL_getClientSessionInfo(_instance(connectionInstance), id_length, session_id, master)
    if status != OK:
        return status, b"", b""
    return status, bytes(ffi.buffer(session_id, id_length[0])), bytes(ffi.buffer(master, 48))


def SSL_setClientSaveTicketCallback(connectionInstance: int, callback: Optional[SaveTicketCallback]) -> int:
    """Set the callable that stores a session: callback(ci, serverInfo, ticket).

    The ticket is an opaque, versioned pynano session blob for TLS 1.2 and
    TLS 1.3 alike. The retrieve-ticket callback offers it to the same server
    later.
    """
    return _set_ticket_callback(connectionInstance, callback, "save_ticket_callback",
                                lib.SSL_setClientSaveTicketCallback, lib.pynano_save_ticket_trampoline)


def SSL_setClientRetrieveTicketCallback(connectionInstance: int,
                                        callback: Optional[RetrieveTicketCallback]) -> int:
    """Set the callable that offers a stored session: callback(ci, serverInfo) -> bytes or None."""
    return _set_ticket_callback(connectionInstance, callback, "retrieve_ticket_callback",
                                lib.SSL_setClientRetrieveTicketCallback,
                                lib.pynano_retrieve_ticket_trampoline)


def _set_ticket_callback(connectionInstance: int, callback: Any, field_name: str, setter: Any,
                         trampoline: Any) -> int:
    ci = _instance(connectionInstance)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    status = setter(ci, ffi.NULL if callback is None else trampoline)
    if status == OK:
        record = _record(ci)
        if record is None:
            return ERR_SSL_BAD_ID
        setattr(record, field_name, callback)
    return status


def PYNANO_getSessionBlob(connectionInstance: int) -> Tuple[int, Optional[bytes]]:
    """Return (status, session blob) of an open client connection."""
    ci = _instance(connectionInstance)
    length = ffi.new("ubyte4 *")
    status = lib.PYNANO_getSessionBlob(ci, ffi.NULL, 0, length)
    if status != OK:
        return status, None
    buffer = ffi.new("ubyte[]", length[0])
    status = lib.PYNANO_getSessionBlob(ci, buffer, length[0], length)
    return status, (bytes(ffi.buffer(buffer, length[0])) if status == OK else None)


def PYNANO_setSessionBlob(connectionInstance: int, blob: Buffer) -> int:
    """Offer a session blob on a client connection before its handshake."""
    data = _read_buffer("blob", blob, "ubyte[]")
    return lib.PYNANO_setSessionBlob(_instance(connectionInstance), data, len(data))


def PYNANO_getSessionReused(connectionInstance: int) -> Tuple[int, bool]:
    """Return (status, whether the handshake resumed a session)."""
    reused = ffi.new("sbyte4 *")
    status = lib.PYNANO_getSessionReused(_instance(connectionInstance), reused)
    return status, bool(reused[0])


def PYNANO_CERT_STORE_rotateTicketKeys(pCertStore: "CertStore") -> int:
    """Retire every ticket key of a server store; older tickets give full handshakes."""
    return lib.PYNANO_CERT_STORE_rotateTicketKeys(_store_pointer(pCertStore))


def PYNANO_CERT_STORE_flushSessionCache(pCertStore: "CertStore") -> int:
    """Drop every TLS 1.2 session-ID cache entry of a server store."""
    return lib.PYNANO_CERT_STORE_flushSessionCache(_store_pointer(pCertStore))


def PYNANO_CERT_STORE_setSessionLifetimes(pCertStore: "CertStore", ticketLifetimeSeconds: int,
                                          cacheTimeoutSeconds: int) -> int:
    """Set the ticket lifetime (and key rotation period) and the session cache timeout."""
    return lib.PYNANO_CERT_STORE_setSessionLifetimes(
        _store_pointer(pCertStore), _check_int("ticketLifetimeSeconds", ticketLifetimeSeconds, 0, UINT32_MAX),
        _check_int("cacheTimeoutSeconds", cacheTimeoutSeconds, 0, UINT32_MAX))


# ---- certificate store -------------------------------------------------


class CertStore:
    """A NanoSSL certStorePtr: trust points and identities, parsed once."""

    def __init__(self, pointer: Any) -> None:
        self._pointer = pointer

    @property
    def released(self) -> bool:
        """Whether CERT_STORE_releaseStore has been called."""
        return self._pointer is None

    def __repr__(self) -> str:
        if self._pointer is None:
            return "<CertStore released>"
        trust, identities = _store_counts(self)
        return f"<CertStore trust_points={trust} identities={identities}>"


def _store_pointer(store: Any, allow_none: bool = False) -> Any:
    if store is None and allow_none:
        return ffi.NULL
    if not isinstance(store, CertStore):
        raise TypeError(f"certificate store must come from CERT_STORE_createStore, got {store!r}")
    if store._pointer is None:
        raise ValueError("the certificate store was released; create a new one with CERT_STORE_createStore")
    return store._pointer


def _store_counts(store: CertStore) -> Tuple[int, int]:
    trust = ffi.new("ubyte4 *")
    identities = ffi.new("ubyte4 *")
    lib.PYNANO_CERT_STORE_getCounts(store._pointer, trust, identities)
    return trust[0], identities[0]


def PYNANO_CERT_STORE_getCounts(pCertStore: CertStore) -> Tuple[int, int, int]:
    """Return (status, trust points, identities) of a certificate store."""
    _store_pointer(pCertStore)
    trust, identities = _store_counts(pCertStore)
    return OK, trust, identities


def CERT_STORE_createStore() -> Tuple[int, Optional[CertStore]]:
    """Return (status, store): a new empty certificate store."""
    pointer = ffi.new("certStorePtr *")
    status = lib.CERT_STORE_createStore(pointer)
    return status, (CertStore(pointer[0]) if status == OK else None)


def CERT_STORE_releaseStore(store: CertStore) -> int:
    """Release the store; connections using it keep it until they close."""
    if not isinstance(store, CertStore):
        raise TypeError(f"store must come from CERT_STORE_createStore, got {store!r}")
    if store._pointer is None:
        return OK
    holder = ffi.new("certStorePtr *", store._pointer)
    status = lib.CERT_STORE_releaseStore(holder)
    store._pointer = None
    return status


def CERT_STORE_addTrustPoint(pCertStore: CertStore, der: Buffer) -> int:
    """Add a trusted CA certificate (DER or PEM; PEM may hold several)."""
    data = _read_buffer("der", der, "ubyte[]")
    return lib.CERT_STORE_addTrustPoint(_store_pointer(pCertStore), data, len(data))


def CERT_STORE_addIdentity(pCertStore: CertStore, derCert: Buffer, keyBlob: Buffer) -> int:
    """Add the own certificate and its private key (PEM or DER)."""
    cert = _read_buffer("derCert", derCert, "ubyte[]")
    key = _read_buffer("keyBlob", keyBlob, "ubyte[]")
    return lib.CERT_STORE_addIdentity(_store_pointer(pCertStore), cert, len(cert), key, len(key))


def _sized_buffers(certificates: Sequence[Buffer]) -> Tuple[Any, List[Any]]:
    if isinstance(certificates, (bytes, bytearray, memoryview, str)) or not isinstance(certificates, Sequence):
        raise TypeError(f"certificates must be a sequence of buffers, one per certificate, "
                        f"got {type(certificates).__name__}")
    views = [_read_buffer(f"certificates[{i}]", cert, "ubyte[]") for i, cert in enumerate(certificates)]
    array = ffi.new("SizedBuffer[]", max(len(views), 1))
    for slot, view in zip(array, views):
        slot.data = ffi.cast("ubyte *", view)
        slot.length = len(view)
    return array, views


def CERT_STORE_addIdentityWithCertificateChain(pCertStore: CertStore, certificates: Sequence[Buffer],
                                               keyBlob: Buffer) -> int:
    """Add the own certificate chain (leaf first) and its private key."""
    array, views = _sized_buffers(certificates)
    key = _read_buffer("keyBlob", keyBlob, "ubyte[]")
    return lib.CERT_STORE_addIdentityWithCertificateChain(_store_pointer(pCertStore), array,
                                                          len(views), key, len(key))


def PYNANO_CERT_STORE_addIdentityWithPassword(pCertStore: CertStore, certificates: Sequence[Buffer],
                                              keyBlob: Buffer, password: Optional[bytes]) -> int:
    """Add a certificate chain and an encrypted private key with its password."""
    array, views = _sized_buffers(certificates)
    key = _read_buffer("keyBlob", keyBlob, "ubyte[]")
    secret = _read_buffer("password", password, "ubyte[]") if password else ffi.NULL
    return lib.PYNANO_CERT_STORE_addIdentityWithPassword(
        _store_pointer(pCertStore), array, len(views), key, len(key),
        secret, len(secret) if password else 0)


# ---- pynano extensions -------------------------------------------------


@dataclass(frozen=True)
class VerifyDetails:
    """The certificate that failed verification on a connection."""

    status: int
    status_name: str
    mbedtls_flags: int
    depth: int
    subject: str
    issuer: str
    not_before: str
    not_after: str


def PYNANO_getVerifyDetails(connectionInstance: int) -> Tuple[int, Optional[VerifyDetails]]:
    """Return (status, details) of the last certificate verification failure."""
    details = ffi.new("pynano_verify_details *")
    status = lib.PYNANO_getVerifyDetails(_instance(connectionInstance), details)
    if status != OK:
        return status, None
    return status, VerifyDetails(
        status=details.status,
        status_name=DISPLAY_ERROR(details.status),
        mbedtls_flags=details.mbedtls_flags,
        depth=details.depth,
        subject=ffi.string(details.subject).decode(errors="replace"),
        issuer=ffi.string(details.issuer).decode(errors="replace"),
        not_before=ffi.string(details.not_before).decode(),
        not_after=ffi.string(details.not_after).decode(),
    )


def PYNANO_getLastMbedtlsError(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, Mbed TLS error code behind the last failure)."""
    code = ffi.new("sbyte4 *")
    status = lib.PYNANO_getLastMbedtlsError(_instance(connectionInstance), code)
    return status, code[0]


def PYNANO_mbedtlsErrorString(mbedtlsError: int) -> str:
    """Return Mbed TLS's description of one of its error codes."""
    buffer = ffi.new("char[]", 200)
    lib.PYNANO_mbedtlsErrorString(_check_int("mbedtlsError", mbedtlsError, -(2**31), INT32_MAX),
                                  buffer, 200)
    return ffi.string(buffer).decode(errors="replace")


def PYNANO_getPeerAlert(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, alert number the peer sent, or -1)."""
    alert = ffi.new("sbyte4 *")
    status = lib.PYNANO_getPeerAlert(_instance(connectionInstance), alert)
    return status, alert[0]


def PYNANO_getPeerCertificate(connectionInstance: int, index: int = 0) -> Tuple[int, Optional[bytes]]:
    """Return (status, DER) of the peer's certificate chain entry at index."""
    ci = _instance(connectionInstance)
    position = _check_int("index", index, 0, UINT32_MAX)
    length = ffi.new("ubyte4 *")
    status = lib.PYNANO_getPeerCertificate(ci, position, ffi.NULL, 0, length)
    if status != OK:
        return status, None
    buffer = ffi.new("ubyte[]", length[0])
    status = lib.PYNANO_getPeerCertificate(ci, position, buffer, length[0], length)
    return status, (bytes(ffi.buffer(buffer, length[0])) if status == OK else None)


def PYNANO_setAlpnProtocols(connectionInstance: int, protocols: Sequence[str]) -> int:
    """Offer (client) or accept (server) these ALPN protocol names."""
    if isinstance(protocols, (str, bytes)) or not isinstance(protocols, Sequence):
        raise TypeError(f"protocols must be a sequence of str, got {type(protocols).__name__} {protocols!r:.60}")
    encoded = b"".join(_alpn_name(name) + b"\0" for name in protocols) + b"\0"
    return lib.PYNANO_setAlpnProtocols(_instance(connectionInstance), ffi.new("char[]", encoded),
                                       len(encoded))


def _alpn_name(name: Any) -> bytes:
    if not isinstance(name, str) or not name or len(name.encode()) > 255 or "\0" in name:
        raise ValueError(f"ALPN protocol {name!r} must be a non-empty str of at most 255 bytes")
    return name.encode()


def PYNANO_getAlpnProtocol(connectionInstance: int) -> Tuple[int, Optional[str]]:
    """Return (status, negotiated ALPN protocol or None)."""
    buffer = ffi.new("char[]", 256)
    status = lib.PYNANO_getAlpnProtocol(_instance(connectionInstance), buffer, 256)
    name = ffi.string(buffer).decode() if status == OK else ""
    return status, (name or None)


def PYNANO_releaseConnection(connectionInstance: int) -> int:
    """Free a connection without sending close_notify or touching its socket."""
    ci = _instance(connectionInstance)
    status = lib.PYNANO_releaseConnection(ci)
    _forget_record(ci)
    return status


def PYNANO_getPendingBytes(connectionInstance: int) -> Tuple[int, int]:
    """Return (status, decrypted application bytes waiting)."""
    count = ffi.new("ubyte4 *")
    status = lib.PYNANO_getPendingBytes(_instance(connectionInstance), count)
    return status, count[0]


def PYNANO_getTableUsage() -> Tuple[int, int, int]:
    """Return (status, slots in use, table size)."""
    in_use = ffi.new("sbyte4 *")
    capacity = ffi.new("sbyte4 *")
    status = lib.PYNANO_getTableUsage(in_use, capacity)
    return status, in_use[0], capacity[0]
