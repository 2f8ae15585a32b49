#!/usr/bin/env bash
# Runs every test: installs dependencies, builds with each crypto backend (OpenSSL, the default,
# and Botan) and runs the whole suite against each; the emulator suite, which does not depend on
# the backend, runs once. Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || exit 1

passed=0; failed=0; status=0
run_suite() {  # build-dir backend [extra meson test args...]
  local dir=$1 backend=$2; shift 2
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dcrypto_backend="$backend" >/dev/null || return 1
  else
    meson configure "$dir" -Dcrypto_backend="$backend" >/dev/null || return 1
  fi
  meson compile -C "$dir" || return 1
  local log="$dir/test-summary.txt"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" | tee "$log"
  local rc=${PIPESTATUS[0]}
  local ok fail
  ok=$(awk '/^Ok:/{print $2}' "$log"); fail=$(awk '/^Fail:/{print $2}' "$log")
  local xpass to
  xpass=$(awk '/^Unexpected Pass:/{print $3}' "$log"); to=$(awk '/^Timeout:/{print $2}' "$log")
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fail:-0} + ${xpass:-0} + ${to:-0}))
  return "$rc"
}

run_suite build-openssl openssl || status=1
run_suite build-botan botan --no-suite emulator || status=1

echo
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || status=1
exit "$status"
