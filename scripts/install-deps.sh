#!/usr/bin/env bash
# Installs every Debian 12 package cdcp11 needs to build, run its demo and run its tests.
# Idempotent: skips apt entirely when everything is already present.
set -euo pipefail

PKGS=(
  # build
  meson ninja-build g++ pkg-config
  libssl-dev libbotan-2-dev rapidjson-dev libp11-kit-dev doctest-dev libcurl4-openssl-dev libcli11-dev
  # runtime / demo
  openssl p11-kit p11-kit-modules opensc
  # tests (clang and its runtimes: the libFuzzer targets)
  clang libclang-rt-14-dev
  softhsm2 gnutls-bin libengine-pkcs11-openssl python3-pykcs11 python3-cryptography python3-azure
  systemd   # systemd-analyze and systemd-socket-activate, for the p11-kit service units' test
  gdb       # the stacks of a forked child that hangs, in test_abi's failure report
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
