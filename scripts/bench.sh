#!/usr/bin/env bash
# The benchmark command (issue #13): builds cdcp11 in release mode (build-bench/) and prints
# cdcp11, SoftHSM2 and OpenSSL side by side from one run, with ratios and the issue's targets.
#
#   bash scripts/bench.sh [--quick] [--seconds S] [--reps N] [--ops a,b] [--keys session|token]
#                         [--no-crypto] [--counts 1000,10000,100000] [--rounds N] [--no-objects]
#                         [--no-forward] [--build-dir DIR] [--mirror [--mirror-keys N] [--sync-keys S]]
#
# About 10 minutes (plus the first release build). --ops reruns some rows (ids as in the raw
# figures: aes_gcm_16, rsa2048_sign, ...). The modules' keys are session objects, as in the
# issue's figures, unless --keys token (SoftHSM2 is much slower with token keys). The table
# (Markdown) and the raw figures are kept in <build-dir>/bench-results/. Benchmarks, not tests:
# nothing fails on a missed target.
# The forwarding rows (issue #9): SoftHSM2 through a cdcp11 HSM group vs SoftHSM2 direct, in the
# same run (RSA-2048 sign and verify, AES-GCM 16 B, find by label among FWD_COUNT objects, and
# C_CreateObject of those objects).
# --smoke (the meson test 'bench-smoke') runs one call of everything against an existing build.
# --mirror adds bench/mirror_rate.py (a few minutes more): mirroring N keys (cdcctl key mirror
# --all, and an async burst) against the Key Vault emulator with Azure's rate limits on, beside
# the rate those limits allow, and the time of a vault sync of S keys (first and second sync).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=""
SECS=2 REPS=3 WARMUP=0.5 ITER=0 ROUNDS=5 BUDGET=240
COUNTS=1000,10000,100000
CRYPTO=1 OBJECTS=1 FORWARD=1 SMOKE=0 OPS=all KEYS=session FWD_COUNT=1000 MIRROR=0 MIRROR_KEYS=40 SYNC_KEYS=5000
SOFTHSM=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --counts) COUNTS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --ops) OPS=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --build-dir) BUILD=$(cd "$2" && pwd); shift ;;
    --no-crypto) CRYPTO=0 ;;
    --no-objects) OBJECTS=0 ;;
    --mirror) MIRROR=1 ;;
    --mirror-keys) MIRROR_KEYS=$2; shift ;;
    --sync-keys) SYNC_KEYS=$2; shift ;;
    --no-forward) FORWARD=0 ;;
    --quick) SECS=1 REPS=1 WARMUP=0.2 ROUNDS=3 COUNTS=1000,10000 ;;
    --smoke) SMOKE=1 ITER=1 ROUNDS=1 COUNTS=3,5 FWD_COUNT=5 ;;
    -h|--help) usage ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done

# --- build (release, its own build directory) unless one is given
if [ -z "$BUILD" ]; then
  BUILD=$ROOT/build-bench
  if [ ! -f "$BUILD/build.ninja" ]; then
    if [ -z "${CXX:-}" ] && command -v ccache >/dev/null; then export CXX="ccache g++"; fi
    meson setup "$BUILD" "$ROOT" -Dbuildtype=release -Dtests=false -Dbench=true >/dev/null
  fi
  meson compile -C "$BUILD" cdcbench cdcp11 >/dev/null
  if [ "$MIRROR" = 1 ]; then meson compile -C "$BUILD" cdcctl >/dev/null; fi
fi
BENCH=$BUILD/bench/cdcbench
MODULE=$BUILD/p11module/libcdcp11.so
for f in "$BENCH" "$MODULE"; do
  [ -e "$f" ] || { echo "bench.sh: $f is missing (build with -Dbench=true)" >&2; exit 1; }
done

