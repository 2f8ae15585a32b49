"""Azure-resident keys against the bundled emulator: C_CDC_SyncKeys / `cdcctl group sync` bring keys
made in Azure into the token as public + private key objects whose private key operations go to
Key Vault; sync links local keys already in the vault; cloud-native generation
(CKA_CDC_CLOUD_NATIVE) makes the key in the vault itself. Every signature made through the token
is verified here with `cryptography` and the public key read from the token, and the emulator's
log proves the private key operation ran in the vault."""
import ctypes
import glob
import hashlib
import json
import os
import pty
import re
import struct
import subprocess
import sys
import time
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402
from mirrorhelpers import (CDC_SYNC_RESULT, CKA_CDC_AZURE_KEY_ID, CKA_CDC_CLOUD_NATIVE, CKA_CDC_MIRROR_STATE,  # noqa: E402
                           CKA_CDC_ORIGIN, MIRRORED, SECRET, SUBSCRIPTION, TENANT, b64u, b64u_dec, vendor)
from mirrorhelpers import SECRET_APP as CLIENT  # noqa: E402

ORIGIN_LOCAL, ORIGIN_AZURE = 0, 1
CDCCTL = os.environ.get("CDCCTL", os.path.join(os.environ.get("CDCP11_BUILD", ""), "tools", "cdcctl", "cdcctl"))

# (group, vault, type, slot id, trigger)
GROUPS = [("sync", "demo-premium", "premium", 21, "on_request"),
          ("cn-std", "demo-standard", "standard", 22, "on_request"),
          ("cn-hsm", "demo-protected", "premium", 23, "on_generate"),
          ("cn-mhsm", "demo-mhsm", "managed_hsm", 24, "on_request")]


def der_ecdsa(raw):
    n = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big"))


