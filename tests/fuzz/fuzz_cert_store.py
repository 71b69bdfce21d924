"""Fuzz target: bytes into CERT_STORE_addTrustPoint and the identity calls.

The first byte picks the call; the rest is split into arguments:

* 0: CERT_STORE_addTrustPoint(rest)
* 1: CERT_STORE_addIdentity(cert, key), where rest starts with the cert
  length as 2 big-endian bytes
* 2: CERT_STORE_addIdentityWithCertificateChain(chain, key), where the next
  byte is the chain length (1 to 4) and each certificate has a 2-byte length

    python tests/fuzz/fuzz_cert_store.py -max_total_time=20 CORPUS_DIR tests/fuzz/seeds/cert_store
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports(include=["pynano"]):
        import pynano.nanossl  # noqa: F401

from typing import List, Tuple

from pynano import nanossl

MODE_TRUST_POINT = 0
MODE_IDENTITY = 1
MODE_CHAIN = 2
STATUSES = {
    nanossl.OK,
    nanossl.ERR_BAD_LENGTH,
    nanossl.ERR_BAD_KEY,
    nanossl.ERR_CERT_INVALID_STRUCT,
    nanossl.ERR_NULL_POINTER,
}


def _take(data: bytes) -> Tuple[bytes, bytes]:
    """Split off one 2-byte-length-prefixed field."""
    length = int.from_bytes(data[:2], "big")
    return data[2:2 + length], data[2 + length:]


def _chain(data: bytes) -> Tuple[List[bytes], bytes]:
    count = (data[0] % 4) + 1 if data else 1
    rest = data[1:]
    chain = []
    for _ in range(count):
        cert, rest = _take(rest)
        chain.append(cert)
    return chain, rest


def test_one_input(data: bytes) -> None:
    """Load data into a new store and check the status and the counts agree."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    status, store = nanossl.CERT_STORE_createStore()
    assert status == nanossl.OK
    assert store is not None
    try:
        if mode == MODE_TRUST_POINT:
            status = nanossl.CERT_STORE_addTrustPoint(store, rest)
        elif mode == MODE_IDENTITY:
            cert, key = _take(rest)
            status = nanossl.CERT_STORE_addIdentity(store, cert, key)
        else:
            chain, key = _chain(rest)
            status = nanossl.CERT_STORE_addIdentityWithCertificateChain(store, chain, key)
        assert status in STATUSES, nanossl.DISPLAY_ERROR(status)
        _status, trust, identities = nanossl.PYNANO_CERT_STORE_getCounts(store)
        if status != nanossl.OK:
            assert (trust, identities) == (0, 0)
        elif mode == MODE_TRUST_POINT:
            assert trust >= 1
            assert identities == 0
        else:
            assert (trust, identities) == (0, 1)
    finally:
        nanossl.CERT_STORE_releaseStore(store)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
