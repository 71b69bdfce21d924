"""TLSError construction: from a NanoSSL status, the peer's alert and Mbed TLS error codes."""

from __future__ import annotations

import socket
from typing import Any, Dict, Optional, Tuple

from . import nanossl
from ._verify import VerifyInfo, _read_verify_info
from .exceptions import (
    CertificateVerifyError,
    TLSEOFError,
    TLSError,
    TLSTimeoutError,
    TLSZeroReturnError,
)


def _status_error(message: str, status: int) -> TLSError:
    name = nanossl.DISPLAY_ERROR(status)
    return TLSError(f"{message} ({name})", status=status, name=name)


_ALERT_NAMES: Dict[int, str] = {
    value: name[len("SSL_ALERT_"):].lower()
    for name, value in vars(nanossl).items() if name.startswith("SSL_ALERT_") and isinstance(value, int)
}

_ALERT_HINTS: Dict[int, str] = {
    nanossl.SSL_ALERT_UNKNOWN_CA: "the peer does not trust the CA that issued our certificate; "
                                  "load that CA into the peer's trust store",
    nanossl.SSL_ALERT_BAD_CERTIFICATE: "the peer rejected our certificate; check its issuer, "
                                       "dates and key usage",
    nanossl.SSL_ALERT_CERTIFICATE_UNKNOWN: "the peer rejected our certificate; check its issuer, "
                                           "dates and key usage",
    nanossl.SSL_ALERT_UNSUPPORTED_CERTIFICATE: "the peer cannot use our certificate; check its "
                                               "key usage and key type",
    nanossl.SSL_ALERT_CERTIFICATE_EXPIRED: "the peer says our certificate has expired or is not "
                                           "yet valid",
    nanossl.SSL_ALERT_CERTIFICATE_REQUIRED: "the peer requires a client certificate; call "
                                            "load_cert_chain() on this context",
    nanossl.SSL_ALERT_HANDSHAKE_FAILURE: "the peer found no acceptable parameters: compare cipher "
                                         "suites and versions, and give a client certificate if "
                                         "the peer requires one",
    nanossl.SSL_ALERT_PROTOCOL_VERSION: "the peer does not accept our TLS version range",
    nanossl.SSL_ALERT_NO_APPLICATION_PROTOCOL: "the peer supports none of our ALPN protocols",
    nanossl.SSL_ALERT_INSUFFICIENT_SECURITY: "the peer requires stronger cipher suites",
    nanossl.SSL_ALERT_DECRYPT_ERROR: "a signature or key exchange failed at the peer",
}

_STATUS_HINTS: Dict[int, str] = {
    nanossl.ERR_SSL_NO_CIPHER_MATCH: "the peers share no cipher suite in the allowed TLS "
                                     "versions; compare set_ciphers() and the version range with "
                                     "the peer's, and run `pynano ciphers` for this build's suites",
    nanossl.ERR_SSL_PROTOCOL_VERSION: "the peers share no TLS version; pynano speaks TLS 1.2 and "
                                      "1.3, so check minimum_version and maximum_version",
    nanossl.ERR_SSL_CONFIG: "the connection settings are incomplete; a server needs "
                            "load_cert_chain()",
    nanossl.ERR_TCP_READ_ERROR: "reading from the socket failed; check the network path to the peer",
    nanossl.ERR_TCP_WRITE_ERROR: "writing to the socket failed; the peer may have gone",
    nanossl.ERR_SSL_INVALID_SIGNATURE: "a handshake signature did not verify; check that each "
                                       "side's key matches its certificate",
    nanossl.ERR_SSL_UNSUPPORTED_ALGORITHM: "the peer requires an algorithm this build lacks",
}

_VERIFY_HINTS: Dict[int, str] = {
    0: "the client sent no certificate; give it one with load_cert_chain(), or set this "
       "server's verify_mode to CERT_OPTIONAL",
    9: "the certificate is not valid yet; check this machine's clock",
    10: "renew the peer's certificate, or check this machine's clock",
    18: "trust the issuing CA with load_verify_locations()",
    19: "trust the issuing CA with load_verify_locations()",
    20: "trust the issuing CA with load_verify_locations(), or load_default_certs() for public hosts",
    62: "connect with a server_hostname that the certificate names",
    64: "connect with an address that the certificate names",
    26: "use a certificate whose (extended) key usage allows this role",
}

