"""``pynano demo``: the ported NanoSSL example in four cases on loopback.

The certificates are made fresh for each run with the ``cryptography``
package (ECDSA P-256), so the demo needs no files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from cryptography import x509

from . import nanossl
from .certs import make_ca, make_leaf, make_test_pki
from .ciphers import suite_by_id
from .examples.ssl_example import (
    SideResult,
    SSL_EXAMPLE_createStore,
    SSL_EXAMPLE_run,
)

logger = logging.getLogger("pynano.demo")

TLS_VERSION_NAMES = {3: "TLS 1.2", 4: "TLS 1.3"}


@dataclass
class DemoCase:
    """One demo scenario and what it must show."""

    title: str
    expect_success: bool
    client_has_trusted_certificate: bool = True
    client_has_untrusted_certificate: bool = False
    cipher_suites: Optional[Sequence[int]] = None
    use_override_callback: bool = False


CASES: List[DemoCase] = [
    DemoCase("mutual authentication, TLS 1.3", expect_success=True),
    DemoCase("TLS 1.2 with one selected suite (0xC02B)", expect_success=True, cipher_suites=[0xC02B]),
    DemoCase("client without a certificate, rejected", expect_success=False,
             client_has_trusted_certificate=False),
    DemoCase("untrusted client certificate accepted by a callback", expect_success=True,
             client_has_trusted_certificate=False, client_has_untrusted_certificate=True,
             use_override_callback=True),
]


def _subject(der: Optional[bytes]) -> str:
    if not der:
        return "(none)"
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _suite(cipher_id: int) -> str:
    suite = suite_by_id(cipher_id)
    return f"{suite.name} (0x{cipher_id:04X})" if suite else f"0x{cipher_id:04X}"


def _describe(side: str, result: SideResult) -> str:
    if result.status != nanossl.OK:
        alert = f", peer alert {result.peer_alert}" if result.peer_alert >= 0 else ""
        return f"  {side}: failed with {nanossl.DISPLAY_ERROR(result.status)}{alert}"
    version = TLS_VERSION_NAMES.get(result.version, str(result.version))
    return (f"  {side}: {version}, {_suite(result.cipher_id)}, "
            f"peer subject {_subject(result.peer_certificate)}")


def _override_callback(calls: List[str]) -> Callable[[int, int], int]:
    def accept_and_log(connectionInstance: int, validationStatus: int) -> int:
        name = nanossl.DISPLAY_ERROR(validationStatus)
        calls.append(name)
        logger.warning("instance %d: accepting a client certificate that failed with %s",
                       connectionInstance, name)
        return nanossl.OK
    return accept_and_log


def run_case(case: DemoCase) -> bool:
    """Run one case, print what both sides saw; return whether it went as expected."""
    pki = make_test_pki()
    stranger_ca = make_ca("untrusted demo CA")
    stranger = make_leaf(stranger_ca, "untrusted demo client", server=False)

    server_store = SSL_EXAMPLE_createStore(pki.server.cert_pem, pki.server.key_pem, [pki.ca.cert_pem])
    client_cert, client_key = None, None
    if case.client_has_trusted_certificate:
        client_cert, client_key = pki.client.cert_pem, pki.client.key_pem
    elif case.client_has_untrusted_certificate:
        client_cert, client_key = stranger.cert_pem, stranger.key_pem
    client_store = SSL_EXAMPLE_createStore(client_cert, client_key, [pki.ca.cert_pem])

    calls: List[str] = []
    callback = _override_callback(calls) if case.use_override_callback else None
    try:
        server, client = SSL_EXAMPLE_run(server_store, client_store, invalidCertCallback=callback,
                                         cipherSuites=case.cipher_suites)
    finally:
        nanossl.CERT_STORE_releaseStore(server_store)
        nanossl.CERT_STORE_releaseStore(client_store)

    succeeded = server.status == nanossl.OK and client.status == nanossl.OK
    as_expected = succeeded == case.expect_success
    print(f"{case.title}: {'OK' if succeeded else 'rejected'}"
          f"{'' if as_expected else '  <-- NOT AS EXPECTED'}")
    print(_describe("server", server))
    print(_describe("client", client))
    if calls:
        print(f"  callback: overrode {', '.join(calls)}")
    if succeeded:
        print(f"  exchange: server got {server.received[:18]!r}, client got {client.received[-14:]!r}")
    return as_expected


def run_demo(verbose: bool = False) -> int:
    """Run every demo case; return 0 when each went as expected."""
    if verbose:
        logging.getLogger("pynano").setLevel(logging.INFO)
    results = []
    for number, case in enumerate(CASES, start=1):
        print(f"[{number}/{len(CASES)}] ", end="")
        results.append(run_case(case))
        print()
    failed = results.count(False)
    print(f"{len(results) - failed} of {len(results)} cases went as expected")
    return 0 if failed == 0 else 1
