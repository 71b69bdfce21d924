"""Concurrency and leaks: many handshakes through one pynano server.

The 10,000-cycle memory test carries the ``slow`` marker: CI runs it, and
``pytest -m "not slow"`` leaves it out for a quick run. The measured times
are in docs/robustness.md.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from tls_peers import (  # noqa: E402
    ThreadedServer,
    client_exchange,
    new_store,
    require_mutual_auth,
    set_timeouts,
    table_in_use,
)
from pynano import nanossl  # noqa: E402

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def shared_stores(pki) -> Iterator[tuple]:
    server = new_store(pki.server, [pki.ca.cert_pem])
    client = new_store(pki.client, [pki.ca.cert_pem])
    yield server, client
    nanossl.CERT_STORE_releaseStore(server)
    nanossl.CERT_STORE_releaseStore(client)


def run_concurrent_handshakes(stores, threads: int, per_thread: int) -> float:
    """Run threads x per_thread mutual-auth exchanges; return the seconds taken."""
    server_store, client_store = stores
    before = table_in_use()
    server = ThreadedServer(server_store, workers=threads)
    client_statuses: "queue.Queue[int]" = queue.Queue()

    def client_loop() -> None:
        for _ in range(per_thread):
            client_statuses.put(client_exchange(server.address, client_store))

    started = time.monotonic()
    clients = [threading.Thread(target=client_loop, daemon=True) for _ in range(threads)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(600)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 30
    while len(server.tally.statuses) < threads * per_thread and time.monotonic() < deadline:
        time.sleep(0.05)
    server.close()

    total = threads * per_thread
    statuses = [client_statuses.get_nowait() for _ in range(client_statuses.qsize())]
    failed_clients = [nanossl.DISPLAY_ERROR(s) for s in statuses if s != nanossl.OK]
    failed_server = [nanossl.DISPLAY_ERROR(s) for s in server.tally.statuses if s != nanossl.OK]
    assert len(statuses) == total
    assert failed_clients == []
    assert len(server.tally.statuses) == total
    assert failed_server == []
    assert table_in_use() == before
    print(f"\n{total} mutual-auth handshakes on {threads} threads: {elapsed:.1f} s "
          f"({total / elapsed:.0f} per second)")
    return elapsed


def test_concurrent_handshakes(shared_stores):
    # About 11 s on 2 cores, so the full size runs by default.
    run_concurrent_handshakes(shared_stores, threads=8, per_thread=200)


# ---- memory ------------------------------------------------------------


def resident_bytes() -> int:
    """Return this process's resident set size from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class HandshakeLoop:
    """TLS 1.3 pynano-to-pynano handshakes over socketpairs, closed each time.

    One long-lived server thread takes sockets from a queue, so the loop
    creates no thread per cycle.
    """

    def __init__(self, stores) -> None:
        self.server_store, self.client_store = stores
        self.sockets: "queue.Queue[Optional[socket.socket]]" = queue.Queue()
        self.results: "queue.Queue[int]" = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            sock = self.sockets.get()
            if sock is None:
                return
            ci = nanossl.SSL_acceptConnection(sock, self.server_store)
            set_timeouts(ci, recv_ms=10_000)
            require_mutual_auth(ci)
            status = nanossl.SSL_negotiateConnection(ci)
            nanossl.SSL_closeConnection(ci)
            sock.close()
            self.results.put(status)

    def cycle(self) -> None:
        ours, theirs = socket.socketpair()
        self.sockets.put(theirs)
        with ours:
            ci = nanossl.SSL_connect(ours, 0, None, None, "localhost", self.client_store)
            set_timeouts(ci, recv_ms=10_000)
            assert nanossl.SSL_ioctl(ci, nanossl.SSL_SET_VERSION, nanossl.TLS13_MINORVERSION) == nanossl.OK
            status = nanossl.SSL_negotiateConnection(ci)
            nanossl.SSL_closeConnection(ci)
        assert status == nanossl.OK, nanossl.DISPLAY_ERROR(status)
        assert self.results.get(timeout=30) == nanossl.OK

    def close(self) -> None:
        self.sockets.put(None)
        self.thread.join(10)


def measure_rss_growth(stores, cycles: int, warm_up: int = 300) -> int:
    """Run warm_up cycles, then cycles more; return the RSS growth in bytes."""
    loop = HandshakeLoop(stores)
    before_usage = table_in_use()
    try:
        for _ in range(warm_up):
            loop.cycle()
        baseline = resident_bytes()
        started = time.monotonic()
        for _ in range(cycles):
            loop.cycle()
        elapsed = time.monotonic() - started
        growth = resident_bytes() - baseline
    finally:
        loop.close()
    assert table_in_use() == before_usage
    print(f"\n{cycles} handshake-and-close cycles after {warm_up} warm-up: RSS grew "
          f"{growth / 1024:.0f} KiB in {elapsed:.1f} s")
    return growth


def test_rss_stable_over_handshakes(shared_stores):
    # 2 MB per 10,000 cycles, scaled to 1,500 cycles: 300 kB. RSS moves in
    # whole pages, so the bound has 64 KiB of slack on top.
    cycles = 1500
    growth = measure_rss_growth(shared_stores, cycles)
    assert growth < 2_000_000 * cycles // 10_000 + 64 * 1024


@pytest.mark.slow
def test_rss_stable_over_10000_handshakes(shared_stores):
    assert measure_rss_growth(shared_stores, 10_000) < 2_000_000
