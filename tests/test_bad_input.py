"""Bad input into pynano.nanossl: every call returns a status or raises a
TypeError/ValueError naming the value, never a crash or a silent partial load.

Certificates, chains and keys that are garbage, truncated, oversized (10 MiB)
or mismatched go into every CERT_STORE_* call, and wrong argument types and
values go into every function. Records from 0 bytes to 64 MiB must
round-trip exactly between two pynano peers over loopback.
"""

from __future__ import annotations

import array
import hashlib
import os
import random
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

import pytest
from cryptography.hazmat.primitives import serialization

# tls_peers and the fuzz harnesses live in tests/fuzz/, which works as a
# folder on sys.path whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from tls_peers import (  # noqa: E402
    Background,
    Pair,
    negotiate_pair,
    new_store,
    table_in_use,
    tcp_pair,
)
from pynano import certs, nanossl  # noqa: E402

MIB = 1024 * 1024
FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _store_counts(store: nanossl.CertStore) -> Tuple[int, int]:
    """Return (trust points, identities) in a store."""
    status, trust, identities = nanossl.PYNANO_CERT_STORE_getCounts(store)
    assert status == nanossl.OK
    return trust, identities


@pytest.fixture
def empty_store() -> Iterator[nanossl.CertStore]:
    status, store = nanossl.CERT_STORE_createStore()
    assert status == nanossl.OK
    assert store is not None
    yield store
    nanossl.CERT_STORE_releaseStore(store)


@pytest.fixture(scope="module")
def odd_certs(pki) -> dict:
    """Return certificates and keys that a store must reject or handle."""
    return {
        "weak_rsa": certs.make_leaf(pki.ca, "localhost", dns_names=["localhost"], server=True,
                                    key_type="rsa", key_bits=1024),
        "critical": certs.make_leaf(pki.ca, "localhost", dns_names=["localhost"], server=True,
                                    critical_unknown_extension=True),
        "other_ca": certs.make_ca("second test CA"),
    }


# ---- certificates and keys -------------------------------------------


