#!/usr/bin/env bash
# The cdcp11 demo, on the bundled Azure emulator:
#   1. build the module and cdcctl; start the Key Vault / Entra ID / ARM emulator
#   2. configure a CDC group with cdcctl (Premium vault, mirror every generated key) and test it
#   3. initialise the group's token; generate an RSA and an EC key with pkcs11-tool
#   4. sign with each on the token and verify with the openssl CLI
#   5. cdcctl key list: both keys mirrored into Key Vault, with their Azure key ids
#   6. the vault signs a digest with its copy; openssl verifies it with the token's public key
#   7. a key made in Azure: cdcctl group sync brings it in; pkcs11-tool signs with it (in the vault)
# Demo PINs and the emulator's demo secret only; everything lives in ./demo-out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
PY=/usr/bin/python3

say "Building libcdcp11.so and cdcctl"
# The test command's OpenSSL build directory: what the demo builds, the tests reuse.
BUILD=build-openssl
[ -f $BUILD/build.ninja ] || meson setup $BUILD -Dcrypto_backend=openssl >/dev/null
meson compile -C $BUILD cdcp11 cdcctl >/dev/null
MODULE=$PWD/$BUILD/p11module/libcdcp11.so
CDCCTL=$PWD/$BUILD/tools/cdcctl/cdcctl

OUT=$PWD/demo-out
rm -rf "$OUT"
mkdir -p "$OUT"

say "Starting the Azure emulator (Key Vault, Entra ID, ARM) on loopback"
$PY tools/akv-emulator/akv-emulator --config tools/akv-emulator/demo-config.json --port 0 \
    --state "$OUT/emulator" > "$OUT/emulator.out" 2> "$OUT/emulator.log" &
EMU_PID=$!
trap 'kill $EMU_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$OUT/emulator.out" 2>/dev/null && break; sleep 0.1; done
cat "$OUT/emulator.out"
PORT=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$OUT/emulator.out")
CA=$(sed -n 's/.* ca=\(.*\)$/\1/p' "$OUT/emulator.out")
TENANT=7e57a000-0000-4000-8000-000000000001
CLIENT=c1e47000-0000-4000-8000-000000000001
SUBSCRIPTION=5ab5c000-0000-4000-8000-000000000001
DEMO_SECRET=demo-secret-not-real   # the emulator's demo application; not a real secret

export CDCP11_CONF=$OUT/cdcp11.json
say "Configuring CDC group 'demo' with cdcctl (the secret goes to a 0600 file, not the config)"
echo "$DEMO_SECRET" | $CDCCTL group add demo --description "Demo CDC group" \
    --tenant-id $TENANT --client-id $CLIENT --subscription-id $SUBSCRIPTION --secret-stdin \
    --ca-file "$CA" --connect-to "::127.0.0.1:$PORT" \
    --vault demo-premium --vault-type premium --mirror on_generate --mirror-mode sync
$CDCCTL group list
if $CDCCTL group --help | grep -q ' test '; then
  say "Testing the connection"
  $CDCCTL group test demo
fi

SO_PIN=demo-so-pin
USER_PIN=demo-user-pin
p11() { pkcs11-tool --module "$MODULE" "$@"; }

say "Initialising the token of group 'demo'"
p11 --init-token --label demo --so-pin "$SO_PIN" >/dev/null
p11 --login --login-type so --so-pin "$SO_PIN" --init-pin --pin "$USER_PIN" >/dev/null

say "Generating an RSA-2048 and an EC P-256 key pair with pkcs11-tool (mirrored as they are made)"
p11 --login --pin "$USER_PIN" --keypairgen --key-type rsa:2048 --label demo-rsa --id 01 >/dev/null
p11 --login --pin "$USER_PIN" --keypairgen --key-type EC:prime256v1 --label demo-ec --id 02 >/dev/null
p11 --login --pin "$USER_PIN" --list-objects --type privkey

say "Signing with each key on the token, verifying with the openssl CLI"
printf 'cdcp11 demo message\n' > "$OUT/message.txt"
p11 --login --pin "$USER_PIN" --sign --id 01 -m SHA256-RSA-PKCS -i "$OUT/message.txt" -o "$OUT/rsa.sig" 2>/dev/null
p11 --login --pin "$USER_PIN" --sign --id 02 -m ECDSA-SHA256 --signature-format openssl \
    -i "$OUT/message.txt" -o "$OUT/ec.sig" 2>/dev/null
