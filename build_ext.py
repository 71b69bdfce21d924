"""Build pynano's CFFI extension from csrc/ and the pinned Mbed TLS tree.

setup.py names ``build_ext.py:ffibuilder`` in ``cffi_modules``. Importing this
file fetches and verifies Mbed TLS (vendor/fetch_mbedtls.py) and makes the
C compiler run source files in parallel on all cores.

NanoSSL build macros: both are defined unless listed, comma-separated, in
``PYNANO_DISABLE_MACROS``, for example::

    PYNANO_DISABLE_MACROS=__ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__ pip install .

The __ENABLE_DIGICERT_ spelling of each macro is accepted as well.
"""

from __future__ import annotations

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from cffi import FFI

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
CONFIG_HEADER = "pynano_mbedtls_config.h"
DISABLE_ENV = "PYNANO_DISABLE_MACROS"

NANOSSL_MACROS: Dict[str, str] = {
    "__ENABLE_MOCANA_SSL_MUTUAL_AUTH_SUPPORT__": "mutual authentication",
    "__ENABLE_MOCANA_SSL_CIPHER_SUITES_SELECT__": "cipher suite selection",
}

# The Mbed TLS library files that csrc/pynano_mbedtls_config.h compiles to
# something; the rest of library/ would compile to empty objects.
MBEDTLS_SOURCES: Tuple[str, ...] = (
    "aes.c", "aesni.c", "asn1parse.c", "asn1write.c", "base64.c",
    "bignum.c", "bignum_core.c", "chacha20.c", "chachapoly.c", "cipher.c",
    "cipher_wrap.c", "constant_time.c", "ctr_drbg.c", "ecdh.c", "ecdsa.c",
    "ecp.c", "ecp_curves.c", "entropy.c", "entropy_poll.c", "error.c",
    "gcm.c", "hkdf.c", "hmac_drbg.c", "md.c", "md5.c", "oid.c", "pem.c",
    "pk.c", "pk_ecc.c", "pk_wrap.c", "pkcs12.c", "pkcs5.c", "pkparse.c",
    "pkwrite.c", "platform.c", "platform_util.c", "poly1305.c",
    "psa_crypto.c", "psa_crypto_aead.c", "psa_crypto_cipher.c",
    "psa_crypto_client.c", "psa_crypto_driver_wrappers_no_static.c",
    "psa_crypto_ecp.c", "psa_crypto_hash.c", "psa_crypto_mac.c",
    "psa_crypto_random.c", "psa_crypto_rsa.c", "psa_crypto_slot_management.c",
    "psa_util.c", "rsa.c", "rsa_alt_helpers.c", "sha1.c", "sha256.c",
    "sha512.c", "ssl_cache.c", "ssl_ciphersuites.c", "ssl_client.c",
    "ssl_msg.c", "ssl_ticket.c", "ssl_tls.c", "ssl_tls12_client.c",
    "ssl_tls12_server.c", "ssl_tls13_client.c", "ssl_tls13_generic.c",
    "ssl_tls13_keys.c", "ssl_tls13_server.c", "threading.c", "version.c",
    "version_features.c", "x509.c", "x509_create.c", "x509_crl.c",
    "x509_crt.c", "x509write.c", "x509write_crt.c", "x509write_csr.c",
)

# Headers whose declarations make up the cdef, in dependency order.
CDEF_HEADERS: Tuple[str, ...] = ("nanossl.h", "pynano_ext.h")

# Python callables reach C through these entries; see pynano/nanossl.py.
CDEF_CALLBACKS = """
extern "Python" MSTATUS pynano_invalid_cert_trampoline(sbyte4, MSTATUS);
extern "Python" sbyte4 pynano_save_ticket_trampoline(sbyte4, sbyte *, ubyte4, void *,
                                                     ubyte *, ubyte4);
extern "Python" sbyte4 pynano_retrieve_ticket_trampoline(sbyte4, sbyte *, ubyte4, void *,
                                                         ubyte **, ubyte4 *, intBoolean *);
"""


def mbedtls_root() -> Path:
    """Return the verified Mbed TLS tree, fetching it if it is missing."""
    sys.path.insert(0, str(ROOT / "vendor"))
    try:
        import fetch_mbedtls
    finally:
        sys.path.pop(0)
    try:
        return fetch_mbedtls.ensure_mbedtls()
    except fetch_mbedtls.FetchError as error:
        raise SystemExit(f"pynano build: {error}") from error