def _pem_armoured_garbage(size: int) -> bytes:
    body = b"QUFB" * (size // 4)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"


def _bad_certificates(pki) -> List[Tuple[str, bytes]]:
    der = pki.ca.cert_der()
    pem = pki.ca.cert_pem
    return [
        ("random 4 KiB", _random_bytes(4096, 1)),
        ("ASN.1 header then junk", b"\x30\x82\x10\x00" + b"\x41" * 4096),
        ("truncated DER", der[: len(der) // 2]),
        ("DER less its last byte", der[:-1]),
        ("truncated PEM", pem[: len(pem) // 2]),
        ("PEM without its END line", pem[: pem.index(b"-----END")]),
        ("private key", pki.ca.key_pem),
        ("10 MiB of zeros", bytes(10 * MIB)),
        ("10 MiB of random bytes", _random_bytes(10 * MIB, 2)),
        ("10 MiB PEM-armoured garbage", _pem_armoured_garbage(10 * MIB)),
    ]


def test_trust_point_rejects_bad_certificates(pki, empty_store):
    for label, data in _bad_certificates(pki):
        status = nanossl.CERT_STORE_addTrustPoint(empty_store, data)
        assert status == nanossl.ERR_CERT_INVALID_STRUCT, (label, nanossl.DISPLAY_ERROR(status))
    assert _store_counts(empty_store) == (0, 0)


def test_trust_point_empty_buffer(empty_store):
    assert nanossl.CERT_STORE_addTrustPoint(empty_store, b"") == nanossl.ERR_BAD_LENGTH


def test_trust_point_rejects_truncated_second_pem(pki, empty_store):
    # All or nothing: a PEM buffer whose second certificate is cut off must
    # not load the first one on its own.
    second = pki.server.cert_pem
    for cut in (second[:200], second[: second.index(b"-----END")]):
        status = nanossl.CERT_STORE_addTrustPoint(empty_store, pki.ca.cert_pem + cut)
        assert status == nanossl.ERR_CERT_INVALID_STRUCT, nanossl.DISPLAY_ERROR(status)
    assert _store_counts(empty_store) == (0, 0)


def test_trust_point_rejects_der_trailing_junk(pki, empty_store):
    status = nanossl.CERT_STORE_addTrustPoint(empty_store, pki.ca.cert_der() + b"junk" * 64)
    assert status == nanossl.ERR_CERT_INVALID_STRUCT, nanossl.DISPLAY_ERROR(status)
    assert _store_counts(empty_store) == (0, 0)


def test_trust_point_concatenated_der_not_half_loaded(pki, odd_certs, empty_store):
    # Two DER certificates back to back: loading both or rejecting the
    # buffer are both fine, but silently keeping only the first is not.
    data = pki.ca.cert_der() + odd_certs["other_ca"].cert_der()
    status = nanossl.CERT_STORE_addTrustPoint(empty_store, data)
    trust, _ = _store_counts(empty_store)
    if status == nanossl.OK:
        assert trust == 2
    else:
        assert status == nanossl.ERR_CERT_INVALID_STRUCT
        assert trust == 0


def test_trust_point_many_pem_certificates(pki, empty_store):
    # About 1 MiB of PEM: 1,500 copies of one CA certificate.
    data = pki.ca.cert_pem * 1500
    assert nanossl.CERT_STORE_addTrustPoint(empty_store, data) == nanossl.OK
    assert _store_counts(empty_store) == (1500, 0)


def test_trust_point_unknown_critical_extension(odd_certs, empty_store):
    # Mbed TLS 3.6 rejects an unknown critical extension while parsing
    # (x509_get_crt_ext), so such a certificate never enters a store.
    for data in (odd_certs["critical"].cert_pem, odd_certs["critical"].cert_der()):
        assert nanossl.CERT_STORE_addTrustPoint(empty_store, data) == nanossl.ERR_CERT_INVALID_STRUCT
    assert _store_counts(empty_store) == (0, 0)


def test_trust_point_weak_rsa_loads(odd_certs, empty_store):
    # A trust point is only a name and a public key to check signatures
    # with; the 2048-bit floor applies to identities. Mbed TLS's default
    # verification profile flags a chain with an RSA key under 2048 bits.
    assert nanossl.CERT_STORE_addTrustPoint(empty_store, odd_certs["weak_rsa"].cert_pem) == nanossl.OK


def test_identity_rejects_bad_certificates(pki, empty_store):
    for label, data in _bad_certificates(pki):
        status = nanossl.CERT_STORE_addIdentity(empty_store, data, pki.server.key_pem)
        assert status == nanossl.ERR_CERT_INVALID_STRUCT, (label, nanossl.DISPLAY_ERROR(status))
    assert _store_counts(empty_store) == (0, 0)


def _bad_keys(pki) -> List[Tuple[str, bytes]]:
    key = pki.server.key_pem
    der_key = serialization.load_pem_private_key(key, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return [
        ("random 4 KiB", _random_bytes(4096, 3)),
        ("truncated PEM key", key[: len(key) // 2]),
        ("truncated DER key", der_key[:-4]),
        ("certificate", pki.server.cert_pem),
        ("10 MiB of zeros", bytes(10 * MIB)),
        ("10 MiB PEM-armoured garbage", _pem_armoured_garbage(10 * MIB).replace(
            b"CERTIFICATE", b"PRIVATE KEY")),
    ]


def test_identity_rejects_bad_keys(pki, empty_store):
    for label, data in _bad_keys(pki):
        status = nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, data)
        assert status == nanossl.ERR_BAD_KEY, (label, nanossl.DISPLAY_ERROR(status))
    assert _store_counts(empty_store) == (0, 0)


def test_identity_empty_buffers(pki, empty_store):
    assert nanossl.CERT_STORE_addIdentity(empty_store, b"", pki.server.key_pem) == nanossl.ERR_BAD_LENGTH
    assert nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, b"") == nanossl.ERR_BAD_LENGTH


def test_identity_key_of_other_certificate(pki, empty_store):
    status = nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, pki.client.key_pem)
    assert status == nanossl.ERR_BAD_KEY
    assert _store_counts(empty_store) == (0, 0)


def test_identity_rsa_1024_rejected(odd_certs, empty_store):
    weak = odd_certs["weak_rsa"]
    assert nanossl.CERT_STORE_addIdentity(empty_store, weak.cert_pem, weak.key_pem) == nanossl.ERR_BAD_KEY
    assert _store_counts(empty_store) == (0, 0)


def test_identity_unknown_critical_extension(odd_certs, empty_store):
    critical = odd_certs["critical"]
    status = nanossl.CERT_STORE_addIdentity(empty_store, critical.cert_pem, critical.key_pem)
    assert status == nanossl.ERR_CERT_INVALID_STRUCT


def test_store_usable_after_rejections(pki, empty_store):
    for label, data in _bad_certificates(pki)[:4]:
        nanossl.CERT_STORE_addIdentity(empty_store, data, pki.server.key_pem)
        nanossl.CERT_STORE_addTrustPoint(empty_store, data)
    assert nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, pki.server.key_pem) == nanossl.OK
    assert nanossl.CERT_STORE_addTrustPoint(empty_store, pki.ca.cert_pem) == nanossl.OK
    assert _store_counts(empty_store) == (1, 1)


def test_identity_limit_is_eight(pki, empty_store):
    for _ in range(8):
        assert nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, pki.server.key_pem) == nanossl.OK
    status = nanossl.CERT_STORE_addIdentity(empty_store, pki.server.cert_pem, pki.server.key_pem)
    assert status == nanossl.ERR_SSL_CONFIG
    assert _store_counts(empty_store) == (0, 8)


def test_chain_with_bad_entry(pki, empty_store):
    chains = {
        "garbage after leaf": [pki.server.cert_pem, _random_bytes(2048, 4)],
        "garbage before leaf": [_random_bytes(2048, 5), pki.server.cert_pem],
        "10 MiB entry": [pki.server.cert_pem, bytes(10 * MIB)],
        "truncated CA": [pki.server.cert_pem, pki.ca.cert_pem[:300]],
    }
    for label, chain in chains.items():
        status = nanossl.CERT_STORE_addIdentityWithCertificateChain(empty_store, chain, pki.server.key_pem)
        assert status == nanossl.ERR_CERT_INVALID_STRUCT, (label, nanossl.DISPLAY_ERROR(status))
    assert _store_counts(empty_store) == (0, 0)


def test_chain_empty(pki, empty_store):
    status = nanossl.CERT_STORE_addIdentityWithCertificateChain(empty_store, [], pki.server.key_pem)
    assert status == nanossl.ERR_BAD_LENGTH
    status = nanossl.CERT_STORE_addIdentityWithCertificateChain(empty_store, [b""], pki.server.key_pem)
    assert status == nanossl.ERR_BAD_LENGTH


def test_chain_in_reverse_order(pki, empty_store):
    # The first certificate is taken as the leaf, as OpenSSL's
    # load_cert_chain does; with the CA first, the key matches no leaf.
    chain = [pki.ca.cert_pem, pki.server.cert_pem]
    status = nanossl.CERT_STORE_addIdentityWithCertificateChain(empty_store, chain, pki.server.key_pem)
    assert status == nanossl.ERR_BAD_KEY


def test_encrypted_key_wrong_password(pki, empty_store):
    key = serialization.load_pem_private_key(pki.server.key_pem, None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"right password"))
    chain = [pki.server.cert_pem]
    for password in (b"wrong password", None, b"r" * 4096):
        status = nanossl.PYNANO_CERT_STORE_addIdentityWithPassword(empty_store, chain, encrypted, password)
        assert status == nanossl.ERR_BAD_KEY, (password, nanossl.DISPLAY_ERROR(status))
    status = nanossl.PYNANO_CERT_STORE_addIdentityWithPassword(empty_store, chain, encrypted,
                                                               b"right password")
    assert status == nanossl.OK


# ---- a PEM file with several objects in odd order ---------------------


def test_pem_bundle_key_first_as_trust_point(pki, empty_store):
    bundle = pki.server.key_pem + pki.server.cert_pem + pki.ca.cert_pem
    assert nanossl.CERT_STORE_addTrustPoint(empty_store, bundle) == nanossl.OK
    assert _store_counts(empty_store) == (2, 0)


def test_pem_bundle_key_first_chain_in_order(pki):
    # Key, leaf, CA: the key block is skipped when reading certificates and
    # found when reading the key, so one file serves both arguments.
    bundle = pki.server.key_pem + pki.server.cert_pem + pki.ca.cert_pem
    status, server_store = nanossl.CERT_STORE_createStore()
    assert nanossl.CERT_STORE_addIdentity(server_store, bundle, bundle) == nanossl.OK
    assert nanossl.CERT_STORE_addTrustPoint(server_store, pki.ca.cert_pem) == nanossl.OK
    client_store = new_store(trust=[pki.ca.cert_pem])
    pair = negotiate_pair(server_store, client_store)
    try:
        assert pair.ok, (nanossl.DISPLAY_ERROR(pair.server_status), nanossl.DISPLAY_ERROR(pair.client_status))
        status, second = nanossl.PYNANO_getPeerCertificate(pair.client_ci, 1)
        assert status == nanossl.OK
        assert second == pki.ca.cert_der()
    finally:
        pair.close()
        nanossl.CERT_STORE_releaseStore(server_store)
        nanossl.CERT_STORE_releaseStore(client_store)


def test_pem_bundle_key_first_chain_reversed(pki, empty_store):
    bundle = pki.server.key_pem + pki.ca.cert_pem + pki.server.cert_pem
    assert nanossl.CERT_STORE_addIdentity(empty_store, bundle, bundle) == nanossl.ERR_BAD_KEY
    assert _store_counts(empty_store) == (0, 0)


# ---- wrong argument types and values ----------------------------------


HUGE = 2**70


@pytest.fixture
def idle_instance(pki) -> Iterator[int]:
    """Return a server instance on a socketpair that never negotiates."""
    ours, theirs = socket.socketpair()
    store = new_store(pki.server, [pki.ca.cert_pem])
    ci = nanossl.SSL_acceptConnection(ours, store)
    assert ci > 0
    yield ci
    nanossl.SSL_closeConnection(ci)
    nanossl.CERT_STORE_releaseStore(store)
    ours.close()
    theirs.close()


@dataclass
class CallContext:
    """What the calls in ARGUMENT_ERRORS need: an instance, a store, a socket."""

    ci: int
    store: nanossl.CertStore
    sock: socket.socket


n = nanossl
STRIDED = memoryview(b"abcdefgh")[::2]

# (label, call, expected exception, text that the message must contain)
ARGUMENT_ERRORS: List[Tuple[str, Callable[[CallContext], Any], type, str]] = [
    ("init negative", lambda c: n.SSL_init(-1, 0), ValueError, "numServerConnections"),
    ("init huge", lambda c: n.SSL_init(0, HUGE), ValueError, "numClientConnections"),
    ("init None", lambda c: n.SSL_init(None, 1), TypeError, "numServerConnections"),
    ("accept None", lambda c: n.SSL_acceptConnection(None, c.store), TypeError, "socket"),
    ("accept float fd", lambda c: n.SSL_acceptConnection(3.0, c.store), TypeError, "socket"),
    ("accept huge fd", lambda c: n.SSL_acceptConnection(HUGE, c.store), ValueError, "socket"),
    ("accept str store", lambda c: n.SSL_acceptConnection(c.sock, "store"), TypeError, "store"),
    ("connect sessionIdLen -1", lambda c: n.SSL_connect(c.sock, -1, None, None, "x", None), ValueError,
     "sessionIdLen"),
    ("connect sessionIdLen 33", lambda c: n.SSL_connect(c.sock, 33, b"x" * 33, b"y" * 48, "x", None),
     ValueError, "sessionIdLen"),
    ("connect short sessionId", lambda c: n.SSL_connect(c.sock, 32, b"x", b"y" * 48, "x", None),
     ValueError, "sessionId"),
    ("connect sessionId huge int", lambda c: n.SSL_connect(c.sock, 0, HUGE, None, "x", None), TypeError,
     "sessionId"),
    ("connect sessionId str", lambda c: n.SSL_connect(c.sock, 0, "abc", None, "x", None), TypeError,
     "sessionId"),
    ("connect masterSecret int", lambda c: n.SSL_connect(c.sock, 0, None, 10, "x", None), TypeError,
     "masterSecret"),
    ("connect dnsName int", lambda c: n.SSL_connect(c.sock, 0, None, None, 5, None), TypeError, "dnsName"),
    ("connect dnsName NUL", lambda c: n.SSL_connect(c.sock, 0, None, None, "a\0b", None), ValueError,
     "dnsName"),
    ("connect dnsName invalid IDNA", lambda c: n.SSL_connect(c.sock, 0, None, None, "bad\udcffname", None),
     ValueError, "dnsName"),
    ("instance None", lambda c: n.SSL_negotiateConnection(None), TypeError, "connectionInstance"),
    ("instance str", lambda c: n.SSL_getSessionFlags("1"), TypeError, "connectionInstance"),
    ("instance bool", lambda c: n.SSL_closeConnection(True), TypeError, "connectionInstance"),
    ("instance huge", lambda c: n.SSL_recvPending(HUGE), ValueError, "connectionInstance"),
    ("instance -huge", lambda c: n.SSL_getConnectionState(-HUGE), ValueError, "connectionInstance"),
    ("send None", lambda c: n.SSL_send(c.ci, None), TypeError, "pBuffer"),
    ("send str", lambda c: n.SSL_send(c.ci, "text"), TypeError, "pBuffer"),
    ("send int", lambda c: n.SSL_send(c.ci, 5), TypeError, "pBuffer"),
    ("send strided view", lambda c: n.SSL_send(c.ci, STRIDED), ValueError, "pBuffer"),
    ("recv bytes", lambda c: n.SSL_recv(c.ci, b"read-only"), TypeError, "pRetBuffer"),
    ("recv None", lambda c: n.SSL_recv(c.ci, None), TypeError, "pRetBuffer"),
    ("recv strided view", lambda c: n.SSL_recv(c.ci, memoryview(bytearray(8))[::2]), ValueError,
     "pRetBuffer"),
    ("recv timeout -1", lambda c: n.SSL_recv(c.ci, bytearray(4), -1), ValueError, "timeout"),
    ("recv timeout huge", lambda c: n.SSL_recv(c.ci, bytearray(4), HUGE), ValueError, "timeout"),
    ("recv timeout float", lambda c: n.SSL_recv(c.ci, bytearray(4), 1.5), TypeError, "timeout"),
    ("sendAlert huge", lambda c: n.SSL_sendAlert(c.ci, HUGE, 2), ValueError, "alertId"),
    ("lookupAlert None", lambda c: n.SSL_lookupAlert(c.ci, None), TypeError, "lookupError"),
    ("setSessionFlags -1", lambda c: n.SSL_setSessionFlags(c.ci, -1), ValueError, "flagsSSL"),
    ("setSessionFlags huge", lambda c: n.SSL_setSessionFlags(c.ci, HUGE), ValueError, "flagsSSL"),
    ("callback int", lambda c: n.SSL_setInvalidCertCallback(c.ci, 5), TypeError, "callback"),
    ("ciphers None", lambda c: n.SSL_enableCiphers(c.ci, None), TypeError, "pCipherSuiteList"),
    ("ciphers bytes", lambda c: n.SSL_enableCiphers(c.ci, b"\xc0\x2b"), TypeError, "pCipherSuiteList"),
    ("ciphers [None]", lambda c: n.SSL_enableCiphers(c.ci, [None]), TypeError, "cipher suite id"),
    ("ciphers huge id", lambda c: n.SSL_enableCiphers(c.ci, [HUGE]), ValueError, "cipher suite id"),
    ("ioctl value None", lambda c: n.SSL_ioctl(c.ci, n.SSL_SET_RECV_TIMEOUT, None), TypeError, "value"),
    ("ioctl value huge", lambda c: n.SSL_ioctl(c.ci, n.SSL_SET_RECV_TIMEOUT, HUGE), ValueError, "value"),
    ("ioctl value -1", lambda c: n.SSL_ioctl(c.ci, n.SSL_SET_RECV_TIMEOUT, -1), ValueError, "value"),
    ("ioctl setting -1", lambda c: n.SSL_ioctl(c.ci, -1, 0), ValueError, "setting"),
    ("SNI None", lambda c: n.SSL_setServerNameIndication(c.ci, None), TypeError, "serverName"),
    ("SNI NUL", lambda c: n.SSL_setServerNameIndication(c.ci, "a\0"), ValueError, "serverName"),
    ("DISPLAY_ERROR None", lambda c: n.DISPLAY_ERROR(None), TypeError, "status"),
    ("DISPLAY_ERROR huge", lambda c: n.DISPLAY_ERROR(HUGE), ValueError, "status"),
    ("error string huge", lambda c: n.PYNANO_mbedtlsErrorString(HUGE), ValueError, "mbedtlsError"),
    ("peer certificate index -1", lambda c: n.PYNANO_getPeerCertificate(c.ci, -1), ValueError, "index"),
    ("ALPN str", lambda c: n.PYNANO_setAlpnProtocols(c.ci, "h2"), TypeError, "protocols"),
    ("ALPN None", lambda c: n.PYNANO_setAlpnProtocols(c.ci, None), TypeError, "protocols"),
    ("ALPN [None]", lambda c: n.PYNANO_setAlpnProtocols(c.ci, [None]), ValueError, "ALPN protocol"),
    ("ALPN empty name", lambda c: n.PYNANO_setAlpnProtocols(c.ci, [""]), ValueError, "ALPN protocol"),
    ("ALPN 256-byte name", lambda c: n.PYNANO_setAlpnProtocols(c.ci, ["a" * 256]), ValueError,
     "ALPN protocol"),
    ("store None", lambda c: n.CERT_STORE_addTrustPoint(None, b"x"), TypeError, "store"),
    ("store int", lambda c: n.CERT_STORE_addIdentity(12, b"x", b"y"), TypeError, "store"),
    ("trust point None", lambda c: n.CERT_STORE_addTrustPoint(c.store, None), TypeError, "der"),
    ("trust point str", lambda c: n.CERT_STORE_addTrustPoint(c.store, "PEM text"), TypeError, "der"),
    ("identity key None", lambda c: n.CERT_STORE_addIdentity(c.store, b"x", None), TypeError, "keyBlob"),
    ("chain bytes", lambda c: n.CERT_STORE_addIdentityWithCertificateChain(c.store, b"x", b"y"), TypeError,
     "certificates"),
    ("chain [None]", lambda c: n.CERT_STORE_addIdentityWithCertificateChain(c.store, [None], b"y"),
     TypeError, "certificates[0]"),
    ("chain None", lambda c: n.CERT_STORE_addIdentityWithCertificateChain(c.store, None, b"y"), TypeError,
     "certificates"),
    ("password str", lambda c: n.PYNANO_CERT_STORE_addIdentityWithPassword(c.store, [b"x"], b"y", "pw"),
     TypeError, "password"),
    ("release None", lambda c: n.CERT_STORE_releaseStore(None), TypeError, "store"),
    ("save-ticket callback int", lambda c: n.SSL_setClientSaveTicketCallback(c.ci, 5), TypeError,
     "callback"),
    ("retrieve-ticket callback int", lambda c: n.SSL_setClientRetrieveTicketCallback(c.ci, 5), TypeError,
     "callback"),
    ("session blob None", lambda c: n.PYNANO_setSessionBlob(c.ci, None), TypeError, "blob"),
    ("session blob str", lambda c: n.PYNANO_setSessionBlob(c.ci, "blob"), TypeError, "blob"),
    ("session lifetime -1", lambda c: n.PYNANO_CERT_STORE_setSessionLifetimes(c.store, -1, 0), ValueError,
     "ticketLifetimeSeconds"),
    ("cache timeout None", lambda c: n.PYNANO_CERT_STORE_setSessionLifetimes(c.store, 10, None),
     TypeError, "cacheTimeoutSeconds"),
    ("store counts None", lambda c: n.PYNANO_CERT_STORE_getCounts(None), TypeError, "store"),
    ("rotate ticket keys None", lambda c: n.PYNANO_CERT_STORE_rotateTicketKeys(None), TypeError, "store"),
    ("flush cache str", lambda c: n.PYNANO_CERT_STORE_flushSessionCache("store"), TypeError, "store"),
    ("release huge", lambda c: n.PYNANO_releaseConnection(HUGE), ValueError, "connectionInstance"),
    ("pending bytes None", lambda c: n.PYNANO_getPendingBytes(None), TypeError, "connectionInstance"),
    ("cipher list str", lambda c: n.SSL_getCipherList("1"), TypeError, "connectionInstance"),
    ("session info None", lambda c: n.SSL_getClientSessionInfo(None), TypeError, "connectionInstance"),
]


@pytest.mark.parametrize("label, call, expected, text", ARGUMENT_ERRORS,
                         ids=[case[0] for case in ARGUMENT_ERRORS])
def test_wrong_argument_raises(idle_instance, label, call, expected, text):
    _status, store = nanossl.CERT_STORE_createStore()
    sock = socket.socket()
    before = table_in_use()
    result = None
    try:
        with pytest.raises(expected) as raised:
            result = call(CallContext(idle_instance, store, sock))
        assert text in str(raised.value)
    finally:
        if isinstance(result, int) and result > 0 and label.startswith("connect"):
            nanossl.SSL_closeConnection(result)
        nanossl.CERT_STORE_releaseStore(store)
        sock.close()
    assert table_in_use() == before


def test_released_store_raises(pki):
    _status, store = nanossl.CERT_STORE_createStore()
    assert nanossl.CERT_STORE_releaseStore(store) == nanossl.OK
    assert nanossl.CERT_STORE_releaseStore(store) == nanossl.OK
    with pytest.raises(ValueError, match="released"):
        nanossl.CERT_STORE_addTrustPoint(store, pki.ca.cert_pem)
    with pytest.raises(ValueError, match="released"):
        nanossl.SSL_acceptConnection(socket.socket(), store)


def test_unknown_instances_give_bad_id():
    n = nanossl
    for ci in (0, -1, -(2**31), 2**31 - 1, 123456789):
        assert n.SSL_negotiateConnection(ci) == n.ERR_SSL_BAD_ID
        assert n.SSL_send(ci, b"x") == n.ERR_SSL_BAD_ID
        assert n.SSL_recv(ci, bytearray(4), 10) == (n.ERR_SSL_BAD_ID, 0)
        assert n.SSL_recvPending(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_getSessionFlags(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_setSessionFlags(ci, 0) == n.ERR_SSL_BAD_ID
        assert n.SSL_setInvalidCertCallback(ci, lambda *args: 0) == n.ERR_SSL_BAD_ID
        assert n.SSL_enableCiphers(ci, [0x1301]) == n.ERR_SSL_BAD_ID
        assert n.SSL_getCipherInfo(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_getSSLTLSVersion(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_getConnectionState(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_ioctl(ci, n.SSL_SET_RECV_TIMEOUT, 10) == n.ERR_SSL_BAD_ID
        assert n.SSL_setServerNameIndication(ci, "localhost") == n.ERR_SSL_BAD_ID
        assert n.SSL_sendAlert(ci, 40, 2) == n.ERR_SSL_BAD_ID
        assert n.SSL_lookupAlert(ci, n.ERR_CERT_EXPIRED)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_closeConnection(ci) == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getVerifyDetails(ci) == (n.ERR_SSL_BAD_ID, None)
        assert n.PYNANO_getLastMbedtlsError(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getPeerAlert(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getPeerCertificate(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_setAlpnProtocols(ci, ["h2"]) == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getAlpnProtocol(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_getCipherList(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.SSL_getClientSessionInfo(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getSessionBlob(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_setSessionBlob(ci, b"blob") == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getSessionReused(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_getPendingBytes(ci)[0] == n.ERR_SSL_BAD_ID
        assert n.PYNANO_releaseConnection(ci) == n.ERR_SSL_BAD_ID


def test_out_of_range_values_give_status(idle_instance):
    n = nanossl
    ci = idle_instance
    assert n.SSL_init(0, 0) == n.ERR_INVALID_ARG
    assert n.SSL_init(65537, 0) == n.ERR_INVALID_ARG
    assert n.SSL_sendAlert(ci, 256, n.SSLALERTLEVEL_FATAL) == n.ERR_INVALID_ARG
    assert n.SSL_sendAlert(ci, 40, 3) == n.ERR_INVALID_ARG
    assert n.SSL_ioctl(ci, 0x12345, 1) == n.ERR_INVALID_ARG
    assert n.SSL_ioctl(ci, n.SSL_SET_VERSION, 9) == n.ERR_INVALID_ARG
    assert n.SSL_ioctl(ci, n.SSL_SET_VERSION, 1) == n.ERR_SSL_PROTOCOL_VERSION
    assert n.SSL_ioctl(ci, n.PYNANO_SSL_SET_VERIFY_MODE, 3) == n.ERR_INVALID_ARG
    assert n.SSL_setServerNameIndication(ci, "localhost") == n.ERR_SSL_CONFIG
    assert n.PYNANO_setAlpnProtocols(ci, ["p"] * 17) == n.ERR_BAD_LENGTH
    assert n.PYNANO_setAlpnProtocols(ci, ["a" * 200, "b" * 200]) == n.ERR_BAD_LENGTH
    assert n.SSL_recv(ci, bytearray(0), 10)[0] in (n.ERR_BAD_LENGTH, n.ERR_NULL_POINTER)
    assert n.SSL_lookupAlert(ci, 12345)[0] == n.ERR_INVALID_ARG
    assert n.PYNANO_getPeerCertificate(ci, 2**32 - 1)[0] == n.ERR_SSL_NOT_OPEN
    assert n.DISPLAY_ERROR(-1) == "ERR_UNKNOWN"
    assert n.PYNANO_mbedtlsErrorString(-1)


def test_settings_after_handshake_give_bad_state(pki, server_store, client_store):
    pair = negotiate_pair(server_store, client_store)
    try:
        assert pair.ok
        for ci in (pair.server_ci, pair.client_ci):
            version = nanossl.TLS13_MINORVERSION
            assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, version) == nanossl.ERR_SSL_BAD_STATE
            assert nanossl.SSL_setSessionFlags(ci, 0) == nanossl.ERR_SSL_BAD_STATE
            assert nanossl.SSL_enableCiphers(ci, [0x1301]) == nanossl.ERR_SSL_BAD_STATE
            assert nanossl.SSL_negotiateConnection(ci) == nanossl.ERR_SSL_BAD_STATE
    finally:
        pair.close()


# ---- session blobs ------------------------------------------------------


def test_bad_session_blobs_give_full_handshake(server_store, client_store):
    first = negotiate_pair(server_store, client_store)
    try:
        assert first.ok
        # TLS 1.3 tickets arrive after the handshake, with the first record.
        assert nanossl.SSL_send(first.server_ci, b"x") == 1
        assert nanossl.SSL_recv(first.client_ci, bytearray(4), 5000) == (nanossl.OK, 1)
        status, blob = nanossl.PYNANO_getSessionBlob(first.client_ci)
        assert status == nanossl.OK
    finally:
        first.close()

    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    # PYNANO_setSessionBlob stores these and checks them at the handshake,
    # which then falls back to a full one.
    accepted_blobs = {
        "one bit flipped": bytes(flipped),
        "last byte missing": blob[:-1],
        "one byte extra": blob + b"\x00",
        "random bytes": _random_bytes(len(blob), 9),
        "magic and version only": blob[:5] + bytes(len(blob) - 5),
    }
    rejected_blobs = {"empty": b"", "10 MiB": bytes(10 * MIB)}
    cases = [(label, data, nanossl.OK) for label, data in accepted_blobs.items()]
    cases += [(label, data, nanossl.ERR_BAD_LENGTH) for label, data in rejected_blobs.items()]
    for label, data, expected in cases:
        statuses = []
        pair = negotiate_pair(server_store, client_store,
                              client_setup=lambda ci, data=data: statuses.append(
                                  nanossl.PYNANO_setSessionBlob(ci, data)))
        try:
            assert statuses == [expected], label
            assert pair.ok, label
            assert nanossl.PYNANO_getSessionReused(pair.client_ci) == (nanossl.OK, False), label
        finally:
            pair.close()


# ---- sockets that are closed or are not sockets ------------------------


def test_closed_socket_rejected(server_store):
    before = table_in_use()
    sock = socket.socket()
    sock.close()
    assert nanossl.SSL_acceptConnection(sock, server_store) == nanossl.ERR_INVALID_ARG
    assert nanossl.SSL_connect(sock, 0, None, None, "localhost", None) == nanossl.ERR_INVALID_ARG
    assert table_in_use() == before


def test_non_socket_fds_rejected(server_store):
    before = table_in_use()
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as regular_file:
        for fd in (read_end, write_end, regular_file.fileno(), -1, 2**31 - 1):
            assert nanossl.SSL_acceptConnection(fd, server_store) == nanossl.ERR_INVALID_ARG, fd
            assert nanossl.SSL_connect(fd, 0, None, None, None, None) == nanossl.ERR_INVALID_ARG, fd
    os.close(read_end)
    os.close(write_end)
    assert table_in_use() == before


def test_unconnected_socket_fails_handshake(server_store):
    before = table_in_use()
    with socket.socket() as sock:
        ci = nanossl.SSL_acceptConnection(sock, server_store)
        assert ci > 0
        assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_RECV_TIMEOUT, 500) == nanossl.OK
        status = nanossl.SSL_negotiateConnection(ci)
        assert status < 0
        assert status != nanossl.ERR_TCP_READ_TIMEOUT
        assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    assert table_in_use() == before


# ---- record sizes round-trip exactly ----------------------------------


@pytest.fixture
def open_pair(server_store, client_store) -> Iterator[Pair]:
    pair = negotiate_pair(server_store, client_store)
    assert pair.ok, (nanossl.DISPLAY_ERROR(pair.server_status), nanossl.DISPLAY_ERROR(pair.client_status))
    yield pair
    pair.close()


def _receive_exactly(ci: int, size: int, chunk: int = 1 * MIB) -> bytes:
    buffer = bytearray(chunk)
    parts = []
    received = 0
    while received < size:
        status, count = nanossl.SSL_recv(ci, buffer, 10_000)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
        parts.append(bytes(buffer[:count]))
        received += count
    assert received == size
    return b"".join(parts)


def test_send_zero_bytes(open_pair):
    assert nanossl.SSL_send(open_pair.client_ci, b"") == 0
    assert nanossl.SSL_send(open_pair.client_ci, bytearray()) == 0
    assert nanossl.SSL_send(open_pair.client_ci, b"x") == 1
    assert _receive_exactly(open_pair.server_ci, 1) == b"x"
    status, pending = nanossl.SSL_recvPending(open_pair.server_ci)
    assert status == nanossl.OK
    assert pending == 0


def test_recv_one_byte_buffer(open_pair):
    message = b"one byte at a time, in order"
    assert nanossl.SSL_send(open_pair.server_ci, message) == len(message)
    buffer = bytearray(1)
    received = bytearray()
    for index in range(len(message)):
        status, count = nanossl.SSL_recv(open_pair.client_ci, buffer, 5000)
        assert (status, count) == (nanossl.OK, 1)
        received += buffer
        if index < len(message) - 1:
            assert nanossl.SSL_recvPending(open_pair.client_ci) == (nanossl.OK, 1)
    assert bytes(received) == message


def test_recv_into_view_slice_writes_only_slice(open_pair):
    assert nanossl.SSL_send(open_pair.server_ci, b"abcdef") == 6
    target = bytearray(b"." * 12)
    status, count = nanossl.SSL_recv(open_pair.client_ci, memoryview(target)[4:8], 5000)
    assert (status, count) == (nanossl.OK, 4)
    assert bytes(target) == b"....abcd...."
    status, count = nanossl.SSL_recv(open_pair.client_ci, memoryview(target)[0:2], 5000)
    assert (status, count) == (nanossl.OK, 2)
    assert bytes(target) == b"ef..abcd...."


def test_send_view_slice_and_typed_arrays(open_pair):
    data = _random_bytes(20_000, 6)
    assert nanossl.SSL_send(open_pair.client_ci, memoryview(data)[1000:5000]) == 4000
    assert _receive_exactly(open_pair.server_ci, 4000) == data[1000:5000]

    numbers = array.array("H", range(1000))
    assert nanossl.SSL_send(open_pair.client_ci, numbers) == 2000
    assert _receive_exactly(open_pair.server_ci, 2000) == numbers.tobytes()

    grid = memoryview(bytearray(range(12))).cast("B", (3, 4))
    assert nanossl.SSL_send(open_pair.client_ci, grid) == 12
    assert _receive_exactly(open_pair.server_ci, 12) == bytes(range(12))


def test_send_64_mib_round_trip(open_pair):
    size = 64 * MIB
    data = _random_bytes(size, 7)
    sender = Background(lambda: nanossl.SSL_send(open_pair.client_ci, data))
    received = _receive_exactly(open_pair.server_ci, size)
    assert sender.result() == size
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()


def test_send_64_mib_to_ssl_peer(pki, server_store):
    # pynano server, CPython ssl client: the bulk path against another stack.
    from tls_peers import ssl_client_context

    size = 64 * MIB
    data = _random_bytes(size, 8)
    server_sock, client_sock = tcp_pair()
    context = ssl_client_context(pki.ca.cert_pem, pki.client)

    def read_all() -> bytes:
        with context.wrap_socket(client_sock, server_hostname="localhost") as tls:
            chunks = []
            total = 0
            while total < size:
                chunk = tls.recv(1 * MIB)
                assert chunk, "connection closed early"
                chunks.append(chunk)
                total += len(chunk)
            return b"".join(chunks)

    reader = Background(read_all)
    ci = nanossl.SSL_acceptConnection(server_sock, server_store)
    try:
        assert nanossl.SSL_negotiateConnection(ci) == nanossl.OK
        assert nanossl.SSL_send(ci, data) == size
        received = reader.result()
    finally:
        nanossl.SSL_closeConnection(ci)
        server_sock.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()


# ---- fuzz seeds and regressions replay through the harnesses ----------


def _inputs(folder: str) -> List[Path]:
    directory = FUZZ_DIR / folder
    return sorted(path for path in directory.glob("*") if path.is_file()) if directory.is_dir() else []


@pytest.mark.parametrize("target", ["server", "client", "cert_store"])
def test_fuzz_inputs_replay(target):
    import importlib

    harness = importlib.import_module(f"fuzz_{target}")
    inputs = _inputs(f"seeds/{target}") + _inputs(f"regressions/{target}")
    assert inputs, f"no seeds for the {target} harness"
    before = table_in_use()
    for path in inputs:
        harness.test_one_input(path.read_bytes())
    assert table_in_use() == before
