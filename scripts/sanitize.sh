#!/usr/bin/env bash
# Sanitizer and fuzzing runs, each in its own build directory (scripts/test.sh runs all three):
#   sanitize.sh asan   build-asan: g++ -fsanitize=address,undefined -O1; the unit, integration,
#                      fuzz-replay and threads suites (python3/pkcs11-tool preload the runtime)
#   sanitize.sh tsan   build-tsan: g++ -fsanitize=thread; the multi-threaded tests: pkcs11-tool
#                      --test-threads and threads_driver (with async mirroring to the emulator)
#   sanitize.sh fuzz   build-fuzz: clang++ libFuzzer + ASan + UBSan; every fuzz target for
#                      FUZZ_SECONDS (default 20), two at a time, then its regression replay
# Extra arguments go to `meson test` (e.g. a test name). Each run leaves DIR/test-summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

# setup DIR MESON-OPTIONS...: configure DIR (or reconfigure it with these options).
setup() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  else
    meson configure "$dir" "$@" >/dev/null || return 1
  fi
}

# check DIR SETUP MESON-TEST-ARGS...: run tests without rebuilding, log to DIR/test-summary.txt.
check() {
  local dir=$1 setup=$2; shift 2
  meson test -C "$dir" --no-rebuild --print-errorlogs --setup "$setup" "$@" | tee -a "$dir/test-summary.txt"
  return "${PIPESTATUS[0]}"
}

mode=${1:-}; shift || true
case "$mode" in
  asan)
    dir=build-asan
    CXX="${CXX:-ccache g++}" setup "$dir" -Db_sanitize=address,undefined -Doptimization=1 -Ddebug=true \
      -Db_lundef=false || exit 1
    meson compile -C "$dir" || exit 1
    rm -f "$dir/test-summary.txt"
    status=0
    if [ $# -gt 0 ]; then
      check "$dir" preload --num-processes 2 "$@" || status=1
    else
      # Native test programs with the leak check; programs that load the module with the runtime preloaded.
      check "$dir" sanitize --num-processes 2 --suite unit --suite fuzz-replay --suite threads || status=1
      check "$dir" preload --num-processes 2 --suite integration || status=1
    fi
    exit "$status"
    ;;
  tsan)
    dir=build-tsan
    CXX="${CXX:-ccache g++}" setup "$dir" -Db_sanitize=thread -Doptimization=1 -Ddebug=true -Db_lundef=false || exit 1
    meson compile -C "$dir" cdcp11 threads_driver || exit 1
    rm -f "$dir/test-summary.txt"
    if [ $# -gt 0 ]; then check "$dir" preload --num-processes 2 "$@"; exit $?; fi
    check "$dir" preload --num-processes 2 test_threads threads-driver threads-driver-mirror
    ;;
  fuzz)
    dir=build-fuzz
    CXX="${CXX:-ccache clang++}" setup "$dir" -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined \
      -Doptimization=1 -Ddebug=true -Db_lundef=false -Dfuzz_seconds="${FUZZ_SECONDS:-20}" || exit 1
    targets=$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//' | grep -v '^fuzz_common$')
    # shellcheck disable=SC2086
    meson compile -C "$dir" $targets || exit 1
    rm -f "$dir/test-summary.txt"
    status=0
    if [ $# -gt 0 ]; then check "$dir" sanitize "$@"; exit $?; fi
    check "$dir" sanitize --num-processes 2 --suite fuzz || status=1
    check "$dir" sanitize --num-processes 2 --suite fuzz-replay || status=1
    exit "$status"
    ;;
  *)
    echo "usage: $0 asan|tsan|fuzz [meson test arguments]" >&2
    exit 2
    ;;
esac