# --- temporary tokens: the crypto tokens on disk like any token; the object-count tokens on
# tmpfs when there is one, so that 100,000 C_CreateObject take a minute rather than hours of
# fsync (what is measured there, finding, logging in and seeing changes, reads).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cdcbench-XXXXXX")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then OBJ=$(mktemp -d /dev/shm/cdcbench-XXXXXX); else OBJ=$WORK/objects; fi
trap 'rm -rf "$WORK" "$OBJ"' EXIT
RESULTS=$WORK/results.tsv
: > "$RESULTS"

KDF=""
[ "$SMOKE" = 1 ] && KDF=', "kdf_scrypt_log2_n": 10'
cdcp11_conf() {  # DIR -> a config with one soft-token group "bench" in DIR
  mkdir -p "$1"
  printf '{"version": 1, "groups": [{"name": "bench", "token": {"backend": "soft", "dir": "tokens/bench"%s}}]}\n' \
    "$KDF" > "$1/cdcp11.json"
  echo "$1/cdcp11.json"
}
softhsm_conf() {  # DIR -> a SoftHSM2 config with its token directory in DIR
  mkdir -p "$1/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$1" > "$1/softhsm2.conf"
  echo "$1/softhsm2.conf"
}
CDC="name=cdcp11,path=$MODULE,token=bench"
SH="name=softhsm2,path=$SOFTHSM,token=bench"
HAVE_SH=1
[ -e "$SOFTHSM" ] || { HAVE_SH=0; printf 'note\tsofthsm2\t%s not found: no SoftHSM2 column\n' "$SOFTHSM" >> "$RESULTS"; }

