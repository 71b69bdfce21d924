#!/usr/bin/env bash
# Build pynano's C extension with AddressSanitizer and run tests under it.
#
# Usage: .ci/asan.sh [PYTEST_ARGS...]
#   With no arguments it runs the whole suite without the slow marker,
#   the build and bench tests and the RSS test (see below).
#
# The instrumented build goes to build/asan/ (PYNANO_ASAN_DIR overrides it):
# a venv with the test dependencies, and a copy of the pynano package whose
# _pynano module is compiled with gcc -fsanitize=address. The editable or
# installed pynano is never touched. CPython is not instrumented, so the ASan
# runtime is preloaded. Leak detection is off because CPython keeps memory
# until exit on purpose, and tests/test_stress.py measures leaks instead.
# PYTHONMALLOC=malloc sends Python objects through malloc too, so an
# overflow from C into a bytes or bytearray buffer is caught as well.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${PYNANO_ASAN_DIR:-$ROOT/build/asan}
PYTHON=${PYTHON:-python3}
CC=${CC:-gcc}

started=$(date +%s)
mkdir -p "$OUT"
if [ ! -x "$OUT/venv/bin/python" ]; then
    "$PYTHON" -m venv "$OUT/venv"
fi
# The project's dependencies and its test extra, read from pyproject.toml,
# plus sslyze for tests/test_scanner.py.
mapfile -t REQUIREMENTS < <("$OUT/venv/bin/python" - <<'EOF'
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)["project"]
extras = project.get("optional-dependencies", {})
for requirement in project["dependencies"] + extras.get("test", []):
    print(requirement)
EOF
)
"$OUT/venv/bin/pip" install -q setuptools sslyze "${REQUIREMENTS[@]}"

# A fresh copy of the Python sources, laid out as the installed package is
# (examples/ is installed as pynano.examples).
rm -rf "$OUT/site"
mkdir -p "$OUT/site/pynano/examples"
cp pynano/*.py pynano/py.typed "$OUT/site/pynano/"
cp examples/*.py "$OUT/site/pynano/examples/"

echo "asan.sh: building the instrumented extension in $OUT" >&2
ASAN_FLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
CC=$CC LDFLAGS="-fsanitize=address" "$OUT/venv/bin/python" - "$ROOT" "$OUT/work" "$ASAN_FLAGS" <<'EOF'
import sys
from pathlib import Path

root, work, flags = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split()
sys.path.insert(0, root)
import build_ext  # noqa: E402  (needs the repository on sys.path)

builder = build_ext.make_ffibuilder("pynano._pynano", extra_compile_args=flags)
library = builder.compile(tmpdir=str(work), verbose=False)
print(library)
EOF
cp "$OUT"/work/pynano/_pynano*.so "$OUT/site/pynano/"
built=$(date +%s)
echo "asan.sh: build took $((built - started)) s" >&2

LIBASAN=$("$CC" -print-file-name=libasan.so)
export LD_PRELOAD=$LIBASAN
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1:print_summary=1}
export PYTHONMALLOC=malloc
export PYTHONPATH=$OUT/site

# The pytest script, unlike `python -m pytest`, does not put the working
# directory on sys.path, so the check below proves which build is tested.
"$OUT/venv/bin/python" -P -c "
import sys, pynano._pynano as m
expected = sys.argv[1]
if not m.__file__.startswith(expected):
    sys.exit(f'asan.sh: pynano._pynano came from {m.__file__}, not from {expected}')
" "$OUT/site"

# The default run leaves out test_build.py, which builds and installs other
# variants with pip, and test_bench_smoke.py, whose timings mean nothing
# under ASan and whose matplotlib aborts under it. ASan's quarantine of freed
# memory makes the RSS bound meaningless, so that test goes too.
if [ $# -eq 0 ]; then
    set -- tests -q -m "not slow" -p no:cacheprovider --ignore=tests/test_build.py \
        --ignore=tests/test_bench_smoke.py \
        --deselect tests/test_stress.py::test_rss_stable_over_handshakes
fi
status=0
"$OUT/venv/bin/pytest" "$@" || status=$?
finished=$(date +%s)
echo "asan.sh: tests took $((finished - built)) s, exit status $status" >&2
exit $status
