"""Two hosts (two processes, each with a config directory of its own) share one SoftHSM2 token and
one emulator vault. A key host A makes in the HSM group is mirrored there; after `cdcctl group
sync` host B sees that same HSM key *linked* (mirrored, with the Azure key id), not a second,
Azure-resident copy: the mirror tags the vault key with the public-key hash and the HSM's identity,
and sync matches by them. An AES key has no public key: its mirror into the Managed HSM is tagged
with its PKCS#11 check value (cdcp11-kcv, CKA_CHECK_VALUE), and host B links it only when its own
HSM key has that check value. A soft token is per host: a key host A's soft token mirrored comes to
host B's soft token as an Azure-resident key, never linked to one of B's own.

Run as `test_hsm_two_hosts.py host make|show GROUP LABEL [rsa|ec|aes]` it is one host's process."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import p11helpers as h  # noqa: E402
from mirrorhelpers import (CKA_CDC_AZURE_KEY_ID, CKA_CDC_MIRROR_STATE, CKA_CDC_ORIGIN, MIRRORED,  # noqa: E402
                           Rig)

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
CDCCTL = os.environ.get("CDCCTL", os.path.join(os.environ.get("CDCP11_BUILD", ""), "tools", "cdcctl", "cdcctl"))
VAULT = "demo-premium"
MHSM = "demo-mhsm"
SLOTS = {"hsm": 61, "soft": 62, "hsmaes": 63}
# The HSM groups' SoftHSM2 tokens, shared by both hosts.
HSM_TOKENS = {"hsm": "shared", "hsmaes": "shared-aes"}
ORIGIN_AZURE = 1


# ---------------------------------------------------------------- one host's process

def host(action, group, label, kind="rsa"):
    P = h.pykcs11()
    lib = P.PyKCS11Lib()
    lib.load(h.MODULE)
    s = lib.openSession(SLOTS[group], P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    s.login(h.USER_PIN)
    if action == "make" and kind == "aes":
        s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                       (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True), (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, True),
                       (P.CKA_ENCRYPT, True), (P.CKA_DECRYPT, True), (P.CKA_WRAP, True), (P.CKA_UNWRAP, True),
                       (P.CKA_LABEL, label), (P.CKA_ID, label.encode())], P.Mechanism(P.CKM_AES_KEY_GEN))
    elif action == "make":
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True), (P.CKA_LABEL, label),
                 (P.CKA_ID, label.encode())]
        priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True), (P.CKA_SIGN, True),
                  (P.CKA_SENSITIVE, True), (P.CKA_LABEL, label), (P.CKA_ID, label.encode())]
        if kind == "rsa":
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
            mech = P.CKM_RSA_PKCS_KEY_PAIR_GEN
        else:
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]
            mech = P.CKM_EC_KEY_PAIR_GEN
        s.generateKeyPair(pub_t, priv_t, P.Mechanism(mech))
    out = []
    for o in s.findObjects([(P.CKA_LABEL, label)]):
        cls = s.getAttributeValue(o, [P.CKA_CLASS])[0]
        if cls not in (P.CKO_PRIVATE_KEY, P.CKO_SECRET_KEY):
            out.append({"class": cls})
            continue
        # An HSM object this host never made or linked has no vendor attributes yet: None.
        raw = lambda t: s.getAttributeValue(o, [t], allAsBinary=True)[0]  # noqa: E731
        ulong = lambda t: None if raw(t) is None else struct.unpack("<Q", bytes(raw(t)))[0]  # noqa: E731
        kid = raw(CKA_CDC_AZURE_KEY_ID)
        kcv = raw(P.CKA_CHECK_VALUE) if cls == P.CKO_SECRET_KEY else None
        out.append({"class": cls, "origin": ulong(CKA_CDC_ORIGIN), "state": ulong(CKA_CDC_MIRROR_STATE),
                    "kid": None if kid is None else bytes(kid).decode(), "kcv": None if kcv is None else bytes(kcv).hex()})
    print(json.dumps(out), flush=True)
    s.logout()
    s.closeSession()


# ---------------------------------------------------------------- the test

class TwoHosts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        if not os.path.exists(SOFTHSM) or not shutil.which("softhsm2-util"):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        cls.dir = tempfile.mkdtemp(prefix="cdcp11-two-hosts-")
        cls.softhsm_conf = h.softhsm_tokens(cls.dir, list(HSM_TOKENS.values()))
        # Rig.start's emulator, token directories and azure sections, once per host.
        cls.rig = Rig.start([("hsm", VAULT, "premium", {"trigger": "on_generate"}),
                             ("soft", VAULT, "premium", {"trigger": "on_generate"}),
                             ("hsmaes", MHSM, "managed_hsm", {"trigger": "on_generate"})])
        cls.hosts = [cls.rig.tok, cls.make_host(cls.rig.tok)]
        for tok in cls.hosts:
            for g in tok.groups:
                g["slot_id"] = SLOTS[g["name"]]
                if g["name"] in HSM_TOKENS:
                    g["token"] = {"backend": "pkcs11", "module": SOFTHSM, "token_label": HSM_TOKENS[g["name"]]}
            tok.write_conf()
        cls.hosts[1].init("soft")

    @classmethod
    def make_host(cls, a):
        b = h.TempToken(groups=[(g["name"], {}) for g in a.groups], log_level="info")
        for gb, ga in zip(b.groups, a.groups):
            gb["azure"], gb["mirror"] = ga["azure"], ga["mirror"]
        b.write_conf()
        return b

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()
        cls.hosts[1].cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def on(self, i, *args):
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "host", *args], env=self.hosts[i].env(),
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def sync(self, i, group):
        p = subprocess.run([CDCCTL, "--config", self.hosts[i].conf, "--json", "group", "sync", group, "--pin-env",
                            "SYNC_PIN"], env=self.hosts[i].env(SYNC_PIN=h.USER_PIN), capture_output=True,
                           text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.sync_log = p.stderr  # cdcctl logs there
        return json.loads(p.stdout)

    @staticmethod
    def private(objs):
        [priv] = [o for o in objs if o["class"] in (3, 4)]
        return priv

    def aes_mirrored_on_a(self, label):
        """An AES key host A makes in the shared HSM, mirrored into the Managed HSM: (A's view, vault tags)."""
        a = self.private(self.on(0, "make", "hsmaes", label, "aes"))
        self.assertEqual(a["state"], MIRRORED, label)
        self.assertEqual(len(a["kcv"]), 6, a)
        name = a["kid"].split("/keys/")[1].split("/")[0]
        return a, self.rig.get_key(MHSM, name).json()["tags"]

    def test_an_aes_key_of_the_shared_hsm_is_tagged_with_its_check_value_and_linked_on_host_b(self):
        a, tags = self.aes_mirrored_on_a("two-hosts-aes")
        self.assertEqual(tags.get("cdcp11-kcv"), a["kcv"], tags)
        self.assertNotIn("cdcp11-pub-sha256", tags)
        synced = self.sync(1, "hsmaes")
        self.assertEqual((synced["linked"], synced["skipped"]), (1, 0), synced)
        b = self.private(self.on(1, "show", "hsmaes", "two-hosts-aes"))
        self.assertEqual((b["state"], b["kid"], b["kcv"]), (MIRRORED, a["kid"], a["kcv"]))

    def test_an_aes_key_whose_check_value_differs_from_the_tag_is_not_linked(self):
        a, tags = self.aes_mirrored_on_a("two-hosts-aes-other")
        # The tag names another key (as when two HSMs number their objects alike): host B must not link.
        other = "%06x" % (int(a["kcv"], 16) ^ 0xffffff)
        r = self.rig.rest("PATCH", a["kid"], {"tags": dict(tags, **{"cdcp11-kcv": other})})
        self.assertEqual(r.status_code, 200, r.text)
        synced = self.sync(1, "hsmaes")
        self.assertEqual((synced["linked"], synced["skipped"]), (0, 1), synced)
        b = self.private(self.on(1, "show", "hsmaes", "two-hosts-aes-other"))
        self.assertNotEqual(b["state"], MIRRORED)
        self.assertFalse(b["kid"], b)
        lines = [l for l in self.sync_log.splitlines() if "check value (cdcp11-kcv) differs" in l]
        self.assertEqual(len(lines), 1, self.sync_log)
        name = a["kid"].split("/keys/")[1].split("/")[0]
        self.assertIn("'%s'" % name, lines[0])
        self.assertRegex(lines[0], r"local key [0-9a-f]{32}")
        # The key ids say which keys; the check values are left out of the log.
        self.assertNotIn(other, lines[0])
        self.assertNotIn(a["kcv"], lines[0])

    def test_a_key_made_in_the_shared_hsm_on_host_a_is_linked_on_host_b_after_sync(self):
        for label, kind in (("two-hosts-rsa", "rsa"), ("two-hosts-ec", "ec")):
            a = self.private(self.on(0, "make", "hsm", label, kind))
            self.assertEqual(a["state"], MIRRORED, label)
            name = a["kid"].split("/keys/")[1].split("/")[0]
            tags = self.rig.get_key(VAULT, name).json()["tags"]
            self.assertEqual(len(tags.get("cdcp11-pub-sha256", "")), 64, tags)
            self.assertIn("SoftHSM", tags.get("cdcp11-hsm", ""), tags)
            # Host B sees the HSM's key (its own metadata, so a uid of its own), not yet linked.
            before = self.on(1, "show", "hsm", label)
            self.assertEqual(len(before), 2, before)
            self.assertNotEqual(self.private(before)["state"], MIRRORED)
            synced = self.sync(1, "hsm")
            self.assertEqual(synced["linked"], 1, synced)
            after = self.on(1, "show", "hsm", label)
            self.assertEqual(len(after), 2, after)  # no Azure-resident second copy
            b = self.private(after)
            self.assertEqual((b["state"], b["kid"]), (MIRRORED, a["kid"]), label)
            self.assertNotEqual(b["origin"], ORIGIN_AZURE)

    def test_a_key_of_host_a_soft_token_comes_to_host_b_as_azure_resident_not_linked(self):
        a = self.private(self.on(0, "make", "soft", "two-hosts-soft"))
        self.assertEqual(a["state"], MIRRORED)
        name = a["kid"].split("/keys/")[1].split("/")[0]
        self.assertNotIn("cdcp11-hsm", self.rig.get_key(VAULT, name).json()["tags"])
        self.assertEqual(self.on(1, "show", "soft", "two-hosts-soft"), [])
        self.sync(1, "soft")
        b = self.on(1, "show", "soft", "two-hosts-soft")
        self.assertEqual(sorted(o["class"] for o in b), [2, 3], b)
        self.assertEqual((self.private(b)["origin"], self.private(b)["kid"]), (ORIGIN_AZURE, a["kid"]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["host"]:
        host(*sys.argv[2:])
    else:
        unittest.main(verbosity=2)
