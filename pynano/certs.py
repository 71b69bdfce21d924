"""Generate throwaway X.509 certificates and keys for tests and demos.

Everything here is built in memory with the ``cryptography`` package, so no
``openssl`` binary is needed. The keys are written unencrypted, so never use
this material outside tests and demos.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KEY_TYPES",
    "UNKNOWN_EXTENSION_OID",
    "PemPair",
    "PrivateKey",
    "TestPKI",
    "make_ca",
    "make_key",
    "make_leaf",
    "make_test_pki",
    "write_pki",
]

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# RSA modulus size in bits for each RSA key type that make_key accepts.
_RSA_KEY_BITS: Dict[str, int] = {"rsa": 2048, "rsa3072": 3072, "rsa4096": 4096}

KEY_TYPES: Tuple[str, ...] = ("ec",) + tuple(_RSA_KEY_BITS)
"""Valid ``key_type`` values: ECDSA P-256, then RSA 2048, 3072 and 4096."""

# cryptography 48 raises ValueError when asked for a smaller RSA key.
_MIN_RSA_KEY_BITS = 1024

UNKNOWN_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
"""OID of the extension that ``make_leaf(critical_unknown_extension=True)`` adds.

It sits in a private-enterprise arc and is no standard X.509 extension, so
RFC 5280 section 4.2 requires a verifier to reject a certificate that marks it
critical.
"""

_DEFAULT_BACKDATE = timedelta(hours=1)
_DEFAULT_LIFETIME = timedelta(days=30)

_SERVER_NAME = "localhost"
_SERVER_IP_ADDRESSES = ("127.0.0.1", "::1")
_CLIENT_NAME = "pynano test client"

# File names that write_pki creates. Keys get mode 0o600 because they are
# unencrypted.
_PKI_FILES: Tuple[Tuple[str, str, str], ...] = (
    # (file name, role in TestPKI, "cert" or "key")
    ("ca.pem", "ca", "cert"),
    ("ca.key", "ca", "key"),
    ("server.pem", "server", "cert"),
    ("server.key", "server", "key"),
    ("client.pem", "client", "cert"),
    ("client.key", "client", "key"),
)


@dataclass(frozen=True)
class PemPair:
    """PEM-encoded certificate and its unencrypted PKCS#8 private key."""

    cert_pem: bytes
    key_pem: bytes

    def cert_der(self) -> bytes:
        """Convert the certificate to DER."""
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class TestPKI:
    """CA with one server and one client certificate that it issued."""

    # Stops pytest from collecting this class as a test case when a test
    # module imports it.
    __test__ = False

    ca: PemPair
    server: PemPair
    client: PemPair


def make_key(key_type: str = "ec") -> PrivateKey:
    """Generate a private key of ``key_type``, one of KEY_TYPES.

    ``"ec"`` is ECDSA on P-256 and ``"rsa"`` is RSA 2048. ``"rsa3072"`` and
    ``"rsa4096"`` give larger RSA keys. Raises ValueError for any other value.
    """
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in _RSA_KEY_BITS:
        return _make_rsa_key(_RSA_KEY_BITS[key_type])

    valid = ", ".join(repr(name) for name in KEY_TYPES)
    raise ValueError(f"invalid key_type {key_type!r}: expected one of {valid}")


def make_ca(
    common_name: str = "pynano test CA",
    key_type: str = "ec",
    not_before: Optional[datetime] = None,
    not_after: Optional[datetime] = None,
) -> PemPair:
    """Create a self-signed CA certificate and its key.

    The certificate has basicConstraints CA:TRUE (critical, no path length
    limit) and keyUsage keyCertSign and cRLSign. The validity defaults are
    those of make_leaf.
    """
    key = make_key(key_type)
    public_key = key.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity(not_before, not_after)

    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
            critical=False,
        )
    )
    cert = builder.sign(key, hashes.SHA256())
    return _to_pem_pair(cert, key)


