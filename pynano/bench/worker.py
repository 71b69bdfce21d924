"""One side of one stack in the bench: a server or a client process.

Run as ``python -m pynano.bench.worker --stack NAME --role server|client
--pki DIR [--port N]``. It reads commands on stdin and replies on stdout in
the line protocol of ``pynano.bench.protocol``. benchmarks/cfloor.c does the
same in C. The server listens on 127.0.0.1 and prints its port in the
``ready`` line. Each connection, in every workload, ends with a one-byte
message from the server that the client reads, so a handshake counts only
once both sides have finished it and authenticated the peer.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from .protocol import format_message, parse_message
from .stacks import ADAPTERS, Connection, StackAdapter, StackError
from .workloads import RECORD_BYTES

PING = b"k"
LISTEN_BACKLOG = 1024
HOST = "127.0.0.1"


class WorkerError(RuntimeError):
    """A command failed; the message goes back to the runner."""


class Channel:
    """The worker's stdin and stdout, one protocol line at a time."""

    def __init__(self, incoming: TextIO, outgoing: TextIO) -> None:
        self._incoming = incoming
        self._outgoing = outgoing

    def send(self, verb: str, **fields: object) -> None:
        """Write one message and flush it."""
        self._outgoing.write(format_message(verb, **fields) + "\n")
        self._outgoing.flush()

    def receive(self) -> Optional[str]:
        """Read the next non-empty line, or None at end of input."""
        while True:
            line = self._incoming.readline()
            if not line:
                return None
            if line.strip():
                return line


