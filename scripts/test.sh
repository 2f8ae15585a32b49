#!/usr/bin/env bash
# Runs every test: installs dependencies, builds with each crypto backend (OpenSSL, the default,
# and Botan) and runs the whole suite against each; the emulator suite, which does not depend on
# the backend, runs once. Then the sanitizer and fuzzing runs (scripts/sanitize.sh): ASan+UBSan
# over the unit and integration suites, ThreadSanitizer over the multi-threaded tests, and every
# fuzz target for a bounded time. Prints the time of each phase, and ends with one line:
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || exit 1

passed=0; failed=0; status=0
phases=()

# Adds the counts of DIR/test-summary.txt (one or more meson test summaries) to the totals.
count() {
  local log="$1/test-summary.txt" ok fail xpass to
  [ -f "$log" ] || return 0
  ok=$(awk '/^Ok:/{s+=$2} END{print s+0}' "$log")
  fail=$(awk '/^Fail:/{s+=$2} END{print s+0}' "$log")
  xpass=$(awk '/^Unexpected Pass:/{s+=$3} END{print s+0}' "$log")
  to=$(awk '/^Timeout:/{s+=$2} END{print s+0}' "$log")
  passed=$((passed + ok)); failed=$((failed + fail + xpass + to))
}

# phase NAME BUILD-DIR COMMAND...: runs COMMAND, counts BUILD-DIR's results, times it. A
# command that fails without a test summary (configure or build error) counts as one failure.
phase() {
  local name=$1 dir=$2 start=$SECONDS rc; shift 2
  rm -f "$dir/test-summary.txt"
  "$@"; rc=$?
  if [ "$rc" -ne 0 ]; then
    status=1
    [ -f "$dir/test-summary.txt" ] || failed=$((failed + 1))
  fi
  count "$dir"
  phases+=("$(printf '%-28s %4ds  %s' "$name" $((SECONDS - start)) "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)")")
}

run_suite() {  # build-dir backend [extra meson test args...]
  local dir=$1 backend=$2; shift 2
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dcrypto_backend="$backend" >/dev/null || return 1
  else
    meson configure "$dir" -Dcrypto_backend="$backend" >/dev/null || return 1
  fi
  meson compile -C "$dir" || return 1
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" | tee "$dir/test-summary.txt"
  return "${PIPESTATUS[0]}"
}

# The Botan run: the module built with Botan, through the integration suite and every key type's
# mirror (BYOK wrap, JWK export). The crypto seam's own tests run both backends in every build
# (crypto_test links both); what sits above the seam does not depend on the backend, and the
# OpenSSL run covers it: core's unit tests, cdcctl, Java, the crypto-independent suite (the Azure
# client, the mirror's faults, rotation, Azure-resident keys, HSM groups), packaging, the crash test.
# Nor the integration-hsm suite (every integration test on the forwarding backend in front of
# SoftHSM2): it tests forwarding, not the crypto library; the sanitizer phases leave it out too.
botan_suite() {
  local dir=build-botan sel=(crypto_default integration mirror-matrix -install -crash -hsm_backend)
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dcrypto_backend=botan >/dev/null || return 1
  else
    meson configure "$dir" -Dcrypto_backend=botan >/dev/null || return 1
  fi
  # shellcheck disable=SC2046
  meson compile -C "$dir" $(python3 scripts/meson_pick.py "$dir" targets "${sel[@]}") || return 1
  # shellcheck disable=SC2046
  meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 2 \
    $(python3 scripts/meson_pick.py "$dir" tests "${sel[@]}") | tee "$dir/test-summary.txt"
  return "${PIPESTATUS[0]}"
}

total_start=$SECONDS
# sanitize-only: tests that repeat part of another suite, for the sanitizer phases.
phase "openssl: build + tests" build-openssl run_suite build-openssl openssl --no-suite sanitize-only
phase "botan: build + tests" build-botan botan_suite
phase "asan+ubsan: build + tests" build-asan bash scripts/sanitize.sh asan
phase "tsan: build + threads" build-tsan bash scripts/sanitize.sh tsan
phase "fuzz: build + targets" build-fuzz bash scripts/sanitize.sh fuzz

echo
echo "time per phase:"
printf '  %s\n' "${phases[@]}"
printf '  %-28s %4ds\n' "total" $((SECONDS - total_start))
echo
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] || status=1
exit "$status"
