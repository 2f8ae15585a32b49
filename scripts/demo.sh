#!/usr/bin/env bash
# The cdcp11 demo: build the module, configure one CDC group, initialise its token, generate an
# RSA and an EC key with pkcs11-tool, sign with each, and verify the signatures with openssl.
# Demo PINs only; everything lives in ./demo-out (recreated on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building libcdcp11.so"
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
MODULE=$PWD/build/p11module/libcdcp11.so

OUT=$PWD/demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
cat > "$OUT/cdcp11.json" <<JSON
{
  "version": 1,
  "groups": [
    { "name": "demo", "description": "Demo CDC group",
      "token": { "backend": "soft", "dir": "tokens/demo" } }
  ]
}
JSON
export CDCP11_CONF=$OUT/cdcp11.json
SO_PIN=demo-so-pin
USER_PIN=demo-user-pin
p11() { pkcs11-tool --module "$MODULE" "$@"; }

say "Slots (one per CDC group)"
p11 --list-slots

say "Initialising the token of group 'demo'"
p11 --init-token --label demo --so-pin "$SO_PIN"
p11 --login --login-type so --so-pin "$SO_PIN" --init-pin --pin "$USER_PIN"

say "Generating an RSA-2048 and an EC P-256 key pair"
p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --label demo-rsa --id 01
p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --label demo-ec --id 02
p11 --login --pin "$USER_PIN" --list-objects

say "Signing with each key on the token, verifying with the openssl CLI"
printf 'cdcp11 demo message\n' > "$OUT/message.txt"
p11 --login --pin "$USER_PIN" --sign --id 01 -m SHA256-RSA-PKCS -i "$OUT/message.txt" -o "$OUT/rsa.sig"
p11 --login --pin "$USER_PIN" --sign --id 02 -m ECDSA-SHA256 --signature-format openssl \
    -i "$OUT/message.txt" -o "$OUT/ec.sig"
p11 --read-object --type pubkey --id 01 -o "$OUT/rsa.der"
p11 --read-object --type pubkey --id 02 -o "$OUT/ec.der"
openssl pkey -pubin -inform DER -in "$OUT/rsa.der" -out "$OUT/rsa.pem"
openssl pkey -pubin -inform DER -in "$OUT/ec.der" -out "$OUT/ec.pem"
printf 'RSA signature: '; openssl dgst -sha256 -verify "$OUT/rsa.pem" -signature "$OUT/rsa.sig" "$OUT/message.txt"
printf 'EC signature:  '; openssl dgst -sha256 -verify "$OUT/ec.pem" -signature "$OUT/ec.sig" "$OUT/message.txt"

say "Done. The token lives in $OUT/tokens/demo; the config is $CDCP11_CONF"