def nanossl_macros(environ: Mapping[str, str] = os.environ) -> List[Tuple[str, Optional[str]]]:
    """Return the NanoSSL macros to define, honouring PYNANO_DISABLE_MACROS."""
    disabled = set()
    for name in filter(None, (part.strip() for part in environ.get(DISABLE_ENV, "").split(","))):
        canonical = name.replace("__ENABLE_DIGICERT_", "__ENABLE_MOCANA_")
        if canonical not in NANOSSL_MACROS:
            valid = ", ".join(NANOSSL_MACROS)
            raise SystemExit(f"pynano build: {DISABLE_ENV} names unknown macro {name!r}; valid: {valid}")
        disabled.add(canonical)
    return [(name, None) for name in NANOSSL_MACROS if name not in disabled]


def cdef_from_headers() -> str:
    """Turn csrc/nanossl.h and csrc/pynano_ext.h into CFFI declarations.

    Comments and preprocessor lines are dropped. Each integer
    ``#define NAME value`` becomes ``#define NAME ...``, so CFFI reads the
    value from the compiler and the C headers stay the single source of
    every constant.
    """
    parts = []
    for header in CDEF_HEADERS:
        text = (CSRC / header).read_text(encoding="utf-8")
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        lines = []
        # Conditional blocks are the __ENABLE_DIGICERT_ aliases, left out;
        # the include guard is the one #ifndef whose body is kept.
        conditions: List[bool] = []
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("#if"):
                conditions.append(not re.match(r"#ifndef\s+\w+_H$", stripped))
                continue
            if stripped.startswith("#endif"):
                conditions.pop()
                continue
            skipping = any(conditions)
            if skipping or (stripped.startswith("#") and not stripped.startswith("#define")):
                continue
            match = re.match(r"#define\s+([A-Z][A-Z0-9_]*)\s+\S", stripped)
            if match and not match.group(1).startswith("__"):
                lines.append(f"#define {match.group(1)} ...")
            elif not stripped.startswith("#"):
                lines.append(line)
        parts.append("\n".join(lines))
    return "\n".join(parts) + CDEF_CALLBACKS


def compile_args() -> List[str]:
    return ["-O2", "-std=c99", "-D_GNU_SOURCE", "-fvisibility=hidden",
            "-Wno-unused-function"]


def make_ffibuilder(module_name: str = "pynano._pynano",
                    macros: Optional[Sequence[Tuple[str, Optional[str]]]] = None,
                    extra_compile_args: Sequence[str] = ()) -> FFI:
    """Return an FFI builder for the extension with the given NanoSSL macros."""
    mbedtls = mbedtls_root()
    if macros is None:
        macros = nanossl_macros()
    csrc_files = sorted(str(p) for p in CSRC.glob("*.c"))
    mbedtls_files = [str(mbedtls / "library" / name) for name in MBEDTLS_SOURCES]

    builder = FFI()
    builder.cdef(cdef_from_headers())
    builder.set_source(
        module_name,
        '#include "nanossl.h"\n#include "pynano_ext.h"\n',
        sources=csrc_files + mbedtls_files,
        include_dirs=[str(CSRC), str(mbedtls / "include"), str(mbedtls / "library")],
        define_macros=[("MBEDTLS_CONFIG_FILE", f'"{CONFIG_HEADER}"'), *macros],
        extra_compile_args=compile_args() + list(extra_compile_args),
        libraries=["pthread"],
    )
    return builder


def enable_parallel_compile(jobs: Optional[int] = None) -> None:
    """Make distutils compile the sources of one extension in parallel.

    setuptools compiles an extension's sources one by one; Mbed TLS has
    about eighty of them, so a thread pool of one compiler per core cuts the
    build time by the core count.
    """
    from setuptools._distutils import ccompiler  # noqa: F401  (setuptools' own copy)

    compiler_class = ccompiler.CCompiler
    if getattr(compiler_class.compile, "_pynano_parallel", False):
        return
    workers = jobs or os.cpu_count() or 1

    def parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None,
                         debug=0, extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

        def compile_one(obj: str) -> None:
            if obj in build:
                src, ext = build[obj]
                self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(compile_one, objects))
        return objects

    parallel_compile._pynano_parallel = True  # type: ignore[attr-defined]
    compiler_class.compile = parallel_compile


enable_parallel_compile()
ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
