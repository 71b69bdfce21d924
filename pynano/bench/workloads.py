"""The bench workloads and stacks: names, units, cipher suites, sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

# IANA cipher suite ids.
TLS_AES_128_GCM_SHA256 = 0x1301
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = 0xC02B
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 = 0xCCA9

SUITE_NAMES: Dict[int, str] = {
    TLS_AES_128_GCM_SHA256: "TLS_AES_128_GCM_SHA256",
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ECDHE-ECDSA-AES128-GCM-SHA256",
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# TLS minor version numbers, as NanoSSL counts them.
TLS12 = 3
TLS13 = 4

# Size of each application write in the bulk workloads, and of each read.
RECORD_BYTES = 16 * 1024


@dataclass(frozen=True)
class Workload:
    """One measured workload: what the client does and how it is scored."""

    name: str
    kind: str              # "handshake", "bulk", "hold" or "resume"
    version: int           # TLS12 or TLS13
    suite: int             # IANA cipher suite id, forced on both sides
    threads: int           # client threads; the server runs as many
    unit: str
    higher_is_better: bool
    description: str
    # A workload whose code is not written yet is listed, refused with this
    # reason, and skipped.
    missing: str = ""


WORKLOADS: Tuple[Workload, ...] = (
    Workload("handshake-tls13", "handshake", TLS13, TLS_AES_128_GCM_SHA256, 1, "handshakes/s", True,
             "full TLS 1.3 handshakes with mutual authentication, one client thread"),
    Workload("handshake-tls12", "handshake", TLS12, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 1,
             "handshakes/s", True,
             "full TLS 1.2 handshakes with mutual authentication, one client thread"),
    Workload("bulk-aes128gcm", "bulk", TLS12, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 1, "MiB/s", True,
             "client-to-server application data in 16 KiB writes after one handshake"),
    Workload("bulk-chacha20", "bulk", TLS12, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 1, "MiB/s", True,
             "client-to-server application data in 16 KiB writes after one handshake"),
    Workload("memory", "hold", TLS13, TLS_AES_128_GCM_SHA256, 1, "KiB/conn", False,
             "server RSS growth per established idle connection"),
    Workload("handshake-tls13-2threads", "handshake", TLS13, TLS_AES_128_GCM_SHA256, 2, "handshakes/s", True,
             "as handshake-tls13 with two client threads in one process and two server threads"),
    # One full handshake, untimed, then resumed ones, each offering the newest
    # session. Handshakes that offered it and were not resumed are counted.
    Workload("resume-tls13", "resume", TLS13, TLS_AES_128_GCM_SHA256, 1, "handshakes/s", True,
             "resumed TLS 1.3 handshakes (PSK with (EC)DHE) after one full mutual-auth handshake"),
    Workload("resume-tls12", "resume", TLS12, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 1, "handshakes/s", True,
             "resumed TLS 1.2 handshakes (session ID or ticket) after one full mutual-auth handshake"),
)

WORKLOADS_BY_NAME: Dict[str, Workload] = {workload.name: workload for workload in WORKLOADS}
DEFAULT_WORKLOADS: Tuple[str, ...] = tuple(w.name for w in WORKLOADS if not w.missing)


@dataclass(frozen=True)
class Stack:
    """One TLS implementation under test."""

    name: str
    label: str
    description: str


STACKS: Tuple[Stack, ...] = (
    Stack("pynano", "pynano", "pynano through pynano.nanossl, the NanoSSL mirror"),
    Stack("pynano-tls", "pynano TLSContext", "pynano through pynano.TLSContext, the ssl-shaped API"),
    Stack("tlslite", "tlslite-ng", "tlslite-ng with its pure-Python cipher implementations"),
    Stack("ssl", "ssl", "the standard ssl module (OpenSSL)"),
    Stack("cfloor", "C floor", "benchmarks/cfloor.c: the NanoSSL C API of csrc/ with no Python"),
)

STACKS_BY_NAME: Dict[str, Stack] = {stack.name: stack for stack in STACKS}
# Ratios are taken against these two stacks.
BASELINE_STACK = "ssl"
FLOOR_STACK = "cfloor"


@dataclass(frozen=True)
class Sizes:
    """How much work one measurement does, and how many rounds there are."""

    rounds: int
    seconds_per_cell: float       # calibration target for one measurement
    memory_connections: int       # idle connections held in the memory workload
    memory_warmup: int            # connections opened and closed before the RSS baseline
    handshakes: int = 0           # fixed handshake count per measurement; 0 = calibrate
    bulk_bytes: int = 0           # fixed bytes per bulk measurement; 0 = calibrate
    warmup: bool = True           # one unrecorded round that also calibrates


FULL = Sizes(rounds=5, seconds_per_cell=2.0, memory_connections=500, memory_warmup=10)
QUICK = Sizes(rounds=3, seconds_per_cell=0.25, memory_connections=150, memory_warmup=5)

# tlslite-ng is about a hundred times slower than the others, so its counts
# are divided by this factor, and the calibration floor is lower.
TLSLITE_SCALE = 10
MIN_HANDSHAKES = {"tlslite": 3}
DEFAULT_MIN_HANDSHAKES = 10
MIN_BULK_BYTES = {"tlslite": 4 * RECORD_BYTES}
DEFAULT_MIN_BULK_BYTES = 256 * RECORD_BYTES
MAX_HANDSHAKES = 20000
MAX_BULK_BYTES = 4 * 1024 ** 3


def memory_connections(stack: str, sizes: Sizes) -> int:
    """Return how many idle connections a stack keeps open in the memory workload."""
    if stack == "tlslite":
        return max(2, sizes.memory_connections // TLSLITE_SCALE)
    return sizes.memory_connections
