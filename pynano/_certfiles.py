"""Certificate and key material as TLSContext loads it from files and buffers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Union

StrPath = Union[str, "os.PathLike[str]"]
Password = Union[str, bytes, bytearray, Callable[[], Union[str, bytes, bytearray]]]

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


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
    source: str
