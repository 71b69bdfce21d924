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

Sockets must be blocking or have a timeout. Non-blocking sockets (timeout
0.0) raise ValueError, because the NanoSSL calls wait until they finish.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import re
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from . import ciphers as _ciphers
from . import nanossl
from .exceptions import (
    CertificateVerifyError,
    TLSEOFError,
    TLSError,
    TLSTimeoutError,
    TLSZeroReturnError,
)

__all__ = [
    "CERT_NONE",
    "CERT_OPTIONAL",
    "CERT_REQUIRED",
    "Purpose",
    "TLSContext",
    "TLSSocket",
    "TLSVersion",
    "VerifyInfo",
    "VerifyMode",
    "create_default_context",
]

logger = logging.getLogger("pynano")

VerifyMode = ssl.VerifyMode
TLSVersion = ssl.TLSVersion
Purpose = ssl.Purpose
CERT_NONE = ssl.CERT_NONE
CERT_OPTIONAL = ssl.CERT_OPTIONAL
CERT_REQUIRED = ssl.CERT_REQUIRED

StrPath = Union[str, "os.PathLike[str]"]
Password = Union[str, bytes, bytearray, Callable[[], Union[str, bytes, bytearray]]]
VerifyCallback = Callable[["VerifyInfo"], bool]

# Connection table size per side when this module has to call SSL_init
# itself; call pynano.nanossl.SSL_init before the first connection for
# another size.
DEFAULT_CONNECTIONS_PER_SIDE = 256
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_MINOR_BY_VERSION = {TLSVersion.TLSv1_2: nanossl.TLS12_MINORVERSION,
                     TLSVersion.TLSv1_3: nanossl.TLS13_MINORVERSION}
_VERSION_NAMES = {nanossl.TLS12_MINORVERSION: "TLSv1.2", nanossl.TLS13_MINORVERSION: "TLSv1.3"}
_UINT32_MAX = 2**32 - 1
# SSL_send takes at most 2**31 - 1 bytes; send() passes at most this much.
_MAX_SEND = 1 << 30
# Mbed TLS 3.6 error code for a received close_notify (mbedtls/ssl.h).
_MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY = -0x7880

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)

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


# ---- verification details ------------------------------------------------

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
    """Why the peer's certificate failed verification.

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


# ---- certificate dictionaries as ssl.getpeercert() returns them ----------

# OpenSSL's long names, which the ssl module uses as attribute names.
_ATTRIBUTE_NAMES: Dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "commonName",
    NameOID.COUNTRY_NAME: "countryName",
    NameOID.LOCALITY_NAME: "localityName",
    NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName",
    NameOID.STREET_ADDRESS: "streetAddress",
    NameOID.ORGANIZATION_NAME: "organizationName",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "surname",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.TITLE: "title",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "domainComponent",
    NameOID.USER_ID: "userId",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionCountryName",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionStateOrProvinceName",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionLocalityName",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _name_tuple(name: x509.Name) -> Tuple[Tuple[Tuple[str, str], ...], ...]:
    return tuple(
        tuple((_ATTRIBUTE_NAMES.get(attribute.oid, attribute.oid.dotted_string), str(attribute.value))
              for attribute in rdn)
        for rdn in name.rdns
    )


def _asn1_time(moment: datetime) -> str:
    """Format a time as OpenSSL's ASN1_TIME_print does: 'Jan  5 09:34:43 2018 GMT'."""
    return (f"{_MONTHS[moment.month - 1]} {moment.day:2d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {moment.year} GMT")


