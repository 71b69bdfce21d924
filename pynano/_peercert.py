"""Certificate dictionaries in the form that ``ssl.SSLSocket.getpeercert()`` returns."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Dict, Tuple

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

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
