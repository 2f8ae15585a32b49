"""A Standard vault takes a key only as a plain JWK, which puts the clear key outside the HSM.
Refused by default (test_hsm_mirror.py); a group that sets mirror.allow_plain_export_from_hsm lets
a key the HSM itself allows out in clear (CKA_EXTRACTABLE true, CKA_SENSITIVE false) be imported
that way, with a warning line naming the group and the key each time. A sensitive key is still
refused: a real HSM never lets it out in clear. cdcctl group show/edit carry the setting."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from mirrorhelpers import MIRRORED, LogOnly, Rig, azure_section, write_secret  # noqa: E402

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
CDCCTL = os.environ.get("CDCCTL", os.path.join(os.environ.get("CDCP11_BUILD", ""), "tools", "cdcctl", "cdcctl"))
PIN = "1234"
SLOT = 45


class HsmPlainExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        if not os.path.exists(SOFTHSM):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        cls.dir = tempfile.mkdtemp(prefix="cdcp11-hsm-plain-")
        cls.softhsm_conf = h.softhsm_tokens(cls.dir, ["hsm-plain"])
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        secret = write_secret(os.path.join(cls.dir, "secret"))
        group = {"name": "hsmplain", "slot_id": SLOT,
                 "token": {"backend": "pkcs11", "module": SOFTHSM, "token_label": "hsm-plain"},
                 "azure": azure_section(cls.emu, secret, "demo-standard", "standard"),
                 "mirror": {"trigger": "on_generate", "mode": "sync", "allow_plain_export_from_hsm": True}}
        cls.conf = os.path.join(cls.dir, "conf.json")
        with open(cls.conf, "w") as f:
            json.dump({"version": 1, "groups": [group]}, f)
        cls.log = os.path.join(cls.dir, "module.log")
        os.environ.update(CDCP11_CONF=cls.conf, CDCP11_LOG_FILE=cls.log, CDCP11_LOG_LEVEL="info")
        cls.P = h.pykcs11()
        cls.lib = cls.P.PyKCS11Lib()
        cls.lib.load(h.MODULE)
        cls.rig = Rig(cls.emu, LogOnly(cls.log), cls.lib, [("hsmplain", "demo-standard", "standard", {})])

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def session(self):
        s = self.lib.openSession(SLOT, self.P.CKF_SERIAL_SESSION | self.P.CKF_RW_SESSION)
        self.addCleanup(s.closeSession)
        try:
            s.login(PIN)
        except self.P.PyKCS11Error as e:
            if e.value != self.P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return s

    def pair(self, s, label, key_type, sensitive):
        P = self.P
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True), (P.CKA_LABEL, label),
                 (P.CKA_ID, label.encode())]
        priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True), (P.CKA_SIGN, True),
                  (P.CKA_SENSITIVE, sensitive), (P.CKA_LABEL, label), (P.CKA_ID, label.encode())]
        if key_type == "rsa":
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
            mech = P.CKM_RSA_PKCS_KEY_PAIR_GEN
        else:
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]
            mech = P.CKM_EC_KEY_PAIR_GEN
        return s.generateKeyPair(pub_t, priv_t, P.Mechanism(mech))

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def test_a_non_sensitive_extractable_key_is_imported_as_a_plain_jwk_with_a_warning(self):
        s = self.session()
        for label, kt in (("plain-rsa", "rsa"), ("plain-ec", "ec")):
            _, priv = self.pair(s, label, kt, sensitive=False)
            st, kid, err = self.rig.state(s, priv)
            self.assertEqual((st, err), (MIRRORED, ""), label)
            self.assertIn("demo-standard", kid)
            bundle = self.rig.rest("GET", kid).json()
            self.assertEqual(bundle["key"]["kty"], "RSA" if kt == "rsa" else "EC")
            self.rig.sign_in_vault_and_verify(kid, self.rig.token_public_key(s, label))
            uid = self.rig.uid(s, priv)
            warned = [l for l in self.read_log().splitlines() if "mirror.allow_plain_export_from_hsm" in l and uid in l]
            self.assertEqual(len(warned), 1, warned)
            self.assertIn("'hsmplain'", warned[0])
            self.assertIn("WARN", warned[0].upper())

    def test_a_sensitive_key_is_refused_even_with_the_setting(self):
        s = self.session()
        mark = len(self.emu.log().splitlines())
        with self.assertRaises(self.P.PyKCS11Error) as e:
            self.pair(s, "plain-sensitive", "ec", sensitive=True)
        self.assertEqual(e.exception.value, self.P.CKR_TEMPLATE_INCONSISTENT)
        self.assertIn("CKA_SENSITIVE is true: a sensitive key never leaves the HSM in clear", self.read_log())
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-standard" in l], [])

    def test_cdcctl_group_show_and_edit_carry_the_setting(self):
        run = lambda *a: subprocess.run([CDCCTL, "--config", self.conf, *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=60)
        shown = json.loads(run("--json", "group", "show", "hsmplain").stdout)
        self.assertTrue(shown["mirror"]["allow_plain_export_from_hsm"])
        self.assertIn("plain export from the HSM", run("group", "show", "hsmplain").stdout)
        with open(self.conf) as f:
            backup = f.read()

        def restore():
            with open(self.conf, "w") as f:
                f.write(backup)
        self.addCleanup(restore)
        p = run("group", "edit", "hsmplain", "--allow-plain-export-from-hsm", "false")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(json.loads(run("--json", "group", "show", "hsmplain").stdout)["mirror"]
                         ["allow_plain_export_from_hsm"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
