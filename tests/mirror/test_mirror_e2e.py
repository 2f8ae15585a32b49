"""End to end: keys generated with pkcs11-tool / PyKCS11 on mirroring slots land in the bundled
Key Vault emulator through BYOK (Premium) or a plain JWK import (Standard), and the vault's copy
is proven to be the same key: a digest signed by the vault verifies with the public key read from
the token. Also: KEK clean-up and purge protection, async mode, resume, on_destroy, the vendor
interface and cdcctl. Every key type into every target (Managed HSM and AES included) is in
test_mirror_matrix."""
import ctypes
import hashlib
import json
import os
import struct
import time
import sys
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa: E402

TENANT = "7e57a000-0000-4000-8000-000000000001"
CLIENT = "c1e47000-0000-4000-8000-000000000001"
SUBSCRIPTION = "5ab5c000-0000-4000-8000-000000000001"
SECRET = "demo-secret-not-real"

from mirrorhelpers import (CKA_CDC_AZURE_KEY_ID, CKA_CDC_AZURE_KEY_NAME, CKA_CDC_MIRROR,  # noqa: E402
                           CKA_CDC_MIRROR_ERROR, CKA_CDC_MIRROR_STATE, FAILED, MIRRORED, b64u, b64u_dec,
                           vendor)

# (group, vault, type, slot id)
GROUPS = [("premium", "demo-premium", "premium", 11), ("standard", "demo-standard", "standard", 12),
          ("protected", "demo-protected", "premium", 14),
          ("async", "demo-premium", "premium", 15), ("stdstrict", "demo-standard", "standard", 16)]


def vendor_functions():
    fl = vendor()
    return fl.mirror_key, fl.get_status