_CERTIFICATE_STATUSES = frozenset({
    nanossl.ERR_CERT_INVALID_STRUCT, nanossl.ERR_CERT_EXPIRED, nanossl.ERR_CERT_BAD_COMMON_NAME,
    nanossl.ERR_CERT_INVALID_SIGNATURE, nanossl.ERR_CERT_CHAIN_NOT_VERIFIED,
    nanossl.ERR_CERT_INVALID_KEYUSAGE, nanossl.ERR_CERT_START_TIME_VALID_IN_FUTURE,
    nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR, nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE,
})


# MBEDTLS_ERR_NET_SEND_FAILED of mbedtls/net_sockets.h (Mbed TLS 3.6).
_MBEDTLS_ERR_NET_SEND_FAILED = -0x004E


def _mbedtls_text(ci: int) -> Tuple[int, str]:
    status, code = nanossl.PYNANO_getLastMbedtlsError(ci)
    if status != nanossl.OK or code == 0:
        return 0, ""
    text = nanossl.PYNANO_mbedtlsErrorString(code)
    return code, f", Mbed TLS -0x{-code:04X}: {text}"


def _peer_alert(ci: int) -> Optional[int]:
    status, alert = nanossl.PYNANO_getPeerAlert(ci)
    return alert if status == nanossl.OK and alert >= 0 else None


