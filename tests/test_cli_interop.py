"""`pynano server` and `pynano client` end to end against openssl s_client and s_server.

Every command runs as a subprocess on 127.0.0.1 with a timeout and is
killed in ``finally``.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple

import pytest

from pynano import cli

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
PROCESS_TIMEOUT = 20.0
PYNANO = [sys.executable, "-m", "pynano"]
HTTP_REQUEST = b"GET /status HTTP/1.0\r\n\r\n"


class Output:
    """Collects a subprocess pipe without blocking, so tests can wait for a line."""

    def __init__(self, pipe: Any) -> None:
        self.descriptor = pipe.fileno()
        self.data = b""

    def wait_for(self, pattern: str, timeout: float = PROCESS_TIMEOUT) -> "re.Match[str]":
        """Read until pattern matches the collected text; raise after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text)
            if match:
                return match
            ready, _, _ = select.select([self.descriptor], [], [], 0.1)
            if ready:
                chunk = os.read(self.descriptor, 65536)
                if not chunk:
                    break
                self.data += chunk
        match = re.search(pattern, self.text)
        if match:
            return match
        raise AssertionError(f"no match for {pattern!r} within {timeout} s in: {self.text!r}")

    def drain(self) -> str:
        """Read everything up to end of file and return the whole text."""
        while True:
            chunk = os.read(self.descriptor, 65536)
            if not chunk:
                return self.text
            self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(PROCESS_TIMEOUT)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


@contextmanager
def pynano_server(*options: str) -> Iterator[Tuple[subprocess.Popen, Output, int]]:
    """Run `pynano server --port 0` and return the process, its stderr and its port."""
    process = subprocess.Popen([*PYNANO, "server", "--port", "0", *options], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log = Output(process.stderr)
        port = int(log.wait_for(r"listening on 127\.0\.0\.1:(\d+) ").group(1))
        yield process, log, port
    finally:
        _stop(process)


@contextmanager
def openssl_server(*options: str) -> Iterator[Tuple[subprocess.Popen, int]]:
    """Run `openssl s_server` for one connection and return the process and its port."""
    assert OPENSSL is not None
    process = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", *options],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        port = int(Output(process.stdout).wait_for(r"ACCEPT 127\.0\.0\.1:(\d+)\n").group(1))
        yield process, port
    finally:
        _stop(process)


def openssl_client(port: int, *options: str, data: bytes = HTTP_REQUEST) -> subprocess.CompletedProcess:
    assert OPENSSL is not None
    command = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
               "-ign_eof", *options]
    return subprocess.run(command, input=data, capture_output=True, timeout=PROCESS_TIMEOUT)


def pynano_client(port: int, *options: str, data: bytes = HTTP_REQUEST) -> subprocess.CompletedProcess:
    command = [*PYNANO, "client", "--connect", f"127.0.0.1:{port}", "--servername", "localhost", *options]
    return subprocess.run(command, input=data, capture_output=True, timeout=PROCESS_TIMEOUT)


def server_options(pki: Any, *extra: str) -> List[str]:
    return ["--cert", pki.path("server.pem"), "--key", pki.path("server.key"), *extra]


def client_cert_options(pki: Any) -> List[str]:
    return ["--cert", pki.path("client.pem"), "--key", pki.path("client.key")]


VERSION_CASES = [("TLSv1.2", "--tls1_2", "-tls1_2"), ("TLSv1.3", "--tls1_3", "-tls1_3")]


# ---- help ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["server", "client"])
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([command, "--help"])
    assert caught.value.code == 0
    output = capsys.readouterr().out
    assert "examples:" in output
    assert f"pynano {command} --" in output


# ---- pynano server with openssl s_client -------------------------------------------


