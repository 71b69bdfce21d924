"""Connection settings: the copy of a TLSContext's settings and the NanoSSL calls that apply it."""

from __future__ import annotations

import errno
import math
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from . import nanossl
from ._tls_errors import _status_error
from ._verify import VerifyCallback

VerifyMode = ssl.VerifyMode
TLSVersion = ssl.TLSVersion
CERT_NONE = ssl.CERT_NONE
CERT_OPTIONAL = ssl.CERT_OPTIONAL
CERT_REQUIRED = ssl.CERT_REQUIRED

_MINOR_BY_VERSION = {TLSVersion.TLSv1_2: nanossl.TLS12_MINORVERSION,
                     TLSVersion.TLSv1_3: nanossl.TLS13_MINORVERSION}
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class _Settings:
    """A context's settings as copied into one connection."""

    server_side: bool
    verify_mode: VerifyMode
    check_hostname: bool
    minimum_version: TLSVersion
    maximum_version: TLSVersion
    cipher_ids: Optional[Tuple[int, ...]]
    alpn_protocols: Optional[Tuple[str, ...]]
    verify_callback: Optional[VerifyCallback]


def _tls_version(value: Any, setting: str) -> TLSVersion:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{setting} must be an ssl.TLSVersion, got {type(value).__name__} {value!r}")
    try:
        version = TLSVersion(value)
    except ValueError:
        raise ValueError(f"{setting}={value!r} is not an ssl.TLSVersion value") from None
    if version == TLSVersion.MINIMUM_SUPPORTED:
        return TLSVersion.TLSv1_2
    if version == TLSVersion.MAXIMUM_SUPPORTED:
        return TLSVersion.TLSv1_3
    if version not in _MINOR_BY_VERSION:
        raise ValueError(f"{setting}={version.name} is not supported: pynano speaks only "
                         "TLSVersion.TLSv1_2 and TLSVersion.TLSv1_3")
    return version


def _verify_mode(value: Any) -> VerifyMode:
    try:
        return VerifyMode(value)
    except ValueError:
        raise ValueError(f"verify_mode={value!r} is invalid; use CERT_NONE, CERT_OPTIONAL "
                         "or CERT_REQUIRED") from None


def _check(ci: int, status: int, operation: str) -> None:
    if status != nanossl.OK:
        raise _status_error(f"connection {ci}: {operation} failed", status)


def _apply_settings(ci: int, settings: _Settings) -> None:
    """Turn the copied context settings into NanoSSL calls on ci."""
    if settings.server_side:
        _apply_server_verify_mode(ci, settings.verify_mode)
    else:
        _apply_client_verify_mode(ci, settings)
    _apply_versions(ci, settings.minimum_version, settings.maximum_version)
    if settings.cipher_ids is not None:
        _check(ci, nanossl.SSL_enableCiphers(ci, list(settings.cipher_ids)), "SSL_enableCiphers")
    if settings.alpn_protocols:
        _check(ci, nanossl.PYNANO_setAlpnProtocols(ci, list(settings.alpn_protocols)),
               "PYNANO_setAlpnProtocols")


def _apply_server_verify_mode(ci: int, mode: VerifyMode) -> None:
    # CERT_OPTIONAL is the C default: request a certificate, verify it if sent.
    extra = {CERT_NONE: nanossl.SSL_FLAG_NO_MUTUAL_AUTH_REQUEST,
             CERT_OPTIONAL: 0,
             CERT_REQUIRED: nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH}[mode]
    status, flags = nanossl.SSL_getSessionFlags(ci)
    _check(ci, status, "SSL_getSessionFlags")
    _check(ci, nanossl.SSL_setSessionFlags(ci, flags | extra), "SSL_setSessionFlags")


def _apply_client_verify_mode(ci: int, settings: _Settings) -> None:
    value = {CERT_NONE: nanossl.PYNANO_VERIFY_NONE,
             CERT_OPTIONAL: nanossl.PYNANO_VERIFY_OPTIONAL,
             CERT_REQUIRED: nanossl.PYNANO_VERIFY_REQUIRED}[settings.verify_mode]
    _check(ci, nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_VERIFY_MODE, value), "verify mode")
    if not settings.check_hostname:
        _check(ci, nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_CHECK_HOSTNAME, 0), "host name check")


def _apply_versions(ci: int, minimum: TLSVersion, maximum: TLSVersion) -> None:
    low, high = _MINOR_BY_VERSION[minimum], _MINOR_BY_VERSION[maximum]
    if low == high == nanossl.TLS12_MINORVERSION:
        _check(ci, nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, low), "SSL_SET_VERSION")
    elif low == nanossl.TLS13_MINORVERSION:
        _check(ci, nanossl.SSL_ioctl(ci, nanossl.SSL_SET_MINIMUM_VERSION, low), "SSL_SET_MINIMUM_VERSION")


def _timeout_ms(timeout: Optional[float]) -> int:
    """Convert a socket timeout to NanoSSL milliseconds, where 0 means no limit."""
    if timeout is None:
        return 0
    return min(max(1, math.ceil(timeout * 1000)), _UINT32_MAX)


def _is_listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


def _is_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError as error:
        if error.errno not in (errno.ENOTCONN, errno.EINVAL):
            raise
        return False
    return True


def _check_blocking(timeout: Optional[float]) -> None:
    if timeout == 0.0:
        raise ValueError("non-blocking sockets (timeout 0.0) are not supported by pynano; "
                         "use a blocking socket or a timeout above 0")
