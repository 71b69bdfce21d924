"""Turn a bench run into statistics, target checks, a table, JSON and a chart."""

from __future__ import annotations

import json
import os
import platform
import ssl
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .runner import CellResult, RunResult
from .workloads import BASELINE_STACK, FLOOR_STACK, STACKS_BY_NAME

SCHEMA_VERSION = 1
# The pynano stacks that the targets are checked for.
PYNANO_STACKS = ("pynano", "pynano-tls")


@dataclass(frozen=True)
class Target:
    """A goal for pynano: a ratio of two medians and the bound it must meet."""

    name: str
    workload: str
    other_stack: str          # the stack pynano is compared with; "" = pynano itself
    other_workload: str
    bound: float
    at_least: bool            # True: ratio >= bound; False: ratio <= bound
    # "rate": pynano's median rate (or KiB) divided by the other's.
    # "cpu": pynano's median CPU time per unit divided by the other's. Two
    # processes that take turns on 2 shared cores make wall-clock rates swing
    # by tens of percent under outside load, and CPU time much less.
    metric: str = "rate"


TARGETS = (
    Target("full handshakes >= 4x tlslite-ng", "handshake-tls13", "tlslite", "handshake-tls13", 4.0, True),
    Target("full handshakes >= 4x tlslite-ng", "handshake-tls12", "tlslite", "handshake-tls12", 4.0, True),
    Target("CPU per handshake <= 1.1x C floor", "handshake-tls13", FLOOR_STACK, "handshake-tls13", 1.1, False,
           "cpu"),
    Target("CPU per handshake <= 1.1x C floor", "handshake-tls12", FLOOR_STACK, "handshake-tls12", 1.1, False,
           "cpu"),
    Target("bulk >= 400x tlslite-ng", "bulk-aes128gcm", "tlslite", "bulk-aes128gcm", 400.0, True),
    Target("bulk >= 400x tlslite-ng", "bulk-chacha20", "tlslite", "bulk-chacha20", 400.0, True),
    Target("CPU per MiB <= 1.05x C floor", "bulk-aes128gcm", FLOOR_STACK, "bulk-aes128gcm", 1.05, False, "cpu"),
    Target("CPU per MiB <= 1.05x C floor", "bulk-chacha20", FLOOR_STACK, "bulk-chacha20", 1.05, False, "cpu"),
    Target("memory per idle connection <= 0.6x ssl", "memory", BASELINE_STACK, "memory", 0.6, False),
    Target("2 threads >= 1.6x 1 thread", "handshake-tls13-2threads", "", "handshake-tls13", 1.6, True),
    Target("resumed handshakes >= 1x ssl", "resume-tls13", BASELINE_STACK, "resume-tls13", 1.0, True),
    Target("resumed handshakes >= 1.5x ssl", "resume-tls12", BASELINE_STACK, "resume-tls12", 1.5, True),
)


def cell_statistics(cell: Optional[CellResult]) -> Optional[Dict[str, float]]:
    """Return median, min, max and count of a cell's samples, or None."""
    if cell is None or not cell.samples:
        return None
    values = [sample.value for sample in cell.samples]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def cpu_per_unit(cell: Optional[CellResult]) -> Optional[float]:
    """Return the median CPU milliseconds (client plus server) per handshake or MiB."""
    if cell is None:
        return None
    values = [sample.extra.get("cpu_ms_per_handshake", sample.extra.get("cpu_ms_per_mib"))
              for sample in cell.samples]
    numbers = [value for value in values if value is not None]
    return statistics.median(numbers) if numbers else None


def not_resumed(cell: Optional[CellResult]) -> Optional[int]:
    """Return how many handshakes of a resume cell offered a session and were not resumed."""
    if cell is None:
        return None
    counts = [sample.extra["not_resumed"] for sample in cell.samples if "not_resumed" in sample.extra]
    return sum(counts) if counts else None


def _median(run: RunResult, workload: str, stack: str) -> Optional[float]:
    stats = cell_statistics(run.cells.get((workload, stack)))
    return stats["median"] if stats else None


def ratio(run: RunResult, workload: str, stack: str, other: str) -> Optional[float]:
    """Return this stack's median divided by the other stack's, or None."""
    mine = _median(run, workload, stack)
    theirs = _median(run, workload, other)
    if mine is None or not theirs:
        return None
    return mine / theirs


def _metric_ratio(run: RunResult, target: Target, stack: str, other_stack: str, metric: str) -> Optional[float]:
    """Return pynano's median divided by the other's, on rates (or KiB) or on CPU time per unit."""
    if metric == "cpu":
        mine = cpu_per_unit(run.cells.get((target.workload, stack)))
        theirs = cpu_per_unit(run.cells.get((target.other_workload, other_stack)))
    else:
        mine = _median(run, target.workload, stack)
        theirs = _median(run, target.other_workload, other_stack)
    if not mine or not theirs:
        return None
    return mine / theirs


