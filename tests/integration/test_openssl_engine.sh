#!/bin/bash
# OpenSSL through the libp11 engine (engine id "pkcs11"): a self-signed root made with a token RSA
# key, a token EC CA key signing a leaf certificate, and `openssl verify` accepting both chains.
# The PIN reaches the engine through its config file (PIN directive), never a command line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

: "${CDCP11_MODULE:?}"
ENGINE=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -n1 || true)
if [ -z "$ENGINE" ]; then echo "libengine-pkcs11-openssl not installed"; exit 77; fi

T=$(mktemp -d /tmp/cdcp11-engine-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
cd "$T"
# the group's token, initialized with the test PINs, on the backend CDCP11_TEST_BACKEND names
# the log is searched for the PIN below, so it is one no id, path or number can contain by chance
export CDCP11_TEST_USER_PIN=engine-pin-Hw4n
eval "$(/usr/bin/python3 "$HERE/p11helpers.py" tokens "$T" demo)"
export SO_PIN=12345678 USER_PIN=$CDCP11_TEST_USER_PIN
tool() { pkcs11-tool --module "$CDCP11_MODULE" "$@"; }
tool --login --pin env:USER_PIN --keypairgen --key-type rsa:2048 --label rsa1 --id 01 >/dev/null
tool --login --pin env:USER_PIN --keypairgen --key-type EC:prime256v1 --label ecca --id 02 >/dev/null

cat > openssl.cnf <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $CDCP11_MODULE
PIN = $USER_PIN
init = 0
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
EOF
export OPENSSL_CONF=$T/openssl.cnf

fail() { echo "FAIL: $*"; exit 1; }
# software-only openssl runs without the engine config (libp11 registers its EC methods on load)
sw() { env -u OPENSSL_CONF openssl "$@"; }

# 1. self-signed root with the token RSA key
openssl req -new -x509 -engine pkcs11 -keyform engine -key "pkcs11:token=demo;object=rsa1;type=private" \
  -subj "/CN=cdcp11 test root" -days 2 -sha256 -extensions v3_ca -out root.pem \
  || fail "openssl req with the token RSA key"
sw verify -CAfile root.pem root.pem || fail "openssl verify of the self-signed root"
# the certificate's key is the token's public key
tool --read-object --type pubkey --id 01 -o rsa1.der >/dev/null
[ "$(sw x509 -in root.pem -noout -pubkey | sw pkey -pubin -outform DER | sha256sum)" = \
  "$(sw pkey -pubin -inform DER -in rsa1.der -outform DER | sha256sum)" ] || fail "root key is not the token key"

# 2. an EC CA on the token signing a software leaf
openssl req -new -x509 -engine pkcs11 -keyform engine -key "pkcs11:token=demo;object=ecca;type=private" \
  -subj "/CN=cdcp11 test EC CA" -days 2 -extensions v3_ca -out ca.pem \
  || fail "openssl req with the token EC key"
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key
sw req -new -key leaf.key -subj "/CN=leaf.example" -out leaf.csr
openssl x509 -req -in leaf.csr -engine pkcs11 -CAkeyform engine \
  -CAkey "pkcs11:token=demo;object=ecca;type=private" -CA ca.pem -CAcreateserial -days 1 \
  -extfile openssl.cnf -extensions v3_leaf -out leaf.pem || fail "openssl x509 signing with the token CA key"
sw verify -CAfile ca.pem leaf.pem || fail "openssl verify of the leaf"
# a different CA does not verify it (the check can fail)
if sw verify -CAfile root.pem leaf.pem 2>/dev/null; then fail "leaf verified against the wrong CA"; fi

# 3. a raw signature through the engine, verified with the certificate's key
echo "payload" > data.txt
openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "pkcs11:token=demo;object=rsa1;type=private" \
  -out data.sig data.txt || fail "openssl dgst -sign through the engine"
sw x509 -in root.pem -noout -pubkey > root.pub
sw dgst -sha256 -verify root.pub -signature data.sig data.txt || fail "signature does not verify"

# no PIN in the module's log
if grep -q -e "$USER_PIN" -e "$SO_PIN" module.log 2>/dev/null; then fail "a PIN appears in the log"; fi
echo "OK"
