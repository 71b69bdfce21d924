"""Shared fixtures: throwaway PKIs, certificate stores, loopback sockets.

Every network test uses 127.0.0.1 with socket timeouts and bounded joins.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from pynano import certs, nanossl

# Background lives with the fuzz harnesses' peers, which run outside pytest.
sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
from tls_peers import Background  # noqa: E402

__all__ = ["Background", "Pki", "accept", "connect", "make_store"]

SOCKET_TIMEOUT = 10.0


@pytest.fixture(scope="session", autouse=True)
def nanossl_stack() -> Iterator[None]:
    """Initialise the NanoSSL stack once for the whole run."""
    assert nanossl.SSL_init(256, 256) == nanossl.OK
    yield


@dataclass(frozen=True)
class Pki:
    """A test PKI in memory and on disk."""

    ca: certs.PemPair
    server: certs.PemPair
    client: certs.PemPair
    files: Dict[str, Path]

    def path(self, name: str) -> str:
        return str(self.files[name])


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Return an ECDSA P-256 CA, server (localhost) and client set."""
    directory = tmp_path_factory.mktemp("pki")
    material = certs.make_test_pki()
    files = {}
    for role in ("ca", "server", "client"):
        pair = getattr(material, role)
        cert_path = directory / f"{role}.pem"
        key_path = directory / f"{role}.key"
        cert_path.write_bytes(pair.cert_pem)
        key_path.write_bytes(pair.key_pem)
        files[f"{role}.pem"] = cert_path
        files[f"{role}.key"] = key_path
    return Pki(material.ca, material.server, material.client, files)


@pytest.fixture(scope="session")
def stranger(pki: Pki) -> certs.PemPair:
    """Return a client certificate from a CA that no test store trusts."""
    other_ca = certs.make_ca("untrusted test CA")
    return certs.make_leaf(other_ca, "untrusted test client", server=False)


@pytest.fixture(scope="session")
def bad_server_certs(pki: Pki) -> Dict[str, certs.PemPair]:
    """Return server certificates that fail validation, one per reason."""
    now = datetime.now(timezone.utc)
    other_ca = certs.make_ca("untrusted server CA")
    return {
        "expired": certs.make_leaf(pki.ca, "localhost", dns_names=["localhost"], server=True,
                                   not_before=now - timedelta(days=60), not_after=now - timedelta(days=1)),
        "future": certs.make_leaf(pki.ca, "localhost", dns_names=["localhost"], server=True,
                                  not_before=now + timedelta(days=1), not_after=now + timedelta(days=60)),
        "untrusted": certs.make_leaf(other_ca, "localhost", dns_names=["localhost"], server=True),
        "wrong_host": certs.make_leaf(pki.ca, "elsewhere.example", dns_names=["elsewhere.example"], server=True),
    }


def make_store(identity: Optional[certs.PemPair] = None, trust: Optional[List[bytes]] = None) -> nanossl.CertStore:
    """Return a NanoSSL certificate store with an identity and trust points."""
    status, store = nanossl.CERT_STORE_createStore()
    assert status == nanossl.OK
    assert store is not None
    if identity is not None:
        status = nanossl.CERT_STORE_addIdentity(store, identity.cert_pem, identity.key_pem)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
    for cert in trust or []:
        status = nanossl.CERT_STORE_addTrustPoint(store, cert)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
    return store


@pytest.fixture
def server_store(pki: Pki) -> Iterator[nanossl.CertStore]:
    store = make_store(pki.server, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


@pytest.fixture
def client_store(pki: Pki) -> Iterator[nanossl.CertStore]:
    store = make_store(pki.client, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Return a listening TCP socket on 127.0.0.1 with a timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(SOCKET_TIMEOUT)
    yield sock
    sock.close()


def connect(listener: socket.socket) -> socket.socket:
    """Return a client socket connected to the listener."""
    return socket.create_connection(listener.getsockname(), timeout=SOCKET_TIMEOUT)


def accept(listener: socket.socket) -> socket.socket:
    conn, _ = listener.accept()
    conn.settimeout(SOCKET_TIMEOUT)
    return conn
