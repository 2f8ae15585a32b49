#!/usr/bin/env bash
# Sanitizer and fuzzing runs, each in its own build directory (scripts/test.sh runs all three):
#   sanitize.sh asan   build-asan: g++ -fsanitize=address,undefined -O0; the unit, integration and
#                      threads suites (python3/pkcs11-tool preload the runtime)
#   sanitize.sh tsan   build-tsan: g++ -fsanitize=thread; the multi-threaded tests: pkcs11-tool
#                      --test-threads, threads_driver (with async mirroring to the emulator),
#                      the mirror suite's async-mode test, and core-fake (core's locks)
#   sanitize.sh fuzz   build-fuzz: clang++ libFuzzer + ASan + UBSan; every fuzz target for
#                      FUZZ_SECONDS (default 10), two at a time, then its regression replay
# Extra arguments go to `meson test` (e.g. a test name). Each run leaves DIR/test-summary.txt.
# The g++ builds use meson's default compiler (with ccache when it is installed); the fuzz build
# uses FUZZ_CXX (default clang++).
set -uo pipefail
cd "$(dirname "$0")/.."

# setup DIR MESON-OPTIONS...: configure DIR (or reconfigure it with these options).
setup() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  else
    meson configure "$dir" "$@" >/dev/null || return 1
    # Regenerate now, so that introspection (pick) and target names see the current meson.build.
    ninja -C "$dir" build.ninja >/dev/null || return 1
  fi
}

# pick DIR targets|tests SELECTOR...: see scripts/meson_pick.py. Building only what the
# chosen tests need keeps the phase short.
pick() { python3 scripts/meson_pick.py "$@"; }

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
    setup "$dir" -Db_sanitize=address,undefined -Doptimization=0 -Ddebug=true \
      -Db_lundef=false || exit 1
    rm -f "$dir/test-summary.txt"
    if [ $# -gt 0 ]; then
      meson compile -C "$dir" || exit 1
      check "$dir" preload --num-processes 2 "$@"; exit $?
    fi
    # Not the install test: it installs every target (cdcctl included) and checks packaging.
    # Not the crash test (killed processes, recovery of files) nor the Azure client's retry timing:
    # their time goes to waiting. Not --test-threads: the TSan phase runs it.
    # Not fuzz-replay: the fuzz phase replays the same inputs under clang's ASan+UBSan.
    native=(unit threads -azure_retry) hosted=(integration -install -crash -test_threads)
    # shellcheck disable=SC2046
    meson compile -C "$dir" tests/sanitize/keep_loaded $(pick "$dir" targets "${native[@]}" "${hosted[@]}") || exit 1
    status=0
    # Native test programs with the leak check; programs that load the module with the runtime preloaded.
    # shellcheck disable=SC2046
    check "$dir" sanitize --num-processes 2 $(pick "$dir" tests "${native[@]}") || status=1
    # shellcheck disable=SC2046
    check "$dir" preload --num-processes 2 $(pick "$dir" tests "${hosted[@]}") || status=1
    exit "$status"
    ;;
  tsan)
    dir=build-tsan
    setup "$dir" -Db_sanitize=thread -Doptimization=1 -Ddebug=true -Db_lundef=false || exit 1
    meson compile -C "$dir" cdcp11 threads_driver core_fake_test || exit 1
    rm -f "$dir/test-summary.txt"
    if [ $# -gt 0 ]; then check "$dir" preload --num-processes 2 "$@"; exit $?; fi
    check "$dir" preload --num-processes 2 test_threads threads-driver threads-driver-mirror mirror-async core-fake
    ;;
  fuzz)
    dir=build-fuzz
    CXX="${FUZZ_CXX:-clang++}" setup "$dir" -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined \
      -Doptimization=1 -Ddebug=true -Db_lundef=false -Dfuzz_seconds="${FUZZ_SECONDS:-10}" || exit 1
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
