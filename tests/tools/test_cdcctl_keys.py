"""cdcctl key enable|disable|delete|recover|backup|restore against the bundled Key Vault emulator,
with real objects: keys generated with PyKCS11 on mirroring groups (sync, on generate) are
mirrored into demo-premium (soft delete, purge allowed), demo-protected (purge protection) and
demo-nosoftdelete (soft delete off). What the vault holds is checked over its REST API with a
token of its own, what the token holds through PyKCS11 in this process and `key list --json`, and
what cdcctl asked the vault from the emulator's request log."""
import base64
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "emulator"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

CDCCTL = os.environ["CDCCTL"]
TENANT = "7e57a000-0000-4000-8000-000000000001"
CLIENT = "c1e47000-0000-4000-8000-000000000001"
SUBSCRIPTION = "5ab5c000-0000-4000-8000-000000000001"
SECRET = "demo-secret-not-real"

CKA_CDC = 0x80000000 | 0x0CDC0000
CKA_CDC_MIRROR = CKA_CDC + 1
CKA_CDC_MIRROR_STATE = CKA_CDC + 3
CKA_CDC_AZURE_KEY_ID = CKA_CDC + 4
CKA_UNIQUE_ID = 0x4
NONE, MIRRORED = 0, 2
P256 = bytes.fromhex("06082a8648ce3d030107")

# (group, vault, vault type)
GROUPS = [("premium", "demo-premium", "premium"), ("protected", "demo-protected", "premium"),
          ("nosoftdelete", "demo-nosoftdelete", "standard")]
