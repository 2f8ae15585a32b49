#!/usr/bin/env bash
# Fuzzes one target for a bounded time (meson test fuzz-<name>, built with -Dfuzzing=true).
#   run_fuzzer.sh BINARY NAME SECONDS WORKDIR DICT INPUT_DIR...
# New coverage goes to WORKDIR/corpus (kept between runs of the same build directory); the
# seeds and regression inputs are read, never written. A crash, leak, timeout or out-of-memory
# fails the test and prints the input and how to keep it as a regression input.
set -uo pipefail
bin=$1 name=$2 seconds=$3 work=$4 dict=$5
shift 5
mkdir -p "$work/corpus" "$work/artifacts"
rm -f "$work/artifacts/"*
# Scratch tokens and configs of the harness go to tmpfs, and away when we are done.
scratch=$(mktemp -d -p /dev/shm "cdcp11-fuzz-$name-XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export CDCP11_FUZZ_TMP=$scratch
args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -max_len=8192
      -artifact_prefix="$work/artifacts/" -print_final_stats=1)
[ -n "$dict" ] && args+=(-dict="$dict")
"$bin" "${args[@]}" "$work/corpus" "$@" 2>"$work/log.txt"
rc=$?
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added)' "$work/log.txt" || true
if [ "$rc" -ne 0 ]; then
  tail -60 "$work/log.txt"
  for f in "$work/artifacts/"*; do
    [ -f "$f" ] || continue
    echo "FAILING INPUT: $f ($(stat -c %s "$f") bytes)"
    head -c 512 "$f" | od -A d -t x1z | head -20
    echo "keep it: cp '$f' tests/fuzz/regressions/$name/<what-it-is>"
  done
  exit 1
fi
echo "fuzz-$name: ${seconds}s, no failure"
