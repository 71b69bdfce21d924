"""``pynano server`` and ``pynano client``: TLS test peers like openssl s_server and s_client.

Both run on pynano's ssl-style API (TLSContext, TLSSocket), so they exercise
the same engine as library users. ``pynano.cli`` finds ``register`` here and
adds the two commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, List, Optional, Tuple

from .exceptions import TLSTimeoutError
from .tls import CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED, TLSContext, TLSSocket, TLSVersion

__all__ = ["register"]

server_log = logging.getLogger("pynano.server")

SERVER_EPILOG = """\
examples:
  pynano certs ./pki
  pynano server --port 4433 --cert ./pki/server.pem --key ./pki/server.key
  pynano server --port 4433 --cert ./pki/server.pem --key ./pki/server.key \\
      --ca ./pki/ca.pem --require-client-cert --tls1_3 --mode http
  openssl s_client -connect 127.0.0.1:4433 -CAfile ./pki/ca.pem -servername localhost

The server logs one line per connection (peer, version, cipher suite,
client certificate subject, outcome) to stderr and stops with exit status 0
on Ctrl-C or SIGTERM."""

CLIENT_EPILOG = """\
examples:
  pynano client --connect localhost:4433 --ca ./pki/ca.pem
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | pynano client --connect example.org:443
  pynano client --connect 127.0.0.1:4433 --servername localhost --ca ./pki/ca.pem \\
      --cert ./pki/client.pem --key ./pki/client.key --tls1_2
  pynano client --connect 127.0.0.1:4433 --insecure

The handshake summary goes to stderr; data from stdin goes to the server and
data from the server goes to stdout. Without --ca the system CA bundle is
trusted."""

# Seconds between checks of the stop flag while the server waits for a client.
ACCEPT_POLL_SECONDS = 0.25
# Maximum size of an HTTP request head that --mode http reads.
MAX_REQUEST_HEAD = 64 * 1024
READ_SIZE = 16 * 1024


def register(commands: Any, add: Callable[[str, Callable[[argparse.Namespace], int], str],
                                         argparse.ArgumentParser]) -> None:
    """Add the server and client commands through cli.build_parser's add()."""
    server = add("server", cmd_server, "run a TLS test server like `openssl s_server`")
    server.epilog = SERVER_EPILOG
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--port", type=int, default=4433,
                        help="TCP port to listen on; 0 picks a free port (default 4433)")
    server.add_argument("--cert", required=True,
                        help="PEM file with the server certificate chain, leaf first")
    server.add_argument("--key", help="PEM file with the private key (default: the --cert file)")
    server.add_argument("--ca", help="PEM file of CAs that client certificates must chain to; "
                                     "with it the server requests a client certificate")
    server.add_argument("--require-client-cert", action="store_true",
                        help="reject clients without a valid certificate (needs --ca)")
    server.add_argument("--mode", choices=["echo", "http"], default="echo",
                        help="echo: send every byte back; http: respond to one request with a "
                             "text page describing the TLS session (default echo)")
    server.add_argument("--max-connections", type=int, default=0, metavar="N",
                        help="stop after N connections; 0 serves until stopped (default 0)")
    server.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="per-connection limit in seconds for the handshake and each read "
                             "(default 30)")
    _add_common_options(server)

    client = add("client", cmd_client,
                 "connect to a TLS server like `openssl s_client` and relay stdin/stdout")
    client.epilog = CLIENT_EPILOG
    client.add_argument("--connect", required=True, metavar="HOST:PORT", help="server address")
    client.add_argument("--cert", help="PEM file with a client certificate chain, leaf first")
    client.add_argument("--key", help="PEM file with the client private key (default: the --cert file)")
    client.add_argument("--ca", help="PEM file of CAs to trust (default: the system CA bundle)")
    client.add_argument("--servername", help="name to send as SNI and to check the certificate "
                                             "against (default: HOST of --connect)")
    client.add_argument("--insecure", action="store_true",
                        help="skip certificate and host name verification (testing only)")
    client.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="limit in seconds for the TCP connect and the handshake (default 10)")
    client.add_argument("--wait", type=float, default=2.0, metavar="SECONDS",
                        help="after stdin ends, keep printing server data until the server "
                             "closes or SECONDS pass without data (default 2)")
    _add_common_options(client)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ciphers", help="cipher suites to allow, OpenSSL or IANA names or ids, "
                                          "separated by ':' (see `pynano ciphers`)")
    versions = parser.add_mutually_exclusive_group()
    versions.add_argument("--tls1_2", action="store_true", help="use TLS 1.2 only")
    versions.add_argument("--tls1_3", action="store_true", help="use TLS 1.3 only")
    parser.add_argument("--alpn", help="ALPN protocols, comma-separated in order of preference, "
                                       "for example h2,http/1.1")