class CloudKeys(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[(g, {"slot_id": sid}) for g, _, _, sid, _ in GROUPS], log_level="info")
        secret = cls.tok.path("secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET)
        for g, (_, vault, vtype, _, trigger) in zip(cls.tok.groups, GROUPS):
            g["azure"] = {"tenant_id": TENANT, "client_id": CLIENT, "subscription_id": SUBSCRIPTION,
                          "credential": {"type": "secret", "secret_file": secret},
                          "tls": {"ca_file": cls.emu.ca, "connect_to": ["::127.0.0.1:%d" % cls.emu.port]},
                          "vault": {"name": vault, "type": vtype}}
            g["mirror"] = {"trigger": trigger, "mode": "sync"}
        # A rotation period: cdcctl key list must still promise none for the Azure-resident keys.
        cls.tok.groups[0]["mirror"]["rotation"] = {"every_days": 30}
        cls.tok.write_conf()
        for name, *_ in GROUPS:
            cls.tok.init(name)
        cls.lib = h.load_lib(cls.tok)
        cls.P = h.pykcs11()
        cls.fl = vendor()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tok.cleanup()

    # ------------------------------------------------------------ helpers

    def session(self, group, rw=True, login=True):
        flags = self.P.CKF_SERIAL_SESSION | (self.P.CKF_RW_SESSION if rw else 0)
        s = self.lib.openSession(h.slot_of(self.lib, group), flags)
        if login:
            s.login(h.USER_PIN)
        self.addCleanup(s.closeSession)
        return s

    def sync(self, s):
        res = CDC_SYNC_RESULT()
        rv = self.fl.sync_keys(h.sh(s), ctypes.byref(res))
        return rv, {n: getattr(res, n) for n, _ in CDC_SYNC_RESULT._fields_}

    def sync_ok(self, s):
        rv, res = self.sync(s)
        self.assertEqual(rv, 0, self.tok.read_log()[-2000:])
        return res

    def vault_url(self, vault):
        return self.emu.vault_url(vault, hsm=vault.endswith("mhsm"))

    def rest(self, method, url, body=None):
        resource = "https://managedhsm.azure.net" if ".managedhsm." in url else "https://vault.azure.net"
        r = self.emu.rest(method, url, token=self.emu.token(resource=resource), body=body)
        self.assertLess(r.status_code, 300, r.text)
        return r.json() if r.text else None

    def create_in_vault(self, vault, name, **body):
        return self.rest("POST", "%s/keys/%s/create" % (self.vault_url(vault), name), body)

    def objs(self, s, cls, label):
        return s.findObjects([(self.P.CKA_CLASS, cls), (self.P.CKA_LABEL, label)])

    def one(self, s, cls, label):
        o = self.objs(s, cls, label)
        self.assertEqual(len(o), 1, "one %s labelled %s" % (cls, label))
        return o[0]

    def raw(self, s, obj, t):
        return bytes(s.getAttributeValue(obj, [t], allAsBinary=True)[0])

    def ulong(self, s, obj, t):
        return struct.unpack("<Q", self.raw(s, obj, t))[0]

    def rsa_public(self, s, pub):
        n = int.from_bytes(self.raw(s, pub, self.P.CKA_MODULUS), "big")
        e = int.from_bytes(self.raw(s, pub, self.P.CKA_PUBLIC_EXPONENT), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()

    def ec_public(self, s, pub, curve):
        point = self.raw(s, pub, self.P.CKA_EC_POINT)
        point = point[3:] if point[1] == 0x81 else point[2:]
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)

    def assert_in_vault_log(self, vault, name, op):
        hits = re.findall(r"POST %s\.vault\.azure\.net/keys/%s/[0-9a-f]{32}/%s\b" % (vault, name, op), self.emu.log())
        self.assertTrue(hits, "no %s of %s in the emulator log" % (op, name))
        return len(hits)

    def assert_resident(self, s, priv, kid_prefix):
        P = self.P
        self.assertEqual(self.ulong(s, priv, CKA_CDC_ORIGIN), ORIGIN_AZURE)
        self.assertEqual(self.ulong(s, priv, CKA_CDC_MIRROR_STATE), MIRRORED)
        kid = self.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode()
        self.assertTrue(kid.startswith(kid_prefix), kid)
        attrs = s.getAttributeValue(priv, [P.CKA_SENSITIVE, P.CKA_EXTRACTABLE, P.CKA_ALWAYS_SENSITIVE,
                                           P.CKA_NEVER_EXTRACTABLE, P.CKA_TOKEN, P.CKA_PRIVATE])
        self.assertEqual([bool(a) for a in attrs], [True, False, True, True, True, True])
        return kid

    # ------------------------------------------------------------ sync

    def test_sync_brings_in_azure_made_keys_that_sign_decrypt_and_unwrap_in_the_vault(self):
        P = self.P
        ops = ["sign", "verify", "decrypt", "encrypt", "unwrapKey", "wrapKey"]
        rsa_b = self.create_in_vault("demo-premium", "native-rsa", kty="RSA-HSM", key_size=2048, key_ops=ops)
        ec_b = self.create_in_vault("demo-premium", "native-p384", kty="EC-HSM", crv="P-384",
                                    key_ops=["sign", "verify"])
        s = self.session("sync")
        res = self.sync_ok(s)
        self.assertEqual((res["added"], res["linked"], res["skipped"]), (2, 0, 0), res)

        # RSA: public + private objects; the private one is Azure-resident and never extractable.
        priv = self.one(s, P.CKO_PRIVATE_KEY, "native-rsa")
        pub = self.one(s, P.CKO_PUBLIC_KEY, "native-rsa")
        self.assertEqual(self.assert_resident(s, priv, self.vault_url("demo-premium") + "/keys/native-rsa/"),
                         rsa_b["key"]["kid"])
        self.assertEqual(self.raw(s, pub, P.CKA_ID), self.raw(s, priv, P.CKA_ID))
        self.assertEqual(self.raw(s, pub, P.CKA_MODULUS), b64u_dec(rsa_b["key"]["n"]).lstrip(b"\0"))
        self.assertEqual(s.getAttributeValue(priv, [P.CKA_PRIVATE_EXPONENT]), [None])  # CKR_ATTRIBUTE_SENSITIVE

        # C_Sign (hash here, sign there) verifies with the token's public key; so does C_Verify.
        data = b"signed by a key that lives in Key Vault"
        before = self.emu.log().count("/keys/native-rsa/")
        sig = bytes(s.sign(priv, data, P.Mechanism(P.CKM_SHA256_RSA_PKCS)))
        self.rsa_public(s, pub).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        self.assertTrue(s.verify(pub, data, sig, P.Mechanism(P.CKM_SHA256_RSA_PKCS)))
        self.assertGreater(self.emu.log().count("/keys/native-rsa/"), before)
        self.assert_in_vault_log("demo-premium", "native-rsa", "sign")
        # CKM_RSA_PKCS over a DigestInfo: the vault's RS384.
        d384 = hashlib.sha384(data).digest()
        info = bytes.fromhex("3041300d060960864801650304020205000430") + d384
        sig = bytes(s.sign(priv, info, P.Mechanism(P.CKM_RSA_PKCS)))
        self.rsa_public(s, pub).verify(sig, d384, padding.PKCS1v15(), utils.Prehashed(hashes.SHA384()))
        # RSA-PSS with the salt Key Vault uses.
        pss = P.RSA_PSS_Mechanism(P.CKM_SHA256_RSA_PKCS_PSS, P.CKM_SHA256, P.CKG_MGF1_SHA256, 32)
        sig = bytes(s.sign(priv, data, pss))
        self.rsa_public(s, pub).verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())

        # C_Decrypt with RSA-OAEP-256 and PKCS#1 v1.5.
        secret = os.urandom(32)
        ct = self.rsa_public(s, pub).encrypt(secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        oaep = P.RSAOAEPMechanism(P.CKM_SHA256, P.CKG_MGF1_SHA256)
        self.assertEqual(bytes(s.decrypt(priv, ct, oaep)), secret)
        ct = self.rsa_public(s, pub).encrypt(secret, padding.PKCS1v15())
        self.assertEqual(bytes(s.decrypt(priv, ct, P.Mechanism(P.CKM_RSA_PKCS))), secret)
        self.assert_in_vault_log("demo-premium", "native-rsa", "decrypt")

        # C_UnwrapKey: the vault unwraps, the AES key becomes a token object that works here.
        aes = os.urandom(32)
        wrapped = self.rsa_public(s, pub).encrypt(aes, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
        k = s.unwrapKey(priv, wrapped, [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                        (P.CKA_TOKEN, False), (P.CKA_SENSITIVE, False), (P.CKA_EXTRACTABLE, True),
                                        (P.CKA_ENCRYPT, True)],
                        P.RSAOAEPMechanism(P.CKM_SHA_1, P.CKG_MGF1_SHA1))
        self.assertEqual(bytes(s.getAttributeValue(k, [P.CKA_VALUE])[0]), aes)
        self.assert_in_vault_log("demo-premium", "native-rsa", "unwrapkey")

        # EC P-384: ES384 from the vault is r||s, already PKCS#11's format.
        ec_priv = self.one(s, P.CKO_PRIVATE_KEY, "native-p384")
        ec_pub = self.one(s, P.CKO_PUBLIC_KEY, "native-p384")
        self.assertEqual(self.assert_resident(s, ec_priv, self.vault_url("demo-premium") + "/keys/native-p384/"),
                         ec_b["key"]["kid"])
        self.assertEqual(s.getAttributeValue(ec_priv, [P.CKA_DECRYPT])[0], False)  # key_ops has no decrypt
        sig = bytes(s.sign(ec_priv, data, P.Mechanism(P.CKM_ECDSA_SHA384)))
        self.assertEqual(len(sig), 96)
        self.ec_public(s, ec_pub, ec.SECP384R1()).verify(der_ecdsa(sig), data, ec.ECDSA(hashes.SHA384()))
        sig = bytes(s.sign(ec_priv, hashlib.sha384(data).digest(), P.Mechanism(P.CKM_ECDSA)))
        self.ec_public(s, ec_pub, ec.SECP384R1()).verify(der_ecdsa(sig), data, ec.ECDSA(hashes.SHA384()))
        self.assert_in_vault_log("demo-premium", "native-p384", "sign")

        # What the vault cannot do is refused precisely, before any request.
        n = self.emu.log().count("/keys/native-p384/")
        for mech, want in ((P.Mechanism(P.CKM_ECDSA_SHA256), P.CKR_MECHANISM_INVALID),):
            with self.assertRaises(P.PyKCS11Error) as cm:
                s.sign(ec_priv, data, mech)
            self.assertEqual(cm.exception.value, want)
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.sign(ec_priv, b"\1" * 32, P.Mechanism(P.CKM_ECDSA))  # a SHA-256-sized digest for ES384
        self.assertEqual(cm.exception.value, P.CKR_DATA_LEN_RANGE)
        self.assertEqual(self.emu.log().count("/keys/native-p384/"), n)
        self.assertIn("Key Vault signs a P-384 key with SHA-384 only", self.tok.read_log())
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.decrypt(ec_priv, b"x" * 10, P.Mechanism(P.CKM_RSA_PKCS))
        self.assertIn(cm.exception.value, (P.CKR_KEY_FUNCTION_NOT_PERMITTED, P.CKR_KEY_TYPE_INCONSISTENT))

        # There is nothing to mirror: the vendor call says so.
        self.assertEqual(self.fl.mirror_key(h.sh(s), priv.value()), P.CKR_KEY_FUNCTION_NOT_PERMITTED)

        # A second sync changes nothing; a new version in the vault is followed; a key deleted
        # there leaves the token.
        res = self.sync_ok(s)
        self.assertEqual((res["added"], res["updated"], res["removed"], res["linked"]), (0, 0, 0, 0), res)
        self.assertGreaterEqual(res["unchanged"], 2)
        rsa_v2 = self.create_in_vault("demo-premium", "native-rsa", kty="RSA-HSM", key_size=2048, key_ops=ops)
        self.rest("DELETE", "%s/keys/native-p384" % self.vault_url("demo-premium"))
        res = self.sync_ok(s)
        self.assertEqual((res["updated"], res["removed"], res["added"]), (1, 1, 0), res)
        priv = self.one(s, P.CKO_PRIVATE_KEY, "native-rsa")
        pub = self.one(s, P.CKO_PUBLIC_KEY, "native-rsa")
        self.assertEqual(self.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode(), rsa_v2["key"]["kid"])
        self.assertEqual(self.raw(s, pub, P.CKA_MODULUS), b64u_dec(rsa_v2["key"]["n"]).lstrip(b"\0"))
        sig = bytes(s.sign(priv, data, P.Mechanism(P.CKM_SHA256_RSA_PKCS)))
        self.rsa_public(s, pub).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        self.assertEqual(self.objs(s, P.CKO_PRIVATE_KEY, "native-p384"), [])
        self.assertEqual(self.objs(s, P.CKO_PUBLIC_KEY, "native-p384"), [])

    def test_an_azure_resident_secp256k1_key_signs_in_the_vault_with_es256k(self):
        P = self.P
        b = self.create_in_vault("demo-protected", "native-k1", kty="EC-HSM", crv="P-256K", key_ops=["sign", "verify"])
        s = self.session("cn-hsm")
        self.sync_ok(s)
        priv = self.one(s, P.CKO_PRIVATE_KEY, "native-k1")
        pub = self.one(s, P.CKO_PUBLIC_KEY, "native-k1")
        self.assert_resident(s, priv, self.vault_url("demo-protected") + "/keys/native-k1/")
        self.assertEqual(self.raw(s, pub, P.CKA_EC_PARAMS), bytes.fromhex("06052b8104000a"))
        key = self.ec_public(s, pub, ec.SECP256K1())
        x = key.public_numbers().x.to_bytes(32, "big")
        self.assertEqual(x, b64u_dec(b["key"]["x"]))
        data = b"secp256k1 in the vault"
        sig = bytes(s.sign(priv, data, P.Mechanism(P.CKM_ECDSA_SHA256)))
        key.verify(der_ecdsa(sig), data, ec.ECDSA(hashes.SHA256()))
        digest = hashlib.sha256(data).digest()
        sig = bytes(s.sign(priv, digest, P.Mechanism(P.CKM_ECDSA)))
        key.verify(der_ecdsa(sig), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        self.assertEqual(self.assert_in_vault_log("demo-protected", "native-k1", "sign"), 2)
        # Key Vault signs secp256k1 with SHA-256 only.
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.sign(priv, data, P.Mechanism(P.CKM_ECDSA_SHA384))
        self.assertEqual(cm.exception.value, P.CKR_MECHANISM_INVALID)

    def test_sync_links_a_local_key_imported_by_hand_by_its_public_key(self):
        P = self.P
        s = self.session("sync")
        # A local key, not mirrored (the group mirrors on request only) ...
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.private_numbers()
        params = bytes.fromhex("06082a8648ce3d030107")
        priv = s.createObject([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                               (P.CKA_LABEL, "by-hand"), (P.CKA_EC_PARAMS, params), (P.CKA_SIGN, True),
                               (P.CKA_VALUE, nums.private_value.to_bytes(32, "big"))])
        self.assertEqual(self.ulong(s, priv, CKA_CDC_MIRROR_STATE), 0)
        # ... that an operator imported into the vault themselves (plain JWK import).
        x, y = nums.public_numbers.x.to_bytes(32, "big"), nums.public_numbers.y.to_bytes(32, "big")
        b = self.rest("PUT", "%s/keys/imported-by-hand" % self.vault_url("demo-premium"),
                      {"key": {"kty": "EC", "crv": "P-256", "x": b64u(x), "y": b64u(y),
                               "d": b64u(nums.private_value.to_bytes(32, "big")), "key_ops": ["sign", "verify"]}})
        res = self.sync_ok(s)
        self.assertGreaterEqual(res["linked"], 1, res)
        self.assertEqual(self.ulong(s, priv, CKA_CDC_MIRROR_STATE), MIRRORED)
        self.assertEqual(self.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode(), b["key"]["kid"])
        self.assertEqual(self.ulong(s, priv, CKA_CDC_ORIGIN), ORIGIN_LOCAL)  # the token still holds it
        self.assertEqual(self.objs(s, P.CKO_PRIVATE_KEY, "imported-by-hand"), [])  # not brought in twice
        self.assertRegex(self.tok.read_log(), "linked local key [0-9a-f]{32} to .*imported-by-hand.*same public key")
        self.assertEqual(self.sync_ok(s)["linked"], 0)  # already linked: unchanged

    def test_sync_needs_a_rw_user_session(self):
        P = self.P
        ro = self.session("sync", rw=False, login=False)
        self.assertEqual(self.sync(ro)[0], P.CKR_USER_NOT_LOGGED_IN)
        ro.login(h.USER_PIN)
        self.assertEqual(self.sync(ro)[0], P.CKR_SESSION_READ_ONLY)
        self.assertEqual(self.fl.sync_keys(0xdead, None), P.CKR_SESSION_HANDLE_INVALID)

    def test_a_vault_that_cannot_be_reached_is_a_device_error_and_a_disabled_key_fails_the_call(self):
        P = self.P
        self.create_in_vault("demo-premium", "flaky", kty="EC-HSM", crv="P-256", key_ops=["sign", "verify"])
        s = self.session("sync")
        self.sync_ok(s)
        priv = self.one(s, P.CKO_PRIVATE_KEY, "flaky")
        rule = self.emu.admin("POST", "/_admin/faults", {"match": {"service": "keyvault", "path": "/keys/flaky/*/sign"},
                                                         "action": "status", "status": 503})
        self.assertEqual(rule.status_code, 201, rule.text)
        try:
            with self.assertRaises(P.PyKCS11Error) as cm:
                s.sign(priv, b"data", P.Mechanism(P.CKM_ECDSA_SHA256))
            self.assertEqual(cm.exception.value, P.CKR_DEVICE_ERROR)
        finally:
            self.emu.admin("DELETE", "/_admin/faults/%d" % rule.json()["id"])
        self.assertEqual(len(bytes(s.sign(priv, b"data", P.Mechanism(P.CKM_ECDSA_SHA256)))), 64)
        self.rest("PATCH", "%s/keys/flaky" % self.vault_url("demo-premium"), {"attributes": {"enabled": False}})
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.sign(priv, b"data", P.Mechanism(P.CKM_ECDSA_SHA256))
        self.assertEqual(cm.exception.value, P.CKR_FUNCTION_FAILED)

    def test_cdcctl_group_sync_reports_counts_and_draws_progress_only_on_a_terminal(self):
        self.create_in_vault("demo-premium", "cli-one", kty="RSA-HSM", key_size=2048, key_ops=["sign", "verify"])
        self.create_in_vault("demo-premium", "cli-two", kty="EC-HSM", crv="P-256", key_ops=["sign", "verify"])
        env = self.tok.env(SYNC_PIN=h.USER_PIN)
        cmd = [CDCCTL, "--config", self.tok.conf, "group", "sync", "sync", "--pin-env", "SYNC_PIN"]
        p = subprocess.run([CDCCTL, "--config", self.tok.conf, "--json", "group", "sync", "sync", "--pin-env",
                            "SYNC_PIN"], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertGreaterEqual(out["added"], 2, out)
        self.assertEqual(out["skipped"], 0, out)
        self.assertNotIn("Syncing keys", p.stderr)
        # key list shows them as Azure-resident keys, not as vault keys without a local side.
        p = subprocess.run([CDCCTL, "--config", self.tok.conf, "--json", "key", "list", "sync", "--pin-env",
                            "SYNC_PIN"], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        listing = json.loads(p.stdout)
        one = [k for k in listing["keys"] if k["label"] == "cli-one"]
        self.assertEqual([(k["origin"], k["mirror"]) for k in one], [("azure", "mirrored")])
        self.assertTrue(one[0]["azure_key_id"].startswith(self.vault_url("demo-premium") + "/keys/cli-one/"))
        # A day on, a sync records when their versions were made (CKA_CDC_VERSION_SINCE), and the
        # group rotates every 30 days; Key Vault rotates them (the scheduler skips them), so the
        # listing promises no rotation of the token's.
        later = dict(env, CDCP11_TEST_NOW=str(int(time.time()) + 86400))
        for args in (["group", "sync", "sync"], ["--json", "key", "list", "sync"]):
            p = subprocess.run([CDCCTL, "--config", self.tok.conf, *args, "--pin-env", "SYNC_PIN"],
                               capture_output=True, text=True, env=later, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
        one = [k for k in json.loads(p.stdout)["keys"] if k["label"] == "cli-one"]
        self.assertEqual(one[0]["age_days"], 1, one[0])
        self.assertIsNone(one[0]["next_rotation"], one[0])
        self.assertEqual([r for r in listing["remote_only"] if "/keys/cli-" in r], [])
        # On a terminal: the bar, then the sentence.
        self.create_in_vault("demo-premium", "cli-three", kty="EC-HSM", crv="P-256", key_ops=["sign", "verify"])
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(CDCCTL, cmd, env)
        chunks = []
        while True:
            try:
                b = os.read(fd, 4096)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode(errors="replace")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertRegex(text, r"Syncing keys \[#+\] \d+/\d+")
        self.assertRegex(text, r"Group 'sync' synced: linked \d+, added 1, updated 0, removed \d+, unchanged \d+")
        # Bad input: an unknown group, precise and non-zero.
        p = subprocess.run([CDCCTL, "--config", self.tok.conf, "group", "sync", "nope", "--pin-env", "SYNC_PIN"],
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("nope", p.stderr)

    def test_cdcctl_delete_and_recover_of_an_azure_resident_key_keep_its_objects_pointing_at_the_vault(self):
        P = self.P
        self.create_in_vault("demo-premium", "resident-life", kty="EC-HSM", crv="P-256", key_ops=["sign", "verify"])
        s = self.session("sync")
        self.sync_ok(s)
        priv = self.one(s, P.CKO_PRIVATE_KEY, "resident-life")
        kid = self.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode()
        env = self.tok.env(SYNC_PIN=h.USER_PIN)
        cdcctl = [CDCCTL, "--config", self.tok.conf, "key"]
        p = subprocess.run(cdcctl + ["delete", "sync", "--label", "resident-life", "--pin-env", "SYNC_PIN"],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("lived only in the vault", p.stdout)
        self.assertEqual(self.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode(), kid)  # still names the vault key
        p = subprocess.run(cdcctl + ["recover", "sync", "--label", "resident-life", "--pin-env", "SYNC_PIN"],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.ulong(s, priv, CKA_CDC_MIRROR_STATE), MIRRORED)
        self.assertEqual(len(bytes(s.sign(priv, b"back", P.Mechanism(P.CKM_ECDSA_SHA256)))), 64)

    # ------------------------------------------------------------ cloud-native generation

    def cloud_native_pair(self, s, label, kind="rsa", extra_priv=(), extra_pub=(), **kw):
        P = self.P
        if kind == "rsa":
            pub_t = [(P.CKA_MODULUS_BITS, kw.get("bits", 2048)), (P.CKA_VERIFY, True)]
            mech = P.Mechanism(P.CKM_RSA_PKCS_KEY_PAIR_GEN)
        else:
            pub_t = [(P.CKA_EC_PARAMS, kw["params"]), (P.CKA_VERIFY, True)]
            mech = P.Mechanism(P.CKM_EC_KEY_PAIR_GEN)
        pub_t += [(P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_ID, b"\xc1")] + list(extra_pub)
        priv_t = [(P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_ID, b"\xc1"), (P.CKA_SIGN, True),
                  (CKA_CDC_CLOUD_NATIVE, [1])] + list(extra_priv)
        return s.generateKeyPair(pub_t, priv_t, mech)

    def test_cloud_native_rsa_in_an_hsm_vault_is_made_there_and_signs_there(self):
        P = self.P
        s = self.session("cn-hsm")
        pub, priv = self.cloud_native_pair(s, "cn-rsa", bits=3072)
        kid = self.assert_resident(s, priv, self.vault_url("demo-protected") + "/keys/cn-rsa/")
        b = self.rest("GET", kid)
        self.assertEqual((b["key"]["kty"], len(b64u_dec(b["key"]["n"]).lstrip(b"\0")) * 8), ("RSA-HSM", 3072))
        self.assertEqual(b["tags"]["cdcp11-origin"], "cloud-native")
        self.assertEqual(b["tags"]["cdcp11-id"], "c1")
        # Made with create, never imported; CKA_LOCAL and CKA_CDC_CLOUD_NATIVE say how it was made.
        self.assertIn("POST demo-protected.vault.azure.net/keys/cn-rsa/create", self.emu.log())
        self.assertNotIn("PUT demo-protected.vault.azure.net/keys/cn-rsa", self.emu.log())
        self.assertEqual(s.getAttributeValue(priv, [P.CKA_LOCAL])[0], True)
        self.assertEqual(self.raw(s, priv, CKA_CDC_CLOUD_NATIVE), b"\x01")
        self.assertEqual(self.raw(s, pub, P.CKA_MODULUS), b64u_dec(b["key"]["n"]).lstrip(b"\0"))
        data = b"made and used in the vault"
        sig = bytes(s.sign(priv, data, P.Mechanism(P.CKM_SHA512_RSA_PKCS)))
        self.rsa_public(s, pub).verify(sig, data, padding.PKCS1v15(), hashes.SHA512())
        # The group mirrors on generate, but there is nothing to mirror: no KEK, no import.
        self.assertNotIn("cdcp11-kek-", self.emu.log().split("keys/cn-rsa/create")[-1])

    def test_cloud_native_ec_in_a_standard_vault_is_a_software_key_and_pkcs11_tool_signs_with_it(self):
        s = self.session("cn-std")
        pub, priv = self.cloud_native_pair(s, "cn-ec", kind="ec", params=bytes.fromhex("06052b81040023"))  # P-521
        kid = self.assert_resident(s, priv, self.vault_url("demo-standard") + "/keys/cn-ec/")
        b = self.rest("GET", kid)
        self.assertEqual((b["key"]["kty"], b["key"]["crv"]), ("EC", "P-521"))
        # pkcs11-tool, a real client, signs through the module; openssl-free check with cryptography.
        data_path = self.tok.path("cn-data")
        with open(data_path, "wb") as f:
            f.write(b"pkcs11-tool data")
        sig_path = self.tok.path("cn-sig")
        idx = str([g for g, *_ in GROUPS].index("cn-std"))
        # pkcs11-tool chooses the signing key by --id only (OpenSC 0.23 ignores --label there): with
        # a second private key in the token, only --id makes it sign with the vault's key.
        self.tok.tool("--slot-index", idx, "--keypairgen", "--key-type", "EC:secp521r1", "--label", "cn-decoy",
                      "--id", "dec0", login=True)
        key_id = self.raw(s, priv, self.P.CKA_ID).hex()
        self.tok.tool("--slot-index", idx, "--sign", "--mechanism", "ECDSA-SHA512", "--id", key_id,
                      "--input-file", data_path, "--output-file", sig_path, login=True)
        with open(sig_path, "rb") as f:
            sig = f.read()
        self.assertEqual(len(sig), 132)
        self.ec_public(s, pub, ec.SECP521R1()).verify(der_ecdsa(sig), b"pkcs11-tool data", ec.ECDSA(hashes.SHA512()))
        self.assert_in_vault_log("demo-standard", "cn-ec", "sign")

    def test_openssl_through_the_libp11_engine_self_signs_with_a_cloud_native_key(self):
        engine = (glob.glob("/usr/lib/*/engines-3/pkcs11.so") or [None])[0]
        if not engine:
            self.skipTest("libengine-pkcs11-openssl not installed")
        self.cloud_native_pair(self.session("cn-hsm"), "cn-openssl", bits=2048)
        cnf = self.tok.path("openssl.cnf")
        with open(cnf, "w") as f:
            f.write("openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n"
                    "[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n"
                    "dynamic_path = %s\nMODULE_PATH = %s\nPIN = %s\ninit = 0\n"
                    "[req]\ndistinguished_name = dn\n[dn]\n" % (engine, h.MODULE, h.USER_PIN))
        cert = self.tok.path("cn-openssl.pem")
        h.run(["openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key",
               "pkcs11:token=cn-hsm;object=cn-openssl;type=private", "-subj", "/CN=signed in Key Vault",
               "-days", "1", "-sha256", "-out", cert], env=self.tok.env(OPENSSL_CONF=cnf))
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        h.run(["openssl", "verify", "-CAfile", cert, cert], env=env)
        self.assert_in_vault_log("demo-protected", "cn-openssl", "sign")

    def test_managed_hsm_cloud_native_ec_signs_there_and_sync_leaves_symmetric_keys_in_the_hsm(self):
        P = self.P
        self.create_in_vault("demo-mhsm", "hsm-aes", kty="oct-HSM", key_size=256, key_ops=["wrapKey", "unwrapKey"])
        s = self.session("cn-mhsm")
        pub, priv = self.cloud_native_pair(s, "cn-mhsm-ec", kind="ec", params=bytes.fromhex("06082a8648ce3d030107"))
        kid = self.assert_resident(s, priv, self.vault_url("demo-mhsm") + "/keys/cn-mhsm-ec/")
        self.assertEqual(self.rest("GET", kid)["key"]["kty"], "EC-HSM")
        sig = bytes(s.sign(priv, b"hsm pool", P.Mechanism(P.CKM_ECDSA_SHA256)))
        self.ec_public(s, pub, ec.SECP256R1()).verify(der_ecdsa(sig), b"hsm pool", ec.ECDSA(hashes.SHA256()))
        self.assertRegex(self.emu.log(), r"POST demo-mhsm\.managedhsm\.azure\.net/keys/cn-mhsm-ec/[0-9a-f]{32}/sign")
        res = self.sync_ok(s)
        self.assertEqual((res["skipped"], res["added"], res["unchanged"]), (1, 0, 1), res)
        self.assertEqual(self.objs(s, P.CKO_SECRET_KEY, "hsm-aes"), [])
        self.assertIn("oct-HSM keys stay in Key Vault", self.tok.read_log())

    def test_cloud_native_templates_the_vault_cannot_honour_are_refused_precisely(self):
        P = self.P
        s = self.session("cn-std")
        cases = [
            (dict(bits=1024), (), P.CKR_KEY_SIZE_RANGE),
            (dict(kind="ec", params=bytes.fromhex("06092b2403030208010107")), (), P.CKR_CURVE_NOT_SUPPORTED),  # brainpoolP256r1
            ({}, [(P.CKA_EXTRACTABLE, True)], P.CKR_TEMPLATE_INCONSISTENT),
            ({}, [(P.CKA_TOKEN, False)], P.CKR_TEMPLATE_INCONSISTENT),
            ({}, [(0x80000000 | 0x0CDC0000 | 2, list(b"bad name!"))], P.CKR_ATTRIBUTE_VALUE_INVALID),
        ]
        before = self.emu.log().count("/create")
        for kw, extra, want in cases:
            with self.subTest(kw=kw, extra=extra):
                with self.assertRaises(P.PyKCS11Error) as cm:
                    self.cloud_native_pair(s, "refused", extra_priv=extra, **kw)
                self.assertEqual(cm.exception.value, want)
        self.assertEqual(self.emu.log().count("/create"), before)
        self.assertEqual(self.objs(s, P.CKO_PRIVATE_KEY, "refused"), [])
        # On the public template the attribute has no meaning.
        with self.assertRaises(P.PyKCS11Error) as cm:
            self.cloud_native_pair(s, "refused", extra_pub=[(CKA_CDC_CLOUD_NATIVE, [1])])
        self.assertEqual(cm.exception.value, P.CKR_ATTRIBUTE_TYPE_INVALID)


if __name__ == "__main__":
    unittest.main()