def make_leaf(
    issuer: PemPair,
    common_name: str,
    *,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[Union[str, IPAddress]] = (),
    server: bool,
    key_type: str = "ec",
    not_before: Optional[datetime] = None,
    not_after: Optional[datetime] = None,
    critical_unknown_extension: bool = False,
    key_bits: Optional[int] = None,
) -> PemPair:
    """Create an end-entity certificate and key, signed by ``issuer``.

    ``server=True`` sets extendedKeyUsage serverAuth, ``server=False`` sets
    clientAuth. ``dns_names`` and ``ip_addresses`` go into subjectAltName,
    which is left out when both are empty. The certificate has
    basicConstraints CA:FALSE and keyUsage digitalSignature, plus
    keyEncipherment for RSA keys.

    The certificate is valid from one hour ago to 30 days from now by default.
    If only ``not_after`` is given and it is earlier than that default start,
    ``not_before`` defaults to 30 days before ``not_after``, so an expired
    certificate needs only ``not_after``. Likewise ``not_after`` defaults to
    30 days after a future ``not_before``. Both datetimes must be
    timezone-aware.

    ``critical_unknown_extension=True`` adds UNKNOWN_EXTENSION_OID as a
    critical extension, which verifiers must reject. ``key_bits`` sets the
    modulus size of an RSA key and may be as small as 1024, so tests can check
    that the TLS stack rejects weak keys. It requires an RSA ``key_type``.

    Raises ValueError for an invalid key type, key size, IP address or
    validity period, and TypeError if ``dns_names`` or ``ip_addresses`` is a
    single str.
    """
    issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem)
    issuer_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    if not isinstance(issuer_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(
            f"unsupported issuer key type {type(issuer_key).__name__}: "
            "expected an EC or RSA key such as one from make_ca"
        )

    key = _make_leaf_key(key_type, key_bits)
    public_key = key.public_key()
    start, end = _validity(not_before, not_after)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=is_rsa),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(issuer_cert), critical=False)
    )

    alt_names = _subject_alt_names(dns_names, ip_addresses)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)

    if critical_unknown_extension:
        # The value is a DER NULL. Its content does not matter, because a
        # verifier rejects the certificate on the unknown critical OID alone.
        unknown = x509.UnrecognizedExtension(UNKNOWN_EXTENSION_OID, b"\x05\x00")
        builder = builder.add_extension(unknown, critical=True)

    cert = builder.sign(issuer_key, hashes.SHA256())
    return _to_pem_pair(cert, key)


def make_test_pki(key_type: str = "ec") -> TestPKI:
    """Create a CA plus a server and a client certificate that it signed.

    The server certificate is for CN "localhost" with subjectAltName
    DNS:localhost, IP:127.0.0.1 and IP:::1. The client certificate has
    CN "pynano test client". All three keys are of ``key_type``.
    """
    ca = make_ca(key_type=key_type)
    server = make_leaf(
        ca,
        _SERVER_NAME,
        dns_names=(_SERVER_NAME,),
        ip_addresses=_SERVER_IP_ADDRESSES,
        server=True,
        key_type=key_type,
    )
    client = make_leaf(ca, _CLIENT_NAME, server=False, key_type=key_type)
    return TestPKI(ca=ca, server=server, client=client)


def write_pki(directory: Union[str, Path], key_type: str = "ec") -> Dict[str, Path]:
    """Write a new make_test_pki result to PEM files in ``directory``.

    Creates the directory if missing and writes ca.pem, ca.key, server.pem,
    server.key, client.pem and client.key. Returns a dict from each file name
    to its path. Key files get mode 0o600 on POSIX systems.

    Raises FileExistsError, before writing anything, if any of the six files
    already exists. A file that appears while the others are being written
    also raises FileExistsError, and the files written before it stay.
    """
    directory_path = Path(directory)
    directory_path.mkdir(parents=True, exist_ok=True)
    paths = {file_name: directory_path / file_name for file_name, _, _ in _PKI_FILES}

    for path in paths.values():
        if path.exists():
            raise _file_exists_error(path)

    pki = make_test_pki(key_type)
    for file_name, role, kind in _PKI_FILES:
        pair: PemPair = getattr(pki, role)
        if kind == "key":
            _write_new_file(paths[file_name], pair.key_pem, 0o600)
        else:
            _write_new_file(paths[file_name], pair.cert_pem, 0o644)
    return paths