def check_targets(run: RunResult) -> List[Dict[str, Any]]:
    """Return one entry per target and pynano stack: the ratio, the bound, met or not.

    The verdict uses the target's metric. Each entry also carries the other
    metric where both exist, turned the same way round (a speed ratio for a
    rate target, a time ratio for a CPU target), so a reader can see whether
    outside load moved the verdict.
    """
    checks = []
    for stack in PYNANO_STACKS:
        if not run.stacks.get(stack, {}).get("available"):
            continue
        for target in TARGETS:
            other_stack = target.other_stack or stack
            value = _metric_ratio(run, target, stack, other_stack, target.metric)
            met: Optional[bool] = None
            if value is not None and target.at_least:
                met = value >= target.bound
            elif value is not None:
                met = value <= target.bound
            other_metric = "rate" if target.metric == "cpu" else "cpu"
            other_value = None
            # Memory has no CPU time, and thread scaling is about wall-clock time alone.
            if target.metric == "cpu" or target.other_stack:
                raw = _metric_ratio(run, target, stack, other_stack, other_metric)
                # Speed and CPU time per unit run opposite ways.
                other_value = 1 / raw if raw else None
            checks.append({
                "target": target.name, "stack": stack, "workload": target.workload,
                "compared_with": f"{other_stack} {target.other_workload}", "metric": target.metric,
                "ratio": value, "bound": target.bound, "met": met,
                "other_metric": other_metric if other_value is not None else None,
                "other_metric_ratio": other_value,
            })
    return checks