def resident_bytes() -> int:
    """Return this process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def cpu_since(started: float) -> str:
    """Return the CPU seconds of this process, all threads, since started."""
    return f"{time.process_time() - started:.6f}"


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one for the memory workload."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_threads(count: int, threads: int, work: Callable[[int, int], None]) -> float:
    """Split count jobs over threads, run work(thread_index, jobs); return seconds.

    The clock starts when every thread is ready, and the first exception of
    any thread is raised after all have stopped.
    """
    shares = [count // threads + (1 if index < count % threads else 0) for index in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: List[BaseException] = []

    def body(index: int) -> None:
        barrier.wait()
        try:
            work(index, shares[index])
        except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(error)

    workers = [threading.Thread(target=body, args=(index,), daemon=True) for index in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def close_all(connections: Sequence[Connection]) -> None:
    """Close every connection, going on past failures."""
    for connection in connections:
        try:
            connection.close()
        except (OSError, StackError):
            pass


class Server:
    """The server side: accepts on one listening socket for every command."""

    def __init__(self, adapter: StackAdapter, channel: Channel) -> None:
        self.adapter = adapter
        self.channel = channel
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(LISTEN_BACKLOG)
        self.cpu_started = 0.0

    @property
    def port(self) -> int:
        """The listening port on 127.0.0.1."""
        return self.listener.getsockname()[1]

    def accept(self, version: int, suite: int, resume: bool = False) -> Connection:
        """Accept one TCP connection and run the server handshake on it."""
        sock, _address = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.adapter.server_handshake(sock, version, suite, resume)

    def serve_one(self, version: int, suite: int, resume: bool = False) -> None:
        """Accept, handshake, send the one-byte message, close."""
        connection = self.accept(version, suite, resume)
        try:
            connection.send(PING)
        finally:
            connection.close()

    def handle(self, verb: str, fields: Dict[str, str]) -> None:
        """Run one command."""
        if verb != "serve":
            raise WorkerError(f"unknown command {verb!r} for a server; expected serve or quit")
        kind = fields.get("kind", "")
        version = int(fields["version"])
        suite = int(fields["suite"], 0)
        self.cpu_started = time.process_time()
        self.channel.send("serving")
        if kind == "handshake":
            self.serve_handshakes(int(fields["count"]), int(fields.get("threads", "1")), version, suite)
        elif kind == "bulk":
            self.serve_bulk(int(fields["bytes"]), version, suite)
        elif kind == "hold":
            self.serve_hold(int(fields["count"]), int(fields.get("warmup", "0")), version, suite)
        elif kind == "resume":
            self.serve_resumes(int(fields["count"]), version, suite)
        else:
            raise WorkerError(f"unknown workload kind {kind!r}; expected handshake, bulk, hold or resume")

    def serve_resumes(self, count: int, version: int, suite: int) -> None:
        """Serve one full handshake and count resumed ones, with session tickets on."""
        self.serve_one(version, suite, resume=True)
        # CPU time counts from here, as on the client, so it covers the resumed handshakes alone.
        self.cpu_started = time.process_time()
        for _ in range(count):
            self.serve_one(version, suite, resume=True)
        self.channel.send("done", served=count + 1, cpu=cpu_since(self.cpu_started))

    def serve_handshakes(self, count: int, threads: int, version: int, suite: int) -> None:
        """Serve count connections from the given number of threads."""
        remaining = [count]
        lock = threading.Lock()

        def work(_index: int, _share: int) -> None:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                self.serve_one(version, suite)

        # Each thread takes connections until none is left, not a fixed share.
        run_threads(threads, threads, work)
        self.channel.send("done", served=count, cpu=cpu_since(self.cpu_started))

    def serve_bulk(self, total: int, version: int, suite: int) -> None:
        """Read total bytes on one connection, then reply with one byte."""
        connection = self.accept(version, suite)
        # CPU time counts from here, so the handshake does not weigh on small transfers.
        self.cpu_started = time.process_time()
        try:
            buffer = bytearray(RECORD_BYTES)
            received = 0
            while received < total:
                count = connection.recv_into(buffer)
                if count == 0:
                    raise WorkerError(f"the client closed after {received} of {total} bytes")
                received += count
            connection.send(PING)
        finally:
            connection.close()
        self.channel.send("done", received=received, cpu=cpu_since(self.cpu_started))

    def serve_hold(self, count: int, warmup: int, version: int, suite: int) -> None:
        """Hold count idle connections and report the RSS before and after."""
        for _ in range(warmup):
            self.serve_one(version, suite)
        gc.collect()
        before = resident_bytes()
        idle: List[Connection] = []
        try:
            for _ in range(count):
                connection = self.accept(version, suite)
                idle.append(connection)
                connection.send(PING)
            gc.collect()
            self.channel.send("held", rss_before=before, rss_after=resident_bytes(), count=len(idle),
                              side="server")
            wait_for_release(self.channel)
        finally:
            close_all(idle)
        self.channel.send("done")


class Client:
    """The client side: connects to the server's port for every command."""

    def __init__(self, adapter: StackAdapter, channel: Channel, port: int) -> None:
        self.adapter = adapter
        self.channel = channel
        self.port = port
        self.cpu_started = 0.0

    def connect(self, version: int, suite: int, resume: bool = False, session: object = None) -> Connection:
        """Open a TCP connection and run the client handshake on it."""
        sock = socket.create_connection((HOST, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.adapter.client_handshake(sock, version, suite, resume, session)

    def read_ping(self, connection: Connection) -> None:
        """Read the server's one-byte message that ends its handshake."""
        buffer = bytearray(len(PING))
        if connection.recv_into(buffer) != len(PING):
            raise WorkerError("the server closed before its one-byte message")

    def connect_once(self, version: int, suite: int, facts: Optional[Dict[str, str]] = None) -> None:
        """Connect, handshake, read the one-byte message, close."""
        connection = self.connect(version, suite)
        try:
            self.read_ping(connection)
            if facts is not None:
                facts.update(connection.describe())
        finally:
            connection.close()

    def handle(self, verb: str, fields: Dict[str, str]) -> None:
        """Run one command."""
        if verb != "run":
            raise WorkerError(f"unknown command {verb!r} for a client; expected run or quit")
        kind = fields.get("kind", "")
        version = int(fields["version"])
        suite = int(fields["suite"], 0)
        self.cpu_started = time.process_time()
        if kind == "handshake":
            self.run_handshakes(int(fields["count"]), int(fields.get("threads", "1")), version, suite)
        elif kind == "bulk":
            self.run_bulk(int(fields["bytes"]), version, suite)
        elif kind == "hold":
            self.run_hold(int(fields["count"]), int(fields.get("warmup", "0")), version, suite)
        elif kind == "resume":
            self.run_resumes(int(fields["count"]), version, suite)
        else:
            raise WorkerError(f"unknown workload kind {kind!r}; expected handshake, bulk, hold or resume")

    def resume_once(self, version: int, suite: int, session: object,
                    facts: Optional[Dict[str, str]] = None) -> Tuple[object, bool]:
        """Connect offering session, read the one-byte message, close.

        Returns the newest session, which is the one offered when the server
        sent none, and whether the handshake resumed.
        """
        connection = self.connect(version, suite, True, session)
        try:
            self.read_ping(connection)
            reused = connection.session_reused()
            newest = connection.session()
            if facts is not None:
                facts.update(connection.describe())
        finally:
            connection.close()
        return (newest if newest is not None else session), reused

    def run_resumes(self, count: int, version: int, suite: int) -> None:
        """Run one full handshake, untimed, then count handshakes that offer its session.

        Each connection offers the newest session, as a client that keeps the
        latest ticket does. Fails when no handshake resumed.
        """
        facts: Dict[str, str] = {}
        session, _reused = self.resume_once(version, suite, None, facts)
        if session is None:
            raise WorkerError("the full handshake left no session to resume")
        self.cpu_started = time.process_time()
        started = time.perf_counter()
        resumed = 0
        for _ in range(count):
            session, reused = self.resume_once(version, suite, session)
            resumed += reused
        seconds = time.perf_counter() - started
        if resumed == 0:
            raise WorkerError(f"none of {count} handshakes resumed the session")
        self.channel.send("done", seconds=f"{seconds:.6f}", count=count, not_resumed=count - resumed,
                          cpu=cpu_since(self.cpu_started), **facts)

    def run_handshakes(self, count: int, threads: int, version: int, suite: int) -> None:
        """Run count full handshakes from the given number of threads."""
        facts: Dict[str, str] = {}

        def work(index: int, share: int) -> None:
            for number in range(share):
                self.connect_once(version, suite, facts if index == 0 and number == 0 else None)

        seconds = run_threads(count, threads, work)
        self.channel.send("done", seconds=f"{seconds:.6f}", count=count, cpu=cpu_since(self.cpu_started),
                          **facts)

    def run_bulk(self, total: int, version: int, suite: int) -> None:
        """Send total bytes in 16 KiB writes, timed until the server's one-byte reply."""
        records = max(1, total // RECORD_BYTES)
        data = os.urandom(RECORD_BYTES)
        connection = self.connect(version, suite)
        try:
            facts = connection.describe()
            self.cpu_started = time.process_time()
            started = time.perf_counter()
            for _ in range(records):
                connection.send(data)
            self.read_ping(connection)
            seconds = time.perf_counter() - started
        finally:
            connection.close()
        self.channel.send("done", seconds=f"{seconds:.6f}", bytes=records * RECORD_BYTES,
                          cpu=cpu_since(self.cpu_started), **facts)

    def run_hold(self, count: int, warmup: int, version: int, suite: int) -> None:
        """Hold count idle connections and report the RSS before and after."""
        for _ in range(warmup):
            self.connect_once(version, suite)
        gc.collect()
        before = resident_bytes()
        idle: List[Connection] = []
        try:
            for _ in range(count):
                connection = self.connect(version, suite)
                idle.append(connection)
                self.read_ping(connection)
            facts = idle[0].describe() if idle else {}
            gc.collect()
            self.channel.send("held", rss_before=before, rss_after=resident_bytes(), count=len(idle),
                              side="client", **facts)
            wait_for_release(self.channel)
        finally:
            close_all(idle)
        self.channel.send("done")


def wait_for_release(channel: Channel) -> None:
    """Block until the runner sends release."""
    line = channel.receive()
    if line is None:
        raise WorkerError("input ended while holding connections")
    verb, _fields = parse_message(line)
    if verb != "release":
        raise WorkerError(f"expected release while holding connections, got {verb!r}")


def serve_commands(handler: Callable[[str, Dict[str, str]], None], channel: Channel) -> None:
    """Run commands until quit or end of input; report each failure as an error line."""
    while True:
        line = channel.receive()
        if line is None:
            return
        verb, fields = parse_message(line)
        if verb == "quit":
            return
        try:
            handler(verb, fields)
        except (OSError, StackError, WorkerError, ValueError, KeyError) as error:
            channel.send("error", message=f"{type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001  (tlslite raises its own classes; report any)
            channel.send("error", message=f"{type(error).__module__}.{type(error).__name__}: {error}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start one worker process; returns the exit status."""
    parser = argparse.ArgumentParser(description="pynano bench worker: one side of one stack")
    parser.add_argument("--stack", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--role", required=True, choices=["server", "client"])
    parser.add_argument("--pki", required=True, help="folder written by `pynano certs`")
    parser.add_argument("--port", type=int, help="server port on 127.0.0.1 (client only)")
    args = parser.parse_args(argv)

    channel = Channel(sys.stdin, sys.stdout)
    raise_open_file_limit()
    try:
        adapter = ADAPTERS[args.stack](Path(args.pki))
    except Exception as error:  # noqa: BLE001  (any start-up failure skips the stack)
        channel.send("error", message=f"{type(error).__name__}: {error}")
        return 1

    if args.role == "server":
        server = Server(adapter, channel)
        channel.send("ready", port=server.port, **adapter.details())
        serve_commands(server.handle, channel)
    else:
        if args.port is None:
            parser.error("--port is required for a client")
        client = Client(adapter, channel, args.port)
        channel.send("ready", **adapter.details())
        serve_commands(client.handle, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
