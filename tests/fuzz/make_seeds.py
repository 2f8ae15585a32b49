#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/seeds/<target>/ (a few small,
valid inputs each, in the input format the target's comment describes). The files are committed;
run this again after changing a format: python3 tests/fuzz/make_seeds.py"""
import json
import os
import shutil
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
UID = "0123456789abcdef0123456789abcdef"


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record_file(name, payload):
    head = b"cdcR" + struct.pack("<IQ", 1, len(payload))
    crc = crc32c(payload, crc32c(name.encode(), crc32c(head)))
    return head + struct.pack("<I", crc) + payload


def attrs(pairs):
    out = struct.pack("<I", len(pairs))
    for t, v in pairs:
        out += struct.pack("<QI", t, len(v)) + v
    return out


def ulong(v):
    return struct.pack("<Q", v)


CKA = dict(CLASS=0x0, TOKEN=0x1, PRIVATE=0x2, LABEL=0x3, VALUE=0x11, KEY_TYPE=0x100, ID=0x102,
           SENSITIVE=0x103, SIGN=0x108, EC_PARAMS=0x180, VALUE_LEN=0x161, UNIQUE_ID=0x4)
P256 = bytes.fromhex("06082a8648ce3d030107")


def object_record(pairs, sealed=b""):
    a = attrs(pairs)
    return (b"CDCO" + bytes([1]) + bytes.fromhex("00112233445566778899aabbccddeeff") +
            struct.pack("<I", len(a)) + a + struct.pack("<I", len(sealed)) + sealed)


def record_seeds():
    aes = object_record([(CKA["CLASS"], ulong(4)), (CKA["KEY_TYPE"], ulong(0x1F)), (CKA["TOKEN"], b"\1"),
                         (CKA["LABEL"], b"aes"), (CKA["VALUE_LEN"], ulong(32)), (CKA["UNIQUE_ID"], UID.encode())],
                        sealed=bytes(range(60)))
    ec_pub = object_record([(CKA["CLASS"], ulong(2)), (CKA["KEY_TYPE"], ulong(3)), (CKA["TOKEN"], b"\1"),
                            (CKA["EC_PARAMS"], P256), (CKA["ID"], b"\1")])
    secrets = attrs([(CKA["VALUE"], bytes(32))])
    lock = bytearray(8 + 256 * 40)
    lock[0:8] = struct.pack("<Q", 3)
    for g, name in ((1, UID), (2, "meta"), (3, UID)):
        off = 8 + (g % 256) * 40
        lock[off:off + 8] = struct.pack("<Q", g)
        lock[off + 8:off + 8 + len(name)] = name.encode()
    return {
        "envelope-aes": b"E" + record_file(UID, aes),
        "envelope-empty": b"E" + record_file(UID, b""),
        "token-record-aes": b"T" + aes,
        "token-record-ec-public": b"T" + ec_pub,
        "secrets-value": b"S" + secrets,
        "lock-three-changes": b"L" + bytes(lock),
        "attributes": b"A" + attrs([(CKA["CLASS"], ulong(0)), (CKA["LABEL"], b"data")]),
    }


def meta_seeds():
    slot = {"salt": "00" * 16, "scrypt_log2_n": 10, "nonce": "11" * 12, "wrapped_token_key": "22" * 48,
            "failures": 0}
    base = {"format": 1, "token_id": "00112233445566778899aabbccddeeff", "label": "fuzz", "so": slot}
    return {
        "user-pin": json.dumps(dict(base, user=dict(slot, failures=2))).encode(),
        "no-user-pin": json.dumps(dict(base, user=None)).encode(),
        "default-cost": json.dumps(dict(base, so=dict(slot, scrypt_log2_n=15), user=None)).encode(),
    }


def config_seeds():
    az = {"cloud": "global", "tenant_id": "7e57a000-0000-4000-8000-000000000001",
          "client_id": "c1e47000-0000-4000-8000-000000000001",
          "subscription_id": "5ab5c000-0000-4000-8000-000000000001",
          "credential": {"type": "secret", "secret_file": "secret"},
          "tls": {"validate_host": True, "ca_file": "ca.pem", "connect_to": ["::127.0.0.1:8443"],
                  "connect_timeout_s": 5, "total_timeout_s": 30, "proxy": "http://proxy:3128"},
          "vault": {"name": "demo-premium", "type": "premium"}}
    cert = dict(az, cloud={"authority_host": "login.example", "arm_endpoint": "https://arm.example",
                           "vault_suffix": ".vault.example", "mhsm_suffix": ".mhsm.example"},
                credential={"type": "certificate", "certificate_file": "app.pem", "key_file": "app.key"},
                vault={"name": "demo-mhsm", "type": "managed_hsm"})
    group = {"name": "payments", "description": "d", "slot_id": 7,
             "token": {"backend": "soft", "dir": "tokens/payments", "max_pin_retries": 10, "kdf_scrypt_log2_n": 15}}
    return {
        "minimal": json.dumps({"version": 1, "groups": [{"name": "a", "token": {"dir": "t"}}]}).encode(),
        "azure-secret": json.dumps({"version": 1, "groups": [dict(group, azure=az, mirror={
            "trigger": "on_generate", "mode": "async", "on_destroy": "delete", "recover_soft_deleted": True})]}).encode(),
        "azure-certificate": json.dumps({"version": 1, "groups": [dict(group, azure=cert), dict(
            group, name="second", slot_id=8, azure=dict(az, credential={"secret_env": "SECRET"}))]}).encode(),
    }


def b64u(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def azure_keys_seeds():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    attributes = {"enabled": True, "exportable": False, "created": 1700000000, "updated": 1700000000,
                  "recoverableDays": 90, "recoveryLevel": "Recoverable+Purgeable"}
    kid = "https://demo-premium.vault.azure.net/keys/%s/0123456789abcdef0123456789abcdef"
    rsa_b = {"key": {"kid": kid % "rsa", "kty": "RSA-HSM", "key_ops": ["sign", "verify", "wrapKey", "unwrapKey"],
                     "n": b64u(rsa_key.n.to_bytes(256, "big")), "e": b64u(rsa_key.e.to_bytes(3, "big"))},
             "attributes": attributes, "tags": {"cdcp11-uid": UID}}
    ec_b = {"key": {"kid": kid % "ec", "kty": "EC-HSM", "key_ops": ["sign", "verify"], "crv": "P-256",
                    "x": b64u(ec_key.x.to_bytes(32, "big")), "y": b64u(ec_key.y.to_bytes(32, "big"))},
            "attributes": attributes, "managed": False}
    deleted = dict(ec_b, recoveryId="https://demo-premium.vault.azure.net/deletedkeys/ec",
                   deletedDate=1700000100, scheduledPurgeDate=1707776100)
    page = {"value": [{"kid": "https://demo-premium.vault.azure.net/keys/rsa", "attributes": attributes,
                       "tags": {"cdcp11-uid": UID}},
                      {"kid": "https://demo-premium.vault.azure.net/deletedkeys/ec", "attributes": attributes,
                       "recoveryId": "https://demo-premium.vault.azure.net/deletedkeys/ec"}],
            "nextLink": "https://demo-premium.vault.azure.net/keys?api-version=7.4&$skiptoken=abc"}
    return {"rsa-bundle": json.dumps(rsa_b).encode(), "ec-bundle": json.dumps(ec_b).encode(),
            "deleted-bundle": json.dumps(deleted).encode(), "list-page": json.dumps(page).encode()}


def response(status_index, headers, body):
    out = bytes([status_index, len(headers)])
    names = ["retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-ms-request-id", "www-authenticate",
             "content-type"]
    for n, v in headers:
        out += bytes([names.index(n), len(v)]) + v.encode()
    return out + body.encode()


def azure_error_seeds():
    # status index into {400, 401, 403, 404, 405, 409, 413, 429, 500, 502, 503, 504}
    rbac = {"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.\r\n"
                      "Action: 'Microsoft.KeyVault/vaults/keys/read'\r\n", "innererror": {"code": "ForbiddenByRbac"}}}
    policy = {"error": {"code": "Forbidden", "message": "The user, group or application does not have keys get "
                        "permission on key vault 'demo'", "innererror": {"code": "AccessDenied"}}}
    entra = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
             "Trace ID: x", "error_codes": [7000215], "trace_id": "t"}
    return {
        "forbidden-rbac": response(2, [("x-ms-request-id", "r1")], json.dumps(rbac)),
        "forbidden-access-policy": response(2, [], json.dumps(policy)),
        "throttled": response(7, [("retry-after", "3"), ("x-ms-retry-after-ms", "2500")],
                              '{"error":{"code":"Throttled","message":"Request was not processed"}}'),
        "entra-bad-secret": response(0, [], json.dumps(entra)),
        "not-found": response(3, [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
                              '{"error":{"code":"KeyNotFound","message":"A key with (name/id) k was not found"}}'),
    }


def azure_token_seeds():
    claims = {"aud": "https://vault.azure.net", "tid": "7e57a000-0000-4000-8000-000000000001",
              "oid": "0b1ec700-0000-4000-8000-000000000001", "appid": "c1e47000-0000-4000-8000-000000000001",
              "exp": 1700003600}
    jwt = "eyJhbGciOiJSUzI1NiJ9." + b64u(json.dumps(claims).encode()) + ".c2ln"
    ok = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": jwt}
    err = {"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found",
           "error_codes": [700016]}
    return {"token": b"\0" + json.dumps(ok).encode(),
            "token-expires-in-string": b"\0" + json.dumps(dict(ok, expires_in="3599")).encode(),
            "entra-error": b"\1" + json.dumps(err).encode(),
            "claims": b"\xf0" + json.dumps(claims).encode()}


def azure_challenge_seeds():
    return {
        "vault": b'Bearer authorization="https://login.windows.net/7e57a000-0000-4000-8000-000000000001", '
                 b'resource="https://vault.azure.net"',
        "mhsm-scope": b'Bearer authorization_uri="https://login.microsoftonline.com/t/oauth2", '
                      b'scope="https://managedhsm.azure.net/.default"',
        "unquoted": b"Bearer authorization=https://login.windows.net/t resource=https://vault.azure.net",
    }


# p11_template: kTypes of fuzz_p11_template.cpp, in its order.
TYPES = ("CLASS TOKEN PRIVATE LABEL APPLICATION VALUE OBJECT_ID CERTIFICATE_TYPE ISSUER SERIAL_NUMBER TRUSTED "
         "CERTIFICATE_CATEGORY CHECK_VALUE KEY_TYPE SUBJECT ID SENSITIVE ENCRYPT DECRYPT WRAP UNWRAP SIGN "
         "SIGN_RECOVER VERIFY VERIFY_RECOVER DERIVE START_DATE END_DATE MODULUS MODULUS_BITS PUBLIC_EXPONENT "
         "PRIVATE_EXPONENT PRIME_1 PRIME_2 EXPONENT_1 EXPONENT_2 COEFFICIENT PRIME SUBPRIME BASE VALUE_BITS "
         "VALUE_LEN EXTRACTABLE LOCAL NEVER_EXTRACTABLE ALWAYS_SENSITIVE KEY_GEN_MECHANISM MODIFIABLE COPYABLE "
         "DESTROYABLE EC_PARAMS EC_POINT ALWAYS_AUTHENTICATE WRAP_WITH_TRUSTED WRAP_TEMPLATE UNWRAP_TEMPLATE "
         "DERIVE_TEMPLATE ALLOWED_MECHANISMS UNIQUE_ID PUBLIC_KEY_INFO HW_FEATURE_TYPE MECHANISM_TYPE CDC_MIRROR "
         "CDC_AZURE_KEY_NAME CDC_MIRROR_STATE CDC_AZURE_KEY_ID CDC_MIRROR_ERROR CDC_ORIGIN CDC_CLOUD_NATIVE").split()


def tmpl(entries):
    out = bytes([len(entries)])
    for name, value in entries:
        out += bytes([TYPES.index(name)])
        if value is True or value is False:
            out += bytes([0xF3 if value else 0xF4])
        elif isinstance(value, int):
            out += bytes([0xF2, value])
        elif isinstance(value, list):
            out += bytes([0xF1]) + tmpl(value)
        elif len(value) < 0xF0:
            out += bytes([len(value)]) + value
        else:
            out += bytes([0xF5]) + struct.pack("<H", len(value)) + value
    return out


def query(entries, target):
    out = bytes([len(entries)])
    for name, size in entries:
        out += bytes([TYPES.index(name), 0xFF if size is None else size])
    return out + bytes([target])


def p11_template_seeds():
    eck = ec.generate_private_key(ec.SECP256R1())
    point = eck.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    d = eck.private_numbers().private_value.to_bytes(32, "big")
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rn = rk.private_numbers()

    def be(v, n=None):
        return v.to_bytes(n or (v.bit_length() + 7) // 8, "big")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    now = datetime.datetime(2024, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(eck.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .sign(eck, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    sym = [("CLASS", 4), ("KEY_TYPE", 0x1F), ("TOKEN", True), ("VALUE", bytes(range(16))), ("SENSITIVE", True),
           ("EXTRACTABLE", False), ("ENCRYPT", True), ("LABEL", b"aes")]
    return {
        "data-object": tmpl([("CLASS", 0), ("TOKEN", False), ("LABEL", b"d"), ("APPLICATION", b"app"),
                             ("VALUE", b"hello")]) + query([("CLASS", 8), ("VALUE", 16), ("LABEL", None),
                                                            ("VALUE", 2)], 0),
        "aes-key": tmpl(sym) + query([("VALUE", 32), ("VALUE_LEN", 8), ("CHECK_VALUE", 3)], 1),
        "wrap-template": tmpl([("CLASS", 4), ("KEY_TYPE", 0x10), ("VALUE", bytes(20)), ("WRAP", True),
                               ("WRAP_TEMPLATE", [("CLASS", 4), ("KEY_TYPE", 0x1F)])]) +
        query([("WRAP_TEMPLATE", None), ("WRAP_TEMPLATE", 64)], 0),
        "ec-public": tmpl([("CLASS", 2), ("KEY_TYPE", 3), ("EC_PARAMS", P256),
                           ("EC_POINT", bytes([4, len(point)]) + point), ("VERIFY", True), ("TRUSTED", True)]) +
        query([("EC_POINT", 80), ("PUBLIC_KEY_INFO", 100), ("EC_PARAMS", 5)], 2),
        "ec-private": tmpl([("CLASS", 3), ("KEY_TYPE", 3), ("EC_PARAMS", P256), ("VALUE", d), ("SIGN", True),
                            ("TOKEN", True), ("SENSITIVE", False)]) + query([("VALUE", 32), ("PUBLIC_KEY_INFO", 200)], 1),
        "rsa-private": tmpl([("CLASS", 3), ("KEY_TYPE", 0), ("MODULUS", be(rn.public_numbers.n)),
                             ("PUBLIC_EXPONENT", be(rn.public_numbers.e)), ("PRIVATE_EXPONENT", be(rn.d)),
                             ("PRIME_1", be(rn.p)), ("PRIME_2", be(rn.q)), ("EXPONENT_1", be(rn.dmp1)),
                             ("EXPONENT_2", be(rn.dmq1)), ("COEFFICIENT", be(rn.iqmp)), ("SIGN", True)]) +
        query([("MODULUS", 255), ("MODULUS_BITS", 8), ("PRIVATE_EXPONENT", 254)], 1),
        "certificate": tmpl([("CLASS", 1), ("CERTIFICATE_TYPE", 0), ("VALUE", der),
                             ("SUBJECT", name.public_bytes()), ("TOKEN", True)]) +
        query([("VALUE", 200), ("CERTIFICATE_CATEGORY", 8), ("CHECK_VALUE", None)], 0),
        "vendor-attributes": tmpl(sym[:4] + [("CDC_MIRROR", True), ("CDC_AZURE_KEY_NAME", b"k1")]) +
        query([("CDC_MIRROR_STATE", 8), ("CDC_AZURE_KEY_ID", 100), ("CDC_MIRROR_ERROR", None)], 1),
    }


def main():
    for target, seeds in (("record", record_seeds()), ("meta", meta_seeds()), ("config", config_seeds()),
                          ("azure_keys", azure_keys_seeds()), ("azure_error", azure_error_seeds()),
                          ("azure_token", azure_token_seeds()), ("azure_challenge", azure_challenge_seeds()),
                          ("p11_template", p11_template_seeds())):
        d = os.path.join(HERE, "seeds", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