VAULT = {g: v for g, v, _ in GROUPS}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class KeyLifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[(g, {}) for g, _, _ in GROUPS])
        secret = cls.tok.path("secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET)
        for g, (_, vault, vtype) in zip(cls.tok.groups, GROUPS):
            g["azure"] = {"tenant_id": TENANT, "client_id": CLIENT, "subscription_id": SUBSCRIPTION,
                          "credential": {"type": "secret", "secret_file": secret},
                          "tls": {"ca_file": cls.emu.ca, "connect_to": ["::127.0.0.1:%d" % cls.emu.port]},
                          "vault": {"name": vault, "type": vtype}}
            g["mirror"] = {"trigger": "on_generate", "mode": "sync"}
            if vtype == "standard":  # its keys are not extractable: a plain JWK import needs the group's leave
                g["mirror"]["allow_plain_export_of_non_extractable"] = True
        cls.tok.write_conf()
        for g, _, _ in GROUPS:
            cls.tok.init(g)
        cls.lib = h.load_lib(cls.tok)
        cls.P = h.pykcs11()
        cls.vault_token = cls.emu.token()
        cls.sessions = {}

    @classmethod
    def tearDownClass(cls):
        for s in cls.sessions.values():
            s.closeSession()
        cls.emu.stop()
        cls.tok.cleanup()

    # ------------------------------------------------------------ helpers

    def session(self, group):
        if group not in self.sessions:
            s = self.lib.openSession(h.slot_of(self.lib, group), self.P.CKF_SERIAL_SESSION | self.P.CKF_RW_SESSION)
            s.login(h.USER_PIN)
            self.sessions[group] = s
        return self.sessions[group]

    def ec_key(self, group, label, key_id, mirror=None):
        """A P-256 key pair generated in this process; mirrored on generate unless mirror=False."""
        P = self.P
        priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                  (P.CKA_SENSITIVE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label), (P.CKA_ID, key_id)]
        if mirror is not None:
            priv_t.append((CKA_CDC_MIRROR, b"\x01" if mirror else b"\x00"))  # CK_BBOOL
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True),
                 (P.CKA_EC_PARAMS, P256), (P.CKA_LABEL, label), (P.CKA_ID, key_id)]
        pub, priv = self.session(group).generateKeyPair(pub_t, priv_t, mecha=P.MechanismECGENERATEKEYPAIR)
        return pub, priv

    def rsa_key(self, group, label, key_id):
        P = self.P
        priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                  (P.CKA_SENSITIVE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label), (P.CKA_ID, key_id)]
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True),
                 (P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)), (P.CKA_LABEL, label),
                 (P.CKA_ID, key_id)]
        return self.session(group).generateKeyPair(pub_t, priv_t, mecha=P.MechanismRSAGENERATEKEYPAIR)

    def raw_attr(self, group, obj, t):
        return bytes(self.session(group).getAttributeValue(obj, [t], allAsBinary=True)[0])

    def state(self, group, priv):
        """(CKA_CDC_MIRROR_STATE, CKA_CDC_AZURE_KEY_ID) as the token says now."""
        st = struct.unpack("<Q", self.raw_attr(group, priv, CKA_CDC_MIRROR_STATE))[0]
        return st, self.raw_attr(group, priv, CKA_CDC_AZURE_KEY_ID).decode()

    def mirrored_kid(self, group, priv, name):
        st, kid = self.state(group, priv)
        self.assertEqual(st, MIRRORED)
        self.assertTrue(kid.startswith("%s/keys/%s/" % (self.emu.vault_url(VAULT[group]), name)), kid)
        return kid

    def cdcctl(self, *args, json_out=False):
        cmd = [CDCCTL, "--config", self.tok.conf] + (["--json"] if json_out else []) + list(args)
        if len(args) > 2 and args[0] == "key" and "--help" not in args:
            cmd += ["--pin-env", "KEYS_PIN"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env=self.tok.env(KEYS_PIN=h.USER_PIN))

    def ok(self, *args, json_out=False):
        p = self.cdcctl(*args, json_out=json_out)
        self.assertEqual(p.returncode, 0, "cdcctl %s: %s%s" % (args, p.stdout, p.stderr))
        self.assertEqual(p.stderr, "")
        return json.loads(p.stdout) if json_out else p.stdout

    def refused(self, *args):
        """Exit 1 and the one error line."""
        p = self.cdcctl(*args)
        self.assertEqual(p.returncode, 1, "cdcctl %s: %s%s" % (args, p.stdout, p.stderr))
        return p.stderr.strip().splitlines()[-1]

    def listed(self, group, label):
        keys = [k for k in self.ok("key", "list", group, json_out=True)["keys"] if k["label"] == label]
        self.assertEqual(len(keys), 1, keys)
        return keys[0]

    def rest(self, method, url, body=None):
        return self.emu.rest(method, url, token=self.vault_token, body=body)

    def vault_key(self, group, name):
        return self.rest("GET", "%s/keys/%s" % (self.emu.vault_url(VAULT[group]), name))

    def deleted_key(self, group, name):
        return self.rest("GET", "%s/deletedkeys/%s" % (self.emu.vault_url(VAULT[group]), name))

    def wait_deleted(self, group, name):
        """Until the vault's (asynchronous) deletion has completed."""
        for _ in range(60):
            r = self.deleted_key(group, name)
            if r.status_code == 200:
                return r.json()
            time.sleep(0.25)
        self.fail("%s was not listed as deleted" % name)

    def vault_sign(self, kid, digest):
        return self.rest("POST", kid + "/sign", {"alg": "ES256", "value": b64u(digest)})

    def requests(self, method, vault, path, challenges=False):
        """The emulator's log lines of `method host/path...` requests; without the unauthenticated
        first requests of a process (answered 401 with the challenge) unless challenges=True."""
        prefix = "%s %s.vault.azure.net/%s" % (method, vault, path)
        return [line for line in self.emu.log().splitlines()
                if prefix in line and (challenges or " 401 client=- " not in line)]

    def sign_locally(self, group, priv, data):
        s = self.session(group)
        return bytes(s.sign(priv, data, self.P.Mechanism(self.P.CKM_ECDSA_SHA256)))

    def assert_local_key_works(self, group, pub, priv):
        point = self.raw_attr(group, pub, self.P.CKA_EC_POINT)[2:]
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        sig = self.sign_locally(group, priv, b"still usable")
        key.verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                   b"still usable", ec.ECDSA(hashes.SHA256()))

    # ------------------------------------------------------------ enable, disable

    def test_disable_then_enable(self):
        pub, priv = self.ec_key("premium", "ec-toggle", b"\x10")
        kid = self.mirrored_kid("premium", priv, "ec-toggle")
        digest = hashlib.sha256(b"toggle").digest()
        self.assertEqual(self.vault_sign(kid, digest).status_code, 200)

        out = self.ok("key", "disable", "premium", "--label", "ec-toggle")
        self.assertEqual(out, "Key 'ec-toggle' in vault 'demo-premium' is disabled: %s\n" % kid)
        self.assertFalse(self.rest("GET", kid).json()["attributes"]["enabled"])
        refused = self.vault_sign(kid, digest)
        self.assertEqual(refused.status_code, 403, refused.text)
        self.assertIn("PATCH demo-premium.vault.azure.net/keys/ec-toggle/" + kid.rsplit("/", 1)[1],
                      self.emu.log())
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))  # disabling is not unmirroring

        doc = self.ok("key", "enable", "premium", "--id", "10", json_out=True)
        self.assertEqual(doc, {"group": "premium", "vault": "demo-premium", "name": "ec-toggle", "kid": kid,
                               "enabled": True, "local_key": "ec-toggle"})
        self.assertTrue(self.rest("GET", kid).json()["attributes"]["enabled"])
        sig = self.vault_sign(kid, digest)
        self.assertEqual(sig.status_code, 200, sig.text)

        # --name: the vault key itself (its latest version)
        doc = self.ok("key", "disable", "premium", "--name", "ec-toggle", json_out=True)
        self.assertEqual((doc["kid"], doc["enabled"], doc["local_key"]), (kid, False, None))
        self.assertEqual(self.vault_sign(kid, digest).status_code, 403)
        self.ok("key", "enable", "premium", "--name", "ec-toggle")
        self.assertEqual(self.vault_sign(kid, digest).status_code, 200)

    # ------------------------------------------------------------ delete, recover

    def test_delete_leaves_the_local_key_and_recover_links_it_again(self):
        pub, priv = self.rsa_key("premium", "rsa-life", b"\x20")
        kid = self.mirrored_kid("premium", priv, "rsa-life")

        out = self.ok("key", "delete", "premium", "--label", "rsa-life")
        lines = out.splitlines()
        self.assertEqual(lines[0], "Key 'rsa-life' of group 'premium' is no longer mirrored.")
        self.assertRegex(lines[1], r"^Key 'rsa-life' was deleted from vault 'demo-premium'; it can be recovered until "
                                   r"\d{4}-\d\d-\d\d \d\d:\d\d UTC with cdcctl key recover premium --name rsa-life\.$")
        self.assertEqual(self.state("premium", priv), (NONE, ""))
        listed = self.listed("premium", "rsa-life")
        self.assertEqual((listed["mirror"], listed["azure_key_id"]), ("none", None))
        self.assertEqual(self.vault_key("premium", "rsa-life").status_code, 404)
        self.wait_deleted("premium", "rsa-life")
        self.assertEqual(self.requests("DELETE", "demo-premium", "deletedkeys/rsa-life", challenges=True), [])  # no purge asked
        # The local key signs as before.
        P = self.P
        s = self.session("premium")
        sig = bytes(s.sign(priv, b"local", P.Mechanism(P.CKM_SHA256_RSA_PKCS)))
        n = int.from_bytes(self.raw_attr("premium", pub, P.CKA_MODULUS), "big")
        rsa.RSAPublicNumbers(65537, n).public_key().verify(sig, b"local", padding.PKCS1v15(), hashes.SHA256())

        out = self.ok("key", "recover", "premium", "--label", "rsa-life")
        self.assertEqual(out, "Key 'rsa-life' was recovered in vault 'demo-premium': %s\n"
                              "Key 'rsa-life' of group 'premium' is mirrored to it again.\n" % kid)
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))
        self.assertEqual(self.listed("premium", "rsa-life")["azure_key_id"], kid)
        self.assertEqual(self.rest("GET", kid).status_code, 200)
        self.assertEqual(len(self.requests("POST", "demo-premium", "deletedkeys/rsa-life/recover")), 1)
        # Linked again: delete --label finds the copy from the record once more.
        self.ok("key", "delete", "premium", "--label", "rsa-life")
        self.assertEqual(self.state("premium", priv), (NONE, ""))

    def test_recover_by_name_links_the_local_key_by_its_tags(self):
        _, priv = self.ec_key("premium", "ec-byname", b"\x21")
        kid = self.mirrored_kid("premium", priv, "ec-byname")
        doc = self.ok("key", "delete", "premium", "--name", "ec-byname", json_out=True)
        self.assertEqual(doc["local_keys_not_mirrored"], ["ec-byname"])
        self.assertEqual((doc["purged"], doc["recoverable"], doc["recovery_level"]),
                         (False, True, "CustomizedRecoverable+Purgeable"))
        self.assertEqual(self.state("premium", priv), (NONE, ""))
        # Recovered at once: the command waits for the deletion, then for the recovery, to complete.
        doc = self.ok("key", "recover", "premium", "--name", "ec-byname", json_out=True)
        self.assertEqual(doc, {"group": "premium", "vault": "demo-premium", "name": "ec-byname", "kid": kid,
                               "local_key": "ec-byname"})
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))
        self.assertEqual(self.vault_sign(kid, hashlib.sha256(b"back").digest()).status_code, 200)

    def test_a_vault_key_with_a_local_keys_uid_but_another_public_key_is_not_linked(self):
        _, priv = self.ec_key("premium", "ec-victim", b"\x22", mirror=False)
        uid = self.raw_attr("premium", priv, CKA_UNIQUE_ID).decode()
        base = self.emu.vault_url("demo-premium")
        made = self.rest("POST", base + "/keys/ec-impostor/create",
                         {"kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"], "tags": {"cdcp11-uid": uid}})
        self.assertEqual(made.status_code, 200, made.text)
        self.assertEqual(self.rest("DELETE", base + "/keys/ec-impostor").status_code, 200)
        out = self.ok("key", "recover", "premium", "--name", "ec-impostor")
        self.assertEqual(out.splitlines()[-1], "It is the copy of no key of group 'premium'.")
        self.assertEqual(self.state("premium", priv), (NONE, ""))
        # Naming the local key makes the mismatch an error.
        self.ok("key", "delete", "premium", "--name", "ec-impostor")
        self.wait_deleted("premium", "ec-impostor")
        self.assertEqual(self.refused("key", "recover", "premium", "--label", "ec-victim"),
                         "cdcctl: Recovered key 'ec-impostor' in vault 'demo-premium', but it is not the copy of key "
                         "'ec-victim' (its cdcp11-uid tag or its public key differs); the local key's mirror state is "
                         "unchanged.")
        self.assertEqual(self.state("premium", priv), (NONE, ""))

    def test_delete_purge_on_premium_purges_and_a_later_mirror_starts_afresh(self):
        pub, priv = self.ec_key("premium", "ec-purge", b"\x30")
        kid = self.mirrored_kid("premium", priv, "ec-purge")
        out = self.ok("key", "delete", "premium", "--id", "30", "--purge")
        self.assertEqual(out, "Key 'ec-purge' of group 'premium' is no longer mirrored.\n"
                              "Key 'ec-purge' was deleted from vault 'demo-premium' and purged.\n")
        self.assertEqual(self.deleted_key("premium", "ec-purge").status_code, 404)
        self.assertEqual(self.vault_key("premium", "ec-purge").status_code, 404)
        purges = self.requests("DELETE", "demo-premium", "deletedkeys/ec-purge ")
        self.assertEqual(len(purges), 1, purges)
        self.assertIn(" 204 ", purges[0])
        self.assertEqual(self.state("premium", priv), (NONE, ""))
        self.assert_local_key_works("premium", pub, priv)
        # The journal job went with the record: mirroring again imports a new copy.
        self.ok("key", "mirror", "premium", "--label", "ec-purge")
        again = self.mirrored_kid("premium", priv, "ec-purge")
        self.assertNotEqual(again, kid)
        self.assertEqual(self.rest("GET", again).status_code, 200)

    def test_delete_purge_finishes_an_earlier_delete(self):
        _, priv = self.ec_key("premium", "ec-later", b"\x33")
        self.mirrored_kid("premium", priv, "ec-later")
        self.ok("key", "delete", "premium", "--label", "ec-later")
        self.wait_deleted("premium", "ec-later")
        self.assertEqual(self.refused("key", "delete", "premium", "--name", "ec-later"),
                         "cdcctl: Vault 'demo-premium' has no key named 'ec-later'.")
        out = self.ok("key", "delete", "premium", "--name", "ec-later", "--purge")
        self.assertEqual(out, "Key 'ec-later' was deleted from vault 'demo-premium' and purged.\n")
        self.assertEqual(self.deleted_key("premium", "ec-later").status_code, 404)
        self.assertEqual(len(self.requests("DELETE", "demo-premium", "deletedkeys/ec-later ")), 1)

    def test_delete_purge_under_purge_protection_is_refused(self):
        _, priv = self.ec_key("protected", "ec-prot", b"\x31")
        self.mirrored_kid("protected", priv, "ec-prot")
        p = self.cdcctl("key", "delete", "protected", "--label", "ec-prot", "--purge")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout, "Key 'ec-prot' of group 'protected' is no longer mirrored.\n")
        deleted = self.wait_deleted("protected", "ec-prot")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(deleted["scheduledPurgeDate"]))
        self.assertEqual(p.stderr, "cdcctl: Key 'ec-prot' was deleted from vault 'demo-protected' but not purged: "
                                   "purge protection keeps it until its scheduled purge date, %s.\n" % when)
        self.assertEqual(self.requests("DELETE", "demo-protected", "deletedkeys/", challenges=True), [])
        self.assertEqual(self.state("protected", priv), (NONE, ""))

    def test_delete_purge_without_soft_delete_never_calls_purge(self):
        pub, priv = self.ec_key("nosoftdelete", "ec-final", b"\x32")
        kid = self.mirrored_kid("nosoftdelete", priv, "ec-final")
        out = self.ok("key", "delete", "nosoftdelete", "--label", "ec-final", "--purge")
        self.assertEqual(out.splitlines()[-1], "Key 'ec-final' was deleted from vault 'demo-nosoftdelete'; soft "
                                               "delete is off there, so the delete is final.")
        self.assertEqual(len(self.requests("DELETE", "demo-nosoftdelete", "keys/ec-final ")), 1)
        self.assertEqual([line for line in self.emu.log().splitlines()
                          if "demo-nosoftdelete.vault.azure.net/deletedkeys" in line], [])
        self.assertEqual(self.vault_key("nosoftdelete", "ec-final").status_code, 404)
        self.assertEqual(self.state("nosoftdelete", priv), (NONE, ""))
        self.assert_local_key_works("nosoftdelete", pub, priv)
        self.ok("key", "mirror", "nosoftdelete", "--label", "ec-final")
        self.assertNotEqual(self.mirrored_kid("nosoftdelete", priv, "ec-final"), kid)

    # ------------------------------------------------------------ backup, restore

    def test_backup_then_restore_after_purge(self):
        _, priv = self.ec_key("premium", "ec-backup", b"\x40")
        kid = self.mirrored_kid("premium", priv, "ec-backup")
        public = self.rest("GET", kid).json()["key"]
        out_dir = self.tok.path("backups")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "ec-backup.blob")
        out = self.ok("key", "backup", "premium", "--label", "ec-backup", "--out", path)
        size = os.path.getsize(path)
        self.assertEqual(out, "Wrote the backup of key 'ec-backup' of vault 'demo-premium' to %s (%d bytes, mode "
                              "0600).\n" % (path, size))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            blob = f.read()
        self.assertTrue(blob.startswith(b"AKVEMU-BACKUP-1"), blob[:20])  # the vault's blob, as it sent it
        self.assertNotIn(b64u(blob)[:40], out)
        self.assertEqual([n for n in os.listdir(out_dir) if ".tmp." in n], [])

        self.ok("key", "delete", "premium", "--name", "ec-backup", "--purge")
        self.assertEqual(self.state("premium", priv), (NONE, ""))
        doc = self.ok("key", "restore", "premium", "--in", path, "--name", "ec-backup", json_out=True)
        self.assertEqual(doc, {"group": "premium", "vault": "demo-premium", "name": "ec-backup", "kid": kid,
                               "local_key": "ec-backup"})
        back = self.rest("GET", kid)
        self.assertEqual(back.status_code, 200)
        self.assertEqual((back.json()["key"]["x"], back.json()["key"]["y"]), (public["x"], public["y"]))
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))

        # Never over an existing key: with the name known, refused before asking; without, the vault's 409.
        self.assertEqual(self.refused("key", "restore", "premium", "--in", path, "--name", "ec-backup"),
                         "cdcctl: Vault 'demo-premium' already holds a key named 'ec-backup'; a restore never "
                         "replaces a key: delete and purge it first, or restore into another vault.")
        self.assertEqual(self.refused("key", "restore", "premium", "--in", path, "--label", "ec-backup"),
                         "cdcctl: Vault 'demo-premium' already holds a key named 'ec-backup'; a restore never "
                         "replaces a key: delete and purge it first, or restore into another vault.")
        self.assertEqual(len(self.requests("POST", "demo-premium", "keys/restore")), 1)
        line = self.refused("key", "restore", "premium", "--in", path)
        self.assertTrue(line.startswith("cdcctl: demo-premium.vault.azure.net refused restore key because of a "
                                        "conflict (There was a conflict restoring the key"), line)
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))

        # A --name the backup does not hold: restored under its own name (and linked), but an error.
        self.ok("key", "delete", "premium", "--label", "ec-backup", "--purge")
        self.assertEqual(self.refused("key", "restore", "premium", "--in", path, "--name", "other-name"),
                         "cdcctl: The backup in %s holds key 'ec-backup', not 'other-name'; it was restored into "
                         "vault 'demo-premium' as 'ec-backup'." % path)
        self.assertEqual(self.state("premium", priv), (MIRRORED, kid))

    # ------------------------------------------------------------ refusals

    def test_selectors(self):
        self.ec_key("premium", "unmirrored", b"\x50", mirror=False)
        self.ec_key("premium", "twice", b"\x51", mirror=False)
        self.ec_key("premium", "twice", b"\x52", mirror=False)
        for verb in ("enable", "disable", "delete", "recover", "backup"):
            extra = ("--out", self.tok.path("never")) if verb == "backup" else ()
            with self.subTest(verb):
                self.assertEqual(self.refused("key", verb, "premium", *extra),
                                 "cdcctl: Say which key: --label, --id or --name.")
                self.assertEqual(self.refused("key", verb, "premium", "--label", "a", "--name", "a", *extra),
                                 "cdcctl: Give only one of --label, --id and --name.")
                self.assertEqual(self.refused("key", verb, "premium", "--label", "nope", *extra),
                                 "cdcctl: Group 'premium' has no private or secret key labelled 'nope'.")
                self.assertEqual(self.refused("key", verb, "premium", "--id", "5A", *extra),
                                 "cdcctl: Group 'premium' has no private or secret key with CKA_ID 5a.")
                self.assertEqual(self.refused("key", verb, "premium", "--label", "twice", *extra),
                                 "cdcctl: Group 'premium' has 2 keys labelled 'twice'; choose one with --id.")
                self.assertEqual(self.refused("key", verb, "premium", "--name", "no_such", *extra),
                                 "cdcctl: 'no_such' is not a valid Key Vault key name (letters, digits and '-', "
                                 "1 to 127).")
        for verb in ("enable", "disable", "delete", "backup"):
            extra = ("--out", self.tok.path("never")) if verb == "backup" else ()
            with self.subTest(verb):
                self.assertEqual(self.refused("key", verb, "premium", "--label", "unmirrored", *extra),
                                 "cdcctl: Key 'unmirrored' of group 'premium' has no copy in vault 'demo-premium': "
                                 "it is not mirrored.")
                self.assertEqual(self.refused("key", verb, "premium", "--name", "no-such-key", *extra),
                                 "cdcctl: Vault 'demo-premium' has no key named 'no-such-key'.")
        self.assertEqual(self.refused("key", "recover", "premium", "--name", "no-such-key"),
                         "cdcctl: Vault 'demo-premium' has no deleted key named 'no-such-key'.")
        self.assertEqual(self.refused("key", "recover", "premium", "--label", "unmirrored"),
                         "cdcctl: Vault 'demo-premium' holds no deleted copy of key 'unmirrored' (a deletion shows "
                         "there once it has completed).")
        self.assertEqual(self.refused("key", "restore", "premium", "--in", self.tok.path("missing"), "--id", "1",
                                      "--name", "x"),
                         "cdcctl: Give only one of --label, --id and --name.")
        self.assertEqual(self.refused("key", "restore", "premium", "--in", self.tok.path("missing")),
                         "cdcctl: Cannot read the backup file %s: No such file or directory." % self.tok.path("missing"))
        self.assertFalse(os.path.exists(self.tok.path("never")))

    def test_json_errors(self):
        p = self.cdcctl("key", "disable", "premium", "--label", "nope", json_out=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(json.loads(p.stdout),
                         {"error": "Group 'premium' has no private or secret key labelled 'nope'."})

    def test_help(self):
        for verb, opts in (("enable", ("--label", "--id", "--name", "--pin-env", "--json")),
                           ("disable", ("--label", "--id", "--name")),
                           ("delete", ("--label", "--id", "--name", "--purge")),
                           ("recover", ("--label", "--id", "--name")),
                           ("backup", ("--label", "--id", "--name", "--out")),
                           ("restore", ("--label", "--id", "--name", "--in"))):
            with self.subTest(verb):
                p = self.cdcctl("key", verb, "--help")
                self.assertEqual(p.returncode, 0)
                for o in opts:
                    self.assertIn(o, p.stdout)
        self.assertIn("purge protection", self.cdcctl("key", "delete", "--help").stdout)


if __name__ == "__main__":
    unittest.main()