@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version, pynano_flag, openssl_flag", VERSION_CASES)
def test_server_with_openssl_client(pki: Any, version: str, pynano_flag: str, openssl_flag: str,
                                    with_cert: bool) -> None:
    options = server_options(pki, "--ca", pki.path("ca.pem"), "--mode", "http", pynano_flag,
                             "--max-connections", "1")
    with pynano_server(*options) as (process, log, port):
        client_options = ["-CAfile", pki.path("ca.pem"), "-verify_return_error", openssl_flag]
        if with_cert:
            client_options += ["-cert", pki.path("client.pem"), "-key", pki.path("client.key")]
        result = openssl_client(port, *client_options)
        assert process.wait(PROCESS_TIMEOUT) == 0
        server_log = log.drain()

    output = result.stdout.decode()
    subject = "CN=pynano test client" if with_cert else "none"
    assert "request: GET /status HTTP/1.0" in output
    assert f"session: {version}" in output
    assert "Verify return code: 0 (ok)" in output
    [line] = [entry for entry in server_log.splitlines() if "connection 1 from 127.0.0.1:" in entry]
    assert f"{version} " in line
    assert re.search(r"TLS_AES_\d+_GCM_SHA\d+|ECDHE-ECDSA-[A-Z0-9-]+", line)
    assert f"client certificate {subject}" in line
    assert "answered 'GET /status HTTP/1.0'" in line