def _serial_hex(serial: int) -> str:
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def _ip_text(address: Any) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        # The ssl module prints every IPv6 group, in upper case, without zero padding.
        return ":".join(f"{int.from_bytes(address.packed[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
    return str(address)


def _general_name(name: x509.GeneralName) -> Tuple[str, Any]:
    if isinstance(name, x509.DNSName):
        return ("DNS", name.value)
    if isinstance(name, x509.IPAddress):
        return ("IP Address", _ip_text(name.value))
    if isinstance(name, x509.RFC822Name):
        return ("email", name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return ("URI", name.value)
    if isinstance(name, x509.DirectoryName):
        return ("DirName", _name_tuple(name.value))
    if isinstance(name, x509.RegisteredID):
        return ("Registered ID", name.value.dotted_string)
    return ("othername", "<unsupported>")


def _validity(cert: x509.Certificate) -> Tuple[datetime, datetime]:
    # cryptography 42 added the *_utc properties; older versions return naive UTC.
    before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before
    after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    return before, after


def decode_certificate(der: bytes) -> Dict[str, Any]:
    """Decode a DER certificate into the dictionary that ssl's getpeercert() returns."""
    cert = x509.load_der_x509_certificate(der)
    before, after = _validity(cert)
    result: Dict[str, Any] = {
        "subject": _name_tuple(cert.subject),
        "issuer": _name_tuple(cert.issuer),
        "version": cert.version.value + 1,
        "serialNumber": _serial_hex(cert.serial_number),
        "notBefore": _asn1_time(before),
        "notAfter": _asn1_time(after),
    }
    _add_extensions(cert, result)
    return result


def _add_extensions(cert: x509.Certificate, result: Dict[str, Any]) -> None:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        result["subjectAltName"] = tuple(_general_name(name) for name in names)
    except x509.ExtensionNotFound:
        pass
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp = tuple(d.access_location.value for d in access
                     if d.access_method == AuthorityInformationAccessOID.OCSP)
        issuers = tuple(d.access_location.value for d in access
                        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
        if ocsp:
            result["OCSP"] = ocsp
        if issuers:
            result["caIssuers"] = issuers
    except x509.ExtensionNotFound:
        pass
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        uris = tuple(name.value for point in points for name in (point.full_name or [])
                     if isinstance(name, x509.UniformResourceIdentifier))
        if uris:
            result["crlDistributionPoints"] = uris
    except x509.ExtensionNotFound:
        pass


def _subject_text(der: Optional[bytes]) -> Optional[str]:
    if der is None:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


# ---- certificate files -----------------------------------------------------


def _read_file(path: StrPath) -> bytes:
    return Path(os.fspath(path)).read_bytes()


def _pem_certificates(data: bytes) -> List[bytes]:
    """Return each CERTIFICATE block of a PEM buffer, in order."""
    return _PEM_CERTIFICATE.findall(data)


def _der_certificates(data: bytes) -> List[bytes]:
    """Split concatenated DER certificates by their ASN.1 SEQUENCE headers."""
    items: List[bytes] = []
    offset = 0
    while offset < len(data):
        if data[offset] != 0x30 or offset + 2 > len(data):
            raise ValueError(f"cadata byte {offset} does not start a DER certificate "
                             f"(expected a SEQUENCE, 0x30); pass PEM as str")
        first = data[offset + 1]
        header = 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise ValueError(f"cadata byte {offset}: invalid DER length field")
            length = int.from_bytes(data[offset + 2:offset + 2 + count], "big")
            header += count
        end = offset + header + length
        if end > len(data):
            raise ValueError(f"cadata is truncated: the certificate at byte {offset} needs "
                             f"{end - offset} bytes, {len(data) - offset} are left")
        items.append(data[offset:end])
        offset = end
    return items


def _password_bytes(password: Password, key: bytes) -> Optional[bytes]:
    """Return the key password as bytes; a callable is called only for an encrypted key."""
    if callable(password):
        if key.lstrip().startswith(b"-----") and b"ENCRYPTED" not in key:
            return None
        password = password()
    if isinstance(password, str):
        return password.encode()
    if isinstance(password, (bytes, bytearray)):
        return bytes(password)
    raise TypeError(f"password should be a str, bytes or bytearray, or a callable returning one; "
                    f"got {type(password).__name__}")


@dataclass(frozen=True)
class _Identity:
    certificates: bytes
    key: bytes
    password: Optional[Password]
    source: str


@dataclass(frozen=True)
class _TrustPoint:
    data: bytes
    count: int
    source: str


def _status_error(message: str, status: int) -> TLSError:
    name = nanossl.DISPLAY_ERROR(status)
    return TLSError(f"{message} ({name})", status=status, name=name)


# ---- context -----------------------------------------------------------------


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
        """Return the certificate counts as ssl's cert_store_stats() does."""
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
        return sum(trust_point.count for trust_point in self._trust_points)

    def _add_trust(self, data: bytes, source: str) -> None:
        count = len(_pem_certificates(data)) or 1
        status = nanossl.CERT_STORE_addTrustPoint(self._store_for_change(), data)
        if status != nanossl.OK:
            raise self._trust_error(data, source, status)
        self._trust_points.append(_TrustPoint(data, count, source))

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
                self._trust_points.append(_TrustPoint(block, 1, source))
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
            logger.debug("context %#x: certificate store rebuilt after first use", id(self))
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

    def _store_for_connection(self) -> nanossl.CertStore:
        store = self._store if self._store is not None else self._store_for_change()
        self._store_in_use = True
        return store

    def _new_store(self) -> nanossl.CertStore:
        status, store = nanossl.CERT_STORE_createStore()
        if status != nanossl.OK or store is None:
            raise _status_error("CERT_STORE_createStore failed", status)
        return store

    def _replace_store(self, store: nanossl.CertStore) -> None:
        # Connections that use the old store keep it until they close.
        if self._store_release is not None:
            self._store_release()
        self._store = store
        self._store_in_use = False
        self._store_release = weakref.finalize(self, nanossl.CERT_STORE_releaseStore, store)

    # -- connections

    def wrap_socket(self, sock: socket.socket, server_side: Optional[bool] = None,
                    server_hostname: Optional[str] = None, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, session: Any = None) -> "TLSSocket":
        """Return a TLSSocket over sock, running the handshake now if sock is connected.

        server_side defaults to the context's side and must match it.
        server_hostname (clients only) is sent as SNI and is the name the
        certificate is checked against. With suppress_ragged_eofs, a peer
        that closes without close_notify reads as b"" as with ssl; otherwise
        it raises TLSEOFError. session must be None: pynano always runs a
        full handshake.
        NOTE: an IP address as server_hostname is checked against the
        certificate's IP entries but is also sent as SNI, which the ssl
        module does not do.
        """
        settings = self._settings_for(server_side, server_hostname, session)
        return TLSSocket._create(sock, self, settings, server_hostname, do_handshake_on_connect,
                                 suppress_ragged_eofs)

    def _settings_for(self, server_side: Optional[bool], server_hostname: Optional[str],
                      session: Any) -> _Settings:
        if server_side is not None and bool(server_side) != self._server_side:
            needed = "TLSContext(server_side=True)" if server_side else "TLSContext()"
            raise ValueError(f"server_side={bool(server_side)} does not match this "
                             f"{'server' if self._server_side else 'client'} context; use a {needed}")
        if session is not None:
            raise ValueError("session resumption is not supported: pass session=None; "
                             "pynano always runs a full handshake")
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


# ---- connection settings -----------------------------------------------------


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


# ---- error construction ---------------------------------------------------------

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


# Mbed TLS error texts that the build's mbedtls_strerror() lacks, because
# pynano compiles without MBEDTLS_NET_C (mbedtls/net_sockets.h of 3.6).
_NET_ERROR_TEXTS = {
    -0x0050: "NET - Connection was reset by peer",
    -0x004C: "NET - Reading information from the socket failed",
    -0x004E: "NET - Sending information through the socket failed",
}


def _mbedtls_text(ci: int) -> Tuple[int, str]:
    status, code = nanossl.PYNANO_getLastMbedtlsError(ci)
    if status != nanossl.OK or code == 0:
        return 0, ""
    text = _NET_ERROR_TEXTS.get(code) or nanossl.PYNANO_mbedtlsErrorString(code)
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


# ---- socket ------------------------------------------------------------------


class TLSSocket:
    """A TLS connection over a Python socket, used like ``ssl.SSLSocket``.

    Create it with ``TLSContext.wrap_socket``. It keeps the socket it wraps,
    and the NanoSSL connection instance (``connection_instance``) reads and
    writes on that socket's file descriptor. So do not use or close the
    wrapped socket directly while the TLSSocket is open. A handshake or read
    that runs past the wrapped socket's timeout raises TLSTimeoutError.
    NOTE: sends have no timeout, because SSL_send waits until the peer takes
    the data. A read holds the connection lock for up to 250 ms at a time,
    so a send from another thread can wait that long.
    """

    def __init__(self) -> None:
        raise TypeError("TLSSocket has no public constructor; use TLSContext.wrap_socket()")

    @classmethod
    def _create(cls, sock: socket.socket, context: TLSContext, settings: _Settings,
                server_hostname: Optional[str], do_handshake_on_connect: bool,
                suppress_ragged_eofs: bool) -> "TLSSocket":
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, got {type(sock).__name__}")
        if sock.type != socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets (SOCK_STREAM) are supported")
        _check_blocking(sock.gettimeout())
        self = cls.__new__(cls)
        self._init_state(sock, context, settings, server_hostname, do_handshake_on_connect,
                         suppress_ragged_eofs)
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

    # -- creation and handshake

    def _start(self, handshake: bool) -> None:
        """Create the connection instance on the connected socket, then shake hands."""
        try:
            self._peer = self._peer_label()
            ci = self._context._open_connection(self._sock, self._settings, self._server_hostname)
            self._instance = ci
            self._release = weakref.finalize(self, _release_connection, ci, self._sock)
            # At exit the process ends the sockets anyway; a close_notify to a
            # peer that does not read could block the exit.
            self._release.atexit = False
            _apply_settings(ci, self._settings)
            self._install_verify_callback(ci)
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

    def do_handshake(self, block: bool = False) -> None:
        """Run the TLS handshake; a no-op once it has completed."""
        ci = self._require_instance()
        if self._handshake_done:
            return
        if self._failure is not None:
            raise self._reuse_error()
        if not self._handshake_started:
            self._handshake_started = True
            timeout_ms = _timeout_ms(self._sock.gettimeout())
            _check(ci, nanossl.SSL_ioctl(ci, nanossl.PYNANO_SSL_SET_HANDSHAKE_TIMEOUT, timeout_ms),
                   "handshake timeout")
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

    # -- errors

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

    def _reuse_error(self) -> TLSError:
        failure = self._failure
        status = getattr(failure, "status", nanossl.ERR_SSL_NOT_OPEN)
        return TLSError(f"connection {self._instance} cannot be used after an earlier failure: "
                        f"{failure}; close it", status=status, name=nanossl.DISPLAY_ERROR(status),
                        connection_instance=self._instance)

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
        """Return 1 when decrypted data waits to be read, else 0.

        NOTE: NanoSSL reports only whether data waits, not how much, so this
        is never above 1, unlike ssl's byte count.
        """
        if self._instance is None or not self._handshake_done or self._end or self._tls_ended:
            return 0
        status, waiting = nanossl.SSL_recvPending(self._instance)
        return 1 if status == nanossl.OK and waiting else 0

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
        result = nanossl.SSL_send(ci, chunk)
        if result < 0:
            error = self._io_error(ci, result, "write")
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
    def session(self) -> None:
        """Always None: session resumption is not supported."""
        return None

    @property
    def session_reused(self) -> bool:
        """Always False: every connection runs a full handshake."""
        return False

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
        """Set the timeout in seconds for the handshake and reads; None waits forever."""
        _check_blocking(value)
        self._sock.settimeout(value)

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
        if self._release is not None and self._release.alive:
            self._release()
            logger.debug("instance %d: closed", self._instance)

    def __enter__(self) -> "TLSSocket":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self._version or "no handshake")
        return f"<TLSSocket instance={self._instance} peer={self._peer or '?'} {state}>"


def _release_connection(ci: int, sock: socket.socket) -> None:
    """Close a connection instance; sock is passed only to keep its descriptor open until then."""
    nanossl.SSL_closeConnection(ci)


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
