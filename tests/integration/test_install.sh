#!/bin/bash
# `meson install` into a temporary DESTDIR installs the module and a p11-kit module file whose
# module: path is the installed library; `p11-kit list-modules` loads that module file (from the
# user module directory of a temporary HOME) and shows the module and its token.
# p11-kit ignores user configuration when running as root, so as root it runs as `nobody`
# (setpriv) instead of touching any system directory.
set -euo pipefail
: "${CDCP11_MODULE:?}" "${CDCP11_BUILD:?}"

T=$(mktemp -d /tmp/cdcp11-install-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

meson install -C "$CDCP11_BUILD" --no-rebuild --destdir "$T/dest" --quiet >/dev/null
mapfile -t modfiles < <(find "$T/dest" -path '*/p11-kit/modules/cdcp11.module')
[ "${#modfiles[@]}" -eq 1 ] || fail "expected one p11-kit module file, found ${#modfiles[@]}"
modfile=${modfiles[0]}
libpath=$(sed -n 's/^module: *//p' "$modfile")
case "$libpath" in /*) ;; *) fail "module path is not absolute: $libpath" ;; esac
[ -f "$T/dest$libpath" ] || fail "module file names $libpath, which was not installed"
cmp -s "$T/dest$libpath" "$CDCP11_MODULE" || fail "installed library differs from the built one"
# the installed module file's directory is p11-kit's package module directory under the prefix
pkgdir=$(dirname "${modfile#"$T/dest"}")
echo "installed: $libpath, module file in $pkgdir"
[ -n "$(find "$T/dest" -path '*/include/cdcp11/pkcs11_3_0.h')" ] || fail "headers not installed"
# the daily rotation: a timer and a templated service that runs the installed cdcctl
svc=$(find "$T/dest" -name 'cdcp11-rotate@.service' -path '*/systemd/system/*')
[ -n "$svc" ] && [ -n "$(find "$T/dest" -name 'cdcp11-rotate@.timer' -path '*/systemd/system/*')" ] ||
  fail "the rotation timer and service are not installed"
cdcctl=$(sed -n 's/^ExecStart=\([^ ]*\) .*key rotate %i --all-due$/\1/p' "$svc")
[ -n "$cdcctl" ] && [ -x "$T/dest$cdcctl" ] || fail "the rotation service does not run the installed cdcctl: $cdcctl"
grep -q '^OnCalendar=daily' "$T/dest$(dirname "${svc#"$T/dest"}")/cdcp11-rotate@.timer" || fail "the timer is not daily"

# a token for the module to show
cat > "$T/conf.json" <<JSON
{"version":1,"groups":[{"name":"installed-demo","token":{"dir":"tokens/d","kdf_scrypt_log2_n":10,"max_pin_retries":3}}]}
JSON
export SO_PIN=12345678
CDCP11_CONF="$T/conf.json" pkcs11-tool --module "$T/dest$libpath" --init-token --label installed-demo \
  --so-pin env:SO_PIN >/dev/null

# the module file as installed, pointed at the staged library (DESTDIR is not the final root)
mkdir -p "$T/home/.config/pkcs11/modules"
sed "s#^module: .*#module: $T/dest$libpath#" "$modfile" > "$T/home/.config/pkcs11/modules/cdcp11.module"
grep -q '^critical: no' "$T/home/.config/pkcs11/modules/cdcp11.module" || fail "module file lost its options"

run=(env HOME="$T/home" XDG_CONFIG_HOME="$T/home/.config" CDCP11_CONF="$T/conf.json" CDCP11_LOG_FILE=/dev/null)
if [ "$(id -u)" = 0 ]; then
  chmod -R a+rwX "$T"
  run=(setpriv --reuid=65534 --regid=65534 --clear-groups "${run[@]}")
fi
out=$(timeout 60 "${run[@]}" p11-kit list-modules 2>&1) || fail "p11-kit list-modules failed: $out"
block=$(printf '%s\n' "$out" | awk '/^cdcp11: /{p=1; print; next} /^[^ ]/{p=0} p')
[ -n "$block" ] || fail "p11-kit does not list the cdcp11 module: $out"
printf '%s\n' "$block"
printf '%s\n' "$block" | grep -q "library-description: cdcp11" || fail "no library description"
printf '%s\n' "$block" | grep -q "token: installed-demo" || fail "the token is not listed"
printf '%s\n' "$block" | grep -q "token-initialized" || fail "token flags missing"
echo OK
