"""The ``pynano bench`` command; pynano/cli.py calls ``register``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable, List, Sequence

from .workloads import DEFAULT_WORKLOADS, FULL, QUICK, STACKS, STACKS_BY_NAME, WORKLOADS_BY_NAME, Sizes

EPILOG = """\
examples:
  pynano bench --quick
  pynano bench --out results --rounds 7
  pynano bench --stacks pynano,cfloor --workloads bulk-aes128gcm,bulk-chacha20
  pynano bench --quick --stacks pynano,ssl --workloads memory --connections 300

stacks: {stacks}
workloads: {workloads}
Writes bench.json, bench.txt and bench.png into --out; benchmarks/README.md
explains each workload and records the tuning experiments."""


def _names(text: str, valid: Sequence[str], what: str) -> List[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid {what} {', '.join(unknown) or repr(text)}; valid: {', '.join(valid)}")
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    """Return the run sizes: --quick or the full defaults, then each override."""
    sizes = QUICK if args.quick else FULL
    changes = {}
    if args.rounds is not None:
        changes["rounds"] = args.rounds
    if args.seconds is not None:
        changes["seconds_per_cell"] = args.seconds
    if args.connections is not None:
        changes["memory_connections"] = args.connections
        changes["memory_warmup"] = min(sizes.memory_warmup, args.connections)
    if args.handshakes is not None:
        changes["handshakes"] = args.handshakes
    if args.bulk_kib is not None:
        changes["bulk_bytes"] = args.bulk_kib * 1024
    if args.no_warmup:
        changes["warmup"] = False
    return dataclasses.replace(sizes, **changes)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench, print the table, write the files."""
    from .report import format_header, format_table, write_outputs
    from .runner import run_bench

    workloads = [WORKLOADS_BY_NAME[name] for name in args.workloads]
    for workload in [w for w in workloads if w.missing]:
        print(f"pynano bench: skipping {workload.name}: {workload.missing}", file=sys.stderr)
    workloads = [w for w in workloads if not w.missing]
    if not workloads:
        print("pynano bench: error: no runnable workload selected", file=sys.stderr)
        return 2

    run = run_bench(args.stacks, workloads, sizes_from_args(args),
                    source=Path(args.source) if args.source else None, progress=not args.no_progress)
    print(format_header(run))
    print()
    print(format_table(run))
    paths = write_outputs(run, Path(args.out), chart=not args.no_chart)
    print()
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    failed = any(cell.errors for cell in run.cells.values())
    return 1 if failed else 0


def register(commands: argparse._SubParsersAction,
             add: Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand to the pynano command line."""
    parser = add("bench", cmd_bench,
                 "measure handshakes, bulk throughput and memory: pynano vs ssl, tlslite-ng and the C floor")
    stack_names = [stack.name for stack in STACKS]
    parser.epilog = EPILOG.format(stacks=", ".join(stack_names), workloads=", ".join(WORKLOADS_BY_NAME))
    parser.add_argument("--quick", action="store_true",
                        help=f"short run: {QUICK.rounds} rounds, about {QUICK.seconds_per_cell} s per "
                             f"measurement, {QUICK.memory_connections} idle connections (about a minute "
                             "on 2 cores)")
    parser.add_argument("--out", default=".bench", metavar="DIR",
                        help="folder for bench.json, bench.txt and bench.png (default .bench)")
    parser.add_argument("--rounds", type=_positive_int, help=f"measured rounds (default {FULL.rounds})")
    parser.add_argument("--seconds", type=_positive_float, metavar="S",
                        help=f"target duration of one measurement in seconds (default {FULL.seconds_per_cell})")
    parser.add_argument("--stacks", type=lambda text: _names(text, list(STACKS_BY_NAME), "stack"),
                        default=stack_names, metavar="A,B",
                        help="comma-separated stacks to run (default: all)")
    parser.add_argument("--workloads", type=lambda text: _names(text, list(WORKLOADS_BY_NAME), "workload"),
                        default=list(DEFAULT_WORKLOADS), metavar="A,B",
                        help="comma-separated workloads to run (default: all that are implemented)")
    parser.add_argument("--connections", type=_positive_int, metavar="N",
                        help=f"idle connections held in the memory workload (default {FULL.memory_connections}; "
                             "tlslite-ng holds a tenth)")
    parser.add_argument("--handshakes", type=_positive_int, metavar="N",
                        help="handshakes per measurement on every stack, in place of calibration")
    parser.add_argument("--bulk-kib", type=_positive_int, metavar="KIB",
                        help="KiB sent per bulk measurement on every stack, in place of calibration")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the unrecorded warm-up round that sizes the measurements")
    parser.add_argument("--no-chart", action="store_true", help="do not draw bench.png")
    parser.add_argument("--no-progress", action="store_true", help="show no progress bar")
    parser.add_argument("--source", metavar="DIR",
                        help="pynano checkout to build the C floor from (default: the one holding "
                             "this package)")
