#!/bin/bash
# GnuTLS p11tool lists the token's objects: public objects without login, private keys and
# secret keys only with --login (PIN from GNUTLS_PIN, never the command line).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${CDCP11_MODULE:?}"
T=$(mktemp -d /tmp/cdcp11-p11tool-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"
# the group's token, initialized with the test PINs, on the backend CDCP11_TEST_BACKEND names
# the log is searched for the PINs below: "1234" turned up in a debug line's hex or temp name
export CDCP11_TEST_USER_PIN=p11tool-pin-Qz7x
eval "$(/usr/bin/python3 "$HERE/p11helpers.py" tokens "$T" demo)"
export CDCP11_LOG_LEVEL=debug SO_PIN=12345678 USER_PIN=$CDCP11_TEST_USER_PIN
tool() { pkcs11-tool --module "$CDCP11_MODULE" "$@" >/dev/null 2>&1; }
tool --login --pin env:USER_PIN --keypairgen --key-type rsa:2048 --label rsa1 --id 01
tool --login --pin env:USER_PIN --keypairgen --key-type EC:prime256v1 --label ec1 --id 02
tool --login --pin env:USER_PIN --keygen --key-type AES:32 --label aes1 --id 03 --private
printf 'hello' > data.bin
tool --login --pin env:USER_PIN --write-object data.bin --type data --label pubdata

p11() { timeout 60 p11tool --provider "$CDCP11_MODULE" "$@"; }

out=$(p11 --list-all "pkcs11:token=demo") || fail "p11tool --list-all failed"
echo "$out"
for want in "object=rsa1;type=public" "object=ec1;type=public" "object=pubdata;type=data"; do
  grep -q "$want" <<<"$out" || fail "without login, $want is not listed"
done
for hidden in "type=private" "object=aes1"; do
  if grep -q "$hidden" <<<"$out"; then fail "without login, $hidden is listed"; fi
done
grep -q "Public key (RSA-2048)" <<<"$out" || fail "RSA public key type not recognised"
grep -q "Public key (EC/ECDSA-SECP256R1)" <<<"$out" || fail "EC public key type not recognised"

out=$(GNUTLS_PIN=$USER_PIN p11 --login --list-all "pkcs11:token=demo") || fail "p11tool --login --list-all failed"
echo "$out"
for want in "object=rsa1;type=private" "object=ec1;type=private" "object=aes1;type=secret-key" \
            "object=rsa1;type=public" "object=pubdata;type=data"; do
  grep -q "$want" <<<"$out" || fail "with login, $want is not listed"
done
grep -q "Private key (RSA-2048)" <<<"$out" || fail "RSA private key type not recognised"
[ "$(grep -c 'URL: pkcs11:' <<<"$out")" -eq 6 ] || fail "expected 6 objects with login"

# a wrong PIN fails
if GNUTLS_PIN=wrong-pin-Vk3w p11 --login --list-all "pkcs11:token=demo" >/dev/null 2>&1; then fail "wrong PIN accepted"; fi
grep -q "C_Login: CKR_PIN_INCORRECT" module.log || fail "the failed login is not logged"
if grep -q -e "$USER_PIN" -e wrong-pin-Vk3w module.log; then fail "a PIN appears in the log"; fi

# token listing
p11 --list-tokens | grep -q "Label: demo" || fail "p11tool --list-tokens does not show the token"
echo OK
