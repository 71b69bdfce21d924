"""Write the seed corpus of the fuzz targets into tests/fuzz/seeds/.

The flights are captured from CPython's ssl module and from pynano over
socketpairs, with a throwaway PKI made for the run, so the seeds hold no key
that matters. Run it again to refresh the seeds:

    python tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import ssl
from pathlib import Path

import tls_peers
from pynano import certs, nanossl

SEEDS = Path(__file__).resolve().parent / "seeds"


def _prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def main() -> None:
    assert nanossl.SSL_init(256, 256) == nanossl.OK
    pki = certs.make_test_pki()
    tls12 = ssl.TLSVersion.TLSv1_2
    pynano_hello = tls_peers.pynano_client_hello(pki.ca.cert_pem)
    seeds = {
        "server/ssl_client_hello_tls13": tls_peers.capture_client_hello(pki.ca.cert_pem),
        "server/ssl_client_hello_tls12": tls_peers.capture_client_hello(pki.ca.cert_pem, tls12),
        "server/pynano_client_hello": pynano_hello,
        "client/ssl_server_flight_tls13": tls_peers.capture_server_flight(pynano_hello, pki.server),
        "client/ssl_server_flight_tls12": tls_peers.capture_server_flight(pynano_hello, pki.server, tls12),
        "cert_store/trust_point_pem": b"\x00" + pki.ca.cert_pem,
        "cert_store/trust_point_der": b"\x00" + pki.ca.cert_der(),
        "cert_store/identity_pem": b"\x01" + _prefixed(pki.server.cert_pem) + pki.server.key_pem,
        "cert_store/chain_der": b"\x02\x01" + _prefixed(pki.server.cert_der()) + _prefixed(pki.ca.cert_der())
        + pki.server.key_pem,
    }
    for name, data in seeds.items():
        path = SEEDS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.relative_to(SEEDS.parent)}: {len(data)} bytes")


if __name__ == "__main__":
    main()
