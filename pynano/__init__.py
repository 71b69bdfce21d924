"""pynano: NanoSSL-style TLS for Python over a vendored Mbed TLS 3.6.

Doors into the same C engine:

* ``pynano.nanossl``: the NanoSSL C API, name for name, for ported code;
* ``pynano.TLSContext`` / ``pynano.TLSSocket``: objects shaped like the
  standard ``ssl`` module's;
* the ``pynano`` command line: ``info``, ``ciphers``, ``demo``, ``certs``,
  ``server``, ``client``, ``bench``.
"""

from __future__ import annotations

from ._version import __version__
from .exceptions import (
    CertificateVerifyError,
    TLSEOFError,
    TLSError,
    TLSTimeoutError,
    TLSZeroReturnError,
)
from .tls import (
    CERT_NONE,
    CERT_OPTIONAL,
    CERT_REQUIRED,
    TLSContext,
    TLSSession,
    TLSSocket,
    TLSVersion,
    VerifyInfo,
    create_default_context,
)

__all__ = [
    "CERT_NONE",
    "CERT_OPTIONAL",
    "CERT_REQUIRED",
    "CertificateVerifyError",
    "TLSContext",
    "TLSEOFError",
    "TLSError",
    "TLSSession",
    "TLSSocket",
    "TLSTimeoutError",
    "TLSVersion",
    "TLSZeroReturnError",
    "VerifyInfo",
    "__version__",
    "build_info",
    "create_default_context",
]


def build_info() -> dict:
    """Return the facts of the compiled library: versions, macros, features."""
    from ._native import ffi, lib

    info = ffi.new("pynano_build_info *")
    lib.PYNANO_getBuildInfo(info)
    return {
        "pynano_version": __version__,
        "mbedtls_version": ffi.string(info.mbedtls_version).decode(),
        "macros": {
            "__ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__": bool(info.mutual_auth_support),
            "__ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__": bool(info.cipher_suites_select),
        },
        "tls12": bool(info.tls12),
        "tls13": bool(info.tls13),
        "aesni_in_use": bool(info.aesni),
    }