p11 --read-object --type pubkey --id 01 -o "$OUT/rsa.der" 2>/dev/null
p11 --read-object --type pubkey --id 02 -o "$OUT/ec.der" 2>/dev/null
openssl pkey -pubin -inform DER -in "$OUT/rsa.der" -out "$OUT/rsa.pem"
openssl pkey -pubin -inform DER -in "$OUT/ec.der" -out "$OUT/ec.pem"
printf 'RSA signature: '; openssl dgst -sha256 -verify "$OUT/rsa.pem" -signature "$OUT/rsa.sig" "$OUT/message.txt"
printf 'EC signature:  '; openssl dgst -sha256 -verify "$OUT/ec.pem" -signature "$OUT/ec.sig" "$OUT/message.txt"

say "cdcctl key list: the token's keys and their copies in Key Vault"
DEMO_PIN=$USER_PIN $CDCCTL key list demo --pin-env DEMO_PIN
KID=$(DEMO_PIN=$USER_PIN $CDCCTL --json key list demo --pin-env DEMO_PIN |
      $PY -c 'import json,sys; print([k["azure_key_id"] for k in json.load(sys.stdin)["keys"] if k["label"]=="demo-rsa"][0])')

say "Key Vault signs a digest with its copy of demo-rsa; openssl verifies with the token's public key"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
curl_az() { curl -sS --cacert "$CA" --connect-to "::127.0.0.1:$PORT" "$@"; }
TOKEN=$(curl_az "https://login.microsoftonline.com/$TENANT/oauth2/v2.0/token" \
          --data-urlencode "client_id=$CLIENT" --data-urlencode "client_secret=$DEMO_SECRET" \
          --data-urlencode "scope=https://vault.azure.net/.default" --data-urlencode grant_type=client_credentials |
        $PY -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
DIGEST=$(openssl dgst -sha256 -binary "$OUT/message.txt" | b64url)
curl_az -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
    -d "{\"alg\":\"RS256\",\"value\":\"$DIGEST\"}" "$KID/sign?api-version=7.4" |
  $PY -c 'import base64,json,sys; v=json.load(sys.stdin)["value"]; sys.stdout.buffer.write(base64.urlsafe_b64decode(v+"="*(-len(v)%4)))' \
  > "$OUT/vault-rsa.sig"
echo "signed by $KID"
printf 'Vault signature, token public key: '
openssl dgst -sha256 -verify "$OUT/rsa.pem" -signature "$OUT/vault-rsa.sig" "$OUT/message.txt"

say "A key made in Azure: created in the vault, brought in by cdcctl group sync, used through the token"
VAULT=${KID%%/keys/*}
curl_az -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
    -d '{"kty":"EC-HSM","crv":"P-256","key_ops":["sign","verify"]}' \
    "$VAULT/keys/azure-made/create?api-version=7.4" >/dev/null
DEMO_PIN=$USER_PIN $CDCCTL group sync demo --pin-env DEMO_PIN
DEMO_PIN=$USER_PIN $CDCCTL key list demo --pin-env DEMO_PIN
# pkcs11-tool picks the key to sign with by --id alone (it ignores --label), so ask for the
# synced key's CKA_ID: sync derives it from the key's public key.
AZ_ID=$(DEMO_PIN=$USER_PIN $CDCCTL --json key list demo --pin-env DEMO_PIN |
        $PY -c 'import json,sys; print([k["id"] for k in json.load(sys.stdin)["keys"] if k["label"]=="azure-made"][0])')
echo "azure-made has CKA_ID $AZ_ID"
p11 --login --pin "$USER_PIN" --sign --id "$AZ_ID" -m ECDSA-SHA256 --signature-format openssl \
    -i "$OUT/message.txt" -o "$OUT/azure-made.sig" 2>/dev/null
p11 --read-object --type pubkey --id "$AZ_ID" -o "$OUT/azure-made.der" 2>/dev/null
openssl pkey -pubin -inform DER -in "$OUT/azure-made.der" -out "$OUT/azure-made.pem"
printf 'Signed in the vault through pkcs11-tool: '
openssl dgst -sha256 -verify "$OUT/azure-made.pem" -signature "$OUT/azure-made.sig" "$OUT/message.txt"

say "Done. Config: $CDCP11_CONF; token: $OUT/tokens/demo; emulator log: $OUT/emulator.log"