def _unread_plaintext_alert(sock: socket.socket) -> Optional[int]:
    """Return the alert number of a plaintext alert record waiting on sock, if any.

    A TLS 1.2 peer that rejects us mid-handshake sends an alert and closes
    with our next messages unread, which resets the connection. Mbed TLS
    then fails on its next write, before it reads the alert, but Linux keeps
    the alert in the receive queue, so a peek finds it.
    """
    try:
        head = sock.recv(7, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return None
    # Record type 21 (alert), version 3.x, length 2, then level and number.
    if len(head) == 7 and head[0] == 21 and head[1] == 3 and head[3:5] == b"\x00\x02":
        return head[6]
    return None


class _SocketErrors:
    """The exceptions of a TLSSocket, as a base class of it.

    The attributes below are set by TLSSocket.
    """

    _instance: Optional[int]
    _peer: str
    _sock: socket.socket
    _server_hostname: Optional[str]
    _end: Optional[str]
    _failure: Optional[BaseException]
    _last_verify_info: Optional[VerifyInfo]
    _callback_verdict: Optional[bool]
    _send_timeout: Optional[float]

    def _where(self, operation: str) -> str:
        return f"TLS {operation} on connection {self._instance} with {self._peer}"

    def _handshake_error(self, ci: int, status: int) -> TLSError:
        name = nanossl.DISPLAY_ERROR(status)
        code, mbedtls_text = _mbedtls_text(ci)
        details: Dict[str, Any] = {"status": status, "name": name, "mbedtls_code": code,
                                   "connection_instance": ci}
        where = self._where("handshake")
        if status == nanossl.ERR_TCP_READ_TIMEOUT:
            return TLSTimeoutError(f"{where} timed out after {self._sock.gettimeout()} s; check that "
                                   "the peer speaks TLS on this port, or raise the socket timeout",
                                   **details)
        if status in _CERTIFICATE_STATUSES:
            return self._verify_error(ci, where, details, mbedtls_text)
        alert = _peer_alert(ci)
        if alert is None and status == nanossl.ERR_TCP_SOCKET_CLOSED:
            alert = _unread_plaintext_alert(self._sock)
        if alert is not None:
            return self._alert_error(where, alert, details, mbedtls_text)
        if status == nanossl.ERR_TCP_SOCKET_CLOSED:
            return TLSEOFError(f"{where} failed: the peer closed the connection during the handshake "
                               f"[{name}{mbedtls_text}]; the peer may reject our TLS versions, cipher "
                               "suites or certificate, so check its log", **details)
        hint = _STATUS_HINTS.get(status, "enable the 'pynano' logger and compare both sides' settings")
        return TLSError(f"{where} failed [{name}{mbedtls_text}]; {hint}", **details)

    def _verify_error(self, ci: int, where: str, details: Dict[str, Any],
                      mbedtls_text: str) -> CertificateVerifyError:
        info = self._last_verify_info or _read_verify_info(ci, details["status"], self._server_hostname)
        rejected_by = " by the verify callback" if self._callback_verdict is False else ""
        about = f"{info.subject}" if info.subject else "no certificate"
        hint = _VERIFY_HINTS.get(info.verify_code, "check the peer's certificate chain")
        cause = nanossl.get_callback_error(ci)
        if cause is not None:
            hint = "the verify callback raised an exception; see __cause__"
        error = CertificateVerifyError(
            f"{where} failed: certificate verify failed{rejected_by}: {info.verify_message} "
            f"({about}, depth {info.depth}) [{details['name']}, Mbed TLS flags "
            f"0x{info.mbedtls_flags:X} {'|'.join(info.flag_names) or '-'}]; {hint}",
            verify_code=info.verify_code, verify_message=info.verify_message, verify_info=info,
            **details)
        error.__cause__ = cause
        return error

    def _alert_error(self, where: str, alert: int, details: Dict[str, Any],
                     mbedtls_text: str) -> TLSError:
        alert_name = _ALERT_NAMES.get(alert, "unknown")
        hint = _ALERT_HINTS.get(alert, "check the peer's log for the reason")
        return TLSError(f"{where} failed: the peer sent fatal alert {alert_name} ({alert}) "
                        f"[{details['name']}{mbedtls_text}]; {hint}",
                        alert=alert, reason=f"TLSV1_ALERT_{alert_name.upper()}", **details)

    def _io_error(self, ci: int, status: int, operation: str) -> OSError:
        """Build the exception for a failed read or write on an open connection."""
        name = nanossl.DISPLAY_ERROR(status)
        code, mbedtls_text = _mbedtls_text(ci)
        details: Dict[str, Any] = {"status": status, "name": name, "mbedtls_code": code,
                                   "connection_instance": ci}
        where = self._where(operation)
        if status == nanossl.ERR_TCP_READ_TIMEOUT:
            return TLSTimeoutError(f"{where}: the read operation timed out after "
                                   f"{self._sock.gettimeout()} s", **details)
        alert = _peer_alert(ci)
        if alert is not None and alert != nanossl.SSL_ALERT_CLOSE_NOTIFY:
            return self._alert_error(where, alert, details, mbedtls_text)
        if status == nanossl.ERR_TCP_SOCKET_CLOSED and self._end == "close_notify":
            return TLSZeroReturnError(f"{where} failed: the peer closed the TLS connection with "
                                      "close_notify; no more data can be sent", **details)
        if status == nanossl.ERR_TCP_SOCKET_CLOSED:
            return TLSEOFError(f"{where} failed: the connection ended without close_notify "
                               f"[{name}{mbedtls_text}]", **details)
        hint = _STATUS_HINTS.get(status, "the connection cannot be used any more; close it")
        return TLSError(f"{where} failed [{name}{mbedtls_text}]; {hint}", **details)

    def _write_error(self, ci: int, status: int, elapsed: float) -> OSError:
        """Build the exception for a failed SSL_send that ran for elapsed seconds."""
        timeout = self._send_timeout
        code = nanossl.PYNANO_getLastMbedtlsError(ci)[1]
        # The C layer reports a send timeout as a failed socket write, so the
        # duration of the call distinguishes a timeout from other failures.
        if (status == nanossl.ERR_TCP_WRITE_ERROR and code == _MBEDTLS_ERR_NET_SEND_FAILED
                and timeout is not None and elapsed >= timeout):
            return TLSTimeoutError(f"{self._where('write')}: the write operation timed out after "
                                   f"{timeout} s, because the peer did not read; the connection "
                                   "cannot be used any more, so close it",
                                   status=status, name=nanossl.DISPLAY_ERROR(status), mbedtls_code=code,
                                   connection_instance=ci)
        return self._io_error(ci, status, "write")

    def _reuse_error(self) -> TLSError:
        failure = self._failure
        status = getattr(failure, "status", nanossl.ERR_SSL_NOT_OPEN)
        return TLSError(f"connection {self._instance} cannot be used after an earlier failure: "
                        f"{failure}; close it", status=status, name=nanossl.DISPLAY_ERROR(status),
                        connection_instance=self._instance)