def _apply_common_options(context: TLSContext, args: argparse.Namespace) -> None:
    if args.ciphers:
        context.set_ciphers(args.ciphers)
    if args.tls1_2:
        context.minimum_version = context.maximum_version = TLSVersion.TLSv1_2
    if args.tls1_3:
        context.minimum_version = context.maximum_version = TLSVersion.TLSv1_3
    if args.alpn:
        context.set_alpn_protocols([name.strip() for name in args.alpn.split(",") if name.strip()])


def _subject_of(tls: TLSSocket) -> str:
    from cryptography import x509

    der = tls.getpeercert(binary_form=True)
    if not isinstance(der, bytes):
        return "none"
    return x509.load_der_x509_certificate(der).subject.rfc4514_string() or "(empty subject)"


def _describe_address(address: Tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# ---- server -----------------------------------------------------------------


def _server_context(args: argparse.Namespace) -> TLSContext:
    if args.require_client_cert and not args.ca:
        raise ValueError("--require-client-cert needs --ca, the CA file that client certificates "
                         "must chain to")
    context = TLSContext(server_side=True)
    context.load_cert_chain(args.cert, args.key)
    if args.ca:
        context.load_verify_locations(cafile=args.ca)
        context.verify_mode = CERT_REQUIRED if args.require_client_cert else CERT_OPTIONAL
    else:
        context.verify_mode = CERT_NONE
    _apply_common_options(context, args)
    return context


def _enable_event_log() -> None:
    server_log.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not server_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        server_log.addHandler(handler)


class _Server:
    """The accept loop of `pynano server`, one thread per connection."""

    def __init__(self, context: TLSContext, args: argparse.Namespace) -> None:
        self.context = context
        self.args = args
        self.stop = threading.Event()
        self.handlers: List[threading.Thread] = []
        self.accepted = 0

    def run(self, listener: socket.socket) -> None:
        """Accept connections until stopped or --max-connections is reached."""
        listener.settimeout(ACCEPT_POLL_SECONDS)
        limit = self.args.max_connections
        while not self.stop.is_set() and (limit <= 0 or self.accepted < limit):
            try:
                connection, address = listener.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            handler = threading.Thread(target=self.serve, args=(connection, address, self.accepted),
                                       name=f"pynano-server-{self.accepted}", daemon=True)
            handler.start()
            self.handlers = [thread for thread in self.handlers if thread.is_alive()] + [handler]

    def wait_for_handlers(self, timeout: float) -> None:
        """Wait up to timeout seconds in total for open connections to finish."""
        deadline = time.monotonic() + timeout
        for handler in self.handlers:
            handler.join(max(0.0, deadline - time.monotonic()))

    def serve(self, connection: socket.socket, address: Tuple[Any, ...], number: int) -> None:
        """Run the handshake and the selected mode on one accepted connection."""
        peer = _describe_address(address)
        connection.settimeout(self.args.timeout)
        try:
            tls = self.context.wrap_socket(connection, server_side=True)
        except (OSError, ValueError) as error:
            server_log.warning("connection %d from %s: handshake failed: %s", number, peer, error)
            return
        with tls:
            session = _session_summary(tls)
            try:
                outcome = self._run_mode(tls, session)
            except (OSError, ValueError) as error:
                server_log.warning("connection %d from %s: %s; failed: %s", number, peer, session, error)
                return
        server_log.info("connection %d from %s: %s; %s", number, peer, session, outcome)

    def _run_mode(self, tls: TLSSocket, session: str) -> str:
        if self.args.mode == "http":
            return _answer_http(tls, session)
        return _echo(tls)


def _session_summary(tls: TLSSocket) -> str:
    cipher = tls.cipher()
    suite = cipher[0] if cipher else "unknown suite"
    return (f"{tls.version()} {suite}, ALPN {tls.selected_alpn_protocol() or 'none'}, "
            f"client certificate {_subject_of(tls)}")


def _echo(tls: TLSSocket) -> str:
    total = 0
    while True:
        data = tls.recv(READ_SIZE)
        if not data:
            return f"echoed {total} bytes, then the client closed the connection"
        tls.sendall(data)
        total += len(data)


def _answer_http(tls: TLSSocket, session: str) -> str:
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        data = tls.recv(READ_SIZE)
        if not data:
            return "the client closed the connection before a full HTTP request"
        head += data
        if len(head) > MAX_REQUEST_HEAD:
            tls.sendall(b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n")
            return f"rejected an HTTP request head over {MAX_REQUEST_HEAD} bytes"
    request_line = head.split(b"\n", 1)[0].strip().decode("latin-1")
    body = (f"pynano server\nrequest: {request_line}\nsession: {session}\n").encode()
    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    return f"answered {request_line!r}"


def _stop_on_sigterm(stop: threading.Event) -> None:
    def handle(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)


def cmd_server(args: argparse.Namespace) -> int:
    """Run `pynano server`; returns the exit status."""
    _enable_event_log()
    context = _server_context(args)
    server = _Server(context, args)
    listener = socket.create_server((args.host, args.port))
    _stop_on_sigterm(server.stop)
    try:
        with listener:
            host, port = listener.getsockname()[:2]
            server_log.info("listening on %s (mode %s, client certificates %s)",
                            _describe_address((host, port)), args.mode,
                            {CERT_NONE: "not requested", CERT_OPTIONAL: "requested",
                             CERT_REQUIRED: "required"}[context.verify_mode])
            server.run(listener)
        server.wait_for_handlers(1.0 if server.stop.is_set() else args.timeout)
    except KeyboardInterrupt:
        server.stop.set()
    server_log.info("stopped after %d connections", server.accepted)
    return 0


# ---- client -----------------------------------------------------------------


def _parse_connect(value: str) -> Tuple[str, int]:
    host, separator, port = value.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"--connect {value!r} must be HOST:PORT, for example localhost:4433")
    return host.strip("[]"), int(port)


def _client_context(args: argparse.Namespace) -> TLSContext:
    context = TLSContext()
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = CERT_NONE
    elif args.ca:
        context.load_verify_locations(cafile=args.ca)
    else:
        context.load_default_certs()
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    elif args.key:
        raise ValueError("--key needs --cert")
    _apply_common_options(context, args)
    return context


def _print_summary(tls: TLSSocket, address: str, args: argparse.Namespace) -> None:
    cipher = tls.cipher()
    lines = [
        f"connected to {address} (server name {tls.server_hostname})",
        f"  protocol:      {tls.version()}",
        f"  cipher suite:  {cipher[0]} ({cipher[2]} bits)" if cipher else "  cipher suite:  unknown",
        f"  ALPN:          {tls.selected_alpn_protocol() or 'none'}",
        f"  peer subject:  {_subject_of(tls)}",
    ]
    if args.insecure:
        lines.append("  verification:  SKIPPED (--insecure): the certificate was not checked")
    else:
        lines.append(f"  verification:  OK: the chain is trusted and matches {tls.server_hostname!r}")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _relay(tls: TLSSocket, wait: float) -> None:
    """Copy stdin to the server and the server's data to stdout until either side ends."""
    stdin_fd = sys.stdin.fileno()
    selector = selectors.DefaultSelector()
    selector.register(stdin_fd, selectors.EVENT_READ)
    selector.register(tls.fileno(), selectors.EVENT_READ)
    # Short reads keep the loop responsive; a record that arrives in parts
    # is completed on the next pass.
    tls.settimeout(0.2)
    quiet_until: Optional[float] = None
    try:
        while True:
            timeout = None if quiet_until is None else max(0.0, quiet_until - time.monotonic())
            ready = {key.fd for key, _ in selector.select(0 if tls.pending() else timeout)}
            if tls.pending() or tls.fileno() in ready:
                if not _copy_to_stdout(tls):
                    return
                if quiet_until is not None:
                    quiet_until = time.monotonic() + wait
            if stdin_fd in ready and not _copy_to_server(stdin_fd, tls):
                selector.unregister(stdin_fd)
                quiet_until = time.monotonic() + wait
            if quiet_until is not None and time.monotonic() >= quiet_until:
                return
    finally:
        selector.close()


def _copy_to_stdout(tls: TLSSocket) -> bool:
    try:
        data = tls.recv(READ_SIZE)
    except TLSTimeoutError:
        return True
    if not data:
        return False
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return True


def _copy_to_server(stdin_fd: int, tls: TLSSocket) -> bool:
    data = os.read(stdin_fd, READ_SIZE)
    if not data:
        return False
    tls.sendall(data)
    return True


def cmd_client(args: argparse.Namespace) -> int:
    """Run `pynano client`; returns the exit status."""
    host, port = _parse_connect(args.connect)
    if args.insecure:
        print("WARNING: --insecure: the server's certificate and host name are NOT verified; "
              "anyone on the network path can impersonate the server", file=sys.stderr, flush=True)
    context = _client_context(args)
    server_name = args.servername or host
    address = _describe_address((host, port))
    try:
        sock = socket.create_connection((host, port), timeout=args.timeout)
    except OSError as error:
        raise OSError(f"cannot connect to {address}: {error.strerror or error}") from error
    try:
        tls = context.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise
    with tls:
        _print_summary(tls, address, args)
        _relay(tls, args.wait)
    return 0
