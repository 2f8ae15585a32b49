#!/bin/bash
# `pkcs11-tool --test-threads` (OpenSC 0.23) 20 times: several threads racing C_Initialize
# (NULL and CKF_OS_LOCKING_OK) with C_GetInfo, C_GetSlotList and C_GetTokenInfo while the main
# thread lists objects. Every run must exit normally (no signal) with all threads ending CKR_OK.
# Commands per thread: IN/IL = C_Initialize(NULL / OS locking), GI, SL, T0 = C_GetTokenInfo(slot 0).
# pkcs11-tool sleeps 30 s at cleanup if a thread is still running then, so the 20 runs go in
# parallel to keep the worst case bounded (about 30 s).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${CDCP11_MODULE:?}"
T=$(mktemp -d /tmp/cdcp11-threads-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
cd "$T"
# two groups whose tokens are initialized with the test PINs (demo's never locks on the soft token),
# on the backend CDCP11_TEST_BACKEND names (T0 reads the token of the first slot, whichever group)
eval "$(/usr/bin/python3 "$HERE/p11helpers.py" tokens "$T" demo,max_pin_retries=0 second)"
export SO_PIN=12345678 USER_PIN=1234
pkcs11-tool --module "$CDCP11_MODULE" --token-label demo --login --pin env:USER_PIN --keypairgen \
  --key-type EC:prime256v1 --label ec1 --id 01 >/dev/null 2>&1

run_one() {
  local i=$1
  set +e
  timeout 90 pkcs11-tool --module "$CDCP11_MODULE" \
    --test-threads INGISLT0 --test-threads ILGISLT0SL --test-threads ILSLT0GIT0 \
    --test-threads ILSLT0T0GI --test-threads INSLGIT0 \
    --token-label demo --login --pin env:USER_PIN -O > "run$i.out" 2>&1
  echo $? > "run$i.rc"
}

# On the HSM backend too: SoftHSM2 2.6.1 rewrites the token's file on every login, and a process
# starting meanwhile lost the token or its user PIN; our processes no longer do both at once
# (forward_token.cpp, TokenFileLock).
for i in $(seq 0 19); do run_one "$i" & done
wait

failures=0
for i in $(seq 0 19); do
  rc=$(cat "run$i.rc")
  why=""
  if [ "$rc" -ne 0 ]; then why="exit status $rc"; fi
  grep -q "test_threads all threads have ended with CKR_OK" "run$i.out" || why="$why; not all threads ended CKR_OK"
  if grep -q "Unknown test" "run$i.out"; then why="$why; bad test command"; fi
  [ "$(grep -c 'returning rv = 0' "run$i.out")" -eq 5 ] || why="$why; a thread did not return 0"
  grep -q "label:      ec1" "run$i.out" || why="$why; main thread did not list the key"
  if [ -n "$why" ]; then
    echo "run $i FAILED: $why"; sed 's/^/    /' "run$i.out" | tail -30
    failures=$((failures + 1))
  fi
done
[ "$failures" -eq 0 ] || { echo "FAIL: $failures of 20 runs"; exit 1; }
echo "OK: 20 runs"
