#!/bin/bash
# GnuTLS p11tool lists the token's objects: public objects without login, private keys and
# secret keys only with --login (PIN from GNUTLS_PIN, never the command line).
set -euo pipefail
: "${CDCP11_MODULE:?}"
T=$(mktemp -d /tmp/cdcp11-p11tool-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T"
cat > conf.json <<JSON
{"version":1,"groups":[{"name":"demo","token":{"dir":"tokens/demo","kdf_scrypt_log2_n":10,"max_pin_retries":3}}]}
JSON
export CDCP11_CONF=$T/conf.json CDCP11_LOG_FILE=$T/module.log CDCP11_LOG_LEVEL=debug SO_PIN=12345678 USER_PIN=1234
tool() { pkcs11-tool --module "$CDCP11_MODULE" "$@" >/dev/null 2>&1; }
tool --init-token --label demo --so-pin env:SO_PIN
tool --login --login-type so --so-pin env:SO_PIN --init-pin --pin env:USER_PIN
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
if GNUTLS_PIN=99999999 p11 --login --list-all "pkcs11:token=demo" >/dev/null 2>&1; then fail "wrong PIN accepted"; fi
grep -q "C_Login: CKR_PIN_INCORRECT" module.log || fail "the failed login is not logged"
if grep -q -e "$USER_PIN" -e 99999999 module.log; then fail "a PIN appears in the log"; fi

# token listing
p11 --list-tokens | grep -q "Label: demo" || fail "p11tool --list-tokens does not show the token"
echo OK
