"""Rotation of mirrored keys (the token is the source), end to end against the emulator: RSA and EC
into a Premium and a Standard vault, AES into the Managed HSM, by `cdcctl key rotate` and by the
vendor function C_CDC_RotateKey. After a rotation the vault key has two versions, the vault signs
(or wraps) with the new one and the new token key verifies (or unwraps); the label and CKA_ID find
the new version; the former version is found by CKA_CDC_VERSION_STATE, keeps its own Azure version
id, and still verifies (or decrypts) what was made with it; exp/nbf in the vault match the dates.

Also: a refused import leaves the former version current with the reason readable; a cdcctl killed
mid-rotation resumes without a second new version; scheduled rotation (--all-due) with the clock
set by CDCP11_TEST_NOW, disabling former versions after M days; key list and key versions."""
import ctypes
import json
import os
import signal
import struct
import subprocess
import time
import unittest

from mirrorhelpers import (CK_INTERFACE, CK_VERSION, CKA_CDC, CKA_CDC_MIRROR, MIRRORED, Rig, h,
                           vendor)

CKA_CDC_KEY_VERSION = CKA_CDC + 8
CKA_CDC_VERSION_STATE = CKA_CDC + 9
CKA_CDC_VERSION_SINCE = CKA_CDC + 10
CKA_CDC_FORMER_SINCE = CKA_CDC + 11
CKA_CDC_ROTATE_EVERY_DAYS = CKA_CDC + 12
CKA_CDC_ROTATION_ERROR = CKA_CDC + 14
CURRENT, FORMER, FORMER_DISABLED = 0, 1, 2
P256 = bytes.fromhex("06082a8648ce3d030107")
DAY = 86400
CKR_KEY_HANDLE_INVALID, CKR_KEY_FUNCTION_NOT_PERMITTED, CKR_SESSION_READ_ONLY = 0x60, 0x68, 0xB5

CDCCTL = os.path.join(os.environ["CDCP11_BUILD"], "tools", "cdcctl", "cdcctl")

TARGETS = [("premium", "demo-premium", "premium"), ("standard", "demo-standard", "standard"),
           ("mhsm", "demo-mhsm", "managed_hsm")]


def ulong(v):
    return struct.unpack("<Q", v)[0]


def packed(v):
    return struct.pack("<Q", v)


def ck_date(t):
    return time.strftime("%Y%m%d", time.gmtime(t))


