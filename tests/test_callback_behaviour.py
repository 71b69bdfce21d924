"""The invalid-certificate callback when it misbehaves.

The callback runs on the thread that called SSL_negotiateConnection, with
the connection's lock held (the lock is recursive, so the callback may call
back into pynano for its own connection). pynano.nanossl turns its return
value into a verdict (_callback_verdict): an int >= 0 or True accepts; a
negative int is the status the handshake fails with; False, None and any
other type reject with the validation status. An exception rejects as well
and is kept for get_callback_error(). docs/robustness.md has the table.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from tls_peers import (  # noqa: E402
    Pair,
    negotiate_pair,
    new_store,
    require_mutual_auth,
    set_timeouts,
    table_in_use,
)
from pynano import certs, nanossl  # noqa: E402

INT32_MIN = -(2**31)
ALERT_UNKNOWN_CA = 48


@pytest.fixture(scope="module")
def stranger_store(pki) -> Iterator[nanossl.CertStore]:
    """Return a client store whose certificate comes from an untrusted CA."""
    stranger = certs.make_leaf(certs.make_ca("callback test stranger CA"), "callback stranger", server=False)
    store = new_store(stranger, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


@pytest.fixture(scope="module")
def mutual_server_store(pki) -> Iterator[nanossl.CertStore]:
    store = new_store(pki.server, [pki.ca.cert_pem])
    yield store
    nanossl.CERT_STORE_releaseStore(store)


class CallbackRun:
    """One server-side handshake against the stranger client with a callback."""

    def __init__(self, callback: Callable[[int, int], Any], server_store: nanossl.CertStore,
                 client_store: nanossl.CertStore, handshake_ms: int = 0) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.before = table_in_use()

        def recording_callback(ci: int, status: int) -> Any:
            self.calls.append({"ci": ci, "status": status, "thread": threading.get_ident()})
            return callback(ci, status)

        def server_setup(ci: int) -> None:
            require_mutual_auth(ci)
            if handshake_ms:
                set_timeouts(ci, handshake_ms=handshake_ms)
            self.server_thread = threading.get_ident()
            assert nanossl.SSL_setInvalidCertCallback(ci, recording_callback) == nanossl.OK

        self.pair: Pair = negotiate_pair(server_store, client_store, server_setup=server_setup)

    @property
    def status(self) -> int:
        return self.pair.server_status

    def close(self) -> None:
        self.pair.close()
        assert table_in_use() == self.before


@pytest.fixture
def run_callback(mutual_server_store, stranger_store) -> Iterator[Callable[..., CallbackRun]]:
    runs: List[CallbackRun] = []

    def run(callback: Callable[[int, int], Any], **options: Any) -> CallbackRun:
        result = CallbackRun(callback, mutual_server_store, stranger_store, **options)
        runs.append(result)
        return result

    yield run
    for result in runs:
        result.close()


# ---- verdicts ------------------------------------------------------------


def test_not_called_for_trusted_peer(mutual_server_store, client_store):
    calls = []

    def setup(ci: int) -> None:
        require_mutual_auth(ci)
        nanossl.SSL_setInvalidCertCallback(ci, lambda *args: calls.append(args) or 0)

    pair = negotiate_pair(mutual_server_store, client_store, server_setup=setup)
    try:
        assert pair.ok
        assert calls == []
    finally:
        pair.close()


def test_called_once_on_handshake_thread(run_callback):
    run = run_callback(lambda ci, status: nanossl.OK)
    assert run.status == nanossl.OK
    assert len(run.calls) == 1
    assert run.calls[0]["ci"] == run.pair.server_ci
    assert run.calls[0]["status"] == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    assert run.calls[0]["thread"] == run.server_thread


@pytest.mark.parametrize("verdict", [0, 1, True, 2**31 - 1, 2**40], ids=repr)
def test_accepting_verdicts(run_callback, verdict):
    run = run_callback(lambda ci, status: verdict)
    assert run.status == nanossl.OK
    assert nanossl.get_callback_error(run.pair.server_ci) is None


@pytest.mark.parametrize("verdict, expected", [
    (False, nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR),
    (nanossl.ERR_CERT_EXPIRED, nanossl.ERR_CERT_EXPIRED),
    (-1, -1),
    (-(2**40), INT32_MIN),
], ids=["False", "ERR_CERT_EXPIRED", "-1", "-2**40"])
def test_rejecting_verdicts(run_callback, verdict, expected):
    run = run_callback(lambda ci, status: verdict)
    assert run.status == expected


def test_passing_status_through_rejects(run_callback):
    run = run_callback(lambda ci, status: status)
    assert run.status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    # The rejected client reads the server's unknown_ca alert.
    status, _count = nanossl.SSL_recv(run.pair.client_ci, bytearray(16), 2000)
    assert status == nanossl.ERR_SSL_FATAL_ALERT
    assert nanossl.PYNANO_getPeerAlert(run.pair.client_ci) == (nanossl.OK, ALERT_UNKNOWN_CA)


@pytest.mark.parametrize("verdict", [None, "0", 0.0, b"\x00", object()],
                         ids=["None", "str", "float", "bytes", "object"])
def test_non_int_verdict_rejects_and_logs(run_callback, caplog, verdict):
    caplog.set_level(logging.ERROR, logger="pynano")
    run = run_callback(lambda ci, status: verdict)
    assert run.status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    messages = [record.getMessage() for record in caplog.records if record.name == "pynano"]
    assert any("not an int" in message for message in messages), messages


def test_removed_callback_is_not_called(mutual_server_store, stranger_store):
    calls = []

    def setup(ci: int) -> None:
        require_mutual_auth(ci)
        nanossl.SSL_setInvalidCertCallback(ci, lambda *args: calls.append(args) or 0)
        assert nanossl.SSL_setInvalidCertCallback(ci, None) == nanossl.OK

    pair = negotiate_pair(mutual_server_store, stranger_store, server_setup=setup)
    try:
        assert pair.server_status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
        assert calls == []
    finally:
        pair.close()


def test_missing_client_certificate_goes_to_callback(mutual_server_store, pki):
    # REQUIRE_MUTUAL_AUTH with no client certificate is a verification
    # failure like the others, so the callback may accept it.
    no_identity = new_store(trust=[pki.ca.cert_pem])
    calls = []

    def setup(ci: int) -> None:
        require_mutual_auth(ci)
        nanossl.SSL_setInvalidCertCallback(ci, lambda ci, status: calls.append(status) or nanossl.OK)

    pair = negotiate_pair(mutual_server_store, no_identity, server_setup=setup)
    try:
        assert pair.ok
        assert calls == [nanossl.ERR_SSL_PROTOCOL_PROCESS_CERTIFICATE]
    finally:
        pair.close()
        nanossl.CERT_STORE_releaseStore(no_identity)


def test_client_side_callback(pki, bad_server_certs, client_store):
    expired = bad_server_certs["expired"]
    server_store = new_store(expired, [pki.ca.cert_pem])
    calls = []

    def setup(ci: int) -> None:
        nanossl.SSL_setInvalidCertCallback(ci, lambda ci, status: calls.append(status) or nanossl.OK)

    pair = negotiate_pair(server_store, client_store, client_setup=setup)
    try:
        assert pair.ok
        assert calls == [nanossl.ERR_CERT_EXPIRED]
    finally:
        pair.close()
        nanossl.CERT_STORE_releaseStore(server_store)


# ---- exceptions ------------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError("callback bug"), KeyboardInterrupt(), SystemExit(3)],
                         ids=["ValueError", "KeyboardInterrupt", "SystemExit"])
def test_raising_callback_rejects_and_keeps_error(run_callback, caplog, error):
    caplog.set_level(logging.ERROR, logger="pynano")

    def raise_error(ci: int, status: int) -> int:
        raise error

    run = run_callback(raise_error)
    ci = run.pair.server_ci
    assert run.status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    assert nanossl.get_callback_error(ci) is error
    assert any("raised" in record.getMessage() for record in caplog.records if record.name == "pynano")
    assert nanossl.SSL_closeConnection(ci) == nanossl.OK
    assert nanossl.get_callback_error(ci) is error


def test_callback_error_not_reported_for_later_connection(run_callback, mutual_server_store):
    # An instance number comes back after SSL_shutdownStack and SSL_init;
    # the old connection's callback error must not show up for the new one.
    assert table_in_use() == 0
    assert nanossl.SSL_shutdownStack() == nanossl.OK
    assert nanossl.SSL_init(256, 256) == nanossl.OK

    def raise_error(ci: int, status: int) -> int:
        raise ValueError("first connection's error")

    first = run_callback(raise_error)
    first_ci = first.pair.server_ci
    first.close()
    assert isinstance(nanossl.get_callback_error(first_ci), ValueError)

    assert nanossl.SSL_shutdownStack() == nanossl.OK
    assert nanossl.SSL_init(256, 256) == nanossl.OK
    ours, theirs = socket.socketpair()
    reused = []
    try:
        # A fresh table numbers instances 1, 2, 3, ...; the first run used
        # one of the first two.
        while not reused or reused[-1] != first_ci:
            assert len(reused) < 3
            reused.append(nanossl.SSL_acceptConnection(ours, mutual_server_store))
    finally:
        for ci in reused:
            nanossl.SSL_closeConnection(ci)
        ours.close()
        theirs.close()
    assert nanossl.get_callback_error(first_ci) is None


# ---- slow callbacks ------------------------------------------------------


def test_sleeping_callback_blocks_only_its_connection(run_callback, mutual_server_store, client_store):
    done = threading.Event()
    timings: Dict[str, float] = {}

    def sleep_then_accept(ci: int, status: int) -> int:
        time.sleep(0.8)
        return nanossl.OK

    def other_handshake() -> None:
        time.sleep(0.1)
        started = time.monotonic()
        pair = negotiate_pair(mutual_server_store, client_store)
        timings["other"] = time.monotonic() - started
        timings["other_ok"] = pair.ok
        pair.close()
        done.set()

    other = threading.Thread(target=other_handshake, daemon=True)
    other.start()
    started = time.monotonic()
    run = run_callback(sleep_then_accept)
    elapsed = time.monotonic() - started
    other.join(10)
    assert done.is_set()
    assert run.status == nanossl.OK
    assert elapsed >= 0.8
    assert timings["other_ok"]
    assert timings["other"] < 0.7, "a sleeping callback held up another connection"


def test_sleeping_callback_counts_against_handshake_timeout(run_callback):
    def sleep_then_accept(ci: int, status: int) -> int:
        time.sleep(0.7)
        return nanossl.OK

    run = run_callback(sleep_then_accept, handshake_ms=400)
    assert run.status == nanossl.ERR_TCP_READ_TIMEOUT


# ---- calls back into pynano -----------------------------------------------


def test_callback_reads_its_connection(run_callback):
    seen: Dict[str, Any] = {}

    def inspect(ci: int, status: int) -> int:
        seen["flags"] = nanossl.SSL_getSessionFlags(ci)
        seen["details"] = nanossl.PYNANO_getVerifyDetails(ci)
        seen["state"] = nanossl.SSL_getConnectionState(ci)
        return nanossl.OK

    run = run_callback(inspect)
    assert run.status == nanossl.OK
    status, flags = seen["flags"]
    assert status == nanossl.OK
    assert flags & nanossl.SSL_FLAG_REQUIRE_MUTUAL_AUTH
    status, details = seen["details"]
    assert status == nanossl.OK
    assert details.status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR
    assert "callback stranger" in details.subject
    assert seen["state"] == (nanossl.OK, nanossl.SSL_CONNECTION_NEGOTIATE)


def test_callback_cannot_change_settings_or_send(run_callback):
    seen: Dict[str, Any] = {}

    def try_changes(ci: int, status: int) -> int:
        seen["flags"] = nanossl.SSL_setSessionFlags(ci, 0)
        seen["ioctl"] = nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, nanossl.TLS13_MINORVERSION)
        seen["send"] = nanossl.SSL_send(ci, b"too early")
        seen["recv"] = nanossl.SSL_recv(ci, bytearray(4), 10)
        return nanossl.OK

    run = run_callback(try_changes)
    assert run.status == nanossl.OK
    assert seen["flags"] == nanossl.ERR_SSL_BAD_STATE
    assert seen["ioctl"] == nanossl.ERR_SSL_BAD_STATE
    assert seen["send"] == nanossl.ERR_SSL_NOT_OPEN
    assert seen["recv"] == (nanossl.ERR_SSL_NOT_OPEN, 0)


def test_callback_cannot_reenter_handshake(run_callback):
    seen: Dict[str, Any] = {}

    def negotiate_again(ci: int, status: int) -> int:
        seen["negotiate"] = nanossl.SSL_negotiateConnection(ci)
        return status

    run = run_callback(negotiate_again)
    assert seen["negotiate"] == nanossl.ERR_SSL_BAD_STATE
    assert run.status == nanossl.ERR_CERT_CHAIN_NO_TRUST_ANCHOR


def test_callback_fatal_alert_ends_handshake(run_callback):
    # Either SSL_sendAlert refuses to run inside the callback, or the alert
    # it sent ends the connection: no data may follow a fatal alert.
    seen: Dict[str, Any] = {}

    def alert_then_accept(ci: int, status: int) -> int:
        seen["alert"] = nanossl.SSL_sendAlert(ci, 40, nanossl.SSLALERTLEVEL_FATAL)
        return nanossl.OK

    run = run_callback(alert_then_accept)
    if seen["alert"] == nanossl.OK:
        assert run.status < nanossl.OK, "handshake succeeded after a fatal alert"
        assert nanossl.SSL_send(run.pair.server_ci, b"after the alert") < nanossl.OK
    else:
        assert seen["alert"] == nanossl.ERR_SSL_BAD_STATE
        assert run.status == nanossl.OK


def test_callback_closing_its_connection(run_callback):
    seen: Dict[str, Any] = {}

    def close_and_accept(ci: int, status: int) -> int:
        seen["close"] = nanossl.SSL_closeConnection(ci)
        seen["in_use"] = table_in_use()
        return nanossl.OK

    before = table_in_use()
    run = run_callback(close_and_accept)
    ci = run.pair.server_ci
    assert seen["close"] == nanossl.OK
    # The server's slot is free as soon as the callback closed the
    # connection, and only the client's instance still uses a slot.
    assert seen["in_use"] == before + 1
    assert run.status == nanossl.ERR_SSL_BAD_ID
    assert nanossl.SSL_closeConnection(ci) == nanossl.ERR_SSL_BAD_ID
    assert nanossl.SSL_getSessionFlags(ci)[0] == nanossl.ERR_SSL_BAD_ID


def test_callback_shutting_down_stack(run_callback):
    def shutdown_and_accept(ci: int, status: int) -> int:
        nanossl.SSL_shutdownStack()
        return nanossl.OK

    assert table_in_use() == 0
    try:
        run = run_callback(shutdown_and_accept)
        assert run.status == nanossl.ERR_SSL_BAD_ID
        assert nanossl.PYNANO_getTableUsage() == (nanossl.OK, 0, 0)
    finally:
        assert nanossl.SSL_init(256, 256) == nanossl.OK
