"""Certificate verification details: VerifyInfo and the verify callback plumbing.

A NanoSSL invalid-certificate callback gets only (instance, status). This
module reads the rest with ``PYNANO_getVerifyDetails``, maps the Mbed TLS
flags to the OpenSSL ``X509_V_ERR_*`` number that ``ssl`` reports, and wraps
a ``VerifyInfo`` callback for ``SSL_setInvalidCertCallback``.
"""

from __future__ import annotations

import ipaddress
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional, Tuple

from . import nanossl

if TYPE_CHECKING:
    from .tls import TLSSocket

logger = logging.getLogger("pynano")

VerifyCallback = Callable[["VerifyInfo"], bool]

# MBEDTLS_X509_BADCERT_* and MBEDTLS_X509_BADCRL_* bits of mbedtls/x509.h
# in Mbed TLS 3.6.
_BADCERT_FLAGS: Tuple[Tuple[int, str], ...] = (
    (0x01, "EXPIRED"), (0x02, "REVOKED"), (0x04, "CN_MISMATCH"), (0x08, "NOT_TRUSTED"),
    (0x10, "CRL_NOT_TRUSTED"), (0x20, "CRL_EXPIRED"), (0x40, "MISSING"), (0x80, "SKIP_VERIFY"),
    (0x0100, "OTHER"), (0x0200, "FUTURE"), (0x0400, "CRL_FUTURE"), (0x0800, "KEY_USAGE"),
    (0x1000, "EXT_KEY_USAGE"), (0x2000, "NS_CERT_TYPE"), (0x4000, "BAD_MD"), (0x8000, "BAD_PK"),
    (0x010000, "BAD_KEY"), (0x020000, "CRL_BAD_MD"), (0x040000, "CRL_BAD_PK"),
    (0x080000, "CRL_BAD_KEY"),
)
_FLAG = {name: bit for bit, name in _BADCERT_FLAGS}


@dataclass(frozen=True)
class VerifyInfo:
    """Details of a failed peer certificate verification.

    A verify callback gets one of these, and ``CertificateVerifyError``
    carries one too. Fields:

    * ``status``, ``status_name``: the NanoSSL status, such as ERR_CERT_EXPIRED.
    * ``mbedtls_flags``, ``flag_names``: the ``MBEDTLS_X509_BADCERT_*`` bits
      of the whole chain, and their names without the prefix.
    * ``depth``: position of the failing certificate. 0 is the peer's own
      certificate, and -1 means that the peer sent none.
    * ``subject``, ``issuer``: Mbed TLS distinguished-name strings, such as
      ``CN=localhost``. ``not_before`` and ``not_after`` are UTC datetimes.
    * ``verify_code``, ``verify_message``: the closest OpenSSL
      ``X509_V_ERR_*`` number and text, as in ``ssl.SSLCertVerificationError``.
    """

    status: int
    status_name: str
    mbedtls_flags: int
    flag_names: Tuple[str, ...]
    depth: int
    subject: str
    issuer: str
    not_before: Optional[datetime]
    not_after: Optional[datetime]
    verify_code: int
    verify_message: str
    server_hostname: Optional[str]
    connection_instance: int


def _flag_names(flags: int) -> Tuple[str, ...]:
    return tuple(name for bit, name in _BADCERT_FLAGS if flags & bit)


def _parse_utc(text: str) -> Optional[datetime]:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _is_ip_address(name: Optional[str]) -> bool:
    try:
        ipaddress.ip_address(name or "")
    except ValueError:
        return False
    return True


def _openssl_verify_code(flags: int, depth: int, subject: str, issuer: str,
                         hostname: Optional[str]) -> Tuple[int, str]:
    """Return the OpenSSL X509_V_ERR_* number and text closest to Mbed TLS flags.

    The order follows the C layer's choice of status: a missing certificate,
    then trust, then dates, then the host name, then algorithms and usage.
    """
    if flags & _FLAG["MISSING"]:
        return 0, "peer did not return a certificate"
    if flags & _FLAG["NOT_TRUSTED"]:
        if subject and subject == issuer:
            if depth == 0:
                return 18, "self-signed certificate"
            return 19, "self-signed certificate in certificate chain"
        return 20, "unable to get local issuer certificate"
    if flags & (_FLAG["EXPIRED"] | _FLAG["CRL_EXPIRED"]):
        return 10, "certificate has expired"
    if flags & (_FLAG["FUTURE"] | _FLAG["CRL_FUTURE"]):
        return 9, "certificate is not yet valid"
    if flags & _FLAG["CN_MISMATCH"]:
        if _is_ip_address(hostname):
            return 64, f"IP address mismatch, certificate is not valid for '{hostname}'."
        return 62, f"Hostname mismatch, certificate is not valid for '{hostname}'."
    if flags & _FLAG["REVOKED"]:
        return 23, "certificate revoked"
    if flags & _FLAG["BAD_MD"]:
        return 68, "CA signature digest algorithm too weak"
    if flags & _FLAG["BAD_KEY"]:
        return (66, "EE certificate key too weak") if depth == 0 else (67, "CA certificate key too weak")
    if flags & _FLAG["BAD_PK"]:
        return 7, "certificate signature failure"
    if flags & (_FLAG["KEY_USAGE"] | _FLAG["EXT_KEY_USAGE"] | _FLAG["NS_CERT_TYPE"]):
        return 26, "unsupported certificate purpose"
    return 1, "unspecified certificate verification error"


def _read_verify_info(ci: int, fallback_status: int, hostname: Optional[str]) -> VerifyInfo:
    """Build the VerifyInfo of connection ci from PYNANO_getVerifyDetails."""
    status, details = nanossl.PYNANO_getVerifyDetails(ci)
    if status != nanossl.OK or details is None:
        flags, depth, subject, issuer, before, after = 0, -1, "", "", "", ""
        verify_status = fallback_status
    else:
        flags, depth = details.mbedtls_flags, details.depth
        subject, issuer = details.subject, details.issuer
        before, after = details.not_before, details.not_after
        verify_status = details.status or fallback_status
    code, message = _openssl_verify_code(flags, depth, subject, issuer, hostname)
    return VerifyInfo(
        status=verify_status,
        status_name=nanossl.DISPLAY_ERROR(verify_status),
        mbedtls_flags=flags,
        flag_names=_flag_names(flags),
        depth=depth,
        subject=subject,
        issuer=issuer,
        not_before=_parse_utc(before) if depth >= 0 else None,
        not_after=_parse_utc(after) if depth >= 0 else None,
        verify_code=code,
        verify_message=message,
        server_hostname=hostname,
        connection_instance=ci,
    )


def _callback_adapter(socket_ref: "weakref.ref[TLSSocket]",
                      callback: VerifyCallback) -> Callable[[int, int], bool]:
    """Wrap a VerifyInfo callback as the (instance, status) callback NanoSSL calls."""

    def on_invalid_certificate(ci: int, status: int) -> bool:
        tls = socket_ref()
        hostname = tls.server_hostname if tls is not None else None
        info = _read_verify_info(ci, status, hostname)
        if tls is not None:
            tls._last_verify_info = info
        verdict = callback(info)
        if not isinstance(verdict, bool):
            raise TypeError(f"the verify callback must return True or False, got {verdict!r}")
        if tls is not None:
            tls._callback_verdict = verdict
        logger.info("instance %d: verify callback %s %s (%s) for %s", ci,
                    "accepted" if verdict else "rejected", info.status_name, info.verify_message,
                    info.subject or "a missing certificate")
        return verdict

    return on_invalid_certificate
