"""Run the bench: start each stack's server and client, calibrate, measure.

Each stack gets a server process and a client process that stay up for the
whole run, except in the memory workload, which starts a fresh pair per
measurement so that memory freed by earlier workloads cannot hide growth.
A warm-up round, not recorded, measures each cell once with a small amount
of work and sizes the later measurements to ``Sizes.seconds_per_cell``.
Rounds then run every workload on every stack, stacks interleaved, with the
stack order rotated each round, so that load from other programs on the
machine spreads over all stacks.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import cfloor
from .processes import START_TIMEOUT_S, WorkerFailed, WorkerPair, WorkerProcess
from .progress import Progress
from .stacks import openssl_config, unavailable_reason
from .workloads import (
    DEFAULT_MIN_BULK_BYTES,
    DEFAULT_MIN_HANDSHAKES,
    FLOOR_STACK,
    MAX_BULK_BYTES,
    MAX_HANDSHAKES,
    MIN_BULK_BYTES,
    MIN_HANDSHAKES,
    RECORD_BYTES,
    Sizes,
    Workload,
    memory_connections,
)

logger = logging.getLogger("pynano.bench")

MIB = 1024 * 1024
# Workloads counted in handshakes: full ones, and resumed ones after one full handshake.
HANDSHAKE_KINDS = ("handshake", "resume")


@dataclass
class Sample:
    """One measurement of one workload on one stack."""

    value: float
    amount: int                   # handshakes, bytes, or idle connections
    seconds: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CellResult:
    """All measurements of one workload on one stack."""

    samples: List[Sample] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    negotiated: Dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """Everything a run measured, for the report."""

    stacks: Dict[str, Dict[str, Any]]          # name -> available, note, facts
    workloads: List[Workload]
    cells: Dict[Tuple[str, str], CellResult]    # (workload, stack) -> result
    sizes: Sizes
    started: float
    finished: float
    load_before: Tuple[float, float, float]
    load_after: Tuple[float, float, float]
    cfloor_flags: str = ""


class Runner:
    """Owns the worker processes of every stack for one run."""

    def __init__(self, stacks: Sequence[str], workloads: Sequence[Workload], sizes: Sizes, pki: Path,
                 workdir: Path, source: Optional[Path] = None, progress: bool = True,
                 log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> None:
        self.requested = list(stacks)
        self.workloads = list(workloads)
        self.sizes = sizes
        self.pki = pki
        self.workdir = workdir
        self.source = source
        self.show_progress = progress
        self.log = log
        self.stacks: Dict[str, Dict[str, Any]] = {}
        self.pairs: Dict[str, WorkerPair] = {}
        self.cells: Dict[Tuple[str, str], CellResult] = {}
        self.cfloor_binary: Optional[Path] = None
        self.cfloor_flags = ""
        self.amounts: Dict[Tuple[str, str], int] = {}

    # ---- process management ------------------------------------------------

    def _environment(self, stack: str) -> Dict[str, str]:
        env = dict(os.environ)
        if stack == "ssl":
            config = self.workdir / "openssl-bench.cnf"
            config.write_text(openssl_config(), encoding="ascii")
            env["OPENSSL_CONF"] = str(config)
        return env

    def _command(self, stack: str, role: str, port: Optional[str] = None) -> List[str]:
        if stack == FLOOR_STACK:
            if self.cfloor_binary is None:
                raise WorkerFailed("the C floor is not built")
            command = [str(self.cfloor_binary), role, str(self.pki)]
            return command + ([port] if port else [])
        command = [sys.executable, "-m", "pynano.bench.worker", "--stack", stack, "--role", role,
                   "--pki", str(self.pki)]
        return command + (["--port", port] if port else [])

    def start_pair(self, stack: str) -> WorkerPair:
        """Start a server and a client of stack and wait until both are ready."""
        env = self._environment(stack)
        server = WorkerProcess(f"{stack} server", self._command(stack, "server"), env)
        try:
            facts = server.expect("ready", START_TIMEOUT_S)
            port = facts.pop("port")
            client = WorkerProcess(f"{stack} client", self._command(stack, "client", port), env)
        except WorkerFailed:
            server.stop()
            raise
        try:
            client.expect("ready", START_TIMEOUT_S)
        except WorkerFailed:
            client.stop()
            server.stop()
            raise
        return WorkerPair(server, client, facts)

    def _pair(self, stack: str) -> WorkerPair:
        if stack not in self.pairs:
            self.pairs[stack] = self.start_pair(stack)
        return self.pairs[stack]

    def _drop_pair(self, stack: str) -> None:
        pair = self.pairs.pop(stack, None)
        if pair is not None:
            pair.stop()

    def stop_all(self) -> None:
        """Stop every worker process."""
        for stack in list(self.pairs):
            self._drop_pair(stack)

    # ---- availability --------------------------------------------------------

    def check_stacks(self) -> None:
        """Find out which requested stacks can run; build the C floor."""
        for stack in self.requested:
            note: Optional[str]
            if stack == FLOOR_STACK:
                note = self._build_cfloor()
            else:
                note = unavailable_reason(stack)
            facts: Dict[str, str] = {}
            if note is None:
                try:
                    facts = dict(self._pair(stack).facts)
                except WorkerFailed as error:
                    note = f"did not start: {error}"
            self.stacks[stack] = {"available": note is None, "note": note or "", "facts": facts}
            if note:
                logger.warning("skipping stack %s: %s", stack, note)

    def _build_cfloor(self) -> Optional[str]:
        try:
            self.cfloor_binary = cfloor.build(self.source, log=self.log)
            self.cfloor_flags = cfloor.describe_flags(self.source)
        except cfloor.CFloorUnavailable as error:
            return str(error)
        return None

    def available(self) -> List[str]:
        """Return the stacks that started, in the requested order."""
        return [stack for stack in self.requested if self.stacks.get(stack, {}).get("available")]

    # ---- one measurement -------------------------------------------------------

    def _initial_amount(self, stack: str, workload: Workload) -> int:
        if workload.kind in HANDSHAKE_KINDS:
            if self.sizes.handshakes:
                return self.sizes.handshakes
            return max(MIN_HANDSHAKES.get(stack, DEFAULT_MIN_HANDSHAKES), workload.threads)
        if self.sizes.bulk_bytes:
            return self.sizes.bulk_bytes
        return MIN_BULK_BYTES.get(stack, DEFAULT_MIN_BULK_BYTES)

    def _calibrated_amount(self, stack: str, workload: Workload, sample: Sample) -> int:
        if workload.kind in HANDSHAKE_KINDS:
            if self.sizes.handshakes:
                return self.sizes.handshakes
            target_amount = int(sample.value * self.sizes.seconds_per_cell)
            low = max(MIN_HANDSHAKES.get(stack, DEFAULT_MIN_HANDSHAKES), workload.threads)
            return min(MAX_HANDSHAKES, max(low, target_amount))
        if self.sizes.bulk_bytes:
            return self.sizes.bulk_bytes
        target_amount = int(sample.value * MIB * self.sizes.seconds_per_cell)
        target_amount -= target_amount % RECORD_BYTES
        return min(MAX_BULK_BYTES, max(MIN_BULK_BYTES.get(stack, DEFAULT_MIN_BULK_BYTES), target_amount))

    def measure(self, stack: str, workload: Workload, amount: int) -> Sample:
        """Run one measurement; raises WorkerFailed when a side fails."""
        if workload.kind == "hold":
            return self._measure_memory(stack, workload)
        pair = self._pair(stack)
        fields: Dict[str, object] = {"kind": workload.kind, "version": workload.version,
                                     "suite": f"0x{workload.suite:04X}"}
        if workload.kind in HANDSHAKE_KINDS:
            fields.update(count=amount, threads=workload.threads)
        else:
            fields.update(bytes=amount)
        pair.server.send("serve", **fields)
        pair.server.expect("serving")
        pair.client.send("run", **fields)
        result = pair.client.expect("done")
        server = pair.server.expect("done")

        seconds = float(result.pop("seconds"))
        cpu = float(result.pop("cpu", "0")) + float(server.get("cpu", "0"))
        if workload.kind in HANDSHAKE_KINDS:
            done = int(result.pop("count"))
            extra: Dict[str, Any] = {"cpu_ms_per_handshake": 1000 * cpu / done}
            if workload.kind == "resume":
                # Handshakes that offered the session but got a full handshake.
                extra["not_resumed"] = int(result.pop("not_resumed"))
            extra["negotiated"] = result
            return Sample(done / seconds, done, seconds, extra)
        done = int(result.pop("bytes"))
        extra = {"negotiated": result, "cpu_ms_per_mib": 1000 * cpu / (done / MIB)}
        return Sample(done / seconds / MIB, done, seconds, extra)

    def _measure_memory(self, stack: str, workload: Workload) -> Sample:
        count = memory_connections(stack, self.sizes)
        fields = {"kind": "hold", "version": workload.version, "suite": f"0x{workload.suite:04X}",
                  "count": count, "warmup": self.sizes.memory_warmup}
        pair = self.start_pair(stack)
        try:
            pair.server.send("serve", **fields)
            pair.server.expect("serving")
            pair.client.send("run", **fields)
            client = pair.client.expect("held")
            server = pair.server.expect("held")
            pair.client.send("release")
            pair.server.send("release")
            pair.client.expect("done")
            pair.server.expect("done")
        finally:
            pair.stop()

        connections = int(server["count"])
        server_growth = int(server["rss_after"]) - int(server["rss_before"])
        client_growth = int(client["rss_after"]) - int(client["rss_before"])
        negotiated = {key: value for key, value in client.items()
                      if key not in ("rss_before", "rss_after", "count", "side")}
        extra = {
            "side": "server",
            "server_rss_before": int(server["rss_before"]),
            "server_rss_after": int(server["rss_after"]),
            "client_kib_per_connection": client_growth / connections / 1024,
            "negotiated": negotiated,
        }
        return Sample(server_growth / connections / 1024, connections, 0.0, extra)

    def _record_error(self, stack: str, workload: Workload, error: str) -> None:
        self.cells.setdefault((workload.name, stack), CellResult()).errors.append(error)
        logger.warning("%s on stack %s failed, restarting its workers: %s", workload.name, stack, error)

    def _record(self, stack: str, workload: Workload, sample: Sample, recorded: bool) -> None:
        cell = self.cells.setdefault((workload.name, stack), CellResult())
        cell.negotiated.update(sample.extra.get("negotiated", {}))
        if recorded:
            cell.samples.append(sample)

    def _run_cell(self, stack: str, workload: Workload, recorded: bool) -> Optional[Sample]:
        key = (workload.name, stack)
        amount = self.amounts.get(key) or self._initial_amount(stack, workload)
        try:
            sample = self.measure(stack, workload, amount)
        except WorkerFailed as error:
            self._drop_pair(stack)       # a failed side may be stuck; start afresh next time
            self._record_error(stack, workload, str(error))
            return None
        self._record(stack, workload, sample, recorded)
        return sample

    # ---- the run ----------------------------------------------------------------

    def _cells_of_round(self, round_index: int, stacks: Sequence[str]) -> List[Tuple[Workload, str]]:
        shift = round_index % len(stacks) if stacks else 0
        order = list(stacks[shift:]) + list(stacks[:shift])
        return [(workload, stack) for workload in self.workloads for stack in order]

    def run(self) -> RunResult:
        """Run the warm-up round and the measured rounds; return the results."""
        started = time.time()
        load_before = os.getloadavg()
        try:
            self.check_stacks()
            stacks = self.available()
            warmup_cells = ([(w, s) for w, s in self._cells_of_round(0, stacks) if w.kind != "hold"]
                            if self.sizes.warmup else [])
            total = len(warmup_cells) + self.sizes.rounds * len(self._cells_of_round(0, stacks))
            progress = Progress(total, self.show_progress)
            try:
                for workload, stack in warmup_cells:
                    progress.step(f"warm-up {stack} {workload.name}")
                    sample = self._run_cell(stack, workload, recorded=False)
                    if sample is not None:
                        self.amounts[(workload.name, stack)] = self._calibrated_amount(stack, workload, sample)
                    progress.advance()
                for round_index in range(self.sizes.rounds):
                    for workload, stack in self._cells_of_round(round_index, stacks):
                        progress.step(f"round {round_index + 1}/{self.sizes.rounds} {stack} {workload.name}")
                        self._run_cell(stack, workload, recorded=True)
                        progress.advance()
            finally:
                progress.close()
        finally:
            self.stop_all()
        return RunResult(self.stacks, self.workloads, self.cells, self.sizes, started, time.time(),
                         load_before, os.getloadavg(), self.cfloor_flags)


def run_bench(stacks: Sequence[str], workloads: Sequence[Workload], sizes: Sizes,
              source: Optional[Path] = None, progress: bool = True) -> RunResult:
    """Write a throwaway PKI, run every cell, and return the results."""
    from pynano.certs import write_pki

    with tempfile.TemporaryDirectory(prefix="pynano-bench-") as directory:
        workdir = Path(directory)
        write_pki(workdir / "pki")
        runner = Runner(stacks, workloads, sizes, workdir / "pki", workdir, source, progress)
        return runner.run()
