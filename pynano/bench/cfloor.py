"""Build benchmarks/cfloor.c, the C floor, the way the extension is built.

The C floor links benchmarks/cfloor.c with every csrc/*.c file and the
Mbed TLS sources that ``build_ext.MBEDTLS_SOURCES`` lists. They are
compiled with the config header, macros and flags of the CFFI extension:
Python's own CFLAGS and CCSHARED, as setuptools adds them, then
``build_ext.compile_args()``. It needs a source checkout (build_ext.py,
csrc/, benchmarks/) and an Mbed TLS tree already in vendor/; it never
downloads anything.

Objects are cached under ``build/cfloor/``, one per source and flag set, so
only changed files are recompiled; gcc runs in one thread per core.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, List, Optional, Sequence, Tuple

import pynano

CONFIG_HEADER_MACRO = ("MBEDTLS_CONFIG_FILE", '"pynano_mbedtls_config.h"')


class CFloorUnavailable(RuntimeError):
    """The C floor cannot be built here. The message gives the reason and the next step."""


@dataclass(frozen=True)
class BuildPlan:
    """Compiler command parts and sources of one C floor build."""

    compiler: List[str]
    compile_flags: List[str]      # before the source: CFLAGS, CCSHARED, -D, -I
    extra_flags: List[str]        # after the source: build_ext.compile_args()
    sources: List[Path]
    headers: List[Path]


def source_root() -> Path:
    """Return the checkout that contains this pynano package."""
    return Path(pynano.__file__).resolve().parent.parent


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CFloorUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_checkout(root: Path) -> None:
    for needed in ("build_ext.py", "csrc", "benchmarks/cfloor.c", "vendor/fetch_mbedtls.py"):
        if not (root / needed).exists():
            raise CFloorUnavailable(
                f"{root / needed} not found; the C floor needs a pynano source checkout "
                "(pass --source DIR to name one)")


def _check_mbedtls_present(root: Path) -> None:
    """Raise unless an Mbed TLS tree or tarball is already on disk."""
    fetch = _load_module("pynano_bench_fetch_mbedtls", root / "vendor" / "fetch_mbedtls.py")
    tree = fetch.default_tree_dir(fetch.load_pin())
    if os.environ.get(fetch.SOURCE_ENV) or tree.is_dir() or list((root / "vendor").glob("*.tar.*")):
        return
    raise CFloorUnavailable(
        f"no Mbed TLS tree at {tree}; run `python {root / 'vendor' / 'fetch_mbedtls.py'}` first "
        "(the bench never downloads)")


def _python_cflags() -> List[str]:
    """Return the flags setuptools puts before each extension source."""
    flags = shlex.split(sysconfig.get_config_var("CFLAGS") or "")
    flags += shlex.split(sysconfig.get_config_var("CCSHARED") or "")
    for variable in ("CFLAGS", "CPPFLAGS"):
        flags += shlex.split(os.environ.get(variable, ""))
    return flags


def make_plan(root: Path) -> BuildPlan:
    """Return the build plan, reading sources and flags from root/build_ext.py."""
    _check_checkout(root)
    _check_mbedtls_present(root)
    build_ext = _load_module("pynano_bench_build_ext", root / "build_ext.py")
    mbedtls = Path(build_ext.mbedtls_root())
    csrc = root / "csrc"

    macros: List[Tuple[str, Optional[str]]] = [CONFIG_HEADER_MACRO, *build_ext.nanossl_macros()]
    defines = [f"-D{name}" if value is None else f"-D{name}={value}" for name, value in macros]
    includes = [f"-I{path}" for path in (csrc, mbedtls / "include", mbedtls / "library")]
    sources = [root / "benchmarks" / "cfloor.c", *sorted(csrc.glob("*.c"))]
    sources += [mbedtls / "library" / name for name in build_ext.MBEDTLS_SOURCES]
    headers = sorted(csrc.glob("*.h")) + sorted((mbedtls / "include").rglob("*.h"))
    headers += sorted((mbedtls / "library").glob("*.h"))
    return BuildPlan(
        compiler=shlex.split(sysconfig.get_config_var("CC") or "cc"),
        compile_flags=_python_cflags() + defines + includes,
        extra_flags=list(build_ext.compile_args()),
        sources=sources,
        headers=headers,
    )


def _compiler_identity(compiler: Sequence[str]) -> str:
    try:
        result = subprocess.run([*compiler, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise CFloorUnavailable(f"C compiler {' '.join(compiler)!r} does not run: {error}") from error
    return result.stdout.splitlines()[0] if result.stdout else ""


def _plan_digest(plan: BuildPlan) -> "hashlib._Hash":
    digest = hashlib.sha256()
    digest.update(_compiler_identity(plan.compiler).encode())
    for part in (plan.compiler, plan.compile_flags, plan.extra_flags):
        digest.update("\0".join(part).encode() + b"\1")
    for header in plan.headers:
        digest.update(str(header).encode() + b"\0" + header.read_bytes())
    return digest


def _object_path(objects: Path, source: Path, base: "hashlib._Hash") -> Path:
    digest = base.copy()
    digest.update(str(source).encode() + b"\0" + source.read_bytes())
    return objects / f"{source.stem}-{digest.hexdigest()[:16]}.o"


def _compile(plan: BuildPlan, source: Path, target: Path) -> None:
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    command = [*plan.compiler, *plan.compile_flags, "-c", str(source), "-o", str(partial), *plan.extra_flags]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise CFloorUnavailable(f"compiling {source} failed:\n{tail}")
    partial.replace(target)


def build(root: Optional[Path] = None, cache: Optional[Path] = None,
          log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> Path:
    """Build the C floor if its cached binary is missing; return the binary's path.

    Raises CFloorUnavailable with the reason when it cannot be built.
    """
    root = root or source_root()
    plan = make_plan(root)
    cache = cache or root / "build" / "cfloor"
    objects_dir = cache / "obj"
    objects_dir.mkdir(parents=True, exist_ok=True)

    base = _plan_digest(plan)
    objects = [_object_path(objects_dir, source, base) for source in plan.sources]
    binary_digest = hashlib.sha256("\0".join(path.name for path in objects).encode()).hexdigest()[:16]
    binary = cache / f"cfloor-{binary_digest}"
    if binary.exists():
        return binary

    missing = [(source, target) for source, target in zip(plan.sources, objects) if not target.exists()]
    if missing:
        log(f"pynano bench: compiling the C floor ({len(missing)} of {len(objects)} files) into {cache}")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: _compile(plan, *job), missing))

    partial = binary.with_suffix(f".{os.getpid()}.tmp")
    command = [*plan.compiler, *map(str, objects), "-o", str(partial), "-pthread"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise CFloorUnavailable(f"linking the C floor failed:\n{result.stderr.strip()[-2000:]}")
    partial.replace(binary)
    return binary


def describe_flags(root: Optional[Path] = None) -> str:
    """Return the compile command of one source, for the report."""
    plan = make_plan(root or source_root())
    return " ".join([*plan.compiler, *plan.compile_flags, "-c", "FILE.c", *plan.extra_flags])
