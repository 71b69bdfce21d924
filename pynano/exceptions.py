"""Exceptions of the ssl-style API, each a subclass of its ``ssl`` module twin.

Code written for the standard ``ssl`` module keeps working: ``except
ssl.SSLError`` catches every TLSError, ``except
ssl.SSLCertVerificationError`` catches CertificateVerifyError, and
TLSTimeoutError is a ``socket.timeout``. Each error also carries the NanoSSL
status and the Mbed TLS error code behind it, the same values that
``pynano.nanossl`` calls return.

``args[0]`` is the ``ssl.SSL_ERROR_*`` number that the ``ssl`` module would
use for the same condition (``errno.ETIMEDOUT`` for a timeout), and
``args[1]`` is the message.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type

if TYPE_CHECKING:
    from ._verify import VerifyInfo

__all__ = [
    "CertificateVerifyError",
    "TLSEOFError",
    "TLSError",
    "TLSTimeoutError",
    "TLSZeroReturnError",
]


def _rebuild(cls: Type["TLSError"], message: str, state: Dict[str, Any]) -> "TLSError":
    error = cls(message)
    error.__dict__.update(state)
    return error


class TLSError(ssl.SSLError):
    """A TLS operation failed.

    Attributes:

    * ``status``, ``name``: the NanoSSL status and its name, such as
      ERR_SSL_FATAL_ALERT.
    * ``mbedtls_code``: the Mbed TLS error code behind it, or 0.
    * ``connection_instance``: the NanoSSL connection instance, or None
      before one exists.
    * ``alert``: the TLS alert number that the peer sent, or None.
    * ``reason``, ``library``: the attributes that the ``ssl`` module sets.
    """

    ssl_error_code = ssl.SSL_ERROR_SSL

    def __init__(self, message: str, *, status: int = 0, name: str = "", mbedtls_code: int = 0,
                 connection_instance: Optional[int] = None, alert: Optional[int] = None,
                 reason: Optional[str] = None) -> None:
        super().__init__(self._error_number(), message)
        self.status = status
        self.name = name
        self.mbedtls_code = mbedtls_code
        self.connection_instance = connection_instance
        self.alert = alert
        self.library = "pynano"
        self.reason = reason or name

    def _error_number(self) -> int:
        return self.ssl_error_code

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (_rebuild, (type(self), self.strerror, dict(self.__dict__)))


class CertificateVerifyError(TLSError, ssl.SSLCertVerificationError):
    """This side rejected the peer's certificate.

    ``verify_code`` and ``verify_message`` follow the ``ssl`` module. The
    code is the OpenSSL ``X509_V_ERR_*`` number closest to the Mbed TLS
    verification flags, such as 10 for an expired certificate or 62 for a
    host name mismatch, and the message is OpenSSL's text for it.
    ``verify_info`` contains the details of the failing certificate, or None.
    """

    def __init__(self, message: str, *, verify_code: int = 0, verify_message: str = "",
                 verify_info: Optional["VerifyInfo"] = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.verify_code = verify_code
        self.verify_message = verify_message
        self.verify_info = verify_info
        if not self.reason or self.reason == self.name:
            self.reason = "CERTIFICATE_VERIFY_FAILED"


class TLSZeroReturnError(TLSError, ssl.SSLZeroReturnError):
    """The peer closed the TLS connection cleanly with close_notify.

    Reads return ``b""`` after a clean close, as with the ``ssl`` module;
    this error comes from a send after that.
    """

    ssl_error_code = ssl.SSL_ERROR_ZERO_RETURN


class TLSEOFError(TLSError, ssl.SSLEOFError):
    """The connection ended without close_notify (TCP EOF or reset)."""

    ssl_error_code = ssl.SSL_ERROR_EOF


class TLSTimeoutError(TLSError, socket.timeout):
    """A handshake or read did not finish within the socket's timeout."""

    def _error_number(self) -> int:
        return errno.ETIMEDOUT
