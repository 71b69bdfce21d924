"""Smoke test of `pynano bench`: every stack and workload, tiny sizes, one round.

It checks that each cell produced a positive number, that the resume
workloads resumed, and that the files are written (the chart only where
matplotlib is installed), not how fast anything is. The C floor is compiled on first use into build/cfloor/
(about ten seconds on 2 cores) and reused afterwards.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any, Dict

import pytest

from pynano import cli
from pynano.bench.workloads import DEFAULT_WORKLOADS, STACKS, WORKLOADS

RESUME_WORKLOADS = [workload.name for workload in WORKLOADS if workload.kind == "resume"]

pytest.importorskip("tlslite", reason="tlslite-ng is one of the stacks; install pynano[test]")

# Enough idle connections that RSS growth shows over page granularity.
MEMORY_CONNECTIONS = 60


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Run the bench once with tiny sizes and return its JSON."""
    out = tmp_path_factory.mktemp("bench")
    status = cli.main([
        "bench", "--rounds", "1", "--no-warmup", "--no-progress",
        "--handshakes", "3", "--bulk-kib", "128", "--connections", str(MEMORY_CONNECTIONS),
        "--out", str(out),
    ])
    assert status == 0
    assert (out / "bench.txt").stat().st_size > 0
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").stat().st_size > 0
    return json.loads((out / "bench.json").read_text())


@pytest.mark.parametrize("stack", [stack.name for stack in STACKS])
def test_bench_stack_available(bench_json: Dict[str, Any], stack: str) -> None:
    info = bench_json["stacks"][stack]
    assert info["available"], info["note"]


@pytest.mark.parametrize("workload", DEFAULT_WORKLOADS)
@pytest.mark.parametrize("stack", [stack.name for stack in STACKS])
def test_bench_cell_positive(bench_json: Dict[str, Any], workload: str, stack: str) -> None:
    cell = bench_json["results"][workload][stack]
    assert cell["errors"] == []
    assert len(cell["samples"]) == 1
    assert cell["median"] > 0
    assert cell["samples"][0]["amount"] > 0


def test_bench_tlslite_uses_python_ciphers(bench_json: Dict[str, Any]) -> None:
    for workload in DEFAULT_WORKLOADS:
        negotiated = bench_json["results"][workload]["tlslite"]["negotiated"]
        assert negotiated["cipher_implementation"] == "python", workload


def test_bench_negotiates_forced_suite(bench_json: Dict[str, Any]) -> None:
    expected = {"handshake-tls13": "TLS_AES_128_GCM_SHA256",
                "bulk-chacha20": "ECDHE-ECDSA-CHACHA20-POLY1305",
                "resume-tls13": "TLS_AES_128_GCM_SHA256",
                "resume-tls12": "ECDHE-ECDSA-AES128-GCM-SHA256"}
    for workload, cipher in expected.items():
        for stack in ("pynano", "pynano-tls", "ssl", "cfloor"):
            assert bench_json["results"][workload][stack]["negotiated"]["cipher"] == cipher, (workload, stack)


@pytest.mark.parametrize("workload", RESUME_WORKLOADS)
@pytest.mark.parametrize("stack", [stack.name for stack in STACKS])
def test_bench_resume_resumed(bench_json: Dict[str, Any], workload: str, stack: str) -> None:
    sample = bench_json["results"][workload][stack]["samples"][0]
    if stack in ("pynano", "pynano-tls", "cfloor"):
        # pynano resumes every session it issued.
        assert sample["not_resumed"] == 0
    else:
        assert 0 <= sample["not_resumed"] < sample["amount"]


def test_bench_targets_listed(bench_json: Dict[str, Any]) -> None:
    checks = [check for check in bench_json["targets"] if check["stack"] == "pynano"]
    assert len(checks) == 12
    assert all(check["ratio"] is not None for check in checks)
