"""Cipher suites of this build: IANA ids, standard names and OpenSSL names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

from ._native import ffi, lib

# OpenSSL's names for the suites this build can compile; TLS 1.3 suites keep
# their standard names in OpenSSL too.
OPENSSL_NAMES: Dict[int, str] = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
}


@dataclass(frozen=True)
class CipherSuite:
    """One cipher suite compiled into this build."""

    id: int
    name: str            # IANA name, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    openssl_name: str
    tls_version: str     # "TLSv1.2" or "TLSv1.3"
    bits: int


def iana_name(mbedtls_name: str) -> str:
    """Convert an Mbed TLS suite name to the IANA one."""
    name = mbedtls_name.replace("-", "_")
    if name.startswith("TLS1_3_"):
        name = "TLS_" + name[len("TLS1_3_"):]
    return name


def _bits(name: str) -> int:
    return 128 if "AES_128" in name else 256


def enabled_suites() -> List[CipherSuite]:
    """Return the suites this build enables, in order of preference."""
    ids = ffi.new("ubyte2[]", 256)
    count = lib.PYNANO_listCiphers(ids, 256)
    suites = []
    for suite_id in ids[0:count]:
        name = iana_name(ffi.string(lib.PYNANO_cipherMbedtlsName(suite_id)).decode())
        minor = lib.PYNANO_cipherMinorVersion(suite_id)
        suites.append(CipherSuite(
            id=suite_id,
            name=name,
            openssl_name=OPENSSL_NAMES.get(suite_id, name),
            tls_version="TLSv1.3" if minor == lib.TLS13_MINORVERSION else "TLSv1.2",
            bits=_bits(name),
        ))
    return suites


def suite_by_id(suite_id: int) -> Optional[CipherSuite]:
    """Return the enabled suite with this IANA id, or None."""
    for suite in enabled_suites():
        if suite.id == suite_id:
            return suite
    return None


def resolve(spec: Union[str, int, Sequence[Union[str, int]]]) -> List[int]:
    """Turn suite names or ids into IANA ids of this build.

    Accepts an int, a name (IANA or OpenSSL), a "0xC02B" id, or a string of
    them separated by ':' or ','. Raises ValueError naming the first entry
    that this build does not support.
    """
    if isinstance(spec, (str, int)):
        entries: List[Union[str, int]] = [spec] if isinstance(spec, int) else [
            part.strip() for part in spec.replace(",", ":").split(":") if part.strip()]
    else:
        entries = list(spec)
    suites = enabled_suites()
    by_name = {s.name.upper(): s.id for s in suites}
    by_name.update({s.openssl_name.upper(): s.id for s in suites})
    known_ids = {s.id for s in suites}

    ids: List[int] = []
    for entry in entries:
        suite_id = _lookup(entry, by_name, known_ids)
        if suite_id not in ids:
            ids.append(suite_id)
    if not ids:
        raise ValueError(f"no cipher suite given in {spec!r}; run `pynano ciphers` to list the ones this build supports")
    return ids


def _lookup(entry: Union[str, int], by_name: Dict[str, int], known_ids: set) -> int:
    if isinstance(entry, bool) or not isinstance(entry, (str, int)):
        raise TypeError(f"cipher suite must be a name or an int id, got {entry!r}")
    suite_id: Optional[int] = None
    if isinstance(entry, int):
        suite_id = entry
    elif entry.lower().startswith("0x"):
        try:
            suite_id = int(entry, 16)
        except ValueError:
            suite_id = None
    else:
        suite_id = by_name.get(entry.upper())
    if suite_id is None or suite_id not in known_ids:
        display = f"0x{entry:04X}" if isinstance(entry, int) else repr(entry)
        raise ValueError(f"cipher suite {display} is not supported by this build; "
                         "run `pynano ciphers` to list the ones that are")
    return suite_id
