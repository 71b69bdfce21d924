"""sslyze against a pynano server on 127.0.0.1.

The server is tls_peers.ThreadedServer: worker threads that run
SSL_acceptConnection on each accepted socket with SSL_FLAG_REQUIRE_MUTUAL_AUTH
set. sslyze opens some 600 connections per scan, and every one of them
must be closed and its table slot freed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from tls_peers import PemFiles, ThreadedServer, new_store, table_in_use  # noqa: E402
from pynano import nanossl  # noqa: E402

sslyze = pytest.importorskip("sslyze")

from sslyze import (  # noqa: E402
    ClientAuthenticationCredentials,
    ClientAuthRequirementEnum,
    RobotScanResultEnum,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

SCAN_COMMANDS = {
    ScanCommand.SSL_2_0_CIPHER_SUITES,
    ScanCommand.SSL_3_0_CIPHER_SUITES,
    ScanCommand.TLS_1_0_CIPHER_SUITES,
    ScanCommand.TLS_1_1_CIPHER_SUITES,
    ScanCommand.TLS_1_2_CIPHER_SUITES,
    ScanCommand.TLS_1_3_CIPHER_SUITES,
    ScanCommand.TLS_COMPRESSION,
    ScanCommand.OPENSSL_CCS_INJECTION,
    ScanCommand.HEARTBLEED,
    ScanCommand.ROBOT,
    ScanCommand.SESSION_RENEGOTIATION,
    ScanCommand.TLS_FALLBACK_SCSV,
    ScanCommand.TLS_EXTENDED_MASTER_SECRET,
}
AEAD_MARKERS = ("_GCM_", "_CHACHA20_POLY1305_")


def scan(port: int, client_files: PemFiles = None):
    """Run SCAN_COMMANDS against 127.0.0.1:port and return the one result."""
    credentials = None
    if client_files is not None:
        credentials = ClientAuthenticationCredentials(certificate_chain_path=Path(client_files.cert),
                                                      key_path=Path(client_files.key))
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="localhost", port=port, ip_address="127.0.0.1"),
        scan_commands=SCAN_COMMANDS,
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication="localhost", network_timeout=5,
            tls_client_auth_credentials=credentials),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    assert len(results) == 1
    assert results[0].scan_status == ServerScanStatusEnum.COMPLETED, results[0].connectivity_error_trace
    return results[0]


def completed(result, command: ScanCommand):
    attempt = getattr(result.scan_result, command.value)
    assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (command, attempt.error_reason,
                                                                      attempt.error_trace)
    return attempt.result


@pytest.fixture(scope="module")
def scans(pki) -> Iterator[dict]:
    """Scan one server without and then with a client certificate."""
    store = new_store(pki.server, [pki.ca.cert_pem])
    before = table_in_use()
    server = ThreadedServer(store, workers=8)
    client_files = PemFiles(pki.client)
    try:
        results = {
            "anonymous": scan(server.address[1]),
            "with client certificate": scan(server.address[1], client_files),
        }
    finally:
        client_files.cleanup()
        server.close()
        nanossl.CERT_STORE_releaseStore(store)
    results["statuses"] = server.tally.statuses
    results["in_use_before"] = before
    yield results


def test_every_scanner_connection_freed(scans):
    assert len(scans["statuses"]) > 100
    assert table_in_use() == scans["in_use_before"]


def test_scanner_sees_client_auth_required(scans):
    requirement = scans["anonymous"].connectivity_result.client_auth_requirement
    assert requirement == ClientAuthRequirementEnum.REQUIRED


@pytest.mark.parametrize("command", [
    ScanCommand.SSL_2_0_CIPHER_SUITES,
    ScanCommand.SSL_3_0_CIPHER_SUITES,
    ScanCommand.TLS_1_0_CIPHER_SUITES,
    ScanCommand.TLS_1_1_CIPHER_SUITES,
], ids=lambda command: command.value)
def test_old_versions_rejected(scans, command):
    assert completed(scans["anonymous"], command).accepted_cipher_suites == []


def test_tls12_only_forward_secret_aead(scans):
    accepted = [suite.cipher_suite.name for suite in
                completed(scans["anonymous"], ScanCommand.TLS_1_2_CIPHER_SUITES).accepted_cipher_suites]
    assert accepted
    for name in accepted:
        assert name.startswith("TLS_ECDHE_"), name
        assert any(marker in name for marker in AEAD_MARKERS), name


def test_tls13_accepted(scans):
    accepted = [suite.cipher_suite.name for suite in
                completed(scans["anonymous"], ScanCommand.TLS_1_3_CIPHER_SUITES).accepted_cipher_suites]
    assert "TLS_AES_128_GCM_SHA256" in accepted


def test_no_compression(scans):
    assert completed(scans["anonymous"], ScanCommand.TLS_COMPRESSION).supports_compression is False


def test_not_vulnerable_to_known_attacks(scans):
    result = scans["anonymous"]
    assert completed(result, ScanCommand.HEARTBLEED).is_vulnerable_to_heartbleed is False
    assert completed(result, ScanCommand.OPENSSL_CCS_INJECTION).is_vulnerable_to_ccs_injection is False
    assert completed(result, ScanCommand.ROBOT).robot_result in (
        RobotScanResultEnum.NOT_VULNERABLE_NO_ORACLE,
        RobotScanResultEnum.NOT_VULNERABLE_RSA_NOT_SUPPORTED,
    )
    assert completed(result, ScanCommand.TLS_FALLBACK_SCSV).supports_fallback_scsv is True
    assert completed(result, ScanCommand.TLS_EXTENDED_MASTER_SECRET).supports_ems_extension is True


def test_renegotiation_secure_or_refused(scans):
    # sslyze can only renegotiate once the handshake is through, so this
    # uses the scan that presents a client certificate.
    renegotiation = completed(scans["with client certificate"], ScanCommand.SESSION_RENEGOTIATION)
    assert renegotiation.is_vulnerable_to_client_renegotiation_dos is False
    assert renegotiation.supports_secure_renegotiation is True