meta() { printf 'meta\t-\t%s\t%s\n' "$1" "$2" >> "$RESULTS"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes')"
meta cpu "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
meta cpus "$(nproc)"
if [ "$ITER" -gt 0 ]; then meta timing "one call of each (a smoke run, not figures)"
else meta timing "each figure the median of $REPS repetitions of $SECS s (key generation 3× that, and at least 24 keys) after a $WARMUP s warm-up"; fi
meta load_start "$(loadavg)"
echo "bench.sh: load average $(loadavg) on $(nproc) CPUs" >&2

started=$SECONDS
TIMING=(--seconds "$SECS" --reps "$REPS" --warmup "$WARMUP" --iterations "$ITER")

if [ "$CRYPTO" = 1 ]; then
  echo "bench.sh: crypto operations (cdcp11, SoftHSM2 and OpenSSL interleaved)" >&2
  export CDCP11_CONF; CDCP11_CONF=$(cdcp11_conf "$WORK/crypto-cdcp11")
  export SOFTHSM2_CONF; SOFTHSM2_CONF=$(softhsm_conf "$WORK/crypto-softhsm2")
  "$BENCH" init --module "$CDC"
  mods=(--module "$CDC")
  if [ "$HAVE_SH" = 1 ]; then "$BENCH" init --module "$SH"; mods+=(--module "$SH"); fi
  "$BENCH" crypto "${mods[@]}" --openssl --ops "$OPS" --keys "$KEYS" "${TIMING[@]}" >> "$RESULTS"
  echo "bench.sh: crypto operations took $((SECONDS - started)) s" >&2
fi

if [ "$OBJECTS" = 1 ]; then
  for spec in "$CDC" "$SH"; do
    name=${spec%%,*}; name=${name#name=}
    [ "$name" = softhsm2 ] && [ "$HAVE_SH" = 0 ] && continue
    echo "bench.sh: token objects, $name ($COUNTS)" >&2
    export CDCP11_CONF; CDCP11_CONF=$(cdcp11_conf "$OBJ/$name")
    export SOFTHSM2_CONF; SOFTHSM2_CONF=$(softhsm_conf "$OBJ/$name")
    "$BENCH" init --module "$spec"
    "$BENCH" objects --module "$spec" --counts "$COUNTS" --rounds "$ROUNDS" \
      --populate-budget "$BUDGET" "${TIMING[@]}" >> "$RESULTS"
    rm -rf "${OBJ:?}/$name"
    echo "bench.sh: token objects, $name: done at $((SECONDS - started)) s" >&2
  done
fi
if [ "$FORWARD" = 1 ] && [ "$HAVE_SH" = 1 ]; then
  # Two tokens of one SoftHSM2: "direct" reached through its own module, "fwd" through a cdcp11
  # group forwarding to it. Separate tokens, so each measures its own objects.
  echo "bench.sh: forwarding, SoftHSM2 through cdcp11 vs direct ($FWD_COUNT objects for find)" >&2
  export SOFTHSM2_CONF; SOFTHSM2_CONF=$(softhsm_conf "$OBJ/forward")
  export CDCP11_CONF; CDCP11_CONF=$OBJ/forward/cdcp11.json
  printf '{"version": 1, "groups": [{"name": "fwd", "token": {"backend": "pkcs11", "module": "%s", "token_label": "fwd"}}]}\n' \
    "$SOFTHSM" > "$CDCP11_CONF"
  SH_DIRECT="name=softhsm2-direct,path=$SOFTHSM,token=direct"
  SH_FWD_INIT="name=softhsm2-fwd,path=$SOFTHSM,token=fwd"
  FWD="name=cdcp11-fwd,path=$MODULE,token=fwd"
  "$BENCH" init --module "$SH_DIRECT"
  "$BENCH" init --module "$SH_FWD_INIT"  # the HSM's own tools initialise it; C_InitToken is not forwarded
  "$BENCH" crypto --module "$FWD" --module "$SH_DIRECT" --ops rsa2048_sign,rsa2048_verify,aes_gcm_16 \
    --threads-ops "" --keys "$KEYS" "${TIMING[@]}" >> "$RESULTS"
  for spec in "$FWD" "$SH_DIRECT"; do
    "$BENCH" objects --module "$spec" --counts "$FWD_COUNT" --rounds 1 --populate-budget "$BUDGET" \
      "${TIMING[@]}" >> "$RESULTS"
  done
  rm -rf "${OBJ:?}/forward"
  echo "bench.sh: forwarding: done at $((SECONDS - started)) s" >&2
fi
MIRROR_TABLE=$WORK/mirror.md
if [ "$MIRROR" = 1 ] && [ "$SMOKE" = 0 ]; then
  echo "bench.sh: mirroring and vault sync against the emulator ($MIRROR_KEYS keys, sync of $SYNC_KEYS)" >&2
  /usr/bin/python3 "$ROOT/bench/mirror_rate.py" --build "$BUILD" --keys "$MIRROR_KEYS" --burst "$MIRROR_KEYS" \
    --sync-keys "$SYNC_KEYS" > "$MIRROR_TABLE"
fi
meta load_end "$(loadavg)"
meta runtime "$((SECONDS - started)) s (without the build)"

report() {
  /usr/bin/python3 "$ROOT/bench/report.py" "$@" "$RESULTS"
  echo
  /usr/bin/python3 "$ROOT/bench/report.py" --cpu "$RESULTS"
  if [ "$FORWARD" = 1 ] && [ "$HAVE_SH" = 1 ]; then
    echo
    /usr/bin/python3 "$ROOT/bench/report.py" --forward "$@" "$RESULTS"
  fi
  if [ -s "$MIRROR_TABLE" ]; then echo; cat "$MIRROR_TABLE"; fi
}
if [ "$SMOKE" = 1 ]; then
  report --require-all
  exit 0
fi
OUT=$BUILD/bench-results
mkdir -p "$OUT"
stamp=$(date -u '+%Y%m%d-%H%M%S')
cp "$RESULTS" "$OUT/$stamp.tsv"
report | tee "$OUT/$stamp.md"
echo "bench.sh: saved $OUT/$stamp.md and $OUT/$stamp.tsv" >&2
