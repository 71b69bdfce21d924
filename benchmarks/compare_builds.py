#!/usr/bin/env python3
"""Compare builds of the engine: the same bench workloads on several checkouts.

Each variant is a pynano checkout and the stack to run from it. The
checkout is typically a scratch copy with a changed config header,
build_ext.py flags or csrc/ file. The stack is ``cfloor``, built into that
checkout's build/cfloor/, or ``pynano`` or ``pynano-tls``, which need the
extension built in that checkout (``python build_ext.py`` in it). Variants
run interleaved round by round, like the stacks of ``pynano bench``. The
table gives each median and its ratio to the first variant. It also gives
the CPU time per unit of client and server together, which other load on
the machine disturbs less than wall-clock rates.

Example, from a pynano checkout::

    cp -r . /tmp/try-aes && vi /tmp/try-aes/build_ext.py
    python benchmarks/compare_builds.py --variant base=cfloor:. \\
        --variant aes=cfloor:/tmp/try-aes --workloads bulk-aes128gcm --rounds 7
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from pynano.bench import cfloor
from pynano.bench.report import cell_statistics, cpu_per_unit
from pynano.bench.processes import WorkerFailed
from pynano.bench.runner import Runner, RunResult
from pynano.bench.workloads import DEFAULT_WORKLOADS, FULL, WORKLOADS_BY_NAME, Sizes
from pynano.certs import write_pki

VARIANT_STACKS = ("cfloor", "pynano", "pynano-tls")


class VariantRunner(Runner):
    """A Runner whose stacks are named variants, each from its own checkout."""

    def __init__(self, variants: Dict[str, Tuple[str, Path]], workloads: Sequence[str], sizes: Sizes,
                 pki: Path, workdir: Path) -> None:
        super().__init__(list(variants), [WORKLOADS_BY_NAME[name] for name in workloads], sizes, pki,
                         workdir)
        self.variants = variants
        self.binaries: Dict[str, Path] = {}

    def _environment(self, stack: str) -> Dict[str, str]:
        kind, root = self.variants[stack]
        env = dict(os.environ)
        if kind != "cfloor":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        return env

    def _command(self, stack: str, role: str, port: Optional[str] = None) -> List[str]:
        kind, _root = self.variants[stack]
        if kind == "cfloor":
            command = [str(self.binaries[stack]), role, str(self.pki)]
            return command + ([port] if port else [])
        command = [sys.executable, "-m", "pynano.bench.worker", "--stack", kind, "--role", role,
                   "--pki", str(self.pki)]
        return command + (["--port", port] if port else [])

    def check_stacks(self) -> None:
        """Build each C floor variant and start every variant's workers."""
        for name, (kind, root) in self.variants.items():
            note = ""
            try:
                if kind == "cfloor":
                    self.binaries[name] = cfloor.build(root)
                self.stacks[name] = {"available": True, "note": "", "facts": dict(self._pair(name).facts)}
                continue
            except (cfloor.CFloorUnavailable, WorkerFailed) as error:
                note = str(error)
            self.stacks[name] = {"available": False, "note": note, "facts": {}}
            print(f"compare_builds: skipping {name}: {note}", file=sys.stderr)


def parse_variant(text: str) -> Tuple[str, Tuple[str, Path]]:
    """Parse NAME=STACK:DIR into (name, (stack, checkout))."""
    name, separator, rest = text.partition("=")
    kind, separator2, folder = rest.partition(":")
    if not separator or not separator2 or kind not in VARIANT_STACKS or not name:
        raise argparse.ArgumentTypeError(
            f"invalid variant {text!r}; expected NAME=STACK:DIR with STACK one of {', '.join(VARIANT_STACKS)}")
    return name, (kind, Path(folder).resolve())


def format_comparison(run: RunResult, names: Sequence[str]) -> str:
    """Return one row per workload and variant: median, min, max, ratio to the first, CPU."""
    lines = [f"{'workload':<26}{'variant':<14}{'median':>9}{'min':>9}{'max':>9}  {'unit':<13}"
             f"{'vs ' + names[0]:>12}{'cpu ms':>9}{'cpu vs':>8}"]
    for workload in run.workloads:
        first = run.cells.get((workload.name, names[0]))
        first_stats = cell_statistics(first)
        first_cpu = cpu_per_unit(first)
        for name in names:
            cell = run.cells.get((workload.name, name))
            stats = cell_statistics(cell)
            if stats is None:
                error = cell.errors[-1] if cell and cell.errors else "no data"
                lines.append(f"{workload.name:<26}{name:<14}  failed: {error[:80]}")
                continue
            relative = stats["median"] / first_stats["median"] if first_stats else None
            cpu = cpu_per_unit(cell)
            cpu_relative = cpu / first_cpu if cpu and first_cpu else None
            lines.append(
                f"{workload.name:<26}{name:<14}{stats['median']:>9.1f}{stats['min']:>9.1f}{stats['max']:>9.1f}"
                f"  {workload.unit:<13}{_ratio(relative):>12}{_ratio(cpu, 'ms'):>9}{_ratio(cpu_relative):>8}")
        lines.append("")
    return "\n".join(lines)


def _ratio(value: Optional[float], unit: str = "x") -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if unit == "ms" else f"{value:.3f}x"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison and print its table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example:\n  python benchmarks/compare_builds.py "
                                            "--variant base=cfloor:. --variant o3=cfloor:/tmp/try-o3")
    parser.add_argument("--variant", action="append", type=parse_variant, required=True,
                        metavar="NAME=STACK:DIR", help="a variant; give two or more, the first is the reference")
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS), metavar="A,B",
                        help="comma-separated workloads (default: all implemented)")
    parser.add_argument("--rounds", type=int, default=FULL.rounds, help=f"measured rounds (default {FULL.rounds})")
    parser.add_argument("--seconds", type=float, default=1.0, help="target seconds per measurement (default 1)")
    parser.add_argument("--connections", type=int, default=FULL.memory_connections,
                        help=f"idle connections in the memory workload (default {FULL.memory_connections})")
    args = parser.parse_args(argv)

    variants = dict(args.variant)
    if len(variants) < 2:
        parser.error("give at least two --variant options with different names")
    workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in workloads if name not in WORKLOADS_BY_NAME or WORKLOADS_BY_NAME[name].missing]
    if unknown:
        parser.error(f"invalid workloads {', '.join(unknown)}; valid: {', '.join(DEFAULT_WORKLOADS)}")
    sizes = Sizes(rounds=args.rounds, seconds_per_cell=args.seconds, memory_connections=args.connections,
                  memory_warmup=FULL.memory_warmup)

    with tempfile.TemporaryDirectory(prefix="pynano-compare-") as directory:
        workdir = Path(directory)
        write_pki(workdir / "pki")
        run = VariantRunner(variants, workloads, sizes, workdir / "pki", workdir).run()
    print(format_comparison(run, list(variants)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