def _make_rsa_key(key_bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_bits)


def _make_leaf_key(key_type: str, key_bits: Optional[int]) -> PrivateKey:
    """Generate the leaf key, applying a ``key_bits`` override for RSA."""
    if key_bits is None:
        return make_key(key_type)

    if key_type not in _RSA_KEY_BITS:
        rsa_types = ", ".join(repr(name) for name in _RSA_KEY_BITS)
        raise ValueError(
            f"key_bits={key_bits} needs an RSA key_type ({rsa_types}), "
            f"but key_type is {key_type!r}"
        )
    if isinstance(key_bits, bool) or not isinstance(key_bits, int):
        raise ValueError(f"invalid key_bits {key_bits!r}: expected an int of at least 1024")
    if key_bits < _MIN_RSA_KEY_BITS:
        raise ValueError(
            f"invalid key_bits {key_bits}: the cryptography package cannot "
            f"generate RSA keys smaller than {_MIN_RSA_KEY_BITS} bits"
        )
    return _make_rsa_key(key_bits)


def _validity(
    not_before: Optional[datetime], not_after: Optional[datetime]
) -> Tuple[datetime, datetime]:
    """Fill in default validity bounds and check that the period is not empty."""
    _require_aware("not_before", not_before)
    _require_aware("not_after", not_after)

    now = datetime.now(timezone.utc)
    if not_before is None:
        not_before = now - _DEFAULT_BACKDATE
        # Keeps the default start before a not_after in the past, so callers
        # can build an expired certificate by passing not_after alone.
        if not_after is not None and not_after <= not_before:
            not_before = not_after - _DEFAULT_LIFETIME
    if not_after is None:
        not_after = max(now, not_before) + _DEFAULT_LIFETIME

    if not_after <= not_before:
        raise ValueError(
            f"invalid validity period: not_after ({not_after.isoformat()}) must be "
            f"later than not_before ({not_before.isoformat()})"
        )
    return not_before, not_after


def _require_aware(name: str, value: Optional[datetime]) -> None:
    # cryptography reads a naive datetime as UTC, which silently shifts a
    # local time, so naive values are rejected instead.
    if value is not None and value.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware, for example datetime.now(timezone.utc), "
            f"but got the naive datetime {value.isoformat()}"
        )


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Build the AKI from the issuer's SKI, or from its public key if it has none."""
    try:
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value)


def _subject_alt_names(
    dns_names: Iterable[str], ip_addresses: Iterable[Union[str, IPAddress]]
) -> list:
    # A lone str would otherwise be split into one name per character.
    for argument, value in (("dns_names", dns_names), ("ip_addresses", ip_addresses)):
        if isinstance(value, str):
            raise TypeError(
                f"{argument} must be a sequence of strings, not the single str {value!r}: "
                f"pass ({value!r},) instead"
            )

    names: list = [x509.DNSName(name) for name in dns_names]
    for address in ip_addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"invalid IP address {address!r} in ip_addresses") from None
        names.append(x509.IPAddress(parsed))
    return names


def _to_pem_pair(cert: x509.Certificate, key: PrivateKey) -> PemPair:
    key_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return PemPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem)


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a file that must not exist yet, then set ``mode``."""
    # O_EXCL makes creation fail if the file appeared after the existence
    # check. Passing the mode to os.open means a key file is never readable
    # by others, even before the chmod below.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise _file_exists_error(path) from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    # The umask may have cleared bits that os.open was asked for.
    os.chmod(path, mode)


def _file_exists_error(path: Path) -> FileExistsError:
    return FileExistsError(
        f"{path} already exists: pass a new or empty folder to write_pki "
        "so that no existing certificate or key is overwritten"
    )