class RotationE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        groups = [(g, v, t, {"trigger": "on_generate", "mode": "sync",
                             **({"allow_plain_export_of_non_extractable": True} if t == "standard" else {})})
                  for g, v, t in TARGETS]
        groups.append(("destroy", "demo-premium", "premium",
                       {"trigger": "on_generate", "mode": "sync", "on_destroy": "delete",
                        "rotation": {"retire_former": "destroy", "retire_former_after_days": 1}}))
        groups.append(("sched", "demo-premium", "premium",
                       {"trigger": "on_generate", "mode": "sync",
                        "rotation": {"every_days": 30, "retire_former": "disable", "retire_former_after_days": 10}}))
        cls.rig = Rig.start(groups)

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def setUp(self):
        self.addCleanup(self.rig.emu.admin, "DELETE", "/_admin/faults")

    # ------------------------------------------------------------ helpers

    def cdcctl(self, *args, now=None, check=True, popen=False):
        env = self.rig.tok.env(DEMO_PIN=h.USER_PIN)
        if now is not None:
            env["CDCP11_TEST_NOW"] = str(int(now))
        cmd = [CDCCTL, "--config", self.rig.tok.conf, *args, "--pin-env", "DEMO_PIN"]
        if popen:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return h.run(cmd, env=env, check=check)

    def rotate_json(self, group, *args, now=None, check=True):
        r = self.cdcctl("--json", "key", "rotate", group, *args, now=now, check=check)
        return r.returncode, json.loads(r.stdout.decode())

    def attr(self, s, obj, t):
        return Rig.raw(s, obj, t)

    def version(self, s, obj):
        return ulong(self.attr(s, obj, CKA_CDC_KEY_VERSION)), ulong(self.attr(s, obj, CKA_CDC_VERSION_STATE))

    def key_pair(self, s, label, kind, key_id, dates=None):
        P = self.rig.P
        common = [(P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_ID, key_id)]
        if dates:
            common += [(P.CKA_START_DATE, ck_date(dates[0]).encode()), (P.CKA_END_DATE, ck_date(dates[1]).encode())]
        if kind == "rsa":
            pub = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_MODULUS_BITS, 2048),
                   (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)), (P.CKA_VERIFY, True)] + common
            mech = P.CKM_RSA_PKCS_KEY_PAIR_GEN
            kt = P.CKK_RSA
        else:
            pub = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, P256),
                   (P.CKA_VERIFY, True)] + common
            mech = P.CKM_EC_KEY_PAIR_GEN
            kt = P.CKK_EC
        priv = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, kt), (P.CKA_PRIVATE, True),
                (P.CKA_SIGN, True), (P.CKA_SENSITIVE, True)] + common
        return s.generateKeyPair(pub, priv, P.Mechanism(mech))

    def sign(self, s, priv, kind, msg):
        P = self.rig.P
        mech = P.CKM_SHA256_RSA_PKCS if kind == "rsa" else P.CKM_ECDSA_SHA256
        return bytes(s.sign(priv, msg, P.Mechanism(mech)))

    def verify(self, s, pub, kind, msg, sig):
        P = self.rig.P
        mech = P.CKM_SHA256_RSA_PKCS if kind == "rsa" else P.CKM_ECDSA_SHA256
        return s.verify(pub, msg, sig, P.Mechanism(mech))

    def formers(self, s, cls, name_label):
        P = self.rig.P
        return s.findObjects([(P.CKA_CLASS, cls), (P.CKA_LABEL, name_label + "@v1"),
                              (CKA_CDC_VERSION_STATE, packed(FORMER))])

    def assert_vault_dates(self, kid, s, priv):
        P = self.rig.P
        attrs = self.rig.rest("GET", kid).json()["attributes"]
        start = bytes(s.getAttributeValue(priv, [P.CKA_START_DATE], allAsBinary=True)[0]).decode()
        end = bytes(s.getAttributeValue(priv, [P.CKA_END_DATE], allAsBinary=True)[0]).decode()
        self.assertEqual(time.strftime("%Y%m%d", time.gmtime(attrs["nbf"])), start)
        self.assertEqual(time.strftime("%Y%m%d", time.gmtime(attrs["exp"])), end)

    # ------------------------------------------------------------ asymmetric

    def rotate_asymmetric(self, group, vault, kind, via_vendor=False):
        rig, P = self.rig, self.rig.P
        label = "rot-%s-%s%s" % (group, kind, "-v" if via_vendor else "")
        key_id = b"\x52" + label.encode()[-4:]
        now = int(time.time())
        s = rig.session(self, group)
        pub1, priv1 = self.key_pair(s, label, kind, key_id, dates=(now, now + 365 * DAY))
        _, kid1, _ = rig.state(s, priv1)
        self.assertEqual(rig.versions(vault, label), 1)
        old_sig = self.sign(s, priv1, kind, b"signed by version 1")

        if via_vendor:
            fl = vendor()
            self.assertEqual((fl.version.major, fl.version.minor), (1, 1))
            new = ctypes.c_ulong(0)
            self.assertEqual(fl.rotate_key(h.sh(s), h.oh(priv1), ctypes.byref(new)), 0)
            self.assertNotEqual(new.value, 0)
        else:
            rc, out = self.rotate_json(group, "--label", label)
            self.assertEqual(rc, 0, out)
            self.assertEqual([(r["label"], r["version"]) for r in out["rotated"]], [(label, 2)])
            self.assertEqual(out["failed"], [])

        # The vault key has two versions; label and CKA_ID find the new one, and only it.
        self.assertEqual(rig.versions(vault, label), 2)
        priv2 = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual([h.oh(o) for o in s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_ID, key_id)])], [h.oh(priv2)])
        self.assertEqual(self.version(s, priv2), (2, CURRENT))
        state, kid2, error = rig.state(s, priv2)
        self.assertEqual((state, error), (MIRRORED, ""))
        self.assertNotEqual(kid2, kid1)
        self.assertEqual(kid2.rsplit("/", 1)[0], kid1.rsplit("/", 1)[0], "not a new version of the same key")
        if via_vendor:
            self.assertEqual(h.oh(priv2), new.value)
        # The vault signs with the new version; the new token public key verifies.
        new_pub = rig.token_public_key(s, label)
        rig.sign_in_vault_and_verify(kid2, new_pub)
        self.assert_vault_dates(kid2, s, priv2)
        # The former version: found by the vendor attribute, linked to its own Azure version, verifies
        # what it signed, and no longer signs.
        [fpriv] = self.formers(s, P.CKO_PRIVATE_KEY, label)
        [fpub] = self.formers(s, P.CKO_PUBLIC_KEY, label)
        self.assertEqual(self.version(s, fpriv), (1, FORMER))
        self.assertEqual(rig.state(s, fpriv)[1], kid1)
        self.assertEqual(bytes(s.getAttributeValue(fpriv, [P.CKA_ID], allAsBinary=True)[0]), key_id + b"@v1")
        self.assertTrue(self.verify(s, fpub, kind, b"signed by version 1", old_sig))
        self.assertFalse(s.getAttributeValue(fpriv, [P.CKA_SIGN])[0])
        self.assertGreater(ulong(self.attr(s, fpriv, CKA_CDC_FORMER_SINCE)), 0)
        # And the new one signs what the vault's new version verifies.
        sig = self.sign(s, priv2, kind, b"signed by version 2")
        self.assertTrue(self.verify(s, rig.find(s, P.CKO_PUBLIC_KEY, label), kind, b"signed by version 2", sig))

    def test_rsa_and_ec_into_premium_and_standard(self):
        for group, vault, _ in TARGETS[:2]:
            for kind in ("rsa", "ec"):
                with self.subTest(group=group, kind=kind):
                    self.rotate_asymmetric(group, vault, kind)

    def test_vendor_function_rotates(self):
        self.rotate_asymmetric("premium", "demo-premium", "ec", via_vendor=True)

    def test_vendor_function_error_paths(self):
        rig, P = self.rig, self.rig.P
        fl = vendor()
        s = rig.session(self, "premium")
        pub, priv = self.key_pair(s, "rot-errors", "ec", b"\x99\x04")
        new = ctypes.c_ulong(0)
        self.assertEqual(fl.rotate_key(h.sh(s), h.oh(pub), ctypes.byref(new)), CKR_KEY_HANDLE_INVALID)
        ro = rig.lib.openSession(h.slot_of(rig.lib, "premium"), P.CKF_SERIAL_SESSION)
        self.addCleanup(ro.closeSession)
        self.assertEqual(fl.rotate_key(h.sh(ro), h.oh(priv), None), CKR_SESSION_READ_ONLY)
        local = s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                               (P.CKA_TOKEN, True), (P.CKA_LABEL, "rot-unmirrored"), (CKA_CDC_MIRROR, b"\x00")],
                              P.Mechanism(P.CKM_AES_KEY_GEN))
        self.assertEqual(fl.rotate_key(h.sh(s), h.oh(local), None), CKR_KEY_FUNCTION_NOT_PERMITTED)
        self.assertEqual(fl.rotate_key(h.sh(s), h.oh(priv), ctypes.byref(new)), 0)
        self.assertEqual(fl.rotate_key(h.sh(s), h.oh(priv), None), CKR_KEY_FUNCTION_NOT_PERMITTED,
                         "a former version was rotated")
        self.assertEqual(rig.versions("demo-premium", "rot-errors"), 2)
        # Applications asking for the vendor interface 1.0 by number still get it.
        lib = ctypes.CDLL(h.MODULE)
        iface = ctypes.POINTER(CK_INTERFACE)()
        v10 = CK_VERSION(1, 0)
        self.assertEqual(lib.C_GetInterface(b"Vendor cdcp11", ctypes.byref(v10), ctypes.byref(iface), ctypes.c_ulong(0)), 0)
        ver = ctypes.cast(iface.contents.functions, ctypes.POINTER(CK_VERSION)).contents
        self.assertEqual((ver.major, ver.minor), (1, 0))

    # ------------------------------------------------------------ AES into the Managed HSM

    def test_aes_into_the_managed_hsm(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "mhsm")
        label = "rot-aes"
        aes1 = s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                              (P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_ENCRYPT, True), (P.CKA_DECRYPT, True),
                              (P.CKA_WRAP, True), (P.CKA_UNWRAP, True)], P.Mechanism(P.CKM_AES_KEY_GEN))
        iv = os.urandom(16)
        mech = P.Mechanism(P.CKM_AES_CBC_PAD, iv)
        ct = bytes(s.encrypt(aes1, b"encrypted under version 1", mech))
        rc, out = self.rotate_json("mhsm", "--label", label)
        self.assertEqual(rc, 0, out)
        self.assertEqual(rig.versions("demo-mhsm", label), 2)
        aes2 = rig.find(s, P.CKO_SECRET_KEY, label)
        self.assertEqual(self.version(s, aes2), (2, CURRENT))
        _, kid2, _ = rig.state(s, aes2)
        # The vault's new version and the token's new key wrap for each other.
        rig.assert_aes_round_trip(self, s, aes2, kid2)
        # Data encrypted under the former version still decrypts locally.
        [former] = self.formers(s, P.CKO_SECRET_KEY, label)
        self.assertEqual(bytes(s.decrypt(former, ct, mech)), b"encrypted under version 1")
        self.assertFalse(s.getAttributeValue(former, [P.CKA_ENCRYPT])[0])

    # ------------------------------------------------------------ faults

    def test_refused_import_leaves_the_former_current_and_a_retry_finishes(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-refused"
        _, priv1 = self.key_pair(s, label, "ec", b"\x99\x01")
        _, kid1, _ = rig.state(s, priv1)
        rig.fault({"method": "PUT", "path": "/keys/%s" % label},
                  action="status", status=400, count=1)
        rc, out = self.rotate_json("premium", "--label", label, check=False)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["rotated"], [])
        [failed] = out["failed"]
        self.assertEqual(failed["label"], label)
        self.assertIn("rejected import key rot-refused", failed["error"])
        # Nothing changed for applications: the label finds version 1, still mirrored as before.
        self.assertEqual(rig.versions("demo-premium", label), 1)
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual(h.oh(cur), h.oh(priv1))
        self.assertEqual(self.version(s, cur), (1, CURRENT))
        self.assertEqual(rig.state(s, cur)[1], kid1)
        self.assertIn("rejected import key rot-refused", self.attr(s, cur, CKA_CDC_ROTATION_ERROR).decode())
        # The new key waits under its temporary label; only its rotation mirrors it (a mirror
        # request would make it the vault's current version while the label finds the former).
        waiting = rig.find(s, P.CKO_PRIVATE_KEY, label + "@rotating")
        self.assertEqual(vendor().mirror_key(h.sh(s), h.oh(waiting)), CKR_KEY_FUNCTION_NOT_PERMITTED)
        r = self.cdcctl("key", "mirror", "premium", "--all", check=False)
        self.assertIn("rotation under way", r.stdout.decode() + r.stderr.decode())
        self.assertEqual(rig.versions("demo-premium", label), 1)
        # The retry resumes the same rotation: one new version, one new key.
        rc, out = self.rotate_json("premium", "--label", label)
        self.assertEqual(rc, 0, out)
        self.assertEqual(rig.versions("demo-premium", label), 2)
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual(self.version(s, cur), (2, CURRENT))
        self.assertEqual(self.attr(s, cur, CKA_CDC_ROTATION_ERROR), b"")
        self.assertEqual(len(s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True),
                                            (P.CKA_KEY_TYPE, P.CKK_EC)])) - self.other_ec_keys(s, label), 2)

    def other_ec_keys(self, s, label):
        P = self.rig.P
        n = 0
        for o in s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC)]):
            lab = s.getAttributeValue(o, [P.CKA_LABEL])[0]
            if not lab.startswith(label):
                n += 1
        return n

    def kill_rotation_while_its_import_is_held(self, label):
        """Rotates LABEL in group premium with the new version's import held 6 s in the vault, kills
        cdcctl while it waits (after its KEK was made; the import follows at once), and waits for the
        vault to apply the import: version 2 exists in Azure, the journal does not know it."""
        rig = self.rig
        keks = lambda: rig.requests("POST", "demo-premium", r"/keys/cdcp11-kek-[0-9a-f]+-\d+/create")
        before = len(keks())
        rig.fault({"method": "PUT", "path": "/keys/%s" % label}, action="latency", delayMs=6000, count=1)
        p = self.cdcctl("key", "rotate", "premium", "--label", label, popen=True)
        deadline = time.time() + 120
        while time.time() < deadline and len(keks()) == before and p.poll() is None:
            time.sleep(0.05)
        time.sleep(1.5)
        p.send_signal(signal.SIGKILL)
        self.assertEqual(p.wait(), -signal.SIGKILL, "cdcctl ended before it was killed")
        time.sleep(6.0)
        self.assertEqual(rig.versions("demo-premium", label), 2, "the held import was not applied")

    def test_killed_mid_rotation_resumes_without_a_second_version(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-killed"
        _, priv1 = self.key_pair(s, label, "ec", b"\x99\x02")
        self.kill_rotation_while_its_import_is_held(label)
        # Killed mid-rotation: applications still find version 1 under the label.
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual((h.oh(cur), self.version(s, cur)), (h.oh(priv1), (1, CURRENT)))
        rc, out = self.rotate_json("premium", "--label", label)
        self.assertEqual(rc, 0, out)
        self.assertEqual(rig.versions("demo-premium", label), 2, "a second new version was made")
        # Imports of this name: the first mirror and the held one; the resumed run imported nothing.
        self.assertEqual(rig.requests("PUT", "demo-premium", "/keys/%s" % label), ["200", "200"])
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual(self.version(s, cur), (2, CURRENT))
        self.assertEqual(len(self.formers(s, P.CKO_PRIVATE_KEY, label)), 1)
        rig.sign_in_vault_and_verify(rig.state(s, cur)[1], rig.token_public_key(s, label))

    def test_abandon_removes_the_half_made_version_and_leaves_the_former_current(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-abandon"
        _, priv1 = self.key_pair(s, label, "ec", b"\x99\x07")
        _, kid1, _ = rig.state(s, priv1)
        # A rotation whose import is refused leaves the new key under L@rotating, nothing in Azure.
        rig.fault({"method": "PUT", "path": "/keys/%s" % label}, action="status", status=400, count=1)
        rc, _ = self.rotate_json("premium", "--label", label, check=False)
        self.assertEqual(rc, 1)
        self.assertEqual(len(rig.find_all(s, label + "@rotating")), 2)
        rc, out = self.rotate_json("premium", "--label", label, "--abandon")
        self.assertEqual(rc, 0, out)
        [gone] = out["abandoned"]
        self.assertEqual((gone["label"], gone["azure_version"]), (label, None))
        self.assertEqual(rig.find_all(s, label + "@rotating"), [])
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual((h.oh(cur), self.version(s, cur)), (h.oh(priv1), (1, CURRENT)))
        self.assertEqual(rig.state(s, cur)[1], kid1)
        self.assertEqual(self.attr(s, cur, CKA_CDC_ROTATION_ERROR), b"")
        self.assertEqual(rig.versions("demo-premium", label), 1)
        # Nothing to abandon now: said precisely; a new rotation starts afresh and finishes.
        rc, out = self.rotate_json("premium", "--label", label, "--abandon", check=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("no rotation under way", out["failed"][0]["error"])
        rc, out = self.rotate_json("premium", "--label", label)
        self.assertEqual(rc, 0, out)
        self.assertEqual(rig.versions("demo-premium", label), 2)

    def test_abandon_after_the_import_disables_the_new_azure_version(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-abandon-imported"
        _, priv1 = self.key_pair(s, label, "ec", b"\x99\x08")
        _, kid1, _ = rig.state(s, priv1)
        self.kill_rotation_while_its_import_is_held(label)
        # An abandon cut short (the vault refuses the disable): journaled, the rotation is not
        # resumed, and the next abandon finishes it.
        rig.fault({"method": "PATCH", "path": "/keys/%s/*" % label}, action="status", status=400, count=1)
        rc, out = self.rotate_json("premium", "--label", label, "--abandon", check=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("half abandoned", out["failed"][0]["error"])
        rc, out = self.rotate_json("premium", "--label", label, check=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("being abandoned", out["failed"][0]["error"])
        rc, out = self.rotate_json("premium", "--label", label, "--abandon")
        self.assertEqual(rc, 0, out)
        [gone] = out["abandoned"]
        new_kid = gone["azure_version"]
        self.assertTrue(new_kid and new_kid != kid1, gone)
        # Azure cannot delete one version of a key: the new one is disabled, the former untouched.
        url = rig.vault_url("demo-premium") + "/keys/%s/" % label
        self.assertFalse(rig.rest("GET", url + new_kid.rsplit("/", 1)[1]).json()["attributes"]["enabled"])
        self.assertTrue(rig.rest("GET", url + kid1.rsplit("/", 1)[1]).json()["attributes"]["enabled"])
        self.assertEqual(rig.find_all(s, label + "@rotating"), [])
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        self.assertEqual((h.oh(cur), self.version(s, cur)), (h.oh(priv1), (1, CURRENT)))
        self.assertEqual(rig.state(s, cur)[1], kid1)
        rig.sign_in_vault_and_verify(kid1, rig.token_public_key(s, label))

    def test_429_storm_on_the_new_version_import(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-429"
        self.key_pair(s, label, "rsa", b"\x99\x03")
        rig.fault({"method": "PUT", "path": "/keys/%s" % label}, action="status", status=429, count=3, retryAfter=1)
        rc, out = self.rotate_json("premium", "--label", label)
        self.assertEqual(rc, 0, out)
        self.assertEqual(rig.requests("PUT", "demo-premium", "/keys/%s" % label), ["200", "429", "429", "429", "200"])
        self.assertEqual(rig.versions("demo-premium", label), 2)
        cur = rig.find(s, P.CKO_PRIVATE_KEY, label)
        rig.sign_in_vault_and_verify(rig.state(s, cur)[1], rig.token_public_key(s, label))

    def test_destroying_a_former_version_never_deletes_the_vault_key(self):
        # The group deletes a destroyed key's Azure copy (on_destroy delete), but a former
        # version's copy is one version of a key whose current version is another: only that
        # version is disabled, by the schedule (retire_former destroy) and by C_DestroyObject.
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "destroy")
        now = int(time.time())
        for label in ("destroy-a", "destroy-b"):
            _, priv = self.key_pair(s, label, "ec", label.encode())
            kid1 = rig.state(s, priv)[1]
            rc, out = self.rotate_json("destroy", "--label", label)
            self.assertEqual(rc, 0, out)
            kid2 = rig.state(s, rig.find(s, P.CKO_PRIVATE_KEY, label))[1]
            if label == "destroy-a":
                rc, out = self.rotate_json("destroy", "--all-due", now=now + 2 * DAY)
                self.assertEqual(rc, 0, out)
                self.assertEqual([(r["label"], r["action"]) for r in out["retired"]], [("destroy-a@v1", "destroy")])
            else:
                for former in rig.find_all(s, label + "@v1"):  # the private and the public key
                    s.destroyObject(former)
            self.assertEqual(rig.find_all(s, label + "@v1"), [], "the former version is left in the token")
            self.assertEqual(rig.get_key("demo-premium", label).status_code, 200, "the vault key was deleted")
            self.assertTrue(rig.rest("GET", kid2).json()["attributes"]["enabled"])
            self.assertFalse(rig.rest("GET", kid1).json()["attributes"]["enabled"])

    def test_all_due_draws_a_progress_bar_on_a_terminal(self):
        rig = self.rig
        s = rig.session(self, "destroy")
        self.key_pair(s, "progress-a", "ec", b"\x99\x05")
        rc, out = self.rotate_json("destroy", "--label", "progress-a")
        self.assertEqual(rc, 0, out)
        env = rig.tok.env(DEMO_PIN=h.USER_PIN, CDCP11_TEST_NOW=str(int(time.time()) + 2 * DAY))
        cmd = " ".join([CDCCTL, "--config", rig.tok.conf, "key", "rotate", "destroy", "--all-due", "--pin-env",
                        "DEMO_PIN"])
        # script(1) gives cdcctl a terminal; without one (every other test here) no bar is drawn.
        r = h.run(["script", "-qefc", cmd, "/dev/null"], env=env)
        text = r.stdout.decode(errors="replace")
        self.assertIn("] 0/1 progress-a@v1", text)
        self.assertIn("[" + "#" * 30 + "] 1/1 done", text)
        self.assertIn("progress-a@v1: former version destroyed", text)
        self.assertEqual(rig.find_all(s, "progress-a@v1"), [])

    def test_two_processes_rotating_one_key_make_one_version(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "premium")
        label = "rot-twice"
        self.key_pair(s, label, "ec", b"\x99\x06")
        env = rig.tok.env(DEMO_PIN=h.USER_PIN)
        cmd = [CDCCTL, "--config", rig.tok.conf, "--json", "key", "rotate", "premium", "--label", label, "--pin-env",
               "DEMO_PIN"]
        # Both find the key by its label long before either's rotation (a KEK, an import) is done;
        # the one that waits for the other's lock then finds it a former version.
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)]
        outs = [json.loads(p.communicate(timeout=300)[0].decode()) for p in procs]
        rotated = [r for o in outs for r in o.get("rotated", [])]
        failed = [f for o in outs for f in o.get("failed", [])] + [o["error"] for o in outs if "error" in o]
        self.assertEqual([(r["label"], r["version"]) for r in rotated], [(label, 2)], outs)
        self.assertEqual(len(failed), 1, outs)
        self.assertIn("former version 1", json.dumps(failed))
        self.assertEqual(rig.versions("demo-premium", label), 2)
        self.assertEqual(len(self.formers(s, P.CKO_PRIVATE_KEY, label)), 1)

    # ------------------------------------------------------------ schedule

    def test_all_due_with_a_test_clock(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "sched")
        now = int(time.time())
        _, due1 = self.key_pair(s, "sched-a", "rsa", b"\x5a\x01")
        _, never = self.key_pair(s, "sched-never", "ec", b"\x5a\x02")
        s.setAttributeValue(never, [(CKA_CDC_ROTATE_EVERY_DAYS, packed(0))])
        _, kid1, _ = rig.state(s, due1)

        rc, out = self.rotate_json("sched", "--all-due", now=now + 29 * DAY)
        self.assertEqual((rc, out["rotated"], out["retired"]), (0, [], []))
        rc, out = self.rotate_json("sched", "--all-due", "--dry-run", now=now + 31 * DAY)
        self.assertEqual((rc, out["dry_run"]), (0, True))
        self.assertEqual([r["label"] for r in out["rotated"]], ["sched-a"])
        self.assertEqual(rig.versions("demo-premium", "sched-a"), 1, "a dry run changed the vault")
        rc, out = self.rotate_json("sched", "--all-due", now=now + 31 * DAY)
        self.assertEqual([(r["label"], r["version"]) for r in out["rotated"]], [("sched-a", 2)])
        self.assertEqual(rig.versions("demo-premium", "sched-a"), 2)
        cur = rig.find(s, P.CKO_PRIVATE_KEY, "sched-a")
        self.assertEqual(ulong(self.attr(s, cur, CKA_CDC_VERSION_SINCE)), now + 31 * DAY)
        # 9 days later the former is kept; 11 days later it is disabled in Azure (and the new
        # version, 11 days old, is not due).
        rc, out = self.rotate_json("sched", "--all-due", now=now + 40 * DAY)
        self.assertEqual((out["rotated"], out["retired"]), ([], []))
        rc, out = self.rotate_json("sched", "--all-due", now=now + 42 * DAY)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["rotated"], [])
        self.assertEqual([(r["label"], r["action"]) for r in out["retired"]], [("sched-a@v1", "disable")])
        self.assertFalse(rig.rest("GET", kid1).json()["attributes"]["enabled"])
        [former] = self.formers_any(s, "sched-a")
        self.assertEqual(self.version(s, former), (1, FORMER_DISABLED))
        self.assertTrue(rig.rest("GET", rig.state(s, cur)[1]).json()["attributes"]["enabled"])

        # key list: version, age, next rotation, expiry; key versions: local and Azure side by side.
        r = self.cdcctl("--json", "key", "list", "sched", now=now + 42 * DAY)
        keys = {k["label"]: k for k in json.loads(r.stdout.decode())["keys"]}
        self.assertEqual(keys["sched-a"]["version"], 2)
        self.assertEqual(keys["sched-a"]["age_days"], 11)
        self.assertEqual(keys["sched-a"]["next_rotation"], now + 61 * DAY)
        self.assertIsNone(keys["sched-never"]["next_rotation"])
        self.assertEqual(keys["sched-a@v1"]["version_state"], "former-disabled")
        r = self.cdcctl("--json", "key", "versions", "sched", "--label", "sched-a")
        v = json.loads(r.stdout.decode())
        self.assertEqual([(x["version"], x["local"], x["azure_enabled"]) for x in v["versions"]],
                         [(2, "sched-a", True), (1, "sched-a@v1", False)])
        human = self.cdcctl("key", "versions", "sched", "--label", "sched-a").stdout.decode()
        self.assertIn("sched-a@v1", human)
        # The new version is rotated in its turn, 30 days after it became current.
        rc, out = self.rotate_json("sched", "--all-due", now=now + 61 * DAY)
        self.assertEqual([(r["label"], r["version"]) for r in out["rotated"]], [("sched-a", 3)])
        self.assertEqual(rig.versions("demo-premium", "sched-a"), 3)

    def formers_any(self, s, label):
        P = self.rig.P
        return s.findObjects([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_LABEL, label + "@v1")])


if __name__ == "__main__":
    unittest.main(verbosity=2)