# ---- machine -----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _compiler_version() -> str:
    try:
        result = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def machine_facts(run: RunResult) -> Dict[str, Any]:
    """Return the machine, software versions and load of the run."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "gcc": _compiler_version(),
        "load_average_before": list(run.load_before),
        "load_average_after": list(run.load_after),
    }


# ---- JSON ---------------------------------------------------------------------


def to_json(run: RunResult) -> Dict[str, Any]:
    """Return the whole run as a JSON-ready dict."""
    results: Dict[str, Dict[str, Any]] = {}
    for workload in run.workloads:
        row: Dict[str, Any] = {}
        for stack in run.stacks:
            cell = run.cells.get((workload.name, stack))
            if cell is None:
                continue
            entry: Dict[str, Any] = dict(cell_statistics(cell) or {})
            entry["samples"] = [{"value": s.value, "amount": s.amount, "seconds": s.seconds,
                                 **{k: v for k, v in s.extra.items() if k != "negotiated"}}
                                for s in cell.samples]
            entry["negotiated"] = cell.negotiated
            entry["errors"] = cell.errors
            entry["ratio_to_ssl"] = ratio(run, workload.name, stack, BASELINE_STACK)
            entry["ratio_to_cfloor"] = ratio(run, workload.name, stack, FLOOR_STACK)
            row[stack] = entry
        results[workload.name] = row
    return {
        "schema": SCHEMA_VERSION,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run.started)),
        "seconds": round(run.finished - run.started, 1),
        "machine": machine_facts(run),
        "sizes": run.sizes.__dict__,
        "cfloor_compile_command": run.cfloor_flags,
        "stacks": run.stacks,
        "workloads": {w.name: {"kind": w.kind, "unit": w.unit, "higher_is_better": w.higher_is_better,
                               "threads": w.threads, "suite": f"0x{w.suite:04X}",
                               "description": w.description} for w in run.workloads},
        "results": results,
        "targets": check_targets(run),
    }


# ---- table --------------------------------------------------------------------


def _number(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(run: RunResult) -> str:
    """Return the result table and the target checks as plain text."""
    lines = []
    header = (f"{'workload':<26}{'stack':<12}{'median':>9}{'min':>9}{'max':>9}  {'unit':<13}"
              f"{'vs ssl':>8}{'vs C floor':>11}{'cpu ms':>9}")
    lines.append(header)
    lines.append("-" * len(header))
    for workload in run.workloads:
        for stack in run.stacks:
            if not run.stacks[stack]["available"]:
                continue
            cell = run.cells.get((workload.name, stack))
            stats = cell_statistics(cell)
            if stats is None:
                reason = "failed: " + cell.errors[-1] if cell and cell.errors else "no data"
                lines.append(f"{workload.name:<26}{stack:<12}  {reason[:90]}")
                continue
            lines.append(
                f"{workload.name:<26}{stack:<12}{_number(stats['median']):>9}{_number(stats['min']):>9}"
                f"{_number(stats['max']):>9}  {workload.unit:<13}"
                f"{_times(ratio(run, workload.name, stack, BASELINE_STACK)):>8}"
                f"{_times(ratio(run, workload.name, stack, FLOOR_STACK)):>11}"
                f"{_number(cpu_per_unit(cell)):>9}")
        lines.append("")
    lines.append("vs ssl and vs C floor: this stack's median divided by that stack's; for memory, lower is better.")
    lines.append("cpu ms: median CPU time of client and server together, per handshake or per MiB.")
    for workload in [w for w in run.workloads if w.kind == "resume"]:
        counts = []
        for stack in run.stacks:
            cell = run.cells.get((workload.name, stack))
            missed = not_resumed(cell)
            if missed is not None and cell is not None:
                counts.append(f"{stack} {missed}/{sum(sample.amount for sample in cell.samples)}")
        if counts:
            lines.append(f"{workload.name}: handshakes that offered the session but were not resumed: "
                         + ", ".join(counts))
    skipped = [f"{name}: {info['note']}" for name, info in run.stacks.items() if not info["available"]]
    for note in skipped:
        lines.append(f"skipped {note}")

    lines.append("")
    lines.append("targets: ratio of medians on the target's metric; in brackets the same ratio on the other")
    lines.append("metric (rate: wall-clock handshakes/s or MiB/s; cpu: CPU time per unit, client plus server):")
    for check in check_targets(run):
        verdict = {True: "met", False: "MISSED", None: "no data"}[check["met"]]
        value = "-" if check["ratio"] is None else f"{check['ratio']:.2f}"
        other = check["other_metric_ratio"]
        note = f"  ({check['other_metric']} {other:.2f})" if other is not None else ""
        lines.append(f"  {check['stack']:<11}{check['target']:<40}{check['workload']:<26}"
                     f"{check['metric']:>5}{value:>8}  {verdict}{note}")
    return "\n".join(lines)


def format_header(run: RunResult) -> str:
    """Return one paragraph on the machine, the sizes and the load."""
    facts = machine_facts(run)
    return (f"pynano bench, {run.sizes.rounds} round(s), {run.finished - run.started:.0f} s; "
            f"{facts['cores']} cores, {facts['cpu']}; load average {facts['load_average_before'][0]:.2f} "
            f"before, {facts['load_average_after'][0]:.2f} after")


# ---- chart ----------------------------------------------------------------------


def write_chart(run: RunResult, path: Path) -> Optional[str]:
    """Draw one panel per workload into a PNG; return an error note or None."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed; install `pynano[bench]` for the chart"
    matplotlib.use("Agg")
    from matplotlib import pyplot

    workloads = [w for w in run.workloads if any(run.cells.get((w.name, s)) for s in run.stacks)]
    if not workloads:
        return "no results to draw"
    columns = min(3, len(workloads))
    rows = (len(workloads) + columns - 1) // columns
    figure, axes = pyplot.subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
    for index, workload in enumerate(workloads):
        axis = axes[index // columns][index % columns]
        _draw_panel(axis, run, workload.name, workload.unit, workload.higher_is_better)
    for index in range(len(workloads), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(format_header(run), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None


def _draw_panel(axis: Any, run: RunResult, workload: str, unit: str, higher_is_better: bool) -> None:
    labels, medians, lows, highs = [], [], [], []
    for stack in run.stacks:
        stats = cell_statistics(run.cells.get((workload, stack)))
        if stats is None:
            continue
        labels.append(STACKS_BY_NAME[stack].label if stack in STACKS_BY_NAME else stack)
        medians.append(stats["median"])
        lows.append(stats["median"] - stats["min"])
        highs.append(stats["max"] - stats["median"])
    positions = list(range(len(labels)))
    axis.barh(positions, medians, xerr=[lows, highs], color="#4c72b0", capsize=3)
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=8)
    axis.invert_yaxis()
    if medians and max(medians) / max(min(medians), 1e-9) > 50:
        axis.set_xscale("log")
    for position, value, high in zip(positions, medians, highs):
        axis.text(value + high, position, f" {_number(value)}", va="center", fontsize=7)
    better = "higher is better" if higher_is_better else "lower is better"
    axis.set_title(f"{workload} ({unit}, {better})", fontsize=9)
    axis.tick_params(axis="x", labelsize=7)


# ---- files ----------------------------------------------------------------------


def write_outputs(run: RunResult, out: Path, chart: bool = True) -> Dict[str, Path]:
    """Write bench.json, bench.txt and bench.png into out; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "table": out / "bench.txt"}
    document = to_json(run)
    if chart:
        note = write_chart(run, out / "bench.png")
        if note is None:
            paths["chart"] = out / "bench.png"
        else:
            document["notes"] = [note]
    paths["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    paths["table"].write_text(format_header(run) + "\n\n" + format_table(run) + "\n", encoding="utf-8")
    return paths
