"""The worker processes of the bench, seen from the runner."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Optional, Sequence, TextIO, cast

from .protocol import format_message, parse_message

# Maximum wait for one worker reply. A stuck peer fails its cell after it.
REPLY_TIMEOUT_S = 300.0
START_TIMEOUT_S = 60.0


class WorkerFailed(RuntimeError):
    """A worker reported an error, exited, or did not reply in time."""


class WorkerProcess:
    """A worker child process and the protocol lines it sends."""

    def __init__(self, name: str, command: Sequence[str], env: Dict[str, str]) -> None:
        self.name = name
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr: Deque[str] = deque(maxlen=20)
        self._process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        # All three are pipes because of the PIPE arguments above.
        self._stdin = cast(TextIO, self._process.stdin)
        self._stdout = cast(TextIO, self._process.stdout)
        self._stderr_stream = cast(TextIO, self._process.stderr)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self._stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        for line in self._stderr_stream:
            self._stderr.append(line.rstrip())

    def send(self, verb: str, **fields: object) -> None:
        """Send one command line."""
        try:
            self._stdin.write(format_message(verb, **fields) + "\n")
            self._stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise WorkerFailed(f"{self.name} is gone ({error}){self._stderr_tail()}") from error

    def expect(self, verb: str, timeout: float = REPLY_TIMEOUT_S) -> Dict[str, str]:
        """Wait for the next line; return its fields if its verb is verb."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerFailed(f"{self.name} sent no {verb!r} within {timeout:.0f} s") from None
        if line is None:
            raise WorkerFailed(f"{self.name} exited with status {self._process.wait()}{self._stderr_tail()}")
        got, fields = parse_message(line)
        if got == "error":
            raise WorkerFailed(f"{self.name}: {fields.get('message', line.strip())}")
        if got != verb:
            raise WorkerFailed(f"{self.name} sent {line.strip()!r}, expected {verb!r}")
        return fields

    def _stderr_tail(self) -> str:
        time.sleep(0.05)      # let the reader thread catch the last lines
        return ("; stderr: " + " | ".join(self._stderr)) if self._stderr else ""

    def stop(self) -> None:
        """Ask the worker to quit; kill it if it does not within two seconds."""
        if self._process.poll() is None:
            try:
                self.send("quit")
                self._process.wait(timeout=2)
            except (WorkerFailed, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        for stream in (self._stdin, self._stdout, self._stderr_stream):
            try:
                stream.close()
            except OSError:
                pass


@dataclass
class WorkerPair:
    """The server and client processes of one stack."""

    server: WorkerProcess
    client: WorkerProcess
    facts: Dict[str, str]

    def stop(self) -> None:
        """Stop both processes."""
        self.client.stop()
        self.server.stop()