class MirrorE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[(g, {"slot_id": sid}) for g, _, _, sid in GROUPS], log_level="info")
        secret = cls.tok.path("secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET)
        for g, (name, vault, vtype, _) in zip(cls.tok.groups, GROUPS):
            g["azure"] = {"tenant_id": TENANT, "client_id": CLIENT, "subscription_id": SUBSCRIPTION,
                          "credential": {"type": "secret", "secret_file": secret},
                          "tls": {"ca_file": cls.emu.ca, "connect_to": ["::127.0.0.1:%d" % cls.emu.port]},
                          "vault": {"name": vault, "type": vtype}}
            g["mirror"] = {"trigger": "on_generate", "mode": "sync"}
            if name == "async":
                g["mirror"] = {"trigger": "on_generate", "mode": "async", "on_destroy": "delete"}
            if name == "standard":
                g["mirror"]["allow_plain_export_of_non_extractable"] = True
            if name == "stdstrict":
                g["mirror"] = {"trigger": "on_request", "mode": "sync"}
        cls.tok.write_conf()
        for name, _, _, _ in GROUPS:
            cls.tok.init(name)
        cls.lib = h.load_lib(cls.tok)
        cls.P = h.pykcs11()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tok.cleanup()

    # ------------------------------------------------------------ helpers

    def session(self, group):
        s = self.lib.openSession(h.slot_of(self.lib, group), self.P.CKF_SERIAL_SESSION | self.P.CKF_RW_SESSION)
        s.login(h.USER_PIN)
        self.addCleanup(s.closeSession)
        return s

    def find(self, s, cls, label):
        objs = s.findObjects([(self.P.CKA_CLASS, cls), (self.P.CKA_LABEL, label)])
        self.assertEqual(len(objs), 1, "one %s object labelled %s" % (cls, label))
        return objs[0]

    def raw_attr(self, s, obj, t):
        return bytes(s.getAttributeValue(obj, [t], allAsBinary=True)[0])

    def mirror_state(self, s, obj):
        state = struct.unpack("<Q", self.raw_attr(s, obj, CKA_CDC_MIRROR_STATE))[0]
        kid = self.raw_attr(s, obj, CKA_CDC_AZURE_KEY_ID).decode()
        error = self.raw_attr(s, obj, CKA_CDC_MIRROR_ERROR).decode()
        return state, kid, error

    def keygen(self, group, *args):
        idx = [g for g, _, _, _ in GROUPS].index(group)
        return self.tok.tool("--slot-index", str(idx), *args, login=True, check=False)

    def vault_rest(self, method, url, body=None):
        resource = "https://managedhsm.azure.net" if ".managedhsm." in url else "https://vault.azure.net"
        return self.emu.rest(method, url, token=self.emu.token(resource=resource), body=body)

    def vault_keys(self, vault, deleted=False):
        url = "%s/%s" % (self.emu.vault_url(vault, hsm=vault.endswith("mhsm")), "deletedkeys" if deleted else "keys")
        r = self.vault_rest("GET", url)
        self.assertEqual(r.status_code, 200, r.text)
        return [item["kid" if not deleted else "recoveryId"].rsplit("/", 1)[-1] for item in r.json()["value"]]

    def assert_mirrored(self, s, priv, vault, name):
        state, kid, error = self.mirror_state(s, priv)
        self.assertEqual((state, error), (MIRRORED, ""))
        prefix = "%s/keys/%s/" % (self.emu.vault_url(vault, hsm=vault.endswith("mhsm")), name)
        self.assertTrue(kid.startswith(prefix), kid)
        return kid

    def bools(self, s, obj):
        ext, never = s.getAttributeValue(obj, [self.P.CKA_EXTRACTABLE, self.P.CKA_NEVER_EXTRACTABLE])
        return {"extractable": bool(ext), "never_extractable": bool(never)}

    def uid(self, s, obj):
        return self.raw_attr(s, obj, 0x4).decode()  # CKA_UNIQUE_ID

    def keks(self, vault, uid, deleted=False):
        """KEKs made for the key with this unique id (their names carry its first 16 hex chars)."""
        return [k for k in self.vault_keys(vault, deleted) if k.startswith("cdcp11-kek-" + uid[:16])]

    def assert_kek_gone(self, vault, uid):
        self.assertEqual(self.keks(vault, uid), [])

    # ------------------------------------------------------------ tests

    def test_ec_p256_into_premium_signs_in_the_vault_and_verifies_with_the_token_key(self):
        r = self.keygen("premium", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec-p256", "--id", "a1")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.session("premium")
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "ec-p256")
        kid = self.assert_mirrored(s, priv, "demo-premium", "ec-p256")
        # BYOK wrapped it inside the token to an HSM key: it never was extractable, and still is not.
        self.assertEqual(self.bools(s, priv), {"extractable": False, "never_extractable": True})
        bundle = self.vault_rest("GET", kid).json()
        self.assertEqual(bundle["key"]["kty"], "EC-HSM")
        self.assertEqual(bundle["key"]["crv"], "P-256")
        self.assertEqual(bundle["tags"]["cdcp11-id"], "a1")
        digest = hashlib.sha256(b"signed in the vault").digest()
        sig = self.vault_rest("POST", kid + "/sign", {"alg": "ES256", "value": b64u(digest)})
        self.assertEqual(sig.status_code, 200, sig.text)
        raw = b64u_dec(sig.json()["value"])
        pub = self.find(s, self.P.CKO_PUBLIC_KEY, "ec-p256")
        point = self.raw_attr(s, pub, self.P.CKA_EC_POINT)[2:]  # DER OCTET STRING of 65 bytes
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        der_sig = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        key.verify(der_sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        # The ephemeral KEK is gone: deleted and, soft delete being on with purge allowed, purged.
        uid = self.uid(s, priv)
        self.assert_kek_gone("demo-premium", uid)
        self.assertEqual(self.keks("demo-premium", uid, deleted=True), [])
        self.assertIn("DELETE demo-premium.vault.azure.net/deletedkeys/cdcp11-kek-" + uid[:16], self.emu.log())

    def test_standard_vault_gets_a_software_key_by_jwk_import(self):
        r = self.keygen("standard", "--keypairgen", "--key-type", "EC:secp384r1", "--label", "std-p384")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.session("standard")
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "std-p384")
        kid = self.assert_mirrored(s, priv, "demo-standard", "std-p384")
        # The group allows a plain export of non-extractable keys: this one was, and says so.
        self.assertEqual(self.bools(s, priv), {"extractable": False, "never_extractable": False})
        self.assertEqual(self.vault_rest("GET", kid).json()["key"]["kty"], "EC")
        self.assertEqual(self.keks("demo-standard", self.uid(s, priv)), [])  # no BYOK, no KEK
        self.assertNotIn("POST demo-standard.vault.azure.net/keys/cdcp11-kek-", self.emu.log())

    def test_a_non_extractable_key_is_not_sent_to_a_standard_vault_unless_the_group_allows_it(self):
        P = self.P
        s = self.session("stdstrict")
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                 (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]

        def priv_t(label, *extra):
            return [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                    (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label), *extra]
        mark = len(self.emu.log().splitlines())
        policy = ("mirror.allow_plain_export_of_non_extractable is off. Mirror into a Premium vault or Managed HSM "
                  "(BYOK keeps the key non-exportable), or turn that setting on")
        # Asked to mirror as it is made: refused before it is made.
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.generateKeyPair(pub_t + [(P.CKA_LABEL, "strict-a")], priv_t("strict-a", (CKA_CDC_MIRROR, [1])),
                              P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        self.assertEqual(cm.exception.value, P.CKR_TEMPLATE_INCONSISTENT)
        self.assertEqual(s.findObjects([(P.CKA_LABEL, "strict-a")]), [])
        self.assertIn(policy, self.tok.read_log())
        # An existing key, on request: CKR_KEY_UNEXTRACTABLE, the reason on the key, nothing sent.
        _, priv = s.generateKeyPair(pub_t + [(P.CKA_LABEL, "strict-b")], priv_t("strict-b"),
                                    P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        mirror_key, _ = vendor_functions()
        hs = s.session.value() if hasattr(s.session, "value") else int(s.session)
        self.assertEqual(mirror_key(hs, priv.value()), P.CKR_KEY_UNEXTRACTABLE)
        state, kid, error = self.mirror_state(s, priv)
        self.assertEqual((state, kid), (FAILED, ""))
        self.assertIn(policy, error)
        self.assertEqual(self.bools(s, priv), {"extractable": False, "never_extractable": True})
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-standard" in l], [])
        # An extractable key may go as a plain JWK.
        _, ok = s.generateKeyPair(pub_t + [(P.CKA_LABEL, "strict-c")],
                                  priv_t("strict-c", (P.CKA_EXTRACTABLE, True)), P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        self.assertEqual(mirror_key(hs, ok.value()), 0)
        self.assert_mirrored(s, ok, "demo-standard", "strict-c")

    def test_a_key_the_vault_cannot_hold_is_refused_before_it_is_made(self):
        s = self.session("premium")
        P = self.P
        with self.assertRaises(P.PyKCS11Error) as cm:
            s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                           (P.CKA_TOKEN, True), (P.CKA_LABEL, "aes-premium")], P.Mechanism(P.CKM_AES_KEY_GEN))
        self.assertEqual(cm.exception.value, P.CKR_KEY_TYPE_INCONSISTENT)
        self.assertEqual(s.findObjects([(P.CKA_LABEL, "aes-premium")]), [])
        self.assertIn("AES keys can only be mirrored into a Managed HSM", self.tok.read_log())
        r = self.keygen("premium", "--keypairgen", "--key-type", "EC:edwards25519", "--label", "ed")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Azure Key Vault has no Ed25519 keys", self.tok.read_log())
        # A session key is never mirrored, and CKA_CDC_MIRROR=false opts a token key out.
        k = s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                           (P.CKA_TOKEN, True), (P.CKA_LABEL, "opt-out"), (CKA_CDC_MIRROR, [0])],
                          P.Mechanism(P.CKM_AES_KEY_GEN))
        self.assertEqual(self.mirror_state(s, k), (0, "", ""))

    def test_purge_protection_leaves_the_kek_soft_deleted(self):
        r = self.keygen("protected", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "prot-ec")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.session("protected")
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "prot-ec")
        self.assert_mirrored(s, priv, "demo-protected", "prot-ec")
        uid = self.uid(s, priv)
        self.assert_kek_gone("demo-protected", uid)
        deleted = []
        for _ in range(40):  # deletion completes asynchronously (softDeleteDelaySeconds)
            deleted = self.keks("demo-protected", uid, deleted=True)
            if deleted:
                break
            time.sleep(0.1)
        self.assertEqual(len(deleted), 1)
        self.assertIn("purge protection is on in vault 'demo-protected'", self.tok.read_log())
        self.assertNotIn("DELETE demo-protected.vault.azure.net/deletedkeys", self.emu.log())

    def test_an_import_whose_answer_is_lost_is_not_repeated(self):
        rule = self.emu.admin("POST", "/_admin/faults",
                              {"match": {"service": "keyvault", "method": "PUT", "path": "/keys/lost-answer"},
                               "action": "drop_after", "count": 1})
        self.assertEqual(rule.status_code, 201, rule.text)
        r = self.keygen("premium", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "lost-answer")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.session("premium")
        self.assert_mirrored(s, self.find(s, self.P.CKO_PRIVATE_KEY, "lost-answer"), "demo-premium", "lost-answer")
        versions = self.vault_rest("GET", self.emu.vault_url("demo-premium") + "/keys/lost-answer/versions")
        self.assertEqual(len(versions.json()["value"]), 1)
        self.assertEqual(self.emu.log().count("PUT demo-premium.vault.azure.net/keys/lost-answer"), 1)

    def test_a_failed_mirror_is_logged_and_the_next_login_completes_it_reusing_the_kek(self):
        rule = self.emu.admin("POST", "/_admin/faults",
                              {"match": {"service": "keyvault", "method": "PUT", "path": "/keys/retry-me"},
                               "action": "status", "status": 403, "count": 1})
        self.assertEqual(rule.status_code, 201, rule.text)
        r = self.keygen("premium", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "retry-me")
        self.assertNotEqual(r.returncode, 0)  # sync mode: C_GenerateKeyPair reports the failed mirror
        self.assertRegex(self.tok.read_log(), r"mirroring key [0-9a-f]{32} as 'retry-me' failed")
        s = self.session("premium")  # the key stayed; this login resumes its journaled job
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "retry-me")
        _, kid, _ = self.wait_state(s, priv, MIRRORED)
        uid = self.uid(s, priv)
        self.assertEqual(self.emu.log().count("POST demo-premium.vault.azure.net/keys/cdcp11-kek-" + uid[:16]), 1)
        self.assert_kek_gone("demo-premium", uid)

    def test_vendor_interface_mirrors_on_request_and_reports_status(self):
        P = self.P
        s = self.session("premium")
        _, priv = s.generateKeyPair(
            [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_TOKEN, True),
             (P.CKA_MODULUS_BITS, 2048), (P.CKA_LABEL, "vendor")],
            [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_TOKEN, True),
             (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, "vendor"), (CKA_CDC_MIRROR, [0]),
             (CKA_CDC_AZURE_KEY_NAME, list(b"vendor-named"))],
            P.Mechanism(P.CKM_RSA_PKCS_KEY_PAIR_GEN))
        mirror_key, get_status = vendor_functions()
        hs = s.session.value() if hasattr(s.session, "value") else int(s.session)
        state = ctypes.c_ulong()
        n = ctypes.c_ulong(0)
        self.assertEqual(get_status(hs, priv.value(), ctypes.byref(state), None, ctypes.byref(n)), 0)
        self.assertEqual((state.value, n.value), (0, 0))
        self.assertEqual(mirror_key(hs, priv.value()), 0)
        kid = self.assert_mirrored(s, priv, "demo-premium", "vendor-named")
        self.assertEqual(get_status(hs, priv.value(), ctypes.byref(state), None, ctypes.byref(n)), 0)
        small = ctypes.create_string_buffer(4)
        short = ctypes.c_ulong(4)
        self.assertEqual(get_status(hs, priv.value(), ctypes.byref(state), small, ctypes.byref(short)),
                         0x150)  # CKR_BUFFER_TOO_SMALL, with the needed length
        self.assertEqual(short.value, n.value)
        buf = ctypes.create_string_buffer(n.value)
        self.assertEqual(get_status(hs, priv.value(), ctypes.byref(state), buf, ctypes.byref(n)), 0)
        self.assertEqual((state.value, buf.raw[:n.value].decode()), (MIRRORED, kid))

    def test_concurrent_mirror_requests_for_one_key_make_one_kek_and_one_import(self):
        import threading
        P = self.P
        s = self.session("premium")
        _, priv = s.generateKeyPair(
            [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
             (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (P.CKA_LABEL, "twice")],
            [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
             (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, "twice"), (CKA_CDC_MIRROR, [0])],
            P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        mirror_key, _ = vendor_functions()
        hs = s.session.value() if hasattr(s.session, "value") else int(s.session)
        results = []
        threads = [threading.Thread(target=lambda: results.append(mirror_key(hs, priv.value()))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [0, 0])
        self.assert_mirrored(s, priv, "demo-premium", "twice")
        versions = self.vault_rest("GET", self.emu.vault_url("demo-premium") + "/keys/twice/versions")
        self.assertEqual(len(versions.json()["value"]), 1)
        uid = self.uid(s, priv)
        self.assertEqual(self.emu.log().count("POST demo-premium.vault.azure.net/keys/cdcp11-kek-" + uid[:16]), 1)

    def wait_state(self, s, obj, want, seconds=30):
        state = None
        for _ in range(seconds * 10):
            state = self.mirror_state(s, obj)
            if state[0] == want:
                return state
            time.sleep(0.1)
        self.fail("mirror state stayed %r" % (state,))

    def test_async_mode_mirrors_in_the_background_and_destroy_deletes_the_copy(self):
        r = self.keygen("async", "--keypairgen", "--key-type", "EC:prime256v1", "--label", "async-ec")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.session("async")
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "async-ec")
        _, kid, _ = self.wait_state(s, priv, MIRRORED)
        self.assertTrue(kid.startswith(self.emu.vault_url("demo-premium") + "/keys/async-ec/"), kid)
        self.assertEqual(self.vault_rest("GET", kid).status_code, 200)
        # on_destroy "delete": destroying the local key deletes its Azure copy.
        s.destroyObject(priv)
        self.assertEqual(self.vault_rest("GET", kid).status_code, 404)
        self.assertIn("the Azure copy async-ec was deleted", self.tok.read_log())

    def test_a_mirror_cut_by_a_killed_process_resumes_at_the_next_login_without_a_second_import(self):
        import signal
        import subprocess
        slow = self.emu.admin("POST", "/_admin/faults",
                              {"match": {"service": "keyvault", "method": "PUT", "path": "/keys/killed"},
                               "action": "latency", "delayMs": 3000, "count": 1})
        self.assertEqual(slow.status_code, 201, slow.text)
        creates_before = self.emu.log().count("/create 201") + self.emu.log().count("/create 200")
        idx = [g for g, _, _, _ in GROUPS].index("premium")
        p = subprocess.Popen(["pkcs11-tool", "--module", h.MODULE, "--slot-index", str(idx), "--login", "--pin",
                              h.USER_PIN, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "killed"],
                             env=self.tok.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # until the KEK exists: the import request is then on its way
            log = self.emu.log()
            if log.count("/create 201") + log.count("/create 200") > creates_before:
                break
            time.sleep(0.05)
        time.sleep(0.8)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # The emulator applies the slow import for the dead client, then logs it (before it tries
        # to answer); if the import never left the killed process, the resumed job will send it.
        for _ in range(150):
            if "PUT demo-premium.vault.azure.net/keys/killed" in self.emu.log():
                break
            time.sleep(0.1)
        s = self.session("premium")  # this login resumes the journaled job
        priv = self.find(s, self.P.CKO_PRIVATE_KEY, "killed")
        _, kid, _ = self.wait_state(s, priv, MIRRORED)
        versions = self.vault_rest("GET", self.emu.vault_url("demo-premium") + "/keys/killed/versions")
        self.assertEqual(len(versions.json()["value"]), 1)
        self.assertEqual(self.emu.log().count("PUT demo-premium.vault.azure.net/keys/killed"), 1)
        self.assert_kek_gone("demo-premium", self.uid(s, priv))
        self.assertIn("resuming the mirror of " + self.uid(s, priv), self.tok.read_log())

    def test_cdcctl_key_list_and_mirror(self):
        P = self.P
        s = self.session("premium")
        # A key made with mirroring off, mirrored later on request.
        s.generateKeyPair([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                           (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (P.CKA_LABEL, "later")],
                          [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                           (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, "later"), (CKA_CDC_MIRROR, [0])],
                          P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        env = self.tok.env(DEMO_PIN=h.USER_PIN)
        cdcctl = [os.path.join(os.environ["CDCP11_BUILD"], "tools", "cdcctl", "cdcctl"), "--config", self.tok.conf]

        def listing():
            r = h.run(cdcctl + ["--json", "key", "list", "premium", "--pin-env", "DEMO_PIN"], env=env)
            return {k["label"]: k for k in json.loads(r.stdout)["keys"]}

        keys = listing()
        self.assertEqual((keys["later"]["mirror"], keys["later"]["azure_key_id"]), ("none", None))
        r = h.run(cdcctl + ["key", "mirror", "premium", "--label", "later", "--pin-env", "DEMO_PIN"], env=env)
        self.assertIn("later: mirrored as https://demo-premium.vault.azure.net/keys/later/", r.stdout.decode())
        keys = listing()
        self.assertEqual(keys["later"]["mirror"], "mirrored")
        got = self.vault_rest("GET", keys["later"]["azure_key_id"])
        self.assertEqual(got.status_code, 200, got.text)
        human = h.run(cdcctl + ["key", "list", "premium", "--pin-env", "DEMO_PIN"], env=env).stdout.decode()
        self.assertRegex(human, r"later\s+\s*EC\s+local\s+mirrored\s+1\s+0 d\s+-\s+-\s+https://demo-premium.vault.azure.net/keys/later/")
        wrong = h.run(cdcctl + ["key", "list", "premium", "--pin-env", "NOPE"], env=env, check=False)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertNotIn(h.USER_PIN.encode(), wrong.stdout + wrong.stderr)


class BrokenAzureSection(unittest.TestCase):
    def test_the_group_still_serves_its_local_token_and_the_log_says_why(self):
        tok = h.TempToken(groups=[("broken", {"slot_id": 21})], log_level="info")
        self.addCleanup(tok.cleanup)
        tok.groups[0]["azure"] = {"tenant_id": "not-a-guid"}
        tok.groups[0]["mirror"] = {"trigger": "on_generate"}
        tok.write_conf()
        tok.init("broken")
        r = tok.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "local-only", login=True, check=False)
        # The token works; a key that the policy would mirror is refused with the reason.
        self.assertNotEqual(r.returncode, 0)
        log = tok.read_log()
        self.assertIn("group 'broken': Azure is not used, its configuration is invalid: ", log)
        self.assertIn("azure.tenant_id: must be a GUID", log)
        self.assertIn("cannot reach Azure", log)
        tok.groups[0]["mirror"] = {"trigger": "on_request"}
        tok.write_conf()
        tok.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "local-only", login=True)
        self.assertIn(b"local-only", tok.tool("--list-objects", login=True).stdout)


if __name__ == "__main__":
    unittest.main()
