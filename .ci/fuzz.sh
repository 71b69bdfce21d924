#!/usr/bin/env bash
# Run each atheris fuzz target in tests/fuzz/ for a bounded time.
#
# Usage: .ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET defaults to 20. TARGET is server, client or
#   cert_store, and all three run by default.
#
# Coverage: when clang and its libFuzzer runtime (Debian: clang-14, which
# brings libclang-rt-14-dev) are installed, the C extension is rebuilt with
# -fsanitize=fuzzer-no-link into build/fuzz/ and a libFuzzer shared library
# is preloaded, so libFuzzer measures coverage of csrc/ and Mbed TLS. Without
# clang the installed pynano is fuzzed with coverage of its Python code only,
# which finds little. PYNANO_FUZZ_NATIVE=0 forces that mode, and
# PYNANO_FUZZ_NATIVE=1 makes a missing clang an error.
#
# New corpus entries go to a temporary folder, so the seeds in
# tests/fuzz/seeds/ stay as committed. A crash (a failed assertion in a
# harness, an uncaught exception, a native crash or an input running over
# 10 s) leaves libFuzzer's crash-* or timeout-* file in build/fuzz/artifacts/
# and makes this script exit non-zero. PYTHON picks the interpreter
# (default: python3), which needs pynano's dependencies and atheris.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(server client cert_store)
fi
PYTHON=${PYTHON:-python3}
NATIVE=${PYNANO_FUZZ_NATIVE:-auto}
OUT=$ROOT/build/fuzz
ARTIFACTS=$OUT/artifacts
mkdir -p "$ARTIFACTS"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

find_fuzzer_runtime() {
    local clang runtime
    clang=${CLANG:-$(command -v clang-14 || command -v clang || true)}
    [ -n "$clang" ] || return 1
    runtime=$("$clang" -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer_no_main-x86_64.a
    [ -f "$runtime" ] || return 1
    echo "$clang $runtime"
}

# Build the instrumented extension into $OUT/site and a preloadable
# libFuzzer into $OUT/libfuzzer.so.
build_native() {
    local clang=$1 runtime=$2
    echo "fuzz.sh: building the extension with $clang -fsanitize=fuzzer-no-link" >&2
    rm -rf "$OUT/site"
    mkdir -p "$OUT/site/pynano/examples"
    cp pynano/*.py pynano/py.typed "$OUT/site/pynano/"
    cp examples/*.py "$OUT/site/pynano/examples/"
    CC=$clang LDSHARED="$clang -shared" "$PYTHON" - "$ROOT" "$OUT/work" <<'EOF'
import sys

root, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import build_ext  # noqa: E402  (needs the repository on sys.path)

builder = build_ext.make_ffibuilder("pynano._pynano", extra_compile_args=["-fsanitize=fuzzer-no-link", "-g"])
builder.compile(tmpdir=work, verbose=False)
EOF
    cp "$OUT"/work/pynano/_pynano*.so "$OUT/site/pynano/"
    # atheris uses a libFuzzer that is already in the process instead of its
    # own copy, and the instrumented extension needs its symbols global.
    "$clang" -shared -fPIC -o "$OUT/libfuzzer.so" \
        -Wl,--whole-archive "$runtime" -Wl,--no-whole-archive -lstdc++ -lpthread -lm
}

RUN_ENV=()
if [ "$NATIVE" != 0 ]; then
    if found=$(find_fuzzer_runtime); then
        read -r clang runtime <<<"$found"
        build_native "$clang" "$runtime"
        RUN_ENV=(env "PYTHONPATH=$OUT/site" "LD_PRELOAD=$OUT/libfuzzer.so")
    elif [ "$NATIVE" = 1 ]; then
        echo "fuzz.sh: PYNANO_FUZZ_NATIVE=1 but no clang with libclang_rt.fuzzer_no_main was found" >&2
        exit 2
    else
        echo "fuzz.sh: no clang libFuzzer runtime; fuzzing with Python coverage only" >&2
    fi
fi

failed=0
for target in "${TARGETS[@]}"; do
    harness=tests/fuzz/fuzz_$target.py
    seeds=$ROOT/tests/fuzz/seeds/$target
    if [ ! -f "$harness" ]; then
        echo "fuzz.sh: unknown target $target: $harness not found" >&2
        exit 2
    fi
    mkdir -p "$WORK/$target"
    echo "fuzz.sh: $target for $SECONDS_PER_TARGET s" >&2
    if ! (cd tests/fuzz && "${RUN_ENV[@]}" "$PYTHON" "fuzz_$target.py" \
            -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=4096 \
            -artifact_prefix="$ARTIFACTS/$target-" -print_final_stats=1 \
            "$WORK/$target" "$seeds") > "$WORK/$target.log" 2>&1; then
        failed=1
        echo "fuzz.sh: $target FAILED; last lines of its log:" >&2
        tail -n 40 "$WORK/$target.log" >&2
    else
        grep -E "INITED|DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" \
            "$WORK/$target.log" >&2 || true
    fi
done
exit $failed