def test_server_echo_mode(pki: Any) -> None:
    assert OPENSSL is not None
    with pynano_server(*server_options(pki, "--max-connections", "1")) as (process, log, port):
        client = subprocess.Popen([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                                   pki.path("ca.pem"), "-servername", "localhost"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert client.stdin is not None
            client.stdin.write(b"echo me\n")
            client.stdin.flush()
            Output(client.stdout).wait_for(r"\necho me\n")
            # End of input makes s_client close the connection.
            client.stdin.close()
            client.wait(PROCESS_TIMEOUT)
        finally:
            _stop(client)
        assert process.wait(PROCESS_TIMEOUT) == 0
        server_log = log.drain()
    assert "echoed 8 bytes, then the client closed the connection" in server_log


def test_server_requires_client_cert(pki: Any) -> None:
    options = server_options(pki, "--ca", pki.path("ca.pem"), "--require-client-cert", "--tls1_2",
                             "--max-connections", "1")
    with pynano_server(*options) as (process, log, port):
        result = openssl_client(port, "-CAfile", pki.path("ca.pem"), "-tls1_2")
        assert process.wait(PROCESS_TIMEOUT) == 0
        server_log = log.drain()
    assert result.returncode != 0
    assert "handshake failed" in server_log
    assert "peer did not return a certificate" in server_log


def test_server_alpn(pki: Any) -> None:
    options = server_options(pki, "--alpn", "h2,http/1.1", "--mode", "http", "--max-connections", "1")
    with pynano_server(*options) as (process, log, port):
        result = openssl_client(port, "-CAfile", pki.path("ca.pem"), "-alpn", "http/1.1")
        process.wait(PROCESS_TIMEOUT)
    assert "ALPN protocol: http/1.1" in result.stdout.decode()
    assert "ALPN http/1.1" in result.stdout.decode()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_stops_on_signal(pki: Any, signal_number: int) -> None:
    with pynano_server(*server_options(pki)) as (process, log, port):
        process.send_signal(signal_number)
        assert process.wait(PROCESS_TIMEOUT) == 0
        assert "stopped after 0 connections" in log.drain()


def test_server_rejects_require_without_ca(pki: Any) -> None:
    result = subprocess.run([*PYNANO, "server", "--port", "0", *server_options(pki), "--require-client-cert"],
                            capture_output=True, timeout=PROCESS_TIMEOUT)
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("pynano server: error: --require-client-cert needs --ca")


# ---- pynano client with openssl s_server -------------------------------------------


@pytest.mark.parametrize("with_cert", [False, True], ids=["no-client-cert", "client-cert"])
@pytest.mark.parametrize("version, pynano_flag, openssl_flag", VERSION_CASES)
def test_client_with_openssl_server(pki: Any, version: str, pynano_flag: str, openssl_flag: str,
                                    with_cert: bool) -> None:
    server = ["-cert", pki.path("server.pem"), "-key", pki.path("server.key"), "-CAfile", pki.path("ca.pem"),
              "-verify", "1", openssl_flag, "-www"]
    with openssl_server(*server) as (_, port):
        options = ["--ca", pki.path("ca.pem"), pynano_flag, *(client_cert_options(pki) if with_cert else [])]
        result = pynano_client(port, *options)
    page, summary = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, summary
    assert f"protocol:      {version}" in summary
    assert "peer subject:  CN=localhost" in summary
    assert "verification:  OK" in summary
    cipher = re.search(r"cipher suite:  (\S+)", summary).group(1)
    assert f"New, {version}, Cipher is {cipher}" in page
    if with_cert:
        assert "Subject: CN=pynano test client" in page
    else:
        assert "no client certificate available" in page


def test_client_relays_until_quiet(pki: Any) -> None:
    server = ["-cert", pki.path("server.pem"), "-key", pki.path("server.key"), "-rev"]
    with openssl_server(*server) as (_, port):
        started = time.monotonic()
        result = pynano_client(port, "--ca", pki.path("ca.pem"), "--wait", "0.5", data=b"hello\n")
    assert result.returncode == 0, result.stderr.decode()
    assert b"olleh" in result.stdout
    assert time.monotonic() - started < 10


def test_client_alpn_and_ciphers(pki: Any) -> None:
    server = ["-cert", pki.path("server.pem"), "-key", pki.path("server.key"), "-alpn", "h2", "-www"]
    with openssl_server(*server) as (_, port):
        result = pynano_client(port, "--ca", pki.path("ca.pem"), "--alpn", "h2,http/1.1",
                               "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305")
    summary = result.stderr.decode()
    assert result.returncode == 0, summary
    assert "ALPN:          h2" in summary
    assert "cipher suite:  ECDHE-ECDSA-CHACHA20-POLY1305 (256 bits)" in summary


def test_client_untrusted_server_fails(pki: Any) -> None:
    server = ["-cert", pki.path("server.pem"), "-key", pki.path("server.key"), "-www"]
    with openssl_server(*server) as (_, port):
        result = pynano_client(port)
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("pynano client: error: TLS handshake on connection")
    assert "certificate verify failed" in line


def test_client_insecure_warns(pki: Any) -> None:
    server = ["-cert", pki.path("server.pem"), "-key", pki.path("server.key"), "-www"]
    with openssl_server(*server) as (_, port):
        result = pynano_client(port, "--insecure")
    summary = result.stderr.decode()
    assert result.returncode == 0, summary
    assert summary.startswith("WARNING: --insecure")
    assert "verification:  SKIPPED" in summary
    assert b"HTTP/1.0 200 ok" in result.stdout


def test_client_connection_refused(pki: Any) -> None:
    with pynano_server(*server_options(pki)) as (process, _, port):
        process.send_signal(signal.SIGTERM)
        process.wait(PROCESS_TIMEOUT)
    result = pynano_client(port, "--ca", pki.path("ca.pem"))
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line == f"pynano client: error: cannot connect to 127.0.0.1:{port}: Connection refused"


# ---- both commands -----------------------------------------------------------------


def test_pynano_client_and_server(pki: Any) -> None:
    options = server_options(pki, "--ca", pki.path("ca.pem"), "--require-client-cert",
                             "--max-connections", "1")
    with pynano_server(*options) as (process, log, port):
        result = pynano_client(port, "--ca", pki.path("ca.pem"), *client_cert_options(pki), "--wait", "0.3",
                               data=b"round trip\n")
        assert process.wait(PROCESS_TIMEOUT) == 0
        server_log = log.drain()
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"round trip\n"
    assert "client certificate CN=pynano test client" in server_log
